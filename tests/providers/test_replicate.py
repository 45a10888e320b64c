"""replicate: predictions as webhook bodies and status replies, `output` a string or a list."""

from __future__ import annotations

from datetime import timedelta

import pytest

from afterimage.errors import PermanentProviderError, TaskGoneError, TransientProviderError
from afterimage.models import Outcome
from afterimage.providers import adapter
from afterimage.providers.replicate import Replicate
from tests.providers.helpers import (
    NOW,
    assert_adapter_error,
    assert_api_error,
    check,
    js,
    replicate_prediction,
)

A = adapter("replicate")
DONE = NOW - timedelta(seconds=60)


@pytest.mark.parametrize(
    ("output", "urls"),
    [
        (["https://replicate.delivery/a.webp"], ("https://replicate.delivery/a.webp",)),
        ("https://replicate.delivery/a.png", ("https://replicate.delivery/a.png",)),
        (["https://r.d/0.png", "https://r.d/1.png"], ("https://r.d/0.png", "https://r.d/1.png")),
    ],
)
def test_output_is_a_string_or_a_list(output: object, urls: tuple[str, ...]) -> None:
    body = js(replicate_prediction(output=output))
    for result in (A.parse_callback(body, {}, NOW), A.parse_status("t", 200, {}, body, NOW)):
        check(result, "replicate", outcome=Outcome.SUCCEEDED, urls=urls, completed_at=DONE,
              expires_at=DONE + timedelta(hours=1), model="black-forest-labs/flux-schnell")


@pytest.mark.parametrize("status", ["starting", "processing"])
def test_pending_states(status: str) -> None:
    body = js(replicate_prediction(status=status, output=None, completed_at=None))
    check(A.parse_status("t", 200, {}, body, NOW), "replicate", outcome=Outcome.PENDING, urls=())


@pytest.mark.parametrize(("status", "error", "message"), [
    ("failed", "CUDA out of memory", "CUDA out of memory"),
    ("canceled", None, "task canceled"),
])
def test_failed_and_canceled(status: str, error: str | None, message: str) -> None:
    body = js(replicate_prediction(status=status, output=None, error=error))
    check(A.parse_callback(body, {}, NOW), "replicate", outcome=Outcome.FAILED,
          error_code=status, error_message=message)


@pytest.mark.parametrize(("over", "field"), [
    ({"status": "aborted"}, "status"),
    ({"output": None}, "output"),
    ({"output": []}, "output"),
    ({"output": [{"url": "https://x/y"}]}, "output[0]"),
    ({"output": ""}, "output[0]"),
    ({"completed_at": "yesterday"}, "completed_at"),
    ({"id": ""}, "id"),
])
def test_unknown_shapes_name_the_field(over: dict[str, object], field: str) -> None:
    assert_adapter_error(lambda: A.parse_callback(js(replicate_prediction(**over)), {}, NOW),
                         "replicate", field)


def test_status_reply_about_another_prediction() -> None:
    assert_adapter_error(
        lambda: A.parse_status("u", 200, {}, js(replicate_prediction()), NOW), "replicate", "id")


def test_error_replies() -> None:
    detail = js({"detail": "Not found."})
    assert_api_error(lambda: A.parse_status("t", 404, {}, detail, NOW), TaskGoneError,
                     provider="replicate")
    assert_api_error(lambda: A.parse_status("t", 429, {"Retry-After": "7"}, detail, NOW),
                     TransientProviderError, provider="replicate", retry_after=7.0)
    err = assert_api_error(lambda: A.parse_create(401, {}, js({"detail": "bad token"}), NOW),
                           PermanentProviderError, provider="replicate")
    assert "bad token" in str(err)


def test_requests() -> None:
    req = A.status_request("https://api.replicate.com", "K", "a/b")
    assert (req.method, req.url) == ("GET", "https://api.replicate.com/v1/predictions/a%2Fb")
    assert req.headers == {"Authorization": "Bearer K"}
    body = {"version": "black-forest-labs/flux-schnell", "input": {"prompt": "cat"}}
    req = A.submit_request("https://api.replicate.com", "K", body, "https://me/cb")
    assert req.url == "https://api.replicate.com/v1/predictions"
    assert req.json == body | {"webhook": "https://me/cb", "webhook_events_filter": ["completed"]}
    created = js(replicate_prediction(status="starting", output=None, completed_at=None))
    assert A.parse_submit(201, {}, created, NOW).task_id == "t"
    keys = A.keys_request("https://api.replicate.com", "K", None)
    assert keys is not None and keys.url == "https://api.replicate.com/v1/webhooks/default/secret"
    assert A.keys_request("https://api.replicate.com", None, None) is None
    assert A.parse_keys(200, {}, js({"key": "whsec_c2VjcmV0"})).secrets == ("whsec_c2VjcmV0",)
    assert_adapter_error(lambda: A.parse_keys(200, {}, js({"key": "nope"})), "replicate", "key")
    assert isinstance(A, Replicate) and A.link_lifetime == timedelta(hours=1)
