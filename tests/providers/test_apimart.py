"""apimart: wrapped status replies, url list or string, expiry per image, "gone", batch."""

from __future__ import annotations

from typing import Any

import pytest

from afterimage.errors import PermanentProviderError, TaskGoneError, TransientProviderError
from afterimage.models import Outcome
from afterimage.providers import adapter
from tests.providers.helpers import (
    DAY,
    NOW,
    T0,
    apimart_task,
    assert_adapter_error,
    assert_api_error,
    at,
    check,
    js,
)

A = adapter("apimart")
URL0 = "https://upload.apimart.ai/t/0.png"
URL1 = "https://upload.apimart.ai/t/1.png"


def images(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"images": list(entries)}


# (case, query object, expected fields)
RESULTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("completed, url list", apimart_task(), {
        "outcome": Outcome.SUCCEEDED, "urls": (URL0,), "completed_at": at(T0 - 60),
        "expires_at": at(T0 + 3600), "error_code": None,
    }),
    ("url string", apimart_task(result=images({"url": URL1, "expires_at": T0 + 60})), {
        "urls": (URL1,), "expires_at": at(T0 + 60),
    }),
    ("expires_at ISO", apimart_task(result=images(
        {"url": URL0, "expires_at": "2026-05-02T11:00:00Z"})), {
        "expires_at": at(T0 + 23 * 3600),
    }),
    ("earliest expiry of several images", apimart_task(result=images(
        {"url": [URL0], "expires_at": T0 + 7200}, {"url": URL1, "expires_at": T0 + 3600})), {
        "urls": (URL0, URL1), "expires_at": at(T0 + 3600),
    }),
    ("no expires_at: completed + 24 h", apimart_task(result=images({"url": [URL0]})), {
        "completed_at": at(T0 - 60), "expires_at": at(T0 - 60) + DAY,
    }),
    ("one image without expires_at", apimart_task(result=images(
        {"url": URL0}, {"url": URL1, "expires_at": T0 + 48 * 3600})), {
        "expires_at": at(T0 - 60) + DAY,
    }),
    ("no completed: now", apimart_task(completed=None, result=images({"url": URL0})), {
        "completed_at": NOW, "expires_at": NOW + DAY,
    }),
    ("several urls in one image", apimart_task(result=images({"url": [URL0, URL1]})), {
        "urls": (URL0, URL1),
    }),
    ("submitted", apimart_task(status="submitted", result=None), {
        "outcome": Outcome.PENDING, "urls": (), "expires_at": None,
    }),
    ("pending", apimart_task(status="pending", result=None), {"outcome": Outcome.PENDING}),
    ("processing", apimart_task(status="processing", result=None), {"outcome": Outcome.PENDING}),
    ("failed", apimart_task(status="failed", result=None, error={"message": "NSFW"}), {
        "outcome": Outcome.FAILED, "error_code": "failed", "error_message": "NSFW", "urls": (),
    }),
    ("failed with a code", apimart_task(status="failed", error={
        "code": "content_policy", "message": "no"}), {
        "error_code": "content_policy", "error_message": "no",
    }),
    ("cancelled", apimart_task(status="cancelled", result=None, error=None), {
        "outcome": Outcome.FAILED, "error_code": "cancelled", "error_message": "task cancelled",
    }),
]  # fmt: skip
IDS = [case for case, _, _ in RESULTS]


@pytest.mark.parametrize(("case", "task", "expected"), RESULTS, ids=IDS)
def test_status_reply(case: str, task: dict[str, Any], expected: Any) -> None:
    body = js({"code": 200, "data": task})
    check(A.parse_status("t", 200, {}, body, NOW), "apimart", **expected)


@pytest.mark.parametrize(("case", "task", "expected"), RESULTS, ids=IDS)
def test_batch_reply_reads_the_same(case: str, task: dict[str, Any], expected: Any) -> None:
    body = js({"code": 200, "data": [task]})
    results = A.parse_batch(["t"], 200, {}, body, NOW)
    assert results is not None and len(results) == 1
    check(results[0], "apimart", **expected)


