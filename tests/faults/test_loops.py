"""Background loops that never die: bad data written into Redis, Redis emptied (FLUSHALL) and
Redis killed with -9 and restarted from its AOF, each in the middle of a run. Every loop goes
on by itself, beats again, and every task acknowledged after the fault ends archived."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from afterimage import keys
from afterimage.components import COMPONENTS
from tests.faults.helpers import logged
from tests.stack import Stack, running_stack
from tests.support import MotoServer, RedisServer, wait_for

BODY = {"model": "gpt-image-2", "prompt": "a red kite"}
LOOPS = tuple(c for c in COMPONENTS if c != "events")  # events run with a notify URL only


@pytest.fixture()
def stack(redis_url: str, s3_server: MotoServer, s3_bucket: str,
          tmp_path: Path) -> Iterator[Stack]:
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path, poller=True,
                       extra_env={"AFTERIMAGE_POLL_SCALE": "0.05"}) as s:
        yield s


def beats(stack: Stack) -> dict[str, float]:
    """component -> unix time of its newest heartbeat."""
    raw: Any = stack.db.hgetall(keys.HEARTBEATS)
    return {k.decode(): float(v.split(b" ")[0]) for k, v in raw.items()}


def all_beat_since(stack: Stack, since: float, loops: tuple[str, ...] = LOOPS) -> bool:
    found = beats(stack)
    return all(found.get(c, 0.0) > since for c in loops)


def heartbeat_ages(stack: Stack) -> dict[str, float]:
    text = httpx.get(f"{stack.settings.public_url}/metrics", timeout=10).text
    prefix = 'afterimage_component_heartbeat_age_seconds{component="'
    return {line[len(prefix):].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith(prefix)}


def callback_task(stack: Stack) -> str:
    made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
    return str(made["id"])


def polled_task(stack: Stack, **sim: float) -> str:
    """A task of a provider without callbacks: only the poller can find its result."""
    reply = stack.api.post("/v1/providers/xingchao/generations", json={**BODY, "sim": sim})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["task"]["task_id"])


def everything_archived(stack: Stack, tasks: list[tuple[str, str]]) -> None:
    for provider, task_id in tasks:
        stack.wait_state(provider, task_id, "archived", timeout=60)


def test_every_loop_beats_and_metrics_and_ops_show_it(stack: Stack) -> None:
    started = time.time()
    wait_for(lambda: all_beat_since(stack, started), 30, "every loop to beat")
    ages = heartbeat_ages(stack)
    assert set(ages) == set(LOOPS)  # events do not run without a notify URL
    html = stack.api.get("/ops").text  # the stack's client sends the API token
    for component in COMPONENTS:
        assert f'data-component="{component}"' in html
    assert '<tr data-component="events" class="late"><td>events</td><td class="num">never' \
        in html


def test_malformed_inbox_entries_are_set_aside_and_dispatching_goes_on(stack: Stack) -> None:
    stack.db.xgroup_create(keys.INBOX, keys.DISPATCH_GROUP, id="0", mkstream=True)
    bad = [{"p": "evolink"}, {"p": "evolink", "id": "t-1", "g": "two"},
           {"x": "y"}, {"p": b"\xff\xfe", "id": "t-2", "g": "1"},
           {"p": "evolink", "id": "t-3", "g": "1", "ea": "soon"}]
    for fields in bad:
        stack.db.xadd(keys.INBOX, fields)  # type: ignore[arg-type]
    task_id = callback_task(stack)  # its entry comes after the bad ones
    stack.wait_state("evolink", task_id, "archived")
    wait_for(lambda: stack.db.xlen(keys.MALFORMED) == len(bad), 10, "every bad entry set aside")
    assert stack.db.xlen(keys.INBOX) == 0
    kept = stack.db.xrange(keys.MALFORMED)
    assert [f[b"error"].split(b":")[0] for _, f in kept] == [
        b"KeyError", b"ValueError", b"KeyError", b"UnicodeDecodeError", b"ValueError"]
    assert logged(stack, "is malformed")


def test_loops_meeting_an_unexpected_error_keep_running(stack: Stack) -> None:
    started = time.time()
    wait_for(lambda: all_beat_since(stack, started), 30, "every loop to beat")
    # Keys of the wrong type: every Redis command of the dispatcher, the deadline sweep, the
    # poller's claim and recovery's promotion of retries fails with WRONGTYPE, an error none
    # of them expects.
    broken = [keys.INBOX, keys.DEADLINES, keys.due("xingchao"), "rq:scheduled:afterimage"]
    stack.db.delete(*broken)
    for key in broken:
        stack.db.set(key, "not what it should be")
    for loop in ("dispatcher", "deadlines", "poller", "recovery"):
        wait_for(lambda c=loop: logged(stack, f'"{c}: unexpected error (ResponseError: WRONGTYPE'),
                 30, f"{loop} to meet the error")
    stack.db.delete(*broken)
    # The metrics flush of the poller: its counts of a slow task's polls cannot be written.
    stack.db.set(keys.METRICS, "not a hash")
    slow = polled_task(stack, delay=3.0)
    wait_for(lambda: logged(stack, '"metrics: unexpected error (ResponseError: '), 30,
             "the metrics flush to meet the error")
    stack.db.delete(keys.METRICS)
    mended = time.time()
    tasks = [("evolink", callback_task(stack)), ("xingchao", polled_task(stack)),
             ("xingchao", slow)]
    everything_archived(stack, tasks)
    wait_for(lambda: all_beat_since(stack, mended), 60, "every loop to beat again")
    assert all(p.poll() is None for p in stack.procs.values())


def test_redis_flushed_mid_run_every_loop_recovers(stack: Stack) -> None:
    before = [("evolink", callback_task(stack)), ("xingchao", polled_task(stack))]
    everything_archived(stack, before)
    stack.db.flushall()  # the inbox stream, its group, the queues: all gone
    flushed = time.time()
    after = [("evolink", callback_task(stack)) for _ in range(3)]
    after += [("xingchao", polled_task(stack)) for _ in range(2)]
    everything_archived(stack, after)
    wait_for(lambda: all_beat_since(stack, flushed), 60, "every loop to beat again")
    assert logged(stack, "inbox stream or its group is gone")
    assert all(p.poll() is None for p in stack.procs.values())


def test_redis_killed_and_restarted_from_its_aof_every_loop_recovers(
    s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis", fsync="always").start()
    try:
        with running_stack(server.url, s3_server.url, s3_bucket, tmp_path, poller=True,
                           extra_env={"AFTERIMAGE_POLL_SCALE": "0.05"}) as stack:
            before = [("evolink", callback_task(stack)), ("xingchao", polled_task(stack))]
            everything_archived(stack, before)
            server.stop(kill=True)
            wait_for(lambda: logged(stack, '"dispatcher: Redis unavailable'), 30,
                     "the dispatcher to notice")
            server.start()
            restarted = time.time()
            after = [("evolink", callback_task(stack)), ("xingchao", polled_task(stack))]
            everything_archived(stack, after)
            wait_for(lambda: all_beat_since(stack, restarted), 60, "every loop to beat again")
            assert all(p.poll() is None for p in stack.procs.values())
    finally:
        server.stop()
