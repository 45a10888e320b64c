"""kie callbacks with good, bad, missing and stale signatures, over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from afterimage import keys
from afterimage.providers.kie import sign
from afterimage.settings import Secret
from receiver import create_app
from tests.receiver.test_callbacks import cb_url, settings_for
from tests.support import ServerThread

KEY = "kie-hmac"


def body(task_id: str) -> bytes:
    result = json.dumps({"resultUrls": ["https://cdn.example.com/k.png"]})
    return json.dumps({"code": 200, "msg": "success", "data": {
        "taskId": task_id, "model": "gpt-image-2-text-to-image", "state": "success",
        "resultJson": result, "completeTime": 1760000000000}}).encode()


@pytest.fixture()
def receiver(redis_url: str) -> Iterator[str]:
    settings = settings_for(redis_url, webhook_secrets={"kie": (Secret("retired"), Secret(KEY))})
    with ServerThread(create_app(settings, check_storage=False)) as server:
        yield server.url


def post(base: str, task_id: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(cb_url(base, provider="kie"), content=body(task_id),
                      headers={"content-type": "application/json", **headers})


def recorded(redis_url: str, task_id: str) -> bool:
    return bool(redis.Redis.from_url(redis_url).exists(keys.task("kie", task_id)))


def test_a_good_signature_is_accepted(receiver: str, redis_url: str) -> None:
    stamp = str(int(time.time()))
    r = post(receiver, "k1", {"X-Webhook-Timestamp": stamp,
                              "X-Webhook-Signature": sign(KEY, "k1", stamp)})
    assert r.status_code == 200
    assert recorded(redis_url, "k1")


def test_a_rotated_key_still_verifies(receiver: str, redis_url: str) -> None:
    stamp = str(int(time.time()))
    r = post(receiver, "k2", {"X-Webhook-Timestamp": stamp,
                              "X-Webhook-Signature": sign("retired", "k2", stamp)})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("missing", {}),
        ("no timestamp", {"X-Webhook-Signature": sign(KEY, "k3", "1")}),
        ("bad", {"X-Webhook-Timestamp": "{now}", "X-Webhook-Signature": sign("other", "k3", "1")}),
        ("other task", {"X-Webhook-Timestamp": "{now}",
                        "X-Webhook-Signature": "{sig:other-task}"}),
        ("stale", {"X-Webhook-Timestamp": "{old}", "X-Webhook-Signature": "{sig:old}"}),
        ("future", {"X-Webhook-Timestamp": "{future}", "X-Webhook-Signature": "{sig:future}"}),
    ],
)
def test_bad_signatures_are_401_and_record_nothing(
    receiver: str, redis_url: str, case: str, headers: dict[str, str]
) -> None:
    now = int(time.time())
    # Past the 300 s tolerance either way; "future" far enough that a slow request (a loaded
    # machine) cannot bring it back within the tolerance, as it could at now + 301.
    stamps = {"{now}": str(now), "{old}": str(now - 301), "{future}": str(now + 600)}
    filled = {}
    for name, value in headers.items():
        if value.startswith("{sig:"):
            which = value[5:-1]
            stamp = stamps.get("{" + which + "}", str(now))
            task = "another" if which == "other-task" else "k3"
            value = sign(KEY, task, stamp)
        filled[name] = stamps.get(value, value)
    r = post(receiver, "k3", filled)
    assert r.status_code == 401, case
    assert r.json()["error"]["code"] == "unauthorized"
    assert not recorded(redis_url, "k3")
