"""The callback route over real HTTP against a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from afterimage import keys
from afterimage.providers import ADAPTERS
from afterimage.settings import Secret, Settings
from afterimage.tokens import callback_token
from receiver import create_app
from tests.support import RedisServer, ServerThread

SECRET = "s3cret-one"


def settings_for(redis_url: str, **extra: object) -> Settings:
    return Settings(
        redis_url=redis_url, secrets=(Secret(SECRET), Secret("old-secret")),
        api_token=Secret("api-token"), **extra,  # type: ignore[arg-type]
    )


def completed(task_id: str = "task-unified-1") -> dict[str, object]:
    return {"id": task_id, "object": "image.generation.task", "model": "gpt-image-2",
            "status": "completed", "progress": 100, "created": 1760000000,
            "results": ["https://cdn.example.com/img/1.png?sig=abc"]}


@pytest.fixture()
def receiver(redis_url: str) -> Iterator[str]:
    with ServerThread(create_app(settings_for(redis_url), check_storage=False)) as server:
        yield server.url


def cb_url(base: str, secret: str = SECRET, provider: str = "evolink") -> str:
    return f"{base}/callbacks/{provider}/{callback_token(secret, provider)}"


def test_callback_is_recorded_with_its_dispatch_entry(receiver: str, redis_url: str) -> None:
    r = httpx.post(cb_url(receiver), json=completed())
    assert r.status_code == 200
    db = redis.Redis.from_url(redis_url)
    record = db.hgetall(keys.task("evolink", "task-unified-1"))
    assert record[b"st"] == b"queued"
    assert json.loads(record[b"urls"]) == ["https://cdn.example.com/img/1.png?sig=abc"]
    assert db.xlen(keys.INBOX) == 1


def test_duplicates_create_nothing_new(receiver: str, redis_url: str) -> None:
    for _ in range(3):
        assert httpx.post(cb_url(receiver), json=completed()).status_code == 200
    db = redis.Redis.from_url(redis_url)
    assert db.xlen(keys.INBOX) == 1
    assert db.hget(keys.task("evolink", "task-unified-1"), "dup") == b"2"


def test_rotated_secret_still_verifies(receiver: str) -> None:
    assert httpx.post(cb_url(receiver, "old-secret"), json=completed()).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code"),
    [
        ("/callbacks/evolink/not-the-token", b"{}", {}, 401, "unauthorized"),
        ("/callbacks/nosuch/whatever", b"{}", {}, 404, "unknown_provider"),
        ("/callbacks/apimart/whatever", b"{}", {}, 404, "unknown_provider"),
        ("GOOD", b"this is not json", {}, 400, "not_json"),
        ("GOOD", b"[" * 50_000 + b"]" * 50_000, {}, 400, "not_json"),
        ("GOOD", json.dumps(completed()).encode(), {"content-type": "text/plain"}, 415,
         "unsupported_media_type"),
        ("GOOD", json.dumps(completed()).encode(),
         {"content-type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ("GOOD", b'{"id": 5, "status": []}', {}, 422, "unreadable_payload"),
        ("GOOD", b'{"id": "x", "status": "exploded"}', {}, 422, "unreadable_payload"),
        ("GOOD", b"[1, 2]", {}, 422, "unreadable_payload"),
        ("GOOD", b"x" * (1024 * 1024 + 1), {}, 413, "body_too_large"),
    ],
)
def test_bad_callbacks_get_documented_codes(
    receiver: str, redis_url: str, path: str, body: bytes, headers: dict[str, str],
    status: int, code: str,
) -> None:
    url = cb_url(receiver) if path == "GOOD" else receiver + path
    r = httpx.post(url, content=body, headers={"content-type": "application/json", **headers})
    assert r.status_code == status
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]
    assert redis.Redis.from_url(redis_url).xlen(keys.INBOX) == 0


CALLBACK_PROVIDERS = [name for name, a in ADAPTERS.items() if a.has_callbacks]


@pytest.mark.parametrize("provider", CALLBACK_PROVIDERS)
@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"id": "t", "status": "comp', "application/json", 400, "not_json"),
        (b"\xff\xfe not utf-8", "application/json", 400, "not_json"),
        (b"[" * 50_000 + b"]" * 50_000, "application/json", 400, "not_json"),
        (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, None, 400, "not_json"),
        (b"[1, 2]", "application/json", 422, "unreadable_payload"),
        (b'{"unrelated": true}', "application/json; charset=utf-8", 422, "unreadable_payload"),
        (b'{"unrelated": true}', "application/vnd.provider.event+json", 422,
         "unreadable_payload"),
        (b'{"unrelated": true}', "text/plain", 415, "unsupported_media_type"),
        (b'{"unrelated": true}', "text/json", 415, "unsupported_media_type"),
        (b"not json at all", "multipart/form-data; boundary=x", 415, "unsupported_media_type"),
    ],
)
def test_every_provider_answers_400_415_422_by_the_same_rules(
    receiver: str, redis_url: str, provider: str, body: bytes, content_type: str | None,
    status: int, code: str,
) -> None:
    """415 speaks of a declared media type only, 400 of bytes that are not JSON (malformed or
    nested past the parser's limit), 422 of JSON the adapter cannot read."""
    headers = {} if content_type is None else {"content-type": content_type}
    r = httpx.post(cb_url(receiver, provider=provider), content=body, headers=headers)
    assert ("content-type" in r.request.headers) == (content_type is not None)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert r.json()["error"]["message"]
    assert redis.Redis.from_url(redis_url).xlen(keys.INBOX) == 0


@pytest.mark.parametrize("content_type", [None, "", "application/json",
                                          "Application/JSON; charset=UTF-8",
                                          "application/cloudevents+json"])
def test_json_is_read_when_declared_so_or_not_declared(
    receiver: str, redis_url: str, content_type: str | None,
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    r = httpx.post(cb_url(receiver), content=json.dumps(completed()).encode(), headers=headers)
    assert ("content-type" in r.request.headers) == (content_type is not None)
    assert r.status_code == 200, r.text
    assert redis.Redis.from_url(redis_url).xlen(keys.INBOX) == 1


def test_chunked_body_over_the_limit_is_refused_while_streaming(receiver: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MiB in all, no Content-Length

    r = httpx.post(cb_url(receiver), content=chunks())
    assert r.status_code == 413


def test_redis_down_answers_503_and_loses_nothing_after(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r").start()
    app = create_app(settings_for(server.url), check_storage=False)
    with ServerThread(app) as http:
        assert httpx.post(cb_url(http.url), json=completed("before")).status_code == 200
        server.stop()
        r = httpx.post(cb_url(http.url), json=completed("during"))
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "redis_unavailable"
        server.start()
        assert httpx.post(cb_url(http.url), json=completed("after")).status_code == 200
        db = redis.Redis.from_url(server.url)
        states = {t: db.hget(keys.task("evolink", t), "st") for t in ("before", "during", "after")}
        assert states == {"before": b"queued", "during": None, "after": b"queued"}
    server.stop()
