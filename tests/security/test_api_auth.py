"""Every /v1 route refuses a missing or wrong bearer token with a JSON 401, before it reads
the body or touches a task."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
import redis

from receiver import create_app
from tests.receiver.test_callbacks import settings_for
from tests.support import ServerThread

TOKEN = "api-token"  # what settings_for configures
ROUTES = [
    ("GET", "/v1/providers/evolink/callback-url"),
    ("POST", "/v1/tasks"),
    ("GET", "/v1/tasks"),
    ("GET", "/v1/tasks/evolink/t1"),
    ("POST", "/v1/tasks/evolink/t1/replay"),
    ("POST", "/v1/replay"),
    ("POST", "/v1/providers/evolink/generations"),
]
WRONG = [
    None,
    "",
    "Bearer",
    "Bearer wrong",
    TOKEN,
    f"Bearer {TOKEN[:-1]}",
    f"Bearer {TOKEN}x",
    f"Bearer  {TOKEN}",
    f"Token {TOKEN}",
    "Basic " + base64.b64encode(f"admin:{TOKEN}".encode()).decode(),
    "Bearer " + "A" * 8192,
]


@pytest.fixture()
def base(redis_url: str) -> Iterator[str]:
    with ServerThread(create_app(settings_for(redis_url), check_storage=False)) as server:
        yield server.url


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("auth", WRONG)
def test_a_missing_or_wrong_token_is_401_and_changes_nothing(
    base: str, redis_url: str, method: str, path: str, auth: str | None
) -> None:
    headers = {} if auth is None else {"Authorization": auth}
    body = {"provider": "evolink", "task_id": "t1", "state": "archive_failed", "prompt": "x"}
    reply = httpx.request(method, base + path, headers=headers, json=body)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "unauthorized"
    assert not redis.Redis.from_url(redis_url).keys("ai:t:*")


def test_the_right_token_is_let_in(base: str) -> None:
    reply = httpx.post(base + "/v1/tasks", json={"provider": "evolink", "task_id": "t1"},
                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 201
