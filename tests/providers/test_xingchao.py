"""xingchao: status replies (image_url string), errors, requests under a base path."""

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
    js,
    xingchao_task,
)

A = adapter("xingchao")
BASE = "https://zcbservice.aizfw.cn/kyyReactApiServer"
URL = "https://img.aizfw.cn/t.png"

RESULTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("completed", xingchao_task(), {
        "outcome": Outcome.SUCCEEDED, "urls": (URL,), "completed_at": NOW,
        "expires_at": NOW + DAY, "model": "gpt-image-2", "error_code": None,
    }),
    ("queued", xingchao_task(status="queued", image_url=None), {
        "outcome": Outcome.PENDING, "urls": (), "expires_at": None,
    }),
    ("processing", xingchao_task(status="processing", image_url=None), {
        "outcome": Outcome.PENDING,
    }),
    ("failed, error string", xingchao_task(status="failed", image_url=None, error="blocked"), {
        "outcome": Outcome.FAILED, "error_code": "failed", "error_message": "blocked",
        "urls": (),
    }),
    ("failed, error object", xingchao_task(status="failed", image_url=None, error={
        "code": "upstream_error", "message": "upstream said no"}), {
        "error_code": "upstream_error", "error_message": "upstream said no",
    }),
    ("failed, no error", xingchao_task(status="failed", image_url=None), {
        "error_code": "failed", "error_message": "task failed",
    }),
]  # fmt: skip


@pytest.mark.parametrize(("case", "task", "expected"), RESULTS, ids=[r[0] for r in RESULTS])
def test_status_reply(case: str, task: dict[str, Any], expected: Any) -> None:
    check(A.parse_status("t", 200, {}, js(task), NOW), "xingchao", **expected)


MALFORMED: list[tuple[str, Any, str]] = [
    ("not JSON", b"{", "(body)"),
    ("no id", {k: v for k, v in xingchao_task().items() if k != "id"}, "id"),
    ("another task", xingchao_task(id="u"), "id"),
    ("unknown status", xingchao_task(status="submitted"), "status"),
    ("status not a string", xingchao_task(status=None), "status"),
    ("completed without image_url", xingchao_task(image_url=None), "image_url"),
    ("completed with empty image_url", xingchao_task(image_url=""), "image_url[0]"),
    ("image_url empty", xingchao_task(image_url=" "), "image_url[0]"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_status_reply(case: str, body: Any, field: str) -> None:
    raw = body if isinstance(body, bytes) else js(body)
    assert_adapter_error(lambda: A.parse_status("t", 200, {}, raw, NOW), "xingchao", field)


ERRORS: list[tuple[int, bytes, dict[str, str], type[Any], float | None]] = [
    (429, js({"error": "slow down"}), {"Retry-After": "3"}, TransientProviderError, 3.0),
    (500, b"", {}, TransientProviderError, None),
    (504, b"gateway timeout", {}, TransientProviderError, None),
    (401, js({"error": {"message": "bad token"}}), {}, PermanentProviderError, None),
    (404, js({"error": {"message": "no such task"}}), {}, TaskGoneError, None),
]


@pytest.mark.parametrize(("status", "body", "headers", "kind", "retry"), ERRORS)
def test_status_reply_errors(
    status: int, body: bytes, headers: dict[str, str], kind: Any, retry: Any
) -> None:
    assert_api_error(
        lambda: A.parse_status("t", status, headers, body, NOW),
        kind, provider="xingchao", retry_after=retry,
    )  # fmt: skip


def test_requests_keep_the_base_path() -> None:
    req = A.status_request(BASE + "/", "KEY", "img 1")
    assert (req.method, req.url) == ("GET", f"{BASE}/v1/result/img%201")
    assert dict(req.headers) == {"Authorization": "Bearer KEY"}
    body = {"model": "gpt-image-2", "prompt": "cat", "ratio": "1:1"}
    req = A.create_request(A.default_base_url, "KEY", body, "https://hook.example/cb")
    assert (req.method, req.url) == ("POST", f"{BASE}/v1/image2/images")
    assert dict(req.headers) == {"Authorization": "Bearer KEY"}
    assert req.json == body


def test_parse_create() -> None:
    body = xingchao_task(id="img_7", object="image", status="queued", image_url=None)
    assert A.parse_create(200, {}, js(body), NOW) == "img_7"
    assert_adapter_error(lambda: A.parse_create(200, {}, js({"id": ""}), NOW), "xingchao", "id")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ProviderRefusedInputError),
        (404, PermanentProviderError),
        (503, TransientProviderError),
    ],
)
def test_parse_create_errors(status: int, kind: Any) -> None:
    body = js({"error": {"message": "no"}})
    assert_api_error(lambda: A.parse_create(status, {}, body, NOW), kind, provider="xingchao")


def test_poll_plan_follows_xingchao_guidance() -> None:
    assert not A.has_callbacks and not A.supports_batch
    assert A.poll_plan.first == 30  # the typical completion time
    assert 2 <= A.poll_plan.next_gap(30) <= 5
