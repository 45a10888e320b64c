"""The fallback poller, counted from the provider's side (the simulator)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from afterimage import keys
from tests.stack import Stack, running_stack
from tests.support import MotoServer, wait_for

BODY = {"model": "gpt-image-2", "prompt": "a red kite"}


@pytest.fixture()
def make_stack(
    redis_url: str, s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> Iterator[Any]:
    stacks: list[Any] = []

    def make(env: dict[str, str], **options: Any) -> Stack:
        ctx = running_stack(redis_url, s3_server.url, s3_bucket, tmp_path, extra_env=env,
                            **options)
        stacks.append(ctx)
        return ctx.__enter__()

    yield make
    for ctx in reversed(stacks):
        ctx.__exit__(None, None, None)


def submit(stack: Stack, provider: str, **sim: Any) -> str:
    r = stack.api.post(f"/v1/providers/{provider}/generations", json={**BODY, "sim": sim})
    assert r.status_code == 201, r.text
    return str(r.json()["task"]["task_id"])


def queries(stack: Stack, provider: str, task_id: str) -> list[dict[str, Any]]:
    log: list[dict[str, Any]] = stack.sim.task(provider, task_id)["queries"]["log"]
    return log


def test_with_30_percent_of_callbacks_dropped_every_task_is_archived(make_stack: Any) -> None:
    stack = make_stack({"AFTERIMAGE_POLL_SCALE": "0.02"}, poller=True, workers=2)
    stack.sim.set_faults("evolink", drop=0.3)
    ids = [submit(stack, "evolink") for _ in range(20)]
    for task_id in ids:
        stack.wait_state("evolink", task_id, "archived", timeout=60)
    dropped = sum(stack.sim.task("evolink", i)["callbacks"]["dropped"] for i in ids)
    assert dropped >= 1  # the poller, not a callback, found those


def test_two_pollers_never_ask_twice_for_one_due_time(make_stack: Any) -> None:
    # toapis asks every 4.5 s (a 5 s detection budget), scaled to 1.1 s: two queries of one
    # task closer than half that would mean both pollers took the same due time.
    env = {"AFTERIMAGE_POLL_SCALE": "0.25", "AFTERIMAGE_POLL_DETECTION_SECONDS": "5"}
    stack = make_stack(env, poller=True)
    stack.start("poller", name="poller2")
    ids = [submit(stack, "toapis", delay=10.0) for _ in range(8)]
    for task_id in ids:
        stack.wait_state("toapis", task_id, "archived", timeout=60)
    for task_id in ids:
        times = [q["at"] for q in queries(stack, "toapis", task_id)]
        assert len(times) >= 2
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) > 0.5, (task_id, gaps)


def test_a_poller_killed_mid_run_loses_nothing(make_stack: Any) -> None:
    env = {"AFTERIMAGE_POLL_SCALE": "0.2", "AFTERIMAGE_POLL_LEASE_SECONDS": "2"}
    stack = make_stack(env, poller=True)
    ids = [submit(stack, "xingchao", delay=2.0) for _ in range(10)]
    wait_for(lambda: any(queries(stack, "xingchao", i) for i in ids), 20, "a first poll")
    stack.stop("poller", kill=True)
    stack.start("poller", name="poller-again")
    for task_id in ids:
        stack.wait_state("xingchao", task_id, "archived", timeout=60)


def test_a_429_storm_slows_only_that_provider(make_stack: Any) -> None:
    stack = make_stack({"AFTERIMAGE_POLL_SCALE": "0.1"}, poller=True,
                       sim_options={"retry_after": 1})
    stack.sim.set_faults("toapis", storm_seconds=6)
    stormy = [submit(stack, "toapis") for _ in range(5)]
    calm = [submit(stack, "xingchao") for _ in range(5)]
    for task_id in calm:
        stack.wait_state("xingchao", task_id, "archived", timeout=30)
    assert all(stack.task("toapis", t)["state"] == "pending" for t in stormy)
    for task_id in stormy:
        stack.wait_state("toapis", task_id, "archived", timeout=60)
    refused = sum(1 for t in stormy for q in queries(stack, "toapis", t) if q["status"] == 429)
    assert 1 <= refused <= 12  # paused by Retry-After: about one 429 a second, not one per task


def test_a_task_that_never_completes_stops_being_polled(make_stack: Any) -> None:
    env = {"AFTERIMAGE_POLL_SCALE": "0.1", "AFTERIMAGE_POLL_GIVE_UP_SECONDS": "2"}
    stack = make_stack(env, poller=True)
    task_id = submit(stack, "xingchao", delay=3600)
    task = stack.wait_state("xingchao", task_id, "expired", timeout=30)
    assert task["error"]["code"] == "never_completed"
    asked = len(queries(stack, "xingchao", task_id))
    assert asked >= 1


def test_a_task_past_its_link_deadline_ends_expired(make_stack: Any) -> None:
    env = {"AFTERIMAGE_POLL_SCALE": "0.1", "AFTERIMAGE_ARCHIVE_RETRIES": "0"}
    stack = make_stack(env, poller=True)
    stack.sim.set_faults("toapis", truncate=1.0)
    task_id = submit(stack, "toapis", link_ttl=3)
    task = stack.wait_state("toapis", task_id, "expired", timeout=40)
    assert task["error"]["code"] in ("deadline_passed", "link_expired")
    assert stack.objects(f"archive/toapis/{task_id}/") == {}


def test_the_first_query_follows_the_completion_times_learned(make_stack: Any) -> None:
    """Tasks that completed 60 s after creation move a new task's first query from the static
    30 s to the learned window's end, minus nothing more than a bin (5 s): times read from
    the simulator's query log, relative to the task's creation there (scaled by 0.2)."""
    scale = 0.2
    stack = make_stack({"AFTERIMAGE_POLL_SCALE": str(scale)}, poller=True)

    def first_query_age(task_id: str) -> float:
        sim = stack.sim.task("apimart", task_id)
        return (min(q["at"] for q in sim["queries"]["log"]) - sim["created_at"]) / scale

    seen = [submit(stack, "apimart", delay=60 * scale) for _ in range(20)]
    for task_id in seen:
        stack.wait_state("apimart", task_id, "archived", timeout=60)
    assert all(first_query_age(t) < 50 for t in seen)  # before anything was learned: 30 s
    fresh = submit(stack, "apimart", delay=60 * scale)
    stack.wait_state("apimart", fresh, "archived", timeout=60)
    assert first_query_age(fresh) >= 55  # learned: completions come at 55-60 s
    assert len(queries(stack, "apimart", fresh)) == 1


def test_two_pollers_never_ask_a_slow_provider_twice_for_one_due_time(make_stack: Any) -> None:
    # Every status query takes 5 s, longer than the 3 s lease: the poller asking renews its
    # lease meanwhile, so the other never takes the task. Each next query of a task comes
    # only after the reply to the one before.
    env = {"AFTERIMAGE_POLL_SCALE": "0.25", "AFTERIMAGE_POLL_LEASE_SECONDS": "3"}
    stack = make_stack(env, poller=True)
    stack.start("poller", name="poller2")
    stack.sim.set_faults("toapis", slow_status=5.0)
    ids = [submit(stack, "toapis", delay=18.0) for _ in range(6)]
    for task_id in ids:
        stack.wait_state("toapis", task_id, "archived", timeout=120)
    for task_id in ids:
        times = [q["at"] for q in queries(stack, "toapis", task_id)]
        assert len(times) >= 2, times
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 4.5, (task_id, gaps)


def test_a_pending_task_nobody_can_ask_about_ends_never_completed(make_stack: Any) -> None:
    # No API key: xingchao (no callbacks) cannot be polled, and evolink's callback never
    # comes (dropped). Both end expired at the give-up time, never asked about.
    env = {"AFTERIMAGE_POLL_SCALE": "0.1", "AFTERIMAGE_POLL_GIVE_UP_SECONDS": "3"}
    stack = make_stack(env, poller=True, keys=False)
    stack.sim.set_faults("evolink", drop=1.0)
    made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
    tracked = [("xingchao", "never-asked-1"), ("evolink", str(made["id"]))]
    for provider, task_id in tracked:
        r = stack.api.post("/v1/tasks", json={"provider": provider, "task_id": task_id})
        assert r.status_code == 201, r.text
    for provider, task_id in tracked:
        task = stack.wait_state(provider, task_id, "expired", timeout=30)
        assert task["error"]["code"] == "never_completed"
        assert f"AFTERIMAGE_{provider.upper()}_API_KEY" in task["error"]["message"]
        lived = (datetime.fromisoformat(task["updated_at"].replace("Z", "+00:00"))
                 - datetime.fromisoformat(task["created_at"].replace("Z", "+00:00")))
        assert lived.total_seconds() >= 3  # at the give-up time, not before
        assert stack.db.zscore(keys.due(provider), task_id) is None
        assert queries(stack, provider, task_id) == []


def test_a_providers_progress_brings_the_next_query_forward(make_stack: Any) -> None:
    """toapis reports progress: at the first query (30 s) of a task done at 40 s it says 75 %,
    so the next query comes at about 52 s (its estimate, plus 2 s for its whole-second clock),
    not a whole gap (48 s of a 60 s budget) later. Times from the simulator's query log."""
    scale = 0.2
    env = {"AFTERIMAGE_POLL_SCALE": str(scale), "AFTERIMAGE_POLL_DETECTION_SECONDS": "60"}
    stack = make_stack(env, poller=True)
    task_id = submit(stack, "toapis", delay=40 * scale)
    stack.wait_state("toapis", task_id, "archived", timeout=60)
    sim = stack.sim.task("toapis", task_id)
    ages = [(q["at"] - sim["created_at"]) / scale for q in sim["queries"]["log"]]
    assert len(ages) == 2, ages
    assert 30 <= ages[0] < 40  # the start plan's first query: still pending
    assert 40 <= ages[1] < 70, ages  # the plan alone: 78 s


def test_a_batch_request_counts_once_against_the_rate_limit(make_stack: Any) -> None:
    """One request every 10 s (AFTERIMAGE_POLL_RATE=0.1): apimart's batch request asks about
    every due task at once. Counted per task, 20 tasks would take 200 s."""
    env = {"AFTERIMAGE_POLL_SCALE": "0.25", "AFTERIMAGE_POLL_RATE": "0.1"}
    stack = make_stack(env, poller=True)
    ids = [submit(stack, "apimart", delay=0.0) for _ in range(20)]
    for task_id in ids:
        stack.wait_state("apimart", task_id, "archived", timeout=60)
    asked = {q["at"] for task_id in ids for q in queries(stack, "apimart", task_id)}
    assert len(asked) <= 4  # a handful of requests, each about many tasks
