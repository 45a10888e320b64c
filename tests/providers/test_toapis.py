"""toapis: status replies (url string, expires_at), 429 with Retry-After, requests."""

from __future__ import annotations

from typing import Any

import pytest

from afterimage.errors import (
    PermanentProviderError,
    ProviderRefusedInputError,
    TaskGoneError,
    TransientProviderError,
)
from afterimage.models import Outcome
from afterimage.providers import adapter
from tests.providers.helpers import (
    DAY,
    NOW,
    T0,
    assert_adapter_error,
    assert_api_error,
    at,
    check,
    js,
    toapis_task,
)

A = adapter("toapis")
URL = "https://files.toapis.com/t.png"

# (case, status reply, expected fields)
RESULTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("completed", toapis_task(), {
        "outcome": Outcome.SUCCEEDED, "urls": (URL,), "completed_at": at(T0 - 60),
        "expires_at": at(T0 + 22 * 3600), "model": "gpt-image-2", "error_code": None,
    }),
    ("expires_at in unix seconds", toapis_task(expires_at=T0 + 600), {
        "expires_at": at(T0 + 600),
    }),
    ("expires_at with an offset", toapis_task(expires_at="2026-05-02T12:00:00+02:00"), {
        "expires_at": at(T0 + 22 * 3600),
    }),
    ("no expires_at: completed + 24 h", toapis_task(expires_at=None), {
        "expires_at": at(T0 - 60) + DAY,
    }),
    ("completed_at ISO", toapis_task(completed_at="2026-05-01T11:00:00Z", expires_at=None), {
        "completed_at": at(T0 - 3600), "expires_at": at(T0 - 3600) + DAY,
    }),
    ("no times at all: now", toapis_task(completed_at=None, expires_at=None), {
        "completed_at": NOW, "expires_at": NOW + DAY,
    }),
    ("submitted", toapis_task(status="submitted", url=None), {
        "outcome": Outcome.PENDING, "urls": (), "completed_at": None,
    }),
    ("queued", toapis_task(status="queued", url=None), {"outcome": Outcome.PENDING}),
    ("in_progress", toapis_task(status="in_progress", url=None), {"outcome": Outcome.PENDING}),
    ("failed, error object", toapis_task(status="failed", url=None, error={
        "code": "content_policy_violation", "message": "refused"}), {
        "outcome": Outcome.FAILED, "urls": (), "error_code": "content_policy_violation",
        "error_message": "refused", "expires_at": None,
    }),
    ("failed, error type", toapis_task(status="failed", url=None, error={
        "type": "invalid_request_error", "message": "bad size"}), {
        "error_code": "invalid_request_error", "error_message": "bad size",
    }),
    ("failed, error string", toapis_task(status="failed", url=None, error="upstream timeout"), {
        "error_code": "failed", "error_message": "upstream timeout",
    }),
    ("failed, no error", toapis_task(status="failed", url=None), {
        "error_code": "failed", "error_message": "task failed",
    }),
]  # fmt: skip


@pytest.mark.parametrize(("case", "task", "expected"), RESULTS, ids=[r[0] for r in RESULTS])
def test_status_reply(case: str, task: dict[str, Any], expected: Any) -> None:
    check(A.parse_status("t", 200, {}, js(task), NOW), "toapis", **expected)


