"""crun: bare and enveloped callbacks, status replies, error codes under HTTP 200, requests."""

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
    crun_data,
    js,
)

A = adapter("crun")
URL0 = "https://cdn.crun.ai/t/0.png"
URL1 = "https://cdn.crun.ai/t/1.png"


def env(data: Any, code: int = 200, message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


# (case, the query reply's data object / callback body, expected ProviderResult fields)
RESULTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("success", crun_data(), {
        "outcome": Outcome.SUCCEEDED, "urls": (URL0,), "completed_at": at(T0 - 60),
        "expires_at": at(T0 - 60) + DAY, "model": "openai/gpt-image-2-stable",
        "error_code": None,
    }),
    ("several images", crun_data(result={"media_urls": [URL0, URL1]}), {"urls": (URL0, URL1)}),
    ("no complete_at: now", crun_data(complete_at=None), {
        "completed_at": NOW, "expires_at": NOW + DAY,
    }),
    ("complete_at 0 is unset", crun_data(complete_at=0), {"completed_at": NOW}),
    ("failed", crun_data(status="failed", result={"code": 1001, "message": "policy"}), {
        "outcome": Outcome.FAILED, "urls": (), "error_code": "1001", "error_message": "policy",
        "completed_at": at(T0 - 60), "expires_at": None,
    }),
    ("failed, no result", crun_data(status="failed", result=None, complete_at=None), {
        "outcome": Outcome.FAILED, "error_code": "failed", "error_message": "generation failed",
        "completed_at": None,
    }),
    ("running", crun_data(status="running", result=None, complete_at=None), {
        "outcome": Outcome.PENDING, "urls": (), "completed_at": None, "error_code": None,
    }),
    ("any other status is pending", crun_data(status="queued_for_gpu", result=None), {
        "outcome": Outcome.PENDING,
    }),
]  # fmt: skip
IDS = [case for case, _, _ in RESULTS]


@pytest.mark.parametrize(("case", "data", "expected"), RESULTS, ids=IDS)
def test_callback_bare_and_enveloped(case: str, data: dict[str, Any], expected: Any) -> None:
    for body in (data, env(data)):
        check(A.parse_callback(js(body), {}, NOW), "crun", **expected)


@pytest.mark.parametrize(("case", "data", "expected"), RESULTS, ids=IDS)
def test_status_reply(case: str, data: dict[str, Any], expected: Any) -> None:
    check(A.parse_status("t", 200, {}, js(env(data)), NOW), "crun", **expected)


def test_callback_with_generation_failed_code_is_a_failure() -> None:
    body = env(crun_data(status="running", result=None), code=501, message="generation failed")
    result = A.parse_callback(js(body), {}, NOW)
    check(result, "crun", outcome=Outcome.FAILED, error_code="501", urls=())
    assert result.error_message == "generation failed"


