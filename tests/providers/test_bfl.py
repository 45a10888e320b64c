"""bfl: status values, `result.sample` links that live ten minutes, polling URLs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from afterimage.errors import TaskGoneError, TransientProviderError
from afterimage.models import Outcome, TaskRef
from afterimage.providers import adapter
from afterimage.providers.fields import same_site
from tests.providers.helpers import (
    NOW,
    assert_adapter_error,
    assert_api_error,
    bfl_task,
    check,
    js,
)

A = adapter("bfl")
BASE = "https://api.bfl.ai"
SAMPLE = "https://delivery-eu1.bfl.ai/results/t/sample.jpeg?se=x&sig=y"


def test_ready() -> None:
    for result in (A.parse_callback(js(bfl_task()), {}, NOW),
                   A.parse_status("t", 200, {}, js(bfl_task()), NOW)):
        check(result, "bfl", outcome=Outcome.SUCCEEDED, urls=(SAMPLE,), completed_at=NOW,
              expires_at=NOW + timedelta(minutes=10))


def test_webhook_may_name_the_task_as_task_id() -> None:
    body = {"task_id": "t", "status": "Ready", "result": {"sample": SAMPLE}}
    check(A.parse_callback(js(body), {}, NOW), "bfl", outcome=Outcome.SUCCEEDED)
    assert_adapter_error(
        lambda: A.parse_callback(js(body | {"id": "u"}), {}, NOW), "bfl", "id")


@pytest.mark.parametrize(("status", "outcome", "code"), [
    ("Pending", Outcome.PENDING, None),
    ("Error", Outcome.FAILED, "error"),
    ("Task not found", Outcome.FAILED, "task_not_found"),
    ("Request Moderated", Outcome.FAILED, "request_moderated"),
    ("Content Moderated", Outcome.FAILED, "content_moderated"),
])
def test_status_values(status: str, outcome: Outcome, code: str | None) -> None:
    body = js(bfl_task(status=status, result=None))
    check(A.parse_status("t", 200, {}, body, NOW), "bfl", outcome=outcome, urls=(),
          error_code=code)


@pytest.mark.parametrize(("over", "field"), [
    ({"status": "Done"}, "status"),
    ({"status": "ready"}, "status"),
    ({"result": None}, "result.sample"),
    ({"result": {"sample": None}}, "result.sample"),
    ({"result": {"sample": ""}}, "result.sample"),
])
def test_unknown_shapes_name_the_field(over: dict[str, object], field: str) -> None:
    assert_adapter_error(lambda: A.parse_status("t", 200, {}, js(bfl_task(**over)), NOW),
                         "bfl", field)


def test_error_replies() -> None:
    err = assert_api_error(
        lambda: A.parse_status("t", 429, {}, js({"detail": "slow", "retry_after": 12}), NOW),
        TransientProviderError, provider="bfl", retry_after=12.0)
    assert "slow" in str(err)
    assert_api_error(lambda: A.parse_status("t", 404, {}, js({"detail": "x"}), NOW),
                     TaskGoneError, provider="bfl")


def test_polling_url_and_submit() -> None:
    polling = "https://api.eu1.bfl.ai/v1/get_result?id=t"
    req = A.status_request_for(BASE, "K", TaskRef("t", "flux-pro-1.1", polling))
    assert (req.url, req.headers) == (polling, {"x-key": "K"})
    assert A.status_request_for(BASE, "K", TaskRef("t")).url == f"{BASE}/v1/get_result?id=t"
    assert_adapter_error(
        lambda: A.status_request_for(BASE, "K", TaskRef("t", None, "https://evil.example/x")),
        "bfl", "status_url")
    req = A.submit_request(BASE, "K", {"prompt": "cat"}, "https://me/cb", model="flux-pro-1.1",
                           webhook_secret="s3")
    assert req.url == f"{BASE}/v1/flux-pro-1.1"
    assert req.json == {"prompt": "cat", "webhook_url": "https://me/cb", "webhook_secret": "s3"}
    assert_adapter_error(lambda: A.submit_request(BASE, "K", {}, None), "bfl", "model")
    assert_adapter_error(lambda: A.submit_request(BASE, "K", {}, None, model="../x"),
                         "bfl", "model")
    created = A.parse_submit(200, {}, js({"id": "t", "polling_url": polling}), NOW)
    assert (created.task_id, created.status_url) == ("t", polling)


@pytest.mark.parametrize(("base", "url", "ok"), [
    ("https://api.bfl.ai", "https://api.bfl.ai/v1/get_result?id=1", True),
    ("https://api.bfl.ai", "https://api.eu1.bfl.ai/v1/get_result?id=1", True),
    ("https://api.bfl.ai", "https://bfl.ai/x", False),  # the parent itself is another host
    ("https://api.bfl.ai", "http://api.bfl.ai/x", False),
    ("https://api.bfl.ai", "https://api.bfl.ai.evil.example/x", False),
    ("https://api.bfl.ai", "https://evilbfl.ai/x", False),
    ("https://api.bfl.ai", "https://user:pw@api.bfl.ai/x", False),
    ("https://api.bfl.ai", "https://api.bfl.ai:8443/x", False),
    ("https://bfl.ai", "https://x.ai/y", False),  # a two-label host: only its own subdomains
    ("https://bfl.ai", "https://api.bfl.ai/y", True),
    ("http://127.0.0.1:9090/bfl", "http://127.0.0.1:9090/bfl/v1/get_result?id=1", True),
    ("http://127.0.0.1:9090/bfl", "http://127.0.0.2:9090/x", False),
    ("http://127.0.0.1:9090/bfl", "http://127.0.0.1:9091/x", False),
    ("https://api.bfl.ai", "not a url", False),
])
def test_same_site(base: str, url: str, ok: bool) -> None:
    assert same_site(base, url) is ok
