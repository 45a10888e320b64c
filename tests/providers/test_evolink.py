"""evolink: callbacks and status replies (the same object), errors, requests."""

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
    assert_adapter_error,
    assert_api_error,
    check,
    evolink_task,
    js,
)

A = adapter("evolink")
URL0 = "https://files.evolink.ai/t/0.png"
URL1 = "https://files.evolink.ai/t/1.png"

RESULTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("completed", evolink_task(), {
        "outcome": Outcome.SUCCEEDED, "urls": (URL0,), "completed_at": NOW,
        "expires_at": NOW + DAY, "model": "gpt-image-2", "error_code": None,
    }),
    ("several images", evolink_task(results=[URL0, URL1]), {"urls": (URL0, URL1)}),
    ("pending", evolink_task(status="pending", results=None), {
        "outcome": Outcome.PENDING, "urls": (), "completed_at": None,
    }),
    ("processing", evolink_task(status="processing", results=None), {
        "outcome": Outcome.PENDING,
    }),
    ("failed", evolink_task(status="failed", results=None, error={
        "code": "content_policy_violation", "message": "refused"}), {
        "outcome": Outcome.FAILED, "urls": (), "error_code": "content_policy_violation",
        "error_message": "refused", "expires_at": None,
    }),
    ("failed, no error", evolink_task(status="failed", results=None), {
        "error_code": "failed", "error_message": "task failed",
    }),
    ("cancelled", evolink_task(status="cancelled", results=None), {
        "outcome": Outcome.FAILED, "error_code": "cancelled",
    }),
]  # fmt: skip
IDS = [r[0] for r in RESULTS]


@pytest.mark.parametrize(("case", "task", "expected"), RESULTS, ids=IDS)
def test_callback(case: str, task: dict[str, Any], expected: Any) -> None:
    check(A.parse_callback(js(task), {}, NOW), "evolink", **expected)


@pytest.mark.parametrize(("case", "task", "expected"), RESULTS, ids=IDS)
def test_status_reply(case: str, task: dict[str, Any], expected: Any) -> None:
    check(A.parse_status("t", 200, {}, js(task), NOW), "evolink", **expected)


MALFORMED: list[tuple[str, Any, str]] = [
    ("not JSON", b"ok", "(body)"),
    ("no id", {k: v for k, v in evolink_task().items() if k != "id"}, "id"),
    ("empty id", evolink_task(id=""), "id"),
    ("unknown status", evolink_task(status="exploded"), "status"),
    ("completed without results", evolink_task(results=None), "results"),
    ("completed with no results", evolink_task(results=[]), "results"),
    ("result empty", evolink_task(results=[""]), "results[0]"),
    ("results a dict", evolink_task(results={"0": URL0}), "results"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_callback_and_status_reply(case: str, body: Any, field: str) -> None:
    raw = body if isinstance(body, bytes) else js(body)
    assert_adapter_error(lambda: A.parse_callback(raw, {}, NOW), "evolink", field)
    assert_adapter_error(lambda: A.parse_status("t", 200, {}, raw, NOW), "evolink", field)


def test_status_reply_about_another_task() -> None:
    body = js(evolink_task(id="task-unified-other"))
    assert_adapter_error(lambda: A.parse_status("t", 200, {}, body, NOW), "evolink", "id")


def not_found() -> bytes:
    return js({"error": {"code": "resource_not_found", "message": "task expired"}})


ERRORS: list[tuple[int, bytes, dict[str, str], type[Any], str | None, float | None]] = [
    (404, not_found(), {}, TaskGoneError, "resource_not_found", None),
    (400, not_found(), {}, TaskGoneError, "resource_not_found", None),
    (429, js({"error": {"code": "rate_limit"}}), {"Retry-After": "5"}, TransientProviderError,
     "rate_limit", 5.0),
    (500, js({"error": {"code": "service_error", "message": "x"}}), {}, TransientProviderError,
     "service_error", None),
    (401, js({"error": {"code": "unauthorized", "message": "x"}}), {}, PermanentProviderError,
     "unauthorized", None),
    (402, js({"error": {"code": "quota_exceeded", "message": "x"}}), {}, PermanentProviderError,
     "quota_exceeded", None),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "headers", "kind", "code", "retry"), ERRORS)
def test_status_reply_errors(
    status: int, body: bytes, headers: dict[str, str], kind: Any, code: Any, retry: Any
) -> None:
    assert_api_error(
        lambda: A.parse_status("t", status, headers, body, NOW),
        kind, provider="evolink", provider_code=code, retry_after=retry,
    )  # fmt: skip


def test_status_request() -> None:
    req = A.status_request("https://api.evolink.ai", "KEY", "task-unified-1")
    assert (req.method, req.url) == ("GET", "https://api.evolink.ai/v1/tasks/task-unified-1")
    assert dict(req.headers) == {"Authorization": "Bearer KEY"}
    assert A.status_request("https://api.evolink.ai", "K", "../x").url.endswith("/tasks/..%2Fx")


def test_create_request_injects_callback_url() -> None:
    body = {"model": "gpt-image-2", "prompt": "cat", "size": "1:1", "n": 1}
    req = A.create_request("https://api.evolink.ai", "KEY", body, "https://hook.example/cb")
    assert (req.method, req.url) == ("POST", "https://api.evolink.ai/v1/images/generations")
    assert dict(req.headers) == {"Authorization": "Bearer KEY"}
    assert req.json == {**body, "callback_url": "https://hook.example/cb"}
    assert A.create_request("https://api.evolink.ai", "KEY", body, None).json == body


@pytest.mark.parametrize("status", [200, 201])
def test_parse_create(status: int) -> None:
    body = evolink_task(id="task-unified-9", status="pending", results=None)
    assert A.parse_create(status, {}, js(body), NOW) == "task-unified-9"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ProviderRefusedInputError),
        (404, PermanentProviderError),
        (503, TransientProviderError),
    ],
)
def test_parse_create_errors(status: int, kind: Any) -> None:
    body = js({"error": {"code": "invalid_request", "message": "no"}})
    assert_api_error(lambda: A.parse_create(status, {}, body, NOW), kind, provider="evolink")


def test_poll_plan_is_a_fallback_for_callbacks() -> None:
    assert A.has_callbacks and not A.signs_callbacks and not A.supports_batch
    assert 30 <= A.poll_plan.first <= 120
    gaps = [A.poll_plan.next_gap(age) for age in (0, 100, 600, 3600, 86400)]
    assert gaps == sorted(gaps) and gaps[0] >= 5
