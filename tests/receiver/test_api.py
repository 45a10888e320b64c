"""The /v1 API over real HTTP against a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from afterimage.settings import Secret
from receiver import create_app
from tests.receiver.test_callbacks import SECRET, cb_url, completed, settings_for
from tests.support import ServerThread, free_port

AUTH = {"Authorization": "Bearer api-token"}


@pytest.fixture()
def api(redis_url: str) -> Iterator[httpx.Client]:
    app = create_app(settings_for(redis_url), check_storage=False)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, headers=AUTH) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/tasks"), ("POST", "/v1/tasks"), ("GET", "/v1/tasks/evolink/x"),
     ("GET", "/v1/providers/evolink/callback-url")],
)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", "api-token", "Basic api-token"])
def test_api_refuses_missing_or_wrong_tokens(
    api: httpx.Client, method: str, path: str, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    r = httpx.request(method, str(api.base_url) + path, headers=headers, json={})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"


def test_callback_url_matches_the_token_the_route_accepts(api: httpx.Client) -> None:
    url = api.get("/v1/providers/evolink/callback-url").json()["callback_url"]
    assert url == cb_url("http://127.0.0.1:8080", SECRET)
    assert api.get("/v1/providers/nosuch/callback-url").status_code == 404


def test_track_is_201_then_200_and_keeps_metadata(api: httpx.Client) -> None:
    body = {"provider": "evolink", "task_id": "t-42", "metadata": {"user": "u1"}}
    first = api.post("/v1/tasks", json=body)
    assert first.status_code == 201
    assert first.json()["state"] == "pending"
    assert first.json()["metadata"] == {"user": "u1"}
    again = api.post("/v1/tasks", json=body)
    assert again.status_code == 200
    assert again.json()["created_at"] == first.json()["created_at"]
    got = api.get("/v1/tasks/evolink/t-42").json()
    assert got["task_id"] == "t-42"
    assert got["images"] == []


@pytest.mark.parametrize(
    ("body", "status"),
    [({"provider": "evolink"}, 422), ({"provider": "nosuch", "task_id": "a"}, 404),
     ({"provider": "evolink", "task_id": ""}, 422),
     ({"provider": "evolink", "task_id": "a", "metadata": []}, 422)],
)
def test_track_rejects_bad_requests(api: httpx.Client, body: object, status: int) -> None:
    r = api.post("/v1/tasks", json=body)
    assert r.status_code == status
    assert "error" in r.json()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [(b"nope", None, 400, "not_json"),
     (b"[" * 50_000 + b"]" * 50_000, "application/json", 400, "not_json"),
     (b'{"provider": "evolink", "task_id": "t"}', "text/plain", 415, "unsupported_media_type"),
     (b"provider=evolink&task_id=t", "application/x-www-form-urlencoded", 415,
      "unsupported_media_type"),
     (b"[]", "application/json", 422, "invalid_request")],
)
def test_track_answers_400_415_422_as_callbacks_do(
    api: httpx.Client, body: bytes, content_type: str | None, status: int, code: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = api.post("/v1/tasks", content=body, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text


def test_unknown_task_is_404(api: httpx.Client) -> None:
    r = api.get("/v1/tasks/evolink/missing")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "task_not_found"


def test_listing_filters_by_state_and_provider_and_pages(api: httpx.Client) -> None:
    for i in range(5):
        api.post("/v1/tasks", json={"provider": "evolink", "task_id": f"p{i}"})
    base = str(api.base_url)
    httpx.post(cb_url(base), json=completed("done-1"))
    pending = api.get("/v1/tasks", params={"state": "pending", "limit": 3}).json()
    assert len(pending["tasks"]) == 3
    assert pending["next_cursor"] == "3"
    rest = api.get("/v1/tasks", params={"state": "pending", "limit": 3, "cursor": 3}).json()
    assert len(rest["tasks"]) == 2
    assert rest["next_cursor"] is None
    ids = {t["task_id"] for t in pending["tasks"] + rest["tasks"]}
    assert ids == {f"p{i}" for i in range(5)}
    queued = api.get("/v1/tasks", params={"state": "queued", "provider": "evolink"}).json()
    assert [t["task_id"] for t in queued["tasks"]] == ["done-1"]
    assert api.get("/v1/tasks", params={"state": "bogus"}).status_code == 422


def test_health_and_readiness(api: httpx.Client) -> None:
    assert httpx.get(str(api.base_url) + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(str(api.base_url) + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"] == "ok"


def test_a_provider_that_cannot_be_reached_is_a_502(redis_url: str) -> None:
    """The provider's API failing us is a gateway error, whatever the caller sent."""
    from afterimage.providers import ADAPTERS

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = settings_for(
        redis_url, api_keys={"evolink": Secret("k")},
        base_urls={**{n: a.default_base_url for n, a in ADAPTERS.items()}, "evolink": closed})
    with ServerThread(create_app(settings, check_storage=False)) as server:
        r = httpx.post(f"{server.url}/v1/providers/evolink/generations", headers=AUTH,
                       json={"model": "gpt-image-2", "prompt": "x"})
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert (error["code"], error["provider"], error["provider_status"]) == (
        "provider_unavailable", "evolink", None)