MALFORMED: list[tuple[str, Any, str]] = [
    ("not JSON", b"Bad Gateway", "(body)"),
    ("not wrapped", apimart_task(), "data"),
    ("no status", {"code": 200, "data": {"id": "t"}}, "data.status"),
    ("unknown status", {"code": 200, "data": apimart_task(status="exploded")}, "data.status"),
    ("another task", {"code": 200, "data": apimart_task(id="u")}, "data.id"),
    ("completed without result", {"code": 200, "data": apimart_task(result=None)},
     "data.result.images"),
    ("completed without images", {"code": 200, "data": apimart_task(result=images())},
     "data.result.images"),
    ("image without url", {"code": 200, "data": apimart_task(result=images({}))},
     "data.result.images[0].url"),
    ("empty url list", {"code": 200, "data": apimart_task(result=images({"url": []}))},
     "data.result.images[0].url"),
    ("url empty", {"code": 200, "data": apimart_task(result=images({"url": ""}))},
     "data.result.images[0].url[0]"),
    ("url a number", {"code": 200, "data": apimart_task(result=images({"url": 5}))},
     "data.result.images"),
    ("bad expires_at", {"code": 200, "data": apimart_task(
        result=images({"url": URL0, "expires_at": "whenever"}))},
     "data.result.images[0].expires_at"),
    ("bad completed", {"code": 200, "data": apimart_task(completed=[1])}, "data.completed"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_status_reply(case: str, body: Any, field: str) -> None:
    raw = body if isinstance(body, bytes) else js(body)
    assert_adapter_error(lambda: A.parse_status("t", 200, {}, raw, NOW), "apimart", field)


GONE = "task does not exist or has expired"
ERRORS: list[tuple[int, Any, dict[str, str], type[Any], str | None, float | None]] = [
    (404, {"error": {"message": "Task does not exist or has expired", "type": "not_found"}}, {},
     TaskGoneError, "not_found", None),
    (200, {"code": 404, "message": GONE.upper()}, {}, TaskGoneError, None, None),
    (400, {"code": 400, "data": {"error": {"message": f"Sorry: {GONE}."}}}, {}, TaskGoneError,
     None, None),
    (500, GONE.encode(), {}, TaskGoneError, None, None),
    (500, b"Error: Task Does Not Exist Or Has Expired", {}, TaskGoneError, None, None),
    (400, {"error": {"message": GONE.upper()}}, {}, TaskGoneError, None, None),
    (200, {"code": 500, "msg": "Task does not exist or has expired"}, {}, TaskGoneError, "500",
     None),
    (429, {"error": {"message": "slow"}}, {"Retry-After": "4"}, TransientProviderError, None,
     4.0),
    (503, b"", {}, TransientProviderError, None, None),
    (401, {"error": {"code": "invalid_api_key", "message": "bad key"}}, {},
     PermanentProviderError, "invalid_api_key", None),
    (404, {"error": {"message": "no route"}}, {}, TaskGoneError, None, None),
    (200, {"code": 401, "message": "bad key"}, {}, PermanentProviderError, "401", None),
    (200, {"code": 500, "message": "busy"}, {}, TransientProviderError, "500", None),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "headers", "kind", "code", "retry"), ERRORS)
def test_status_reply_errors(
    status: int, body: Any, headers: dict[str, str], kind: Any, code: Any, retry: Any
) -> None:
    raw = body if isinstance(body, bytes) else js(body)
    assert_api_error(
        lambda: A.parse_status("t", status, headers, raw, NOW),
        kind, provider="apimart", provider_code=code, retry_after=retry,
    )  # fmt: skip


def test_status_request() -> None:
    req = A.status_request("https://api.apimart.ai", "KEY", "task_01/..")
    assert (req.method, req.url) == ("GET", "https://api.apimart.ai/v1/tasks/task_01%2F..")
    assert dict(req.headers) == {"Authorization": "Bearer KEY"}


# --- batch ---------------------------------------------------------------------------------


def test_batch_request() -> None:
    req = A.batch_request("https://api.apimart.ai", "KEY", ["t", "u"])
    assert (req.method, req.url) == ("POST", "https://api.apimart.ai/v1/tasks/batch")
    assert dict(req.headers) == {"Authorization": "Bearer KEY"}
    assert req.json == {"task_ids": ["t", "u"]}


def test_batch_reply() -> None:
    body = js({"code": 200, "data": [
        apimart_task(),
        apimart_task(id="u", status="failed", result=None, error={"message": "NSFW"}),
        apimart_task(id="stranger", status="processing"),  # not asked about: left out
        apimart_task(id="t", status="processing"),  # a second word on t: the first counts
    ]})  # fmt: skip
    results = A.parse_batch(["t", "u", "v"], 200, {}, body, NOW)
    assert results is not None
    by_id = {r.task_id: r for r in results}
    assert sorted(by_id) == ["t", "u"]  # v is simply absent
    check(by_id["t"], "apimart", outcome=Outcome.SUCCEEDED, urls=(URL0,))
    check(by_id["u"], "apimart", "u", outcome=Outcome.FAILED, error_message="NSFW")


def test_batch_entries_wrapped_like_single_replies() -> None:
    body = js({"code": 200, "data": [{"code": 200, "data": apimart_task(status="pending")}]})
    results = A.parse_batch(["t"], 200, {}, body, NOW)
    assert results is not None
    check(results[0], "apimart", outcome=Outcome.PENDING)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"not json"),
        (200, js([apimart_task()])),
        (200, js({"code": 500, "data": [apimart_task()]})),
        (200, js({"data": [apimart_task()]})),
        (200, js({"code": 200, "data": apimart_task()})),
        (200, js({"code": 200, "data": {"t": apimart_task()}})),
        (200, js({"code": 200, "data": [{"status": "completed"}]})),  # whose?
        (200, js({"code": 200, "data": ["t"]})),
        (200, js({"code": 200, "data": [apimart_task(result=None)]})),  # unreadable entry
        (200, js({"code": 200, "data": [apimart_task(status="exploded")]})),
        (404, js({"error": {"message": "no such endpoint"}})),
        (405, b""),
        (400, js({"code": 200, "data": []})),
    ],
)
def test_batch_reply_of_unknown_shape_falls_back_to_single_queries(
    status: int, body: bytes
) -> None:
    assert A.parse_batch(["t"], status, {}, body, NOW) is None


