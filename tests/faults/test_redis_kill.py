"""`kill -9` of redis-server (append-only, fsync always, as `afterimage up` runs it): nothing
acknowledged with 200 is lost, and the pipeline picks up where it was once Redis is back."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis

from afterimage import keys
from receiver import create_app
from tests.faults.helpers import archived_exactly_once, logged, versioned
from tests.receiver.test_callbacks import cb_url, completed, settings_for
from tests.stack import running_stack
from tests.support import MotoServer, RedisServer, ServerThread, wait_for

CALLBACKS = 3000


def test_every_callback_answered_200_survives_kill_9_of_redis(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", fsync="always").start()
    acked: list[str] = []
    refused = threading.Event()
    lock = threading.Lock()
    try:
        app = create_app(settings_for(server.url), check_storage=False)
        with ServerThread(app) as http, httpx.Client(timeout=10) as client:
            url = cb_url(http.url)

            def send(i: int) -> None:
                try:
                    reply = client.post(url, json=completed(f"t{i}"))
                except httpx.HTTPError:
                    refused.set()
                    return
                if reply.status_code == 200:
                    with lock:
                        acked.append(f"t{i}")
                else:
                    assert reply.status_code == 503, reply.text  # never acknowledged
                    refused.set()

            with ThreadPoolExecutor(16) as pool:
                for i in range(CALLBACKS):
                    pool.submit(send, i)
                wait_for(lambda: len(acked) >= 200, 30, "200 acknowledged callbacks")
                server.stop(kill=True)  # SIGKILL while callbacks keep coming
        assert refused.is_set() and len(acked) < CALLBACKS  # the kill fell mid-stream

        server.start()
        db = redis.Redis.from_url(server.url)
        pipe = db.pipeline(transaction=False)
        for task_id in acked:
            pipe.hget(keys.task("evolink", task_id), "st")
        assert set(pipe.execute()) == {b"queued"}
        entries = {f[b"id"].decode() for _, f in db.xrange(keys.INBOX)}
        assert set(acked) <= entries  # each has its dispatch entry too
        db.close()
    finally:
        server.stop()


def test_the_pipeline_finishes_every_task_after_redis_is_killed_mid_stream(
    s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis", fsync="always").start()
    try:
        with running_stack(server.url, s3_server.url, s3_bucket, tmp_path, workers=2,
                           sim_options={"image_bytes": 1_000_000}) as stack:
            versioned(stack)
            stack.sim.set_faults("evolink", slow=3.0)
            ids = [stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
                   ["id"] for _ in range(6)]
            wait_for(lambda: all(stack.sim.task("evolink", i)["callbacks"]["delivered"]
                                 for i in ids), 20, "every callback to be acknowledged")
            wait_for(lambda: any(stack.sim.task("evolink", i)["downloads"] for i in ids), 20,
                     "a download to be under way")
            server.stop(kill=True)
            # Redis stays away until a worker has finished storing a task and failed to
            # record it: its job is then retried once Redis is back (the objects are found).
            wait_for(lambda: logged(stack, "ended with an error"), 40,
                     "a worker to meet the outage at the end of a job")
            server.start()
            stack.sim.set_faults("evolink", slow=0.0)
            for task_id in ids:
                stack.wait_state("evolink", task_id, "archived", timeout=60)
                archived_exactly_once(stack, "evolink", task_id, images=1)
            assert all(p.poll() is None for p in stack.procs.values())  # the workers rode it out
    finally:
        server.stop()
