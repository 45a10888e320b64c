"""GET /metrics follows what happens across the receiver, the worker and the poller processes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import Stack, running_stack
from tests.support import MotoServer, wait_for

DOCS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


@pytest.fixture()
def stack(redis_url: str, s3_server: MotoServer, s3_bucket: str, tmp_path: Path) -> Iterator[Stack]:
    env = {"AFTERIMAGE_ARCHIVE_RETRIES": "0", "AFTERIMAGE_POLL_SCALE": "0.01"}
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path, poller=True,
                       extra_env=env) as s:
        yield s


def scrape(stack: Stack) -> dict[str, float]:
    """Every sample, keyed `name{label="value",...}` with the labels sorted."""
    r = httpx.get(f"{stack.settings.public_url}/metrics")  # no token: /metrics is open
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def test_counters_and_gauges_follow_a_callback_and_an_archive(stack: Stack) -> None:
    before = scrape(stack)
    assert before['afterimage_callbacks_total{outcome="recorded",provider="evolink"}'] == 0
    assert before['afterimage_archive_jobs_total{outcome="archived",provider="evolink"}'] == 0
    assert before['afterimage_tasks{provider="evolink",state="archived"}'] == 0
    assert before["afterimage_redis_up{}"] == 1
    assert before["afterimage_storage_up{}"] == 1
    assert before["afterimage_redis_memory_used_bytes{}"] > 0
    assert before["afterimage_redis_memory_max_bytes{}"] >= 0

    made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"), images=2)
    task = stack.wait_state("evolink", made["id"], "archived")
    size = sum(i["bytes"] for i in task["images"])
    archived = 'afterimage_archive_jobs_total{outcome="archived",provider="evolink"}'
    after = wait_for(lambda: (m := scrape(stack))[archived] == 1 and m, 10,
                     "the worker's counts at /metrics")
    assert after['afterimage_callbacks_total{outcome="recorded",provider="evolink"}'] == 1
    assert after['afterimage_archived_bytes_total{provider="evolink"}'] == size
    assert after['afterimage_archived_images_total{provider="evolink"}'] == 2
    assert after['afterimage_archive_duration_seconds_count{provider="evolink"}'] == 1
    assert after['afterimage_archive_duration_seconds_bucket{le="+Inf",provider="evolink"}'] == 1
    assert after['afterimage_tasks{provider="evolink",state="archived"}'] == 1
    assert after['afterimage_tasks{provider="evolink",state="queued"}'] == 0
    assert after["afterimage_oldest_unarchived_task_age_seconds{}"] == 0
    assert "afterimage_earliest_link_deadline_seconds{}" not in after

    httpx.post(stack.callback_url("evolink").rsplit("/", 1)[0] + "/wrong-token", json={})
    httpx.post(stack.callback_url("evolink"), content=b"{not json")
    refused = scrape(stack)
    assert refused['afterimage_callbacks_total{outcome="unauthorized",provider="evolink"}'] == 1
    assert refused['afterimage_callbacks_total{outcome="not_json",provider="evolink"}'] == 1


def test_a_failed_archive_shows_its_deadline_and_age(stack: Stack) -> None:
    stack.sim.set_faults("evolink", truncate=1.0)
    made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
    stack.wait_state("evolink", made["id"], "archive_failed")
    failed = 'afterimage_archive_jobs_total{outcome="archive_failed",provider="evolink"}'
    m = wait_for(lambda: (m := scrape(stack))[failed] == 1 and m, 10, "the failed job counted")
    assert m['afterimage_tasks{provider="evolink",state="archive_failed"}'] == 1
    assert m["afterimage_oldest_unarchived_task_age_seconds{}"] > 0
    expires = stack.task("evolink", made["id"])["expires_at"]
    assert expires  # the deadline an alert should watch is that of this task's links
    assert 0 < m["afterimage_earliest_link_deadline_seconds{}"] <= 86400


def test_poll_queries_and_429s_are_counted_by_provider(stack: Stack) -> None:
    stack.sim.set_faults("xingchao", rate_limit=1.0)
    ids = {}
    for provider in ("toapis", "xingchao"):
        ids[provider] = stack.sim.create_task(provider)["id"]
        r = stack.api.post("/v1/tasks", json={"provider": provider, "task_id": ids[provider]})
        assert r.status_code == 201
    stack.wait_state("toapis", ids["toapis"], "archived", timeout=60)
    limited = 'afterimage_poll_queries_total{outcome="rate_limited",provider="xingchao"}'
    m = wait_for(lambda: (m := scrape(stack))[limited] >= 1 and m, 60, "a 429 counted")
    assert m['afterimage_poll_queries_total{outcome="ok",provider="toapis"}'] >= 1
    assert m['afterimage_poll_queries_total{outcome="ok",provider="xingchao"}'] == 0
    assert m['afterimage_tasks{provider="xingchao",state="pending"}'] == 1


def test_every_metric_is_documented(stack: Stack) -> None:
    names = {re.sub(r"(_bucket|_count|_sum)$", "", k.split("{")[0]) for k in scrape(stack)}
    documented = DOCS.read_text()
    assert sorted(n for n in names if f"`{n}`" not in documented) == []


def used_by_alerts_and_dashboard() -> set[str]:
    """Every afterimage_* series name the alert rules and the dashboard query."""
    root = DOCS.parents[1]
    rules = yaml.safe_load((root / "deploy" / "prometheus" / "alerts.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    board = json.loads((root / "deploy" / "grafana" / "afterimage.json").read_text())
    exprs += [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return set(re.findall(r"\bafterimage_[a-z_]+\b", "\n".join(exprs)))


def test_every_metric_the_alerts_and_the_dashboard_use_exists(stack: Stack) -> None:
    """No alert or panel on a metric that was renamed: each name they use is a series of a
    running stack's /metrics, once an archive, a failed archive and a poll have happened."""
    used = used_by_alerts_and_dashboard()
    assert len(used) >= 15
    made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
    stack.wait_state("evolink", made["id"], "archived")
    stack.sim.set_faults("evolink", truncate=1.0)  # leaves a task with a link deadline
    failed = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
    stack.wait_state("evolink", failed["id"], "archive_failed")
    polled = stack.sim.create_task("toapis")["id"]
    assert stack.api.post("/v1/tasks", json={"provider": "toapis", "task_id": polled}
                          ).status_code == 201
    stack.wait_state("toapis", polled, "archived", timeout=60)

    def none_missing() -> bool:
        missing = sorted(used - {k.split("{")[0] for k in scrape(stack)})
        assert missing == [], f"not at /metrics: {missing}"
        return True

    wait_for(none_missing, 30, "every metric the alerts and the dashboard use")
