"""Redis Sentinel: afterimage follows a failover without a restart, and with
AFTERIMAGE_REDIS_MIN_REPLICAS nothing acknowledged is lost when the primary dies (`kill -9`).

Real parts only: a primary, a replica and three Debian redis-sentinels; the receiver over real
HTTP; worker and poller processes; the simulator as the provider."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from afterimage import keys, redis_client
from afterimage.errors import ReplicasBehindError
from afterimage.ledger import AsyncLedger, move_args
from afterimage.models import TaskState
from afterimage.settings import Settings
from receiver import create_app
from tests.receiver.test_callbacks import cb_url, completed, settings_for
from tests.sentinels import SentinelCluster
from tests.stack import TOKEN, Stack, running_stack
from tests.support import MotoServer, ServerThread, wait_for
from tests.test_cli import afterimage


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    c = SentinelCluster(tmp_path / "sentinel").start()
    try:
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


def test_too_few_replicas_holding_a_callback_answers_503(cluster: SentinelCluster) -> None:
    """With MIN_REPLICAS=1: 200 while the replica is up, 503 once it is gone (nothing
    acknowledged; the provider sends it again), 200 again when it is back."""
    app = create_app(settings_for(cluster.url, redis_min_replicas=1), check_storage=False)
    with ServerThread(app) as http, httpx.Client(timeout=30) as client:
        url = cb_url(http.url)
        assert client.post(url, json=completed("before")).status_code == 200
        cluster.b.stop(kill=True)
        wait_for(lambda: cluster.a.info("replication")["connected_slaves"] == 0, 20,
                 "the primary to see its replica gone")
        refused = client.post(url, json=completed("alone"))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "redis_replicas_behind"
        cluster.b.start(primary=cluster.a.port)
        wait_for(lambda: client.post(url, json=completed("alone")).status_code == 200, 30,
                 "the callback to be acknowledged once the replica is back")
    # the CLI finds the task through the sentinels too
    shown = afterimage("status", "evolink", "alone", "--json",
                       env={"AFTERIMAGE_REDIS_URL": cluster.url})
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "queued"


def test_a_registration_sent_again_is_acknowledged_only_once_a_replica_holds_it(
    cluster: SentinelCluster,
) -> None:
    """The replica is connected but frozen (SIGSTOP): a registration is refused. Sent again
    through another connection whose own last write came before the freeze, it is a
    duplicate that writes nothing itself: still refused until the replica holds the first
    try's write. (WAIT counts up to the connection's replication offset, which Redis moves
    to the newest one at every script call, whether the script wrote or not.)"""
    settings = Settings(redis_url=cluster.url, redis_min_replicas=1)
    args = move_args("evolink", "again", TaskState.PENDING, allowed="none", due_at=0.0)
    replica = cluster.b.proc
    assert replica is not None

    async def scenario() -> None:
        first = redis_client.connect_async(settings, max_connections=1)
        second = redis_client.connect_async(settings, max_connections=1)
        try:
            ledger_1 = AsyncLedger(first, 1)
            ledger_2 = AsyncLedger(second, 1)
            await ledger_2.move(move_args("evolink", "before", TaskState.PENDING,
                                          allowed="none", due_at=0.0))  # held by the replica
            replica.send_signal(signal.SIGSTOP)
            try:
                with pytest.raises(ReplicasBehindError):
                    await ledger_1.move(args)  # written on the primary, not acknowledged
                with pytest.raises(ReplicasBehindError):
                    await ledger_2.move(args)  # a duplicate: this call writes nothing itself
            finally:
                replica.send_signal(signal.SIGCONT)
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert not (await ledger_2.move(args)).ok  # acknowledged, as a duplicate
                    break
                except ReplicasBehindError:
                    assert time.monotonic() < deadline, "the replica did not catch up"
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(scenario())
    with cluster.b.client() as db:
        assert db.exists(keys.task("evolink", "again"))


@pytest.mark.timeout(600)  # the sum of its waits
def test_every_acknowledged_task_ends_archived_across_a_failover(
    cluster: SentinelCluster, s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    """Callbacks and registrations flow while the primary is killed with -9; the sentinels
    promote the replica, the old primary comes back as the new one's replica. Every callback
    answered 200 and every registration answered 201 ends archived; some were acknowledged
    after the failover, by the same receiver and workers. (A task whose job the failover lost
    waits for recovery's rescue, about 75 s.)"""
    env = {"AFTERIMAGE_REDIS_MIN_REPLICAS": "1", "AFTERIMAGE_POLL_SCALE": "0.02"}
    with running_stack(cluster.url, s3_server.url, s3_bucket, tmp_path, workers=2,
                       poller=True, extra_env=env) as stack:
        acked: list[str] = []
        failed_over = threading.Event()
        after: list[str] = []
        stop = threading.Event()
        lock = threading.Lock()
        counter = itertools.count()

        def produce() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    n = next(counter)
                    task_id = f"fo-{n}"
                    if _send(stack, client, task_id, callback=n % 2 == 0):
                        with lock:
                            acked.append(task_id)
                            if failed_over.is_set():
                                after.append(task_id)

        threads = [threading.Thread(target=produce, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(acked) >= 40, 60, "40 acknowledged before the kill")
            # the workers and the poller are connected to the primary and at work
            wait_for(lambda: sum(stack.task("evolink", i)["state"] == "archived"
                                 for i in list(acked)) >= 10, 120, "10 archived before the kill")
            old = cluster.a
            cluster.a.stop(kill=True)
            wait_for(lambda: cluster.primary_port() == cluster.b.port, 60,
                     "the sentinels to promote the replica")
            old.start(primary=cluster.b.port)  # the old primary rejoins as a replica
            failed_over.set()
            wait_for(lambda: len(after) >= 40, 120, "40 acknowledged after the failover")
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        with lock:
            done = list(acked)

        def unarchived() -> list[str]:
            return [i for i in done if stack.task("evolink", i)["state"] != "archived"]

        wait_for(lambda: not unarchived(), 240,
                 f"all {len(done)} acknowledged tasks to be archived")


def _send(stack: Stack, client: httpx.Client, task_id: str, *, callback: bool) -> bool:
    """One task made at the simulator, then its callback (as the provider would send it) or
    its registration; True when afterimage acknowledged it."""
    made = stack.sim.create_task("evolink", id=task_id)
    try:
        if callback:
            body = {**completed(task_id), "results": made["image_urls"]}
            reply = client.post(stack.callback_url("evolink"), json=body)
            ok = reply.status_code == 200
        else:
            reply = client.post(f"{stack.settings.public_url}/v1/tasks",
                                headers={"Authorization": f"Bearer {TOKEN}"},
                                json={"provider": "evolink", "task_id": task_id})
            ok = reply.status_code == 201
    except httpx.HTTPError:
        return False
    assert ok or reply.status_code == 503, reply.text  # refused whole, never half-taken
    return ok
