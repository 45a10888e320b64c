"""deploy/prometheus: the alert rules pass `promtool check rules`, their unit tests pass
`promtool test rules`, each alert is tested firing and quiet, and docs/operations.md says what
to do about each."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "deploy" / "prometheus"
RULES, RULE_TESTS = PROM / "alerts.yaml", PROM / "alerts_test.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
DISTINCT = ("instance", "provider", "component")  # labels that tell one series from another


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: scripts/bootstrap --test installs Debian's prometheus"
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_rules_and_the_scrape_config_pass_promtool_check() -> None:
    done = promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    done = promtool("check", "config", PROM / "prometheus.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_unit_tests_pass() -> None:
    done = promtool("test", "rules", RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_each_alert_is_tested_firing_and_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        series = {tuple(part for part in s["series"].split("{", 1)[1].split(",")
                        if part.split("=")[0] in DISTINCT) for s in case["input_series"]}
        for check in case["alert_rule_test"]:
            expected = check.get("exp_alerts") or []
            if expected:
                fired.add(check["alertname"])
            if len(expected) < len(series):  # some series in the case must not fire it
                quiet.add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert len(names) >= 8
    assert sorted(names - fired) == []
    assert sorted(names - quiet) == []


def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The same unit tests against rules whose heartbeat threshold is wrong must fail."""
    (tmp_path / "alerts.yaml").write_text(
        RULES.read_text().replace("afterimage_component_heartbeat_age_seconds > 120",
                                  "afterimage_component_heartbeat_age_seconds > 100000"))
    (tmp_path / "alerts_test.yaml").write_text(RULE_TESTS.read_text())
    done = promtool("test", "rules", tmp_path / "alerts_test.yaml")
    assert done.returncode != 0
    assert "AfterimageHeartbeatStale" in done.stdout + done.stderr


def test_each_alert_has_a_severity_a_summary_and_a_section_in_the_operations_guide() -> None:
    guide = OPERATIONS.read_text()
    for rule in alerts():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert f"### {rule['alert']}" in guide, rule["alert"]
