"""fal: webhooks with the output (`images[]` or `image`) or without it (fetched), status then
result queries per app."""

from __future__ import annotations

from datetime import timedelta

import pytest

from afterimage.errors import AdapterError, TaskGoneError, TransientProviderError
from afterimage.models import Outcome, TaskRef
from afterimage.providers import adapter
from tests.providers.helpers import (
    NOW,
    assert_adapter_error,
    assert_api_error,
    check,
    fal_output,
    fal_webhook,
    js,
)

A = adapter("fal")
BASE = "https://queue.fal.run"
REF = TaskRef("t", "fal-ai/flux/dev")
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(("payload", "urls"), [
    (fal_output(), ("https://v3.fal.media/files/t/0.png",)),
    ({"images": [{"url": "https://f/0.png"}, {"url": "https://f/1.png"}]},
     ("https://f/0.png", "https://f/1.png")),
    ({"image": {"url": "https://f/one.png", "width": 8}}, ("https://f/one.png",)),
])
def test_webhook_with_images_or_image(payload: dict[str, object], urls: tuple[str, ...]) -> None:
    result = A.parse_callback(js(fal_webhook(payload=payload)), {}, NOW)
    check(result, "fal", outcome=Outcome.SUCCEEDED, urls=urls, completed_at=NOW,
          expires_at=NOW + HOUR, fetch=False, model=None)
    check(A.parse_result("t", 200, {}, js(payload), NOW), "fal", urls=urls)


def test_webhook_without_payload_asks_for_the_result() -> None:
    body = js(fal_webhook(payload=None, payload_error="Payload too large"))
    check(A.parse_callback(body, {}, NOW), "fal", outcome=Outcome.SUCCEEDED, urls=(), fetch=True)


def test_webhook_error() -> None:
    body = js(fal_webhook(status="ERROR", payload={"detail": [{"msg": "x"}]}, error="Invalid"))
    check(A.parse_callback(body, {}, NOW), "fal", outcome=Outcome.FAILED, error_code="ERROR",
          error_message="Invalid")


@pytest.mark.parametrize(("body", "field"), [
    (fal_webhook(status="DONE"), "status"),
    (fal_webhook(payload={"seed": 1}), "payload.images"),
    (fal_webhook(payload={"images": []}), "payload.images"),
    (fal_webhook(payload={"images": [{"url": ""}]}), "payload.images[0]"),
    (fal_webhook(request_id=""), "request_id"),
])
def test_unknown_shapes_name_the_field(body: dict[str, object], field: str) -> None:
    assert_adapter_error(lambda: A.parse_callback(js(body), {}, NOW), "fal", field)


def test_status_then_result() -> None:
    req = A.status_request_for(BASE, "K", REF)
    assert req.url == f"{BASE}/fal-ai/flux/requests/t/status"
    assert req.headers == {"Authorization": "Key K"}
    assert A.result_request(BASE, "K", REF).url == f"{BASE}/fal-ai/flux/requests/t"
    for status in ("IN_QUEUE", "IN_PROGRESS"):
        reply = js({"status": status, "queue_position": 2})
        check(A.parse_status("t", 200, {}, reply, NOW), "fal", outcome=Outcome.PENDING)
    done = js({"status": "COMPLETED", "response_url": f"{BASE}/fal-ai/flux/requests/t"})
    check(A.parse_status("t", 200, {}, done, NOW), "fal", outcome=Outcome.SUCCEEDED, fetch=True)
    failed = js({"status": "COMPLETED", "error": "the app crashed"})
    check(A.parse_status("t", 200, {}, failed, NOW), "fal", outcome=Outcome.FAILED,
          error_message="the app crashed")
    assert_adapter_error(lambda: A.parse_status("t", 200, {}, js({"status": "X"}), NOW),
                         "fal", "status")


def test_result_errors() -> None:
    detail = js({"detail": "Unprocessable: prompt too long"})
    check(A.parse_result("t", 422, {}, detail, NOW), "fal", outcome=Outcome.FAILED,
          error_message="Unprocessable: prompt too long")
    assert_api_error(lambda: A.parse_result("t", 404, {}, detail, NOW), TaskGoneError,
                     provider="fal")
    assert_api_error(lambda: A.parse_result("t", 503, {}, detail, NOW), TransientProviderError,
                     provider="fal")


def test_the_app_id_is_required() -> None:
    for call in (lambda: A.status_request(BASE, "K", "t"),
                 lambda: A.status_request_for(BASE, "K", TaskRef("t")),
                 lambda: A.submit_request(BASE, "K", {}, None),
                 lambda: A.create_request(BASE, "K", {}, None)):
        assert_adapter_error(call, "fal", "model")
    for bad in ("flux", "fal-ai/../x", "fal-ai//x", "/fal-ai/x", "fal ai/x"):
        assert A.model_problem(bad) is not None, bad
    assert A.model_problem("fal-ai/gpt-image-2") is None


def test_submit() -> None:
    req = A.submit_request(BASE, "K", {"prompt": "cat"}, "https://me/cb/x?y",
                           model="fal-ai/flux/dev")
    assert req.url == f"{BASE}/fal-ai/flux/dev?fal_webhook=https%3A%2F%2Fme%2Fcb%2Fx%3Fy"
    assert req.json == {"prompt": "cat"}
    reply = js({"request_id": "r-1", "status_url": "x", "response_url": "y", "cancel_url": "z"})
    created = A.parse_submit(200, {}, reply, NOW)
    assert (created.task_id, created.status_url) == ("r-1", None)
    with pytest.raises(AdapterError):
        A.parse_submit(200, {}, js({"status_url": "x"}), NOW)


def test_jwks() -> None:
    req = A.keys_request(BASE, None, "https://keys.example/jwks.json")
    assert req is not None and req.url == "https://keys.example/jwks.json" and not req.headers
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}, {"kty": "OKP", "x": x + "="},
                     {"kty": "RSA", "n": "x"}, {"x": "not base64 !"}]}
    keys = A.parse_keys(200, {}, js(jwks))
    assert len(keys.public_keys) == 2 and len(set(keys.public_keys)) == 1
    assert_adapter_error(lambda: A.parse_keys(200, {}, js({"keys": []})), "fal", "keys")
