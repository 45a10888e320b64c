"""Property-based: whatever arrives at the callback route over real HTTP (any bytes, any JSON,
provider-shaped JSON, any path, any signature headers), the answer is 200 for what an adapter
genuinely accepts or a 4xx with a JSON error body — never a 5xx, never an unhandled error."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afterimage.providers import NAMES
from afterimage.settings import Secret
from afterimage.tokens import callback_token
from receiver import create_app
from receiver.callbacks import OK
from tests.receiver.test_callbacks import SECRET, settings_for
from tests.support import ServerThread

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
REFUSALS = {400, 401, 404, 405, 413, 415, 422}
KEYS = ["code", "msg", "message", "data", "task_id", "taskId", "id", "status", "state",
        "result", "results", "resultJson", "resultUrls", "media_urls", "images", "url", "error",
        "failCode", "failMsg", "completeTime", "completed_at", "expires_at", "model", "progress"]
WORDS = ["success", "completed", "failed", "fail", "pending", "processing", "SUCCESS", "", "t",
         "https://cdn.example.com/a.png", "http://169.254.169.254/", "../../x", "\x00", "a/b"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                    st.sampled_from(WORDS), st.sampled_from([200, 0, -1, 10**40, 1e308]))
any_json = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
shaped = st.recursive(scalars | any_json.map(json.dumps), lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(KEYS), inner, max_size=8), max_leaves=30)
providers = st.sampled_from(NAMES)
headers = st.dictionaries(
    st.sampled_from(["content-type", "x-webhook-timestamp", "x-webhook-signature",
                     "content-encoding"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
    .map(str.strip),  # a header value cannot start or end with a space
    max_size=4)


@pytest.fixture()
def client(redis_url: str) -> Iterator[httpx.Client]:
    app = create_app(settings_for(redis_url, webhook_secrets={"kie": (Secret("kie-key"),)}),
                     check_storage=False)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


@pytest.fixture(autouse=True)
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.ERROR, logger="afterimage.receiver"):
        yield
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def path(provider: str, token: str | None = None) -> str:
    token = callback_token(SECRET, provider) if token is None else token
    return f"/callbacks/{quote(provider, safe='')}/{quote(token, safe='')}"


def check(reply: httpx.Response) -> None:
    assert reply.status_code < 500, reply.text
    if reply.status_code == 200:
        assert reply.content == OK
        return
    assert reply.status_code in REFUSALS, reply.text
    error: Any = reply.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]


@FUZZ
@given(provider=providers, body=st.binary(max_size=4096), extra=headers)
def test_any_bytes(client: httpx.Client, provider: str, body: bytes,
                   extra: dict[str, str]) -> None:
    check(client.post(path(provider), content=body, headers=extra))


@FUZZ
@given(provider=providers, doc=any_json | shaped, extra=headers)
def test_any_json(client: httpx.Client, provider: str, doc: Any, extra: dict[str, str]) -> None:
    body = json.dumps(doc, allow_nan=True).encode()
    check(client.post(path(provider), content=body,
                      headers={"content-type": "application/json", **extra}))


@FUZZ
@given(provider=st.text(max_size=12) | providers, token=st.text(max_size=60),
       body=st.binary(max_size=256))
def test_any_path(client: httpx.Client, provider: str, token: str, body: bytes) -> None:
    if not provider or not token:
        return  # an empty segment is another route (405/404), covered by the router
    check(client.post(path(provider, token), content=body))
