"""Completion events: signed per Standard Webhooks, checked by independent verifiers, retried
with backoff, never following a redirect, never in the way of the archive."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import standardwebhooks
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from afterimage import keys, webhooks
from afterimage.errors import ConfigError
from afterimage.ledger import Ledger, move_args
from afterimage.models import TaskState
from afterimage.settings import Settings
from tests.stack import running_stack
from tests.support import MotoServer, ServerThread, wait_for

SECRET = "whsec_" + base64.b64encode(b"consumer-shared-secret-32-bytes!").decode()


def spec_verify(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    """Verification as the Standard Webhooks spec words it, written here from the spec."""
    encoded = secret.removeprefix("whsec_")
    key = base64.b64decode(encoded + "=" * (-len(encoded) % 4)) if secret.startswith("whsec_") \
        else secret.encode()
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return any(sig == f"v1,{expected}" for sig in headers["webhook-signature"].split(" "))


class Consumer:
    """An event consumer: /hook redirects its first delivery elsewhere, then says 204."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.elsewhere = 0
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"]),
                                     Route("/elsewhere", self.other, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        self.got.append((dict(request.headers), await request.body()))
        if len(self.got) == 1:
            return RedirectResponse("/elsewhere", 307)
        return Response(status_code=204)

    async def other(self, request: Request) -> Response:
        self.elsewhere += 1
        return Response(status_code=204)


def test_an_archived_task_is_announced_signed_and_retried(
    redis_url: str, s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    consumer = Consumer()
    with ServerThread(consumer.app) as hook:
        env = {"AFTERIMAGE_NOTIFY_URL": f"{hook.url}/hook", "AFTERIMAGE_NOTIFY_SECRET": SECRET}
        with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path,
                           extra_env=env) as stack:
            made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
            task = stack.wait_state("evolink", made["id"], "archived")  # the 307 is no matter
            wait_for(lambda: len(consumer.got) == 2, 30, "the retried delivery")
            manifest_key = f"archive/evolink/{made['id']}/manifest.json"
            manifest = json.loads(stack.objects(manifest_key)[manifest_key])
            metrics = httpx.get(f"{stack.settings.public_url}/metrics").text

    assert consumer.elsewhere == 0  # the redirect was not followed
    (first_headers, first_body), (headers, body) = consumer.got
    assert first_headers["webhook-id"] == headers["webhook-id"]  # one event, two attempts
    assert first_body == body
    assert headers["content-type"] == "application/json"
    event = standardwebhooks.Webhook(SECRET).verify(body, headers)
    assert spec_verify(SECRET, body, headers)
    assert spec_verify(SECRET, first_body, first_headers)
    assert not spec_verify(SECRET, body.replace(b"evolink", b"evolinq"), headers)
    assert event["type"] == "afterimage.task.archived"
    assert event["timestamp"] == manifest["archived_at"]
    assert event["data"] == {**manifest, "manifest_key": manifest_key}
    assert [i["key"] for i in event["data"]["images"]] == [i["key"] for i in task["images"]]
    assert 'afterimage_notifications_total{outcome="delivered"} 1.0' in metrics
    assert 'afterimage_notifications_total{outcome="failed"} 1.0' in metrics


@pytest.mark.parametrize("secret", [SECRET, SECRET.rstrip("="), "a plain shared secret"])
def test_signatures_verify_with_the_reference_library(secret: str) -> None:
    body = webhooks.archived_event(
        json.dumps({"schema": "afterimage.manifest/1", "archived_at": "2026-01-01T00:00:00.000Z",
                    "provider": "kie", "task_id": "t\u00e9", "images": []}).encode(),
        "kie/t\u00e9/manifest.json")
    now = int(time.time())
    msg_id = webhooks.message_id("kie", "t\u00e9", 1)
    headers = webhooks.headers(webhooks.secret_key(secret), msg_id, now, body)
    reference: Any = standardwebhooks.Webhook(
        secret if secret.startswith("whsec_") else secret.encode())
    assert reference.verify(body, headers)["data"]["task_id"] == "t\u00e9"
    assert spec_verify(secret, body, headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        reference.verify(body, {**headers, "webhook-timestamp": str(now + 1)})


def test_notify_settings_are_checked() -> None:
    base = {"AFTERIMAGE_NOTIFY_URL": "https://consumer.example/hook"}
    for env in (base, {**base, "AFTERIMAGE_NOTIFY_SECRET": "whsec_!!"},
                {"AFTERIMAGE_NOTIFY_URL": "file:///etc/passwd", "AFTERIMAGE_NOTIFY_SECRET": "s"}):
        with pytest.raises(ConfigError):
            Settings.from_env(env)
    settings = Settings.from_env({**base, "AFTERIMAGE_NOTIFY_SECRET": SECRET})
    assert settings.notify_url == base["AFTERIMAGE_NOTIFY_URL"]
    assert SECRET not in repr(settings)


def test_the_event_is_recorded_by_the_archiving_transition_itself(redis_url: str) -> None:
    db = redis.Redis.from_url(redis_url)
    ledger = Ledger(db)
    assert ledger.move(move_args("kie", "t-1", TaskState.QUEUED, allowed="none",
                                 bump_gen=True)).ok
    stale = move_args("kie", "t-1", TaskState.ARCHIVED, allowed="queued", expect_gen=7,
                      event='{"stale": true}')
    assert not ledger.move(stale).ok
    assert db.xlen(keys.EVENTS) == 0  # a transition that does not happen records nothing
    body = '{"type": "afterimage.task.archived"}'
    assert ledger.move(move_args("kie", "t-1", TaskState.ARCHIVED, allowed="queued",
                                 expect_gen=1, event=body, fields={"img": "[]"})).ok
    ((_, fields),) = db.xrange(keys.EVENTS)
    assert fields == {b"p": b"kie", b"id": b"t-1", b"g": b"1", b"e": body.encode()}
    assert db.hget(keys.task("kie", "t-1"), "img") == b"[]"  # fields still follow the event
    db.close()
