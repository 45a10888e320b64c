"""Logs: one JSON object per line and event, with provider, task id and state change, and never a
signed URL's query string."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from afterimage.logs import JsonFormatter
from tests.stack import running_stack
from tests.support import MotoServer

SIGNED = "https://cdn.example.com/img/0.png?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA1"


def formatted(msg: str, *args: object, **extra: Any) -> dict[str, Any]:
    record = logging.LogRecord("afterimage.test", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_a_line_is_json_with_the_event_fields_and_no_query_string() -> None:
    out = formatted("archive %s %s: fetching %s failed", "evolink", "t-1", SIGNED,
                    event="archive_failed", provider="evolink", task_id="t-1",
                    state="archive_failed", previous="queued")
    assert out["event"] == "archive_failed"
    assert (out["provider"], out["task_id"], out["state"], out["previous"]) == (
        "evolink", "t-1", "archive_failed", "queued")
    assert out["level"] == "warning"
    assert "https://cdn.example.com/img/0.png" in out["msg"]
    assert "deadbeef" not in json.dumps(out)
    assert "X-Amz" not in json.dumps(out)


def test_query_strings_go_from_extra_fields_and_tracebacks_too() -> None:
    out = formatted("x", task_id=f"id-with-a-link {SIGNED}")
    assert "deadbeef" not in out["task_id"]
    try:
        raise ValueError(f"GET {SIGNED.upper()} failed")
    except ValueError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    assert "DEADBEEF" not in JsonFormatter().format(record)


def test_the_processes_log_each_state_change_without_signed_queries(
    redis_url: str, s3_server: MotoServer, s3_bucket: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="afterimage.receiver")  # recorded: at debug
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path,
                       extra_env={"AFTERIMAGE_ARCHIVE_RETRIES": "0"}) as stack:
        good = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
        stack.wait_state("evolink", good["id"], "archived")
        stack.sim.set_faults("evolink", truncate=1.0)
        bad = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
        stack.wait_state("evolink", bad["id"], "archive_failed")
        signed = [u for t in (good, bad) for u in stack.sim.task("evolink", t["id"])["image_urls"]]
    assert all("sig=" in u for u in signed)

    received = [json.loads(JsonFormatter().format(r)) for r in caplog.records
                if getattr(r, "event", None) == "callback_recorded"]
    assert {(r["provider"], r["task_id"], r["state"], r["previous"]) for r in received} == {
        ("evolink", good["id"], "queued", "none"), ("evolink", bad["id"], "queued", "none")}

    text = (tmp_path / "worker0.log").read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    events = {(x.get("event"), x.get("task_id")): x for x in lines}
    archived = events[("archived", good["id"])]
    assert (archived["provider"], archived["state"], archived["previous"]) == (
        "evolink", "archived", "queued")
    failed = events[("archive_failed", bad["id"])]
    assert (failed["provider"], failed["state"]) == ("evolink", "archive_failed")
    for url in signed:
        query = url.split("?", 1)[1]
        assert query not in text
        assert query.split("sig=")[1] not in text
