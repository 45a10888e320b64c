"""kie: callbacks with every documented variant, status replies, requests, HMAC signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest

from afterimage.errors import (
    CallbackAuthError,
    PermanentProviderError,
    ProviderRefusedInputError,
    TaskGoneError,
    TransientProviderError,
)
from afterimage.models import Outcome
from afterimage.providers import adapter
from afterimage.providers.kie import sign, verify_signature
from tests.providers.helpers import (
    DAY,
    NOW,
    T0,
    assert_adapter_error,
    assert_api_error,
    at,
    check,
    js,
    kie_data,
)

A = adapter("kie")
URL0 = "https://tempfile.kie.ai/t/0.png"
URL1 = "https://tempfile.kie.ai/t/1.png"
MODEL = "gpt-image-2-text-to-image"


def rj(*urls: str) -> str:
    return json.dumps({"resultUrls": list(urls)})


# (case, data object, expected fields) — read the same from a callback and a status reply.
RESULTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("success", kie_data(), {
        "outcome": Outcome.SUCCEEDED, "urls": (URL0,), "completed_at": at(T0 - 60),
        "expires_at": at(T0 - 60) + DAY, "model": MODEL, "error_code": None,
    }),
    ("several images", kie_data(resultJson=rj(URL0, URL1)), {"urls": (URL0, URL1)}),
    ("resultJson as an object", kie_data(resultJson={"resultUrls": [URL1]}), {"urls": (URL1,)}),
    ("no completeTime: now", kie_data(completeTime=None), {
        "completed_at": NOW, "expires_at": NOW + DAY,
    }),
    ("task_id spelling", {**kie_data(taskId=None), "task_id": "t"}, {"urls": (URL0,)}),
    ("waiting", kie_data(state="waiting", resultJson=""), {"outcome": Outcome.PENDING}),
    ("queuing", kie_data(state="queuing", resultJson=""), {"outcome": Outcome.PENDING}),
    ("generating", kie_data(state="generating", resultJson=None), {
        "outcome": Outcome.PENDING, "urls": (), "completed_at": None,
    }),
    ("fail", kie_data(state="fail", resultJson="", failCode="400", failMsg="policy"), {
        "outcome": Outcome.FAILED, "error_code": "400", "error_message": "policy", "urls": (),
        "completed_at": at(T0 - 60), "expires_at": None,
    }),
    ("fail, numeric failCode", kie_data(state="fail", failCode=500, failMsg="oops"), {
        "outcome": Outcome.FAILED, "error_code": "500", "error_message": "oops",
    }),
    ("fail, nothing said", kie_data(state="fail", failCode="", failMsg=""), {
        "outcome": Outcome.FAILED, "error_code": "fail", "error_message": "generation failed",
    }),
]  # fmt: skip
IDS = [case for case, _, _ in RESULTS]


@pytest.mark.parametrize(("case", "data", "expected"), RESULTS, ids=IDS)
def test_callback(case: str, data: dict[str, Any], expected: Any) -> None:
    body = {"code": 200, "msg": "success", "data": {**data, "creditsConsumed": 4}}
    check(A.parse_callback(js(body), {}, NOW), "kie", **expected)


@pytest.mark.parametrize(("case", "data", "expected"), RESULTS, ids=IDS)
def test_status_reply(case: str, data: dict[str, Any], expected: Any) -> None:
    for key in ("msg", "message"):
        body = {"code": 200, key: "success", "data": data}
        check(A.parse_status("t", 200, {}, js(body), NOW), "kie", **expected)


# (case, callback body, expected fields): the callback's own code and task id variants.
CALLBACKS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("top-level taskId", {"code": 200, "msg": "ok", "taskId": "t",
                          "data": kie_data(taskId=None)}, {"outcome": Outcome.SUCCEEDED}),
    ("code 200 without a state", {"code": 200, "msg": "ok", "data": kie_data(state=None)},
     {"outcome": Outcome.SUCCEEDED, "urls": (URL0,)}),
    ("code 400 with failCode", {"code": 400, "msg": "bad", "data": kie_data(
        state="fail", resultJson="", failCode="CONTENT", failMsg="blocked")},
     {"outcome": Outcome.FAILED, "error_code": "CONTENT", "error_message": "blocked"}),
    ("code 500, msg only", {"code": 500, "msg": "internal", "data": {"taskId": "t"}},
     {"outcome": Outcome.FAILED, "error_code": "500", "error_message": "internal"}),
    ("code 501, message spelling", {"code": 501, "message": "generation failed",
                                    "data": {"task_id": "t", "state": "fail"}},
     {"outcome": Outcome.FAILED, "error_code": "501", "error_message": "generation failed"}),
    ("a failure code beats a success state", {"code": 500, "msg": "x", "data": kie_data()},
     {"outcome": Outcome.FAILED, "urls": (), "error_code": "500"}),
    ("no data, top-level taskId", {"code": 501, "msg": "failed", "taskId": "t"},
     {"outcome": Outcome.FAILED, "error_code": "501"}),
    ("state without code", {"data": kie_data(state="generating")}, {"outcome": Outcome.PENDING}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "expected"), CALLBACKS, ids=[c[0] for c in CALLBACKS])
def test_callback_variants(case: str, body: dict[str, Any], expected: Any) -> None:
    check(A.parse_callback(js(body), {}, NOW), "kie", **expected)


def ok(data: Any) -> dict[str, Any]:
    return {"code": 200, "msg": "success", "data": data}


MALFORMED: list[tuple[str, Any, str]] = [
    ("not JSON", b"\xff\xfe", "(body)"),
    ("no task id", ok(kie_data(taskId=None)), "data.taskId"),
    ("empty task id", ok(kie_data(taskId="")), "data.taskId"),
    ("conflicting task ids", {**ok(kie_data()), "taskId": "u"}, "data.taskId"),
    ("neither code nor state", {"data": kie_data(state=None)}, "code"),
    ("code not a number", {**ok(kie_data()), "code": "two hundred"}, "code"),
    ("unknown state", ok(kie_data(state="exploded")), "data.state"),
    ("data a list", ok([kie_data()]), "data"),
    ("resultJson not JSON", ok(kie_data(resultJson="{resultUrls")), "data.resultJson"),
    ("resultJson without urls", ok(kie_data(resultJson="{}")), "data.resultJson.resultUrls"),
    ("resultJson empty", ok(kie_data(resultJson="")), "data.resultJson"),
    ("resultUrls empty", ok(kie_data(resultJson=rj())), "data.resultJson.resultUrls"),
    ("resultUrls empty", ok(kie_data(resultJson=rj(""))), "data.resultJson.resultUrls[0]"),
    ("resultJson a JSON list", ok(kie_data(resultJson="[1]")), "data.resultJson.resultUrls"),
    ("completeTime words", ok(kie_data(completeTime="soon")), "data.completeTime"),
    ("completeTime out of range", ok(kie_data(completeTime=10**22)), "data.completeTime"),
    ("completeTime in seconds, not ms", ok(kie_data(completeTime=T0)), "data.completeTime"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_callback(case: str, body: Any, field: str) -> None:
    raw = body if isinstance(body, bytes) else js(body)
    assert_adapter_error(lambda: A.parse_callback(raw, {}, NOW), "kie", field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (ok(None), "data"),
        (ok(kie_data(state=None)), "data.state"),
        (ok(kie_data(taskId="other")), "data.taskId"),
        (ok(kie_data(resultJson="null")), "data.resultJson.resultUrls"),
    ],
)
def test_malformed_status_reply(body: Any, field: str) -> None:
    assert_adapter_error(lambda: A.parse_status("t", 200, {}, js(body), NOW), "kie", field)


ERRORS: list[tuple[int, Any, dict[str, str], type[Any], str | None, float | None]] = [
    (200, {"code": 429, "msg": "rate limited"}, {"Retry-After": "2"}, TransientProviderError,
     "429", 2.0),
    (200, {"code": 455, "msg": "maintenance"}, {}, TransientProviderError, "455", None),
    (200, {"code": 500, "message": "server error"}, {}, TransientProviderError, "500", None),
    (200, {"code": 404, "msg": "not found"}, {}, TaskGoneError, "404", None),
    (200, {"code": 401, "msg": "unauthorized"}, {}, PermanentProviderError, "401", None),
    (200, {"code": 402, "msg": "insufficient credits"}, {}, PermanentProviderError, "402", None),
    (200, {"code": 422, "msg": "validation"}, {}, ProviderRefusedInputError, "422", None),
    (503, b"unavailable", {}, TransientProviderError, None, None),
    (429, b"{}", {"Retry-After": "Fri, 01 May 2026 12:00:30 GMT"}, TransientProviderError,
     None, 30.0),
    (401, {"msg": "unauthorized"}, {}, PermanentProviderError, None, None),
    (404, b"", {}, TaskGoneError, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "headers", "kind", "code", "retry"), ERRORS)
def test_status_reply_errors(
    status: int, body: Any, headers: dict[str, str], kind: Any, code: Any, retry: Any
) -> None:
    raw = body if isinstance(body, bytes) else js(body)
    assert_api_error(
        lambda: A.parse_status("t", status, headers, raw, NOW),
        kind, provider="kie", provider_code=code, retry_after=retry,
    )  # fmt: skip


def test_generation_failed_code_in_a_status_reply_is_a_failed_task() -> None:
    result = A.parse_status("t", 200, {}, js({"code": 501, "msg": "generation failed"}), NOW)
    check(result, "kie", outcome=Outcome.FAILED, error_code="501")
    assert result.error_message == "generation failed"


def test_status_request() -> None:
    req = A.status_request("https://api.kie.ai", "KEY", "t 1")
    assert (req.method, req.url) == ("GET", "https://api.kie.ai/api/v1/jobs/recordInfo?taskId=t+1")
    assert dict(req.headers) == {"Authorization": "Bearer KEY"}


def test_create_request_injects_callback_url() -> None:
    body = {"model": MODEL, "input": {"prompt": "cat", "aspect_ratio": "1:1"}}
    req = A.create_request("https://api.kie.ai", "KEY", body, "https://hook.example/cb")
    assert (req.method, req.url) == ("POST", "https://api.kie.ai/api/v1/jobs/createTask")
    assert dict(req.headers) == {"Authorization": "Bearer KEY"}
    assert req.json == {**body, "callBackUrl": "https://hook.example/cb"}
    assert A.create_request("https://api.kie.ai", "KEY", body, None).json == body


@pytest.mark.parametrize(
    "body",
    [
        {"code": 200, "msg": "success", "data": {"taskId": "k1"}},
        {"code": 200, "msg": "success", "data": {"task_id": "k1"}},
        {"code": 200, "message": "success", "taskId": "k1"},
    ],
)
def test_parse_create(body: Any) -> None:
    assert A.parse_create(200, {}, js(body), NOW) == "k1"


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, {"code": 401, "msg": "unauthorized"}, PermanentProviderError),
        (200, {"code": 402, "msg": "insufficient credits"}, PermanentProviderError),
        (200, {"code": 404, "msg": "no such model"}, PermanentProviderError),
        (200, {"code": 455, "msg": "maintenance"}, TransientProviderError),
        (500, {"msg": "oops"}, TransientProviderError),
    ],
)
def test_parse_create_errors(status: int, body: Any, kind: Any) -> None:
    assert_api_error(lambda: A.parse_create(status, {}, js(body), NOW), kind, provider="kie")


def test_parse_create_without_task_id() -> None:
    body = js({"code": 200, "msg": "success", "data": {}})
    assert_adapter_error(lambda: A.parse_create(200, {}, body, NOW), "kie", "data.taskId")


def test_poll_plan_is_a_fallback_then_follows_kie_guidance() -> None:
    plan = A.poll_plan
    assert 30 <= plan.first <= 120  # kie calls back: a poll only when the callback is overdue
    assert 5 <= plan.next_gap(60) <= 10
    assert 15 <= plan.next_gap(600) <= 30


# --- signatures --------------------------------------------------------------------------

KEY = "hmac-key"


def headers(task_id: str = "t", stamp: int | str = T0, key: str = KEY) -> dict[str, str]:
    return {"X-Webhook-Timestamp": str(stamp), "X-Webhook-Signature": sign(key, task_id, stamp)}


def test_sign_is_base64_hmac_sha256_of_task_id_dot_timestamp() -> None:
    digest = hmac.new(b"k", b"task-9.1777636800", hashlib.sha256).digest()
    assert sign("k", "task-9", 1777636800) == base64.b64encode(digest).decode()
    assert sign("k", "task-9", "1777636800") == sign("k", "task-9", 1777636800)


@pytest.mark.parametrize(
    ("keys", "hdrs"),
    [
        ([KEY], headers()),
        ([KEY], {k.lower(): v for k, v in headers().items()}),
        ([KEY], {k.upper(): v for k, v in headers().items()}),
        (["new-key", KEY], headers()),  # rotation: the old key still verifies
        ([KEY], headers(stamp=T0 - 299)),
        ([KEY], headers(stamp=T0 + 299)),
    ],
)
def test_good_signatures(keys: list[str], hdrs: dict[str, str]) -> None:
    verify_signature(keys, "t", hdrs, NOW)


@pytest.mark.parametrize(
    ("keys", "hdrs"),
    [
        ([KEY], {}),
        ([KEY], {"X-Webhook-Signature": sign(KEY, "t", T0)}),
        ([KEY], {"X-Webhook-Timestamp": str(T0)}),
        ([KEY], headers(key="someone-else")),
        (["new-key"], headers()),  # the key was rotated out
        ([], headers()),
        ([KEY], headers(task_id="u")),  # signed for another task
        ([KEY], {**headers(), "X-Webhook-Signature": "AAAA"}),
        ([KEY], {**headers(), "X-Webhook-Signature": "é" * 44}),
        ([KEY], headers(stamp=T0 - 301)),  # stale
        ([KEY], headers(stamp=T0 + 301)),  # from the future
        ([KEY], headers(stamp="17e8")),
        ([KEY], headers(stamp=f"{T0}.5")),
        ([KEY], headers(stamp="")),
    ],
)
def test_bad_signatures(keys: list[str], hdrs: dict[str, str]) -> None:
    with pytest.raises(CallbackAuthError):
        verify_signature(keys, "t", hdrs, NOW)


def test_tolerance_is_configurable() -> None:
    stale = headers(stamp=T0 - 100)
    verify_signature([KEY], "t", stale, NOW)
    with pytest.raises(CallbackAuthError):
        verify_signature([KEY], "t", stale, NOW, tolerance=60)
    verify_signature([KEY], "t", stale, NOW + timedelta(seconds=50), tolerance=200)