@pytest.mark.parametrize("status", [429, 500, 503])
def test_batch_overload_is_transient_not_a_fallback(status: int) -> None:
    assert_api_error(
        lambda: A.parse_batch(["t"], status, {"Retry-After": "9"}, b"{}", NOW),
        TransientProviderError, provider="apimart", retry_after=9.0,
    )  # fmt: skip


def test_empty_batch_reply() -> None:
    assert A.parse_batch(["t"], 200, {}, js({"code": 200, "data": []}), NOW) == []


# --- create --------------------------------------------------------------------------------


def test_create_request_has_no_callback() -> None:
    body = {"model": "gpt-image-2", "prompt": "cat", "size": "1:1", "n": 1}
    req = A.create_request("https://api.apimart.ai/", "KEY", body, "https://hook.example/cb")
    assert (req.method, req.url) == ("POST", "https://api.apimart.ai/v1/images/generations")
    assert dict(req.headers) == {"Authorization": "Bearer KEY"}
    assert req.json == body


def test_parse_create() -> None:
    body = js({"code": 200, "data": [{"status": "submitted", "task_id": "task_01"}]})
    assert A.parse_create(200, {}, body, NOW) == "task_01"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": 200, "data": []}, "data"),
        ({"code": 200, "data": [{"task_id": "a"}, {"task_id": "b"}]}, "data"),
        ({"code": 200, "data": [{"status": "submitted"}]}, "data.0.task_id"),
        ({"code": 200, "data": {"task_id": "a"}}, "data"),
    ],
)
def test_parse_create_malformed(body: Any, field: str) -> None:
    assert_adapter_error(lambda: A.parse_create(200, {}, js(body), NOW), "apimart", field)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, {"error": {"message": "bad key"}}, PermanentProviderError),
        (404, {"error": {"message": "no model"}}, PermanentProviderError),
        (200, {"code": 402, "message": "no balance"}, PermanentProviderError),
        (429, {"error": {"message": "slow"}}, TransientProviderError),
        (502, b"", TransientProviderError),
    ],
)
def test_parse_create_errors(status: int, body: Any, kind: Any) -> None:
    raw = body if isinstance(body, bytes) else js(body)
    assert_api_error(lambda: A.parse_create(status, {}, raw, NOW), kind, provider="apimart")


def test_poll_plan_follows_apimart_guidance() -> None:
    assert not A.has_callbacks and A.supports_batch
    assert A.poll_plan.first == 30  # the typical completion time
    assert 3 <= A.poll_plan.next_gap(A.poll_plan.first) <= 5
    assert 3 <= A.poll_plan.next_gap(120) <= 5