def test_readiness_and_metrics_see_an_unreachable_object_store(
    redis_url: str, tmp_path: Path
) -> None:
    """/readyz and the afterimage_storage_up gauge make the same check of the object store."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    app = create_app(settings_for(redis_url, storage_url=f"file://{blocker}/archive"))
    with ServerThread(app) as server:
        assert httpx.get(server.url + "/readyz").status_code == 503
        assert "afterimage_storage_up 0.0" in httpx.get(server.url + "/metrics").text.splitlines()
        blocker.unlink()
        assert httpx.get(server.url + "/readyz").status_code == 200
        assert "afterimage_storage_up 1.0" in httpx.get(server.url + "/metrics").text.splitlines()


def test_fal_is_tracked_only_with_its_app_id(api: httpx.Client, redis_url: str) -> None:
    import redis

    r = api.post("/v1/tasks", json={"provider": "fal", "task_id": "f-1"})
    assert r.status_code == 422 and "model" in r.json()["error"]["message"]
    for bad in ("flux", "fal-ai/../x", 42):
        r = api.post("/v1/tasks", json={"provider": "fal", "task_id": "f-1", "model": bad})
        assert r.status_code == 422, bad
    r = api.post("/v1/tasks", json={"provider": "fal", "task_id": "f-1",
                                     "model": "fal-ai/flux/dev"})
    assert r.status_code == 201
    stored = redis.Redis.from_url(redis_url).hget("ai:t:fal:f-1", "mdl")
    assert stored == b"fal-ai/flux/dev"
    r = api.post("/v1/providers/fal/generations", json={"prompt": "x"})  # no ?model=
    assert r.status_code == 422 and "model" in r.json()["error"]["message"]


@pytest.mark.parametrize(("provider", "url", "status"), [
    ("bfl", "https://api.bfl.ai/v1/get_result?id=b-1", 201),
    ("bfl", "https://api.eu1.bfl.ai/v1/get_result?id=b-1", 201),
    ("bfl", "https://evil.example/v1/get_result?id=b-1", 422),
    ("bfl", "http://api.bfl.ai/v1/get_result?id=b-1", 422),
    ("bfl", "https://api.bfl.ai.evil.example/x", 422),
    ("evolink", "https://api.evolink.ai/v1/tasks/b-1", 422),  # takes no status_url
])
def test_status_url_must_be_on_the_providers_site(
    api: httpx.Client, provider: str, url: str, status: int
) -> None:
    r = api.post("/v1/tasks", json={"provider": provider, "task_id": "b-1", "status_url": url})
    assert r.status_code == status, r.text
    if status == 422:
        assert "status_url" in r.json()["error"]["message"]
        assert api.get(f"/v1/tasks/{provider}/b-1").status_code == 404


def test_bfl_callback_url_comes_with_the_secret_to_echo(api: httpx.Client) -> None:
    got = api.get("/v1/providers/bfl/callback-url").json()
    assert set(got) == {"callback_url", "webhook_secret"} and len(got["webhook_secret"]) >= 32
    assert set(api.get("/v1/providers/replicate/callback-url").json()) == {"callback_url"}
