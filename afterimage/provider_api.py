"""Sending the requests provider adapters build, and handing the replies back to them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from afterimage.errors import AdapterError, ConfigError, TransientProviderError
from afterimage.models import Created, HttpRequest, ProviderResult, TaskRef
from afterimage.providers import adapter
from afterimage.settings import Settings
from afterimage.tokens import webhook_secret

TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def new_client() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT, follow_redirects=False)


def send(client: httpx.Client, provider: str, req: HttpRequest) -> httpx.Response:
    """Send one request; network failures become TransientProviderError."""
    try:
        return client.request(req.method, req.url, headers=dict(req.headers), json=req.json)
    except httpx.HTTPError as exc:
        raise TransientProviderError(provider, f"{type(exc).__name__}: {exc}") from exc


def _key(settings: Settings, provider: str) -> str:
    key = settings.api_keys.get(provider)
    if key is None:
        raise ConfigError(f"AFTERIMAGE_{provider.upper()}_API_KEY is not set")
    return key


def _base(settings: Settings, provider: str) -> str:
    return settings.base_urls.get(provider) or adapter(provider).default_base_url


def query_status(
    settings: Settings, client: httpx.Client, provider: str, task: str | TaskRef
) -> ProviderResult:
    """Ask the provider about one task (and, where the result lies apart, fetch it)."""
    a = adapter(provider)
    ref = task if isinstance(task, TaskRef) else TaskRef(task)
    base, key = _base(settings, provider), _key(settings, provider)
    resp = send(client, provider, a.status_request_for(base, key, ref))
    now = datetime.now(UTC)
    result = a.parse_status(ref.task_id, resp.status_code, resp.headers, resp.content, now)
    if result.fetch:
        resp = send(client, provider, a.result_request(base, key, ref))
        now = datetime.now(UTC)
        result = a.parse_result(ref.task_id, resp.status_code, resp.headers, resp.content, now)
    return result


def query_batch(
    settings: Settings, client: httpx.Client, provider: str, task_ids: Sequence[str]
) -> list[ProviderResult] | None:
    """Ask about many tasks at once; None when the reply's shape is unknown."""
    a = adapter(provider)
    req = a.batch_request(_base(settings, provider), _key(settings, provider), task_ids)
    resp = send(client, provider, req)
    return a.parse_batch(task_ids, resp.status_code, resp.headers, resp.content, datetime.now(UTC))


def create(
    settings: Settings,
    client: httpx.Client,
    provider: str,
    body: Mapping[str, Any],
    callback_url: str | None,
    model: str | None = None,
) -> tuple[Created, Any]:
    """Forward a create request (with our callback URL, and the webhook secret we hand out
    where the provider echoes one); return what it created and the provider's reply."""
    a = adapter(provider)
    url = callback_url if a.has_callbacks else None
    secret = webhook_secret(settings.secrets[0], a.name) \
        if a.hands_out_secret and settings.secrets else None
    base = _base(settings, provider)
    req = a.submit_request(base, _key(settings, provider), body, url, model=model,
                           webhook_secret=secret)
    resp = send(client, provider, req)
    created = a.parse_submit(resp.status_code, resp.headers, resp.content, datetime.now(UTC))
    if (problem := a.status_url_problem(base, created.status_url)) is not None:
        raise AdapterError(a.name, "polling_url", problem)
    try:
        reply: Any = resp.json()
    except ValueError:
        reply = resp.text
    return created, reply
