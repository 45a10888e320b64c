"""deploy/grafana/afterimage.json: one dashboard whose queries are valid PromQL (promtool) and
cover what an operator watches. That every metric it names exists is checked against a real
/metrics in tests/test_metrics.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "afterimage.json"


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def queries() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


def test_the_dashboard_is_laid_out_on_grafanas_grid() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "afterimage"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
    for p in panels():
        assert p["targets"] and p["description"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = [{"record": f"dashboard:query_{i}", "expr": q.replace("$__rate_interval", "5m")}
             for i, q in enumerate(queries())]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/bootstrap --test installs it"
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_shows_what_the_operator_watches() -> None:
    text = "\n".join(queries())
    for needed in (
        r"rate\(afterimage_callbacks_total",                              # ingest
        r"rate\(afterimage_archive_jobs_total",                           # archive rate
        r"histogram_quantile\(0\.95, .*afterimage_archive_duration_seconds_bucket",  # latency
        r"afterimage_queue_jobs",                                         # queue depths
        r"by \(provider\) \(rate\(afterimage_poll_queries_total\[",       # poll rate
        r'afterimage_poll_queries_total\{outcome="rate_limited"\}',       # 429s
        r"afterimage_earliest_link_deadline_seconds",                     # link deadline
        r"by \(component\) \(afterimage_component_heartbeat_age_seconds",  # heartbeats
    ):
        assert re.search(needed, text), needed
