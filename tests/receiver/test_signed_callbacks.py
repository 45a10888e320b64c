"""Signed callbacks of replicate, fal and bfl over real HTTP, with keys from the simulator (the
replicate account secret, fal's JWKS) or made here: good, forged, stale, missing, replayed with
another body, rotated, by an unknown key."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from standardwebhooks import Webhook

from afterimage import keys
from afterimage.settings import Secret, Settings
from afterimage.simulator import RunningSimulator, run_simulator
from afterimage.tokens import callback_token
from receiver import create_app
from receiver.keyring import REFETCH_EVERY
from tests.support import ServerThread

SECRET, TOKEN = "signed-secret", "api-token"
URL = "https://cdn.example.com/out.png"


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    server = run_simulator(delay=0.0)
    yield server
    server.stop()


def settings(redis_url: str, sim: RunningSimulator, **extra: Any) -> Settings:
    return Settings(
        redis_url=redis_url, secrets=(Secret(SECRET),), api_token=Secret(TOKEN),
        api_keys={p: Secret("sim-key") for p in ("replicate", "fal", "bfl")},
        base_urls={p: sim.base_url(p) for p in ("replicate", "fal", "bfl")},
        keys_urls={"fal": f"{sim.url}/fal/.well-known/jwks.json"}, **extra)


@pytest.fixture()
def receiver(redis_url: str, sim: RunningSimulator) -> Iterator[str]:
    with ServerThread(create_app(settings(redis_url, sim), check_storage=False)) as server:
        yield server.url


def post(base: str, provider: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{base}/callbacks/{provider}/{callback_token(SECRET, provider)}",
                      content=body, headers={"content-type": "application/json", **headers})


def task(redis_url: str, provider: str, task_id: str) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = redis.Redis.from_url(redis_url).hgetall(
        keys.task(provider, task_id))
    return found


def sim_counter(sim: RunningSimulator, provider: str, name: str) -> int:
    return int(sim.control("GET", "stats")["providers"].get(provider, {}).get(name, 0))


# --- replicate: Standard Webhooks ------------------------------------------------------------
def prediction(task_id: str, url: str = URL) -> bytes:
    return json.dumps({"id": task_id, "status": "succeeded", "output": [url], "error": None,
                       "completed_at": "2026-05-01T12:00:00Z"}).encode()


def standard_headers(secret: str, body: bytes, stamp: float | None = None,
                     msg_id: str = "msg_1") -> dict[str, str]:
    moment = datetime.fromtimestamp(time.time() if stamp is None else stamp, UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, moment, body.decode())}


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def test_replicate_secret_fetched_once_with_the_api_key(
    receiver: str, redis_url: str, sim: RunningSimulator,
) -> None:
    account = sim.context.config.replicate_webhook_secret
    before = sim_counter(sim, "replicate", "secret_fetches")
    for n in range(3):
        body = prediction(f"r-good-{n}")
        assert post(receiver, "replicate", body, standard_headers(account, body)).status_code == 200
    assert sim_counter(sim, "replicate", "secret_fetches") == before + 1
    stored = task(redis_url, "replicate", "r-good-0")
    assert stored[b"st"] == b"queued" and stored[b"cf"] == b"1"  # signed: no confirming query


def test_replicate_forged_stale_missing_and_replayed_are_401(
    receiver: str, redis_url: str, sim: RunningSimulator,
) -> None:
    account = sim.context.config.replicate_webhook_secret
    body = prediction("r-bad")
    good = standard_headers(account, body)
    refused = {
        "forged": standard_headers(whsec(), body),
        "stale": standard_headers(account, body, stamp=time.time() - 310),
        "future": standard_headers(account, body, stamp=time.time() + 310),
        "no signature": {k: v for k, v in good.items() if k != "webhook-signature"},
        "no id": {k: v for k, v in good.items() if k != "webhook-id"},
        "other id": good | {"webhook-id": "msg_2"},
    }
    for what, headers in refused.items():
        r = post(receiver, "replicate", body, headers)
        assert r.status_code == 401, what
        assert r.json()["error"]["code"] == "unauthorized"
    other = prediction("r-bad", "https://evil.example/x.png")
    assert post(receiver, "replicate", other, good).status_code == 401  # another body
    assert not task(redis_url, "replicate", "r-bad")
    assert post(receiver, "replicate", body, good).status_code == 200


def test_replicate_configured_secrets_rotate(redis_url: str, sim: RunningSimulator) -> None:
    old, new = whsec(), whsec()
    s = settings(redis_url, sim, webhook_secrets={"replicate": (Secret(new), Secret(old))})
    before = sim_counter(sim, "replicate", "secret_fetches")
    with ServerThread(create_app(s, check_storage=False)) as server:
        for n, secret in enumerate((old, new)):
            body = prediction(f"r-rot-{n}")
            assert post(server.url, "replicate", body,
                        standard_headers(secret, body)).status_code == 200
        body = prediction("r-rot-x")
        account = sim.context.config.replicate_webhook_secret
        assert post(server.url, "replicate", body,
                    standard_headers(account, body)).status_code == 401
    assert sim_counter(sim, "replicate", "secret_fetches") == before  # configured: no fetch


# --- fal: Ed25519 with keys from the JWKS ----------------------------------------------------
def fal_body(task_id: str, url: str = URL) -> bytes:
    return json.dumps({"request_id": task_id, "gateway_request_id": task_id, "status": "OK",
                       "payload": {"images": [{"url": url}]}}).encode()


def fal_headers(key: Ed25519PrivateKey, task_id: str, body: bytes,
                stamp: float | None = None) -> dict[str, str]:
    when = str(int(time.time() if stamp is None else stamp))
    message = f"{task_id}\nuser-1\n{when}\n{hashlib.sha256(body).hexdigest()}"
    return {"X-Fal-Webhook-Request-Id": task_id, "X-Fal-Webhook-User-Id": "user-1",
            "X-Fal-Webhook-Timestamp": when,
            "X-Fal-Webhook-Signature": key.sign(message.encode()).hex()}


def test_fal_keys_come_from_the_jwks_and_a_rotated_key_is_fetched(
    receiver: str, redis_url: str, sim: RunningSimulator,
) -> None:
    ctx = sim.context
    body = fal_body("f-1")
    assert post(receiver, "fal", body, fal_headers(ctx.fal_key, "f-1", body)).status_code == 200
    assert task(redis_url, "fal", "f-1")[b"cf"] == b"1"
    fetched = sim_counter(sim, "fal", "jwks_fetches")
    ctx.rotate_fal_key(keep_old=False)  # fal signs with a key we have not seen
    ctx.config.fal_jwks_padded = True  # and its JWKS pads base64url now
    try:
        body = fal_body("f-2")
        r = post(receiver, "fal", body, fal_headers(ctx.fal_key, "f-2", body))
    finally:
        ctx.config.fal_jwks_padded = False
    assert r.status_code == 200
    assert sim_counter(sim, "fal", "jwks_fetches") == fetched + 1


def test_fal_unknown_keys_refetch_at_most_once_a_minute(
    receiver: str, redis_url: str, sim: RunningSimulator,
) -> None:
    ctx = sim.context
    body = fal_body("f-3")
    assert post(receiver, "fal", body, fal_headers(ctx.fal_key, "f-3", body)).status_code == 200
    fetched = sim_counter(sim, "fal", "jwks_fetches")
    forger = Ed25519PrivateKey.generate()
    for n in range(3):
        body = fal_body(f"f-forged-{n}")
        r = post(receiver, "fal", body, fal_headers(forger, f"f-forged-{n}", body))
        assert r.status_code == 401
    assert sim_counter(sim, "fal", "jwks_fetches") <= fetched + 1 and REFETCH_EVERY >= 60
    assert not task(redis_url, "fal", "f-forged-0")


def test_fal_stale_missing_and_replayed_are_401(receiver: str, sim: RunningSimulator) -> None:
    key = sim.context.fal_key
    body = fal_body("f-4")
    good = fal_headers(key, "f-4", body)
    refused = {
        "stale": fal_headers(key, "f-4", body, stamp=time.time() - 310),
        "other request": fal_headers(key, "f-5", body),
        "no signature": {k: v for k, v in good.items() if k != "X-Fal-Webhook-Signature"},
        "no timestamp": {k: v for k, v in good.items() if k != "X-Fal-Webhook-Timestamp"},
        "other user": good | {"X-Fal-Webhook-User-Id": "user-2"},
    }
    for what, headers in refused.items():
        assert post(receiver, "fal", body, headers).status_code == 401, what
    other = fal_body("f-4", "https://evil.example/x.png")
    assert post(receiver, "fal", other, good).status_code == 401
    assert post(receiver, "fal", body, good).status_code == 200


# --- bfl: the secret afterimage hands out ----------------------------------------------------
def test_bfl_echoes_the_secret_it_was_given(receiver: str, redis_url: str) -> None:
    given = httpx.get(f"{receiver}/v1/providers/bfl/callback-url",
                      headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert given["callback_url"].endswith(callback_token(SECRET, "bfl"))
    secret = given["webhook_secret"]
    body = json.dumps({"id": "b-1", "status": "Ready", "result": {"sample": URL}}).encode()
    for headers in ({}, {"X-Webhook-Secret": "wrong"}, {"X-Webhook-Secret": secret[:-1]}):
        assert post(receiver, "bfl", body, headers).status_code == 401
    assert not task(redis_url, "bfl", "b-1")
    assert post(receiver, "bfl", body, {"X-Webhook-Secret": secret}).status_code == 200
    stored = task(redis_url, "bfl", "b-1")
    assert stored[b"st"] == b"queued" and b"cf" not in stored  # confirmed by a status query
    assert "webhook_secret" not in httpx.get(
        f"{receiver}/v1/providers/fal/callback-url",
        headers={"Authorization": f"Bearer {TOKEN}"}).json()


def test_replicate_with_nothing_to_check_is_refused_and_warned_of(redis_url: str) -> None:
    assert Settings.from_env({}).signature_warnings() == [
        "replicate signs its callbacks and there is nothing to check them with: set "
        "AFTERIMAGE_REPLICATE_WEBHOOK_SECRET or AFTERIMAGE_REPLICATE_API_KEY; until then every "
        "replicate callback is refused (401)"]
    for env in ({"AFTERIMAGE_REPLICATE_API_KEY": "k"},
                {"AFTERIMAGE_REPLICATE_WEBHOOK_SECRET": whsec()}):
        assert Settings.from_env(env).signature_warnings() == []
    s = Settings(redis_url=redis_url, secrets=(Secret(SECRET),), api_token=Secret(TOKEN))
    with ServerThread(create_app(s, check_storage=False)) as server:
        secret = whsec()  # whatever signed it, nobody here can tell
        body = prediction("r-none")
        r = post(server.url, "replicate", body, standard_headers(secret, body))
        assert r.status_code == 401
    assert not task(redis_url, "replicate", "r-none")
