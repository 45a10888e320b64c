"""`kill -9` of a whole `afterimage up` (embedded redis-server, receiver, workers, poller) in
the middle of downloads, then a restart: every task whose callback was acknowledged ends
archived, each image written once. With only `up` killed its children die with it (the
kernel's PR_SET_PDEATHSIG), and a child also stops by itself once its parent is gone (the
fallback, tested alone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from afterimage import keys
from afterimage.simulator import run_simulator
from afterimage.simulator.server import RunningSimulator
from afterimage.supervisor import SUPERVISOR_ENV
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


# A parent standing in for `up`, without PR_SET_PDEATHSIG: it starts a poller as `up` does
# (its pid in the environment variable named by argv[1]), says the poller's pid, and waits.
PARENT = """
import os, subprocess, sys
env = {**os.environ, sys.argv[1]: str(os.getpid())}
child = subprocess.Popen([sys.executable, "-m", "afterimage", "poller"], env=env,
                         stdout=sys.stderr)
print(child.pid, flush=True)
child.wait()
"""


def alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return text[text.rfind(")") + 2] not in "ZX"


def test_a_child_of_up_stops_by_itself_once_up_is_gone(redis_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERIMAGE_")}
    env.update({"AFTERIMAGE_REDIS_URL": redis_url, "AFTERIMAGE_DATA_DIR": str(tmp_path)})
    log = tmp_path / "poller.log"
    with open(log, "wb") as out:
        parent = subprocess.Popen([sys.executable, "-c", PARENT, SUPERVISOR_ENV], env=env,
                                  stdout=subprocess.PIPE, stderr=out)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    db = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: db.hget(keys.HEARTBEATS, "poller"), 30, "the poller to run")
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: not alive(child), 30, "the orphaned poller to stop")
        assert "is gone; stopping" in log.read_text()
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
        db.close()
