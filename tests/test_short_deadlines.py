"""Links that live minutes, not a day: a bfl task (ten-minute links) is polled and archived
inside a tenth of its links' life while the normal queue is full of slow work, and a link
that dies before it is fetched ends `expired` at once, never a retry loop."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from afterimage.providers import adapter
from afterimage.schedule import first_poll, poll_gap, urgent
from afterimage.settings import Settings
from tests.stack import Stack, running_stack
from tests.support import MotoServer, wait_for

TENTH = adapter("bfl").link_lifetime.total_seconds() / 10  # 60 s
SLOW_TASKS = 40  # normal-queue jobs of 1.5 s each: a minute of work for the one worker


@pytest.fixture()
def stack(redis_url: str, s3_server: MotoServer, s3_bucket: str, tmp_path: Path
          ) -> Iterator[Stack]:
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path, poller=True, workers=1,
                       sim_options={"delay": 1.0}) as s:
        yield s


def test_schedule_fits_a_tenth_of_a_short_link_life() -> None:
    s = Settings()
    for name in ("bfl", "fal", "replicate"):
        life = adapter(name).link_lifetime.total_seconds()
        assert life <= 3600 and urgent(name, None, time.time())
        assert first_poll(s, name) <= life / 20
        assert all(poll_gap(s, name, age) <= life / 20 for age in (0, 60, 600, 3600, 86400))
    day = time.time() + 86400
    assert not urgent("evolink", day, time.time())  # a day's links wait their turn
    assert urgent("evolink", time.time() + 3 * 3600 - 1, time.time())  # until an eighth is left


def test_a_bfl_task_is_polled_and_archived_inside_a_tenth_of_its_link_life(
    stack: Stack,
) -> None:
    stack.sim.set_faults("evolink", slow=1.5)
    slow = [stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"),
                                  delay=0.0)["id"] for _ in range(SLOW_TASKS)]
    wait_for(lambda: stack.task("evolink", slow[-1])["state"] == "queued", 20,
             "the normal queue to fill")
    stack.sim.set_faults("bfl", drop=1.0)  # its webhook is lost: only the poller finds it
    r = stack.api.post("/v1/providers/bfl/generations", params={"model": "flux-pro-1.1"},
                       json={"prompt": "a red kite", "sim": {"delay": 2.0}})
    assert r.status_code == 201, r.text
    task_id = r.json()["task"]["task_id"]
    assert r.json()["task"]["state"] == "pending"
    stack.wait_state("bfl", task_id, "archived", timeout=TENTH + 30)
    still_waiting = sum(stack.task("evolink", t)["state"] != "archived" for t in slow)
    assert still_waiting > 0  # the bfl task went ahead of the normal queue

    completed = stack.sim.task("bfl", task_id)["ready_at"]  # when the provider finished
    manifest = json.loads(stack.objects(f"archive/bfl/{task_id}/")[
        f"archive/bfl/{task_id}/manifest.json"])
    archived = datetime.fromisoformat(manifest["archived_at"]).timestamp()
    assert 0 < archived - completed <= TENTH
    assert stack.sim.task("bfl", task_id)["callbacks"]["dropped"] == 1


def test_a_bfl_link_that_dies_before_archiving_ends_expired(stack: Stack) -> None:
    given = stack.api.get("/v1/providers/bfl/callback-url").json()
    stack.sim.set_faults("bfl", late=1.0, late_delay=2.0)  # the webhook comes after the link died
    made = stack.sim.create_task("bfl", callback_url=given["callback_url"], link_ttl=0.5,
                                 webhook_secret=given["webhook_secret"], delay=0.0)
    task = stack.wait_state("bfl", made["id"], "expired", timeout=30)
    assert task["error"]["code"] == "link_expired"
    downloads = sum(stack.sim.task("bfl", made["id"])["downloads"].values())
    assert downloads <= 1 and stack.task("bfl", made["id"])["attempts"] == 1
    assert not stack.objects(f"archive/bfl/{made['id']}/")