MALFORMED: list[tuple[str, Any, str]] = [
    ("not JSON", b"", "(body)"),
    ("no id", {k: v for k, v in toapis_task().items() if k != "id"}, "id"),
    ("another task", toapis_task(id="u"), "id"),
    ("no status", {k: v for k, v in toapis_task().items() if k != "status"}, "status"),
    ("unknown status", toapis_task(status="cancelled"), "status"),
    ("completed without url", toapis_task(url=None), "url"),
    ("empty url", toapis_task(url=""), "url[0]"),
    ("url empty", toapis_task(url=""), "url[0]"),
    ("bad expires_at", toapis_task(expires_at="tomorrow"), "expires_at"),
    ("bad completed_at", toapis_task(completed_at=True), "completed_at"),
    ("error of the wrong type", toapis_task(status="failed", error=[1]), "error"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_status_reply(case: str, body: Any, field: str) -> None:
    raw = body if isinstance(body, bytes) else js(body)
    assert_adapter_error(lambda: A.parse_status("t", 200, {}, raw, NOW), "toapis", field)


def rate_limited() -> bytes:
    return js({"error": {"type": "rate_limit_exceeded", "message": "Too many requests"}})


ERRORS: list[tuple[int, bytes, dict[str, str], type[Any], str | None, float | None]] = [
    (429, rate_limited(), {"Retry-After": "2"}, TransientProviderError, "rate_limit_exceeded",
     2.0),
    (429, rate_limited(), {"retry-after": "Fri, 01 May 2026 12:00:05 GMT"},
     TransientProviderError, "rate_limit_exceeded", 5.0),
    (429, rate_limited(), {}, TransientProviderError, "rate_limit_exceeded", None),
    (401, js({"error": {"type": "authentication_error", "message": "bad key"}}), {},
     PermanentProviderError, "authentication_error", None),
    (400, js({"error": {"type": "invalid_request_error", "message": "bad"}}), {},
     ProviderRefusedInputError, "invalid_request_error", None),
    (404, js({"error": {"message": "not found"}}), {}, TaskGoneError, None, None),
    (500, b"oops", {}, TransientProviderError, None, None),
    (502, b"", {"Retry-After": "1"}, TransientProviderError, None, 1.0),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "headers", "kind", "code", "retry"), ERRORS)
def test_status_reply_errors(
    status: int, body: bytes, headers: dict[str, str], kind: Any, code: Any, retry: Any
) -> None:
    err = assert_api_error(
        lambda: A.parse_status("t", status, headers, body, NOW),
        kind, provider="toapis", provider_code=code, retry_after=retry,
    )  # fmt: skip
    assert err.status == status


def test_status_request() -> None:
    req = A.status_request("https://toapis.com", "KEY", "task_img_1")
    assert (req.method, req.url) == ("GET", "https://toapis.com/v1/images/generations/task_img_1")
    assert dict(req.headers) == {"Authorization": "Bearer KEY"}


def test_create_request_has_no_callback() -> None:
    body = {"model": "gpt-image-2", "prompt": "cat", "size": "1:1", "response_format": "url"}
    req = A.create_request("https://toapis.com", "KEY", body, "https://hook.example/cb")
    assert (req.method, req.url) == ("POST", "https://toapis.com/v1/images/generations")
    assert dict(req.headers) == {"Authorization": "Bearer KEY"}
    assert req.json == body


def test_parse_create() -> None:
    body = toapis_task(id="task_img_9", status="queued", progress=0, url=None)
    assert A.parse_create(200, {}, js(body), NOW) == "task_img_9"


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (400, {"error": {"type": "invalid_reference_images", "message": "x"}},
         ProviderRefusedInputError, "invalid_reference_images"),
        (401, {"error": {"type": "authentication_error", "message": "x"}},
         PermanentProviderError, "authentication_error"),
        (404, {"error": {"message": "no such model"}}, PermanentProviderError, None),
        (429, {"error": {"type": "rate_limit_exceeded"}}, TransientProviderError,
         "rate_limit_exceeded"),
    ],
)  # fmt: skip
def test_parse_create_errors(status: int, body: Any, kind: Any, code: Any) -> None:
    assert_api_error(
        lambda: A.parse_create(status, {}, js(body), NOW), kind, provider="toapis",
        provider_code=code,
    )  # fmt: skip


def test_parse_create_without_id() -> None:
    body = js({"object": "generation.task", "status": "queued"})
    assert_adapter_error(lambda: A.parse_create(200, {}, body, NOW), "toapis", "id")


def test_poll_plan_follows_toapis_guidance() -> None:
    assert not A.has_callbacks and not A.supports_batch
    assert A.poll_plan.first == 30  # the typical completion time
    assert 3 <= A.poll_plan.next_gap(10) <= 5
    assert 3 <= A.poll_plan.next_gap(120) <= 5