# (case, body, field named by the AdapterError)
MALFORMED: list[tuple[str, Any, str]] = [
    ("not JSON", b"<html>oops", "(body)"),
    ("a list", [crun_data()], "(body)"),
    ("no task_id", {k: v for k, v in crun_data().items() if k != "task_id"}, "task_id"),
    ("empty task_id", crun_data(task_id=""), "task_id"),
    ("status not a string", crun_data(status=3), "status"),
    ("success without result", crun_data(result=None), "result.media_urls"),
    ("success without urls", crun_data(result={"media_urls": []}), "result.media_urls"),
    ("an empty url", crun_data(result={"media_urls": [""]}), "result.media_urls[0]"),
    ("url not a string", crun_data(result={"media_urls": [7]}), "result.media_urls[0]"),
    ("complete_at words", crun_data(complete_at="yesterday"), "complete_at"),
    ("complete_at huge", crun_data(complete_at=1e308), "complete_at"),
    ("complete_at negative", crun_data(complete_at=-5), "complete_at"),
    ("complete_at in ms, not s", crun_data(complete_at=T0 * 1000), "complete_at"),
    ("envelope without data", env(None), "data"),
    ("envelope, data without task_id", env({"status": "success"}), "data.task_id"),
    ("envelope with an error code", env(crun_data(), code=500), "code"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_callback(case: str, body: Any, field: str) -> None:
    raw = body if isinstance(body, bytes) else js(body)
    assert_adapter_error(lambda: A.parse_callback(raw, {}, NOW), "crun", field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (env(None), "data"),
        (env(crun_data(task_id="other")), "data.task_id"),
        (crun_data(), "code"),  # a status reply always has the envelope
        (env(crun_data(result={"media_urls": [""]})), "result.media_urls[0]"),
        (b"", "(body)"),
    ],
)
def test_malformed_status_reply(body: Any, field: str) -> None:
    raw = body if isinstance(body, bytes) else js(body)
    assert_adapter_error(lambda: A.parse_status("t", 200, {}, raw, NOW), "crun", field)


# (HTTP status, body, headers, error class, provider_code, retry_after)
ERRORS: list[tuple[int, Any, dict[str, str], type[Any], str | None, float | None]] = [
    (200, {"code": 429, "message": "slow down"}, {"Retry-After": "7"}, TransientProviderError,
     "429", 7.0),
    (200, {"code": "429", "message": "slow down"}, {}, TransientProviderError, "429", None),
    (200, {"code": 455, "message": "maintenance"}, {}, TransientProviderError, "455", None),
    (200, {"code": 500, "message": "server error"}, {}, TransientProviderError, "500", None),
    (200, {"code": 404, "message": "task not found"}, {}, TaskGoneError, "404", None),
    (200, {"code": 401, "message": "bad key"}, {}, PermanentProviderError, "401", None),
    (200, {"code": 402, "message": "no credits"}, {}, PermanentProviderError, "402", None),
    (200, {"code": 422, "message": "invalid"}, {}, ProviderRefusedInputError, "422", None),
    (200, {"code": 505, "message": "disabled"}, {}, PermanentProviderError, "505", None),
    (401, {"code": 401, "message": "bad key"}, {}, PermanentProviderError, "401", None),
    (502, b"<html>bad gateway</html>", {}, TransientProviderError, None, None),
    (429, b"", {"retry-after": "3"}, TransientProviderError, None, 3.0),
    (404, b"not found", {}, TaskGoneError, None, None),
    (403, b"forbidden", {}, PermanentProviderError, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "headers", "kind", "code", "retry"), ERRORS)
def test_status_reply_errors(
    status: int, body: Any, headers: dict[str, str], kind: Any, code: Any, retry: Any
) -> None:
    raw = body if isinstance(body, bytes) else js(body)
    err = assert_api_error(
        lambda: A.parse_status("t", status, headers, raw, NOW),
        kind, provider="crun", provider_code=code, retry_after=retry,
    )  # fmt: skip
    assert err.status == status


@pytest.mark.parametrize("status", [200, 501])
def test_generation_failed_code_in_a_status_reply_is_a_failed_task(status: int) -> None:
    body = js({"code": 501, "message": "generation failed", "data": None})
    result = A.parse_status("t", status, {}, body, NOW)
    check(result, "crun", outcome=Outcome.FAILED, error_code="501")
    assert result.error_message == "generation failed"


def test_status_request() -> None:
    req = A.status_request("https://api.crun.ai/", "KEY", "a&b c/d")
    assert req.method == "GET"
    assert req.url == "https://api.crun.ai/api/v1/client/job/TaskInfo?task_id=a%26b+c%2Fd"
    assert dict(req.headers) == {"x-api-key": "KEY"}


def test_create_request_injects_callback_url() -> None:
    body = {"model": "openai/gpt-image-2-stable", "input": {"prompt": "cat"}}
    req = A.create_request(A.default_base_url, "KEY", body, "https://hook.example/cb/crun/tok")
    assert (req.method, req.url) == ("POST", "https://api.crun.ai/api/v1/client/job/CreateTask")
    assert dict(req.headers) == {"x-api-key": "KEY"}
    assert req.json == {**body, "callback_url": "https://hook.example/cb/crun/tok"}
    assert "callback_url" not in body


def test_create_request_overrides_a_callback_url_and_keeps_it_without_ours() -> None:
    body = {"model": "m", "callback_url": "https://elsewhere.example/"}
    ours = A.create_request("https://x", "K", body, "https://ours/").json
    assert ours["callback_url"] == "https://ours/"
    assert A.create_request("https://x", "K", body, None).json == body


def test_parse_create() -> None:
    body = js({"code": 200, "message": "success", "data": {"task_id": "job-1"}})
    assert A.parse_create(200, {}, body, NOW) == "job-1"


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, {"code": 402, "message": "no credits"}, PermanentProviderError),
        (200, {"code": 404, "message": "model not found"}, PermanentProviderError),
        (200, {"code": 501, "message": "generation failed"}, PermanentProviderError),
        (200, {"code": 429, "message": "slow down"}, TransientProviderError),
        (500, {"message": "boom"}, TransientProviderError),
    ],
)
def test_parse_create_errors(status: int, body: Any, kind: Any) -> None:
    assert_api_error(lambda: A.parse_create(status, {}, js(body), NOW), kind, provider="crun")


def test_parse_create_without_task_id() -> None:
    body = js({"code": 200, "message": "success", "data": {}})
    assert_adapter_error(lambda: A.parse_create(200, {}, body, NOW), "crun", "data.task_id")


def test_poll_plan_is_a_fallback_for_callbacks() -> None:
    assert A.has_callbacks and not A.signs_callbacks and not A.supports_batch
    assert 30 <= A.poll_plan.first <= 120
    gaps = [A.poll_plan.next_gap(age) for age in (0, 100, 600, 3600, 86400)]
    assert gaps == sorted(gaps) and gaps[0] >= 5
