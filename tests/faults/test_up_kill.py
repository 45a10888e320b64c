"""`kill -9` of a whole `afterimage up` (embedded redis-server, receiver, workers, poller) in
the middle of downloads, then a restart: every task whose callback was acknowledged ends
archived, each image written once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from afterimage.simulator import run_simulator
from afterimage.simulator.server import RunningSimulator
from tests.faults.upproc import Up, up_env
from tests.support import wait_for

TASKS = 4


@pytest.fixture()
def sim() -> Iterator[RunningSimulator]:
    with run_simulator(delay=0.0, image_bytes=2_000_000) as sim:
        yield sim


def acknowledged(sim: RunningSimulator, ids: list[str]) -> bool:
    return all(sim.task("evolink", i)["callbacks"]["delivered"] >= 1 for i in ids)


def downloading(sim: RunningSimulator, ids: list[str]) -> bool:
    return any(sim.task("evolink", i)["downloads"] for i in ids)


@pytest.mark.parametrize("whole_group", [True, False], ids=["group", "up-only"])
def test_up_killed_mid_stream_and_restarted_archives_every_acknowledged_task(
    sim: RunningSimulator, tmp_path: Path, whole_group: bool
) -> None:
    data = tmp_path / "data"
    env = up_env(data, sim)
    sim.set_faults("evolink", slow=4.0)
    first = Up(env, tmp_path / "up.log")
    try:
        url = first.callback_url("evolink")
        ids = [sim.create_task("evolink", callback_url=url)["id"] for _ in range(TASKS)]
        wait_for(lambda: acknowledged(sim, ids), 20, "every callback to be acknowledged")
        wait_for(lambda: downloading(sim, ids), 20, "a download to be under way")
    finally:
        first.kill(whole_group)  # with only `up` killed, its children must die with it
    sim.set_faults("evolink", slow=0.0)

    again = Up(env, tmp_path / "up.log")
    try:
        for task_id in ids:
            wait_for(lambda t=task_id: again.task("evolink", t)["state"] == "archived", 60,
                     f"{task_id} to be archived")
    finally:
        again.stop()

    archive = data / "archive" / "evolink"
    for task_id in ids:
        files = sorted(p.name for p in (archive / task_id).iterdir() if not p.name.startswith("."))
        assert files == ["0.png", "manifest.json"]
        served = httpx.get(sim.task("evolink", task_id)["image_urls"][0]).content
        assert (archive / task_id / "0.png").read_bytes() == served
