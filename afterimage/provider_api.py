"""Sending the requests provider adapters build, and handing the replies back to them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from afterimage.errors import ConfigError, TransientProviderError
from afterimage.models import HttpRequest, ProviderResult
from afterimage.providers import adapter
from afterimage.settings import Settings

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


def query_status(
    settings: Settings, client: httpx.Client, provider: str, task_id: str
) -> ProviderResult:
    """Ask the provider about one task."""
    a = adapter(provider)
    req = a.status_request(settings.base_urls[provider], _key(settings, provider), task_id)
    resp = send(client, provider, req)
    return a.parse_status(task_id, resp.status_code, resp.headers, resp.content, datetime.now(UTC))


def query_batch(
    settings: Settings, client: httpx.Client, provider: str, task_ids: Sequence[str]
) -> list[ProviderResult] | None:
    """Ask about many tasks at once; None when the reply's shape is unknown."""
    a = adapter(provider)
    req = a.batch_request(settings.base_urls[provider], _key(settings, provider), task_ids)
    resp = send(client, provider, req)
    return a.parse_batch(task_ids, resp.status_code, resp.headers, resp.content, datetime.now(UTC))


def create(
    settings: Settings,
    client: httpx.Client,
    provider: str,
    body: Mapping[str, Any],
    callback_url: str | None,
) -> tuple[str, Any]:
    """Forward a create request; return the task id and the provider's reply."""
    a = adapter(provider)
    url = callback_url if a.has_callbacks else None
    req = a.create_request(settings.base_urls[provider], _key(settings, provider), body, url)
    resp = send(client, provider, req)
    task_id = a.parse_create(resp.status_code, resp.headers, resp.content, datetime.now(UTC))
    try:
        reply: Any = resp.json()
    except ValueError:
        reply = resp.text
    return task_id, reply
