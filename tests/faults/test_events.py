"""Completion events are recorded with the archive and delivered at least once: across
`kill -9` of the worker delivering one, across `kill -9` of Redis (restarted from its AOF)
while events wait for their next try, and after Redis is emptied (FLUSHALL) mid-run."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from afterimage import keys
from afterimage.webhooks import message_id
from tests.faults.helpers import logged
from tests.stack import Stack, running_stack
from tests.support import MotoServer, RedisServer, ServerThread, wait_for

SECRET = "whsec_" + base64.b64encode(b"events-under-faults-secret-32-by").decode()


class Consumer:
    """An event consumer whose answer the test sets: "ok" (204), "refuse" (503), or "hang"
    (no answer until the sender goes away)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.lock = threading.Lock()
        self.attempts: list[str] = []  # webhook-id of every attempt
        self.accepted: dict[str, dict[str, Any]] = {}  # webhook-id -> verified event
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        event = standardwebhooks.Webhook(SECRET).verify(body, dict(request.headers))
        msg_id = request.headers["webhook-id"]
        with self.lock:
            self.attempts.append(msg_id)
            mode = self.mode
        if mode == "hang":
            while not await request.is_disconnected():
                await asyncio.sleep(0.05)
            return Response(status_code=504)
        if mode == "refuse":
            return Response(status_code=503)
        with self.lock:
            self.accepted[msg_id] = event
        return Response(status_code=204)


@pytest.fixture()
def consumer() -> Iterator[tuple[Consumer, str]]:
    c = Consumer()
    with ServerThread(c.app) as server:
        yield c, f"{server.url}/hook"


def notify_env(url: str) -> dict[str, str]:
    return {"AFTERIMAGE_NOTIFY_URL": url, "AFTERIMAGE_NOTIFY_SECRET": SECRET}


def archive_one(stack: Stack) -> str:
    made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
    stack.wait_state("evolink", made["id"], "archived", timeout=60)
    return str(made["id"])


def msg(task_id: str) -> str:
    return message_id("evolink", task_id, 1)


def accepted(c: Consumer, ids: list[str]) -> bool:
    with c.lock:
        return all(msg(i) in c.accepted for i in ids)


def test_an_event_survives_kill_9_of_the_worker_delivering_it(
    consumer: tuple[Consumer, str], redis_url: str, s3_server: MotoServer, s3_bucket: str,
    tmp_path: Path
) -> None:
    c, url = consumer
    c.mode = "hang"
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path,
                       extra_env=notify_env(url)) as stack:
        task_id = archive_one(stack)
        wait_for(lambda: msg(task_id) in c.attempts, 30, "the first attempt to be under way")
        stack.stop("worker0", kill=True)  # mid-POST: the event is read but not acknowledged
        c.mode = "ok"
        stack.start("worker", "--name", "w-again", name="worker-again")
        wait_for(lambda: accepted(c, [task_id]), 120, "the event from another worker")
        wait_for(lambda: stack.db.xlen(keys.EVENTS) == 0, 10,  # acknowledged after the 2xx
                 "the delivered event to leave the stream")
    assert c.attempts == [msg(task_id)] * 2
    event = c.accepted[msg(task_id)]
    assert (event["type"], event["data"]["task_id"]) == ("afterimage.task.archived", task_id)


def test_events_waiting_for_a_retry_survive_kill_9_of_redis(
    consumer: tuple[Consumer, str], s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    c, url = consumer
    c.mode = "refuse"
    server = RedisServer(tmp_path / "redis", fsync="always").start()
    try:
        with running_stack(server.url, s3_server.url, s3_bucket, tmp_path,
                           extra_env=notify_env(url)) as stack:
            ids = [archive_one(stack) for _ in range(3)]
            wait_for(lambda: all(c.attempts.count(msg(i)) >= 1 for i in ids), 30,
                     "a refused attempt of every event")
            server.stop(kill=True)
            wait_for(lambda: logged(stack, '"events: Redis unavailable'), 30,
                     "the events loop to meet the outage")
            c.mode = "ok"
            server.start()
            wait_for(lambda: accepted(c, ids), 60, "every event after the restart")
            wait_for(lambda: stack.db.xlen(keys.EVENTS) + stack.db.zcard(keys.EVENTS_LATER)
                     == 0, 10, "nothing left to deliver")
    finally:
        server.stop()


def test_events_are_delivered_after_redis_is_emptied(
    consumer: tuple[Consumer, str], redis_url: str, s3_server: MotoServer, s3_bucket: str,
    tmp_path: Path
) -> None:
    c, url = consumer
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path,
                       extra_env=notify_env(url)) as stack:
        first = archive_one(stack)
        wait_for(lambda: accepted(c, [first]), 30, "the first event")
        stack.db.flushall()  # the events stream and its group are gone
        flushed = time.time()
        ids = [archive_one(stack) for _ in range(2)]
        wait_for(lambda: accepted(c, ids), 60, "the events after the flush")
        wait_for(lambda: float((stack.db.hget(keys.HEARTBEATS, "events") or b"0 ")
                               .split(b" ")[0]) > flushed, 30, "the events loop to beat again")
        assert logged(stack, "events stream or its group is gone")
