"""Helpers adapters share to read payload fields and envelopes. Performs no I/O."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from afterimage.errors import (
    AdapterError,
    PermanentProviderError,
    ProviderApiError,
    ProviderRefusedInputError,
    TaskGoneError,
    TransientProviderError,
)
from afterimage.models import Outcome, ProviderResult
from afterimage.providers.base import (
    LINK_LIFETIME,
    REFUSED_INPUT,
    body_message,
    epoch,
    error_for_status,
    load_json,
    retry_after,
    validate,
)


class ErrorInfo(BaseModel):
    """A task's `error` object, as most providers send it."""

    model_config = ConfigDict(extra="allow")
    code: str | int | None = None
    type: str | None = None
    message: str | None = None


def failure(error: ErrorInfo | str | None, status: str) -> tuple[str, str]:
    """(error_code, error_message) of a failed task: the provider's own, else from `status`."""
    err = error if isinstance(error, ErrorInfo) else ErrorInfo(message=error)
    code = err.code if err.code not in (None, "") else err.type
    return str(code or status), err.message or f"task {status}"


def http_error(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    gone: bool = True,
) -> ProviderApiError:
    """`error_for_status` with the message and code read from the body."""
    return error_for_status(
        provider,
        status,
        body_message(body),
        headers,
        now,
        provider_code=body_code(body),
        gone_statuses=(404,) if gone else (),
    )


def body_code(body: bytes) -> str | None:
    """The provider's own code from an error body (`error.code`, `error.type` or `code`)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    for value in (
        *((err.get("code"), err.get("type")) if isinstance(err, dict) else ()),
        data.get("code"),
    ):
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return str(value)
    return None


def endpoint(base_url: str, path: str, task_id: str = "") -> str:
    """`base_url` + `path`, with `task_id` (if any) appended as one quoted path segment."""
    return base_url.rstrip("/") + path + quote(task_id, safe="")


def same_site(base_url: str, url: str) -> bool:
    """Is `url` on the API of `base_url`: the same scheme, and its host (and port), or a host
    under the base host's parent domain (`api.eu.bfl.ai` for `https://api.bfl.ai`)? Where an
    API key may be sent."""
    try:
        base, got = urlsplit(base_url), urlsplit(url)
        base_port, got_port = base.port, got.port
    except ValueError:
        return False
    if got.scheme.lower() != base.scheme.lower() or got.username or got.password:
        return False
    host, base_host = (got.hostname or "").lower(), (base.hostname or "").lower()
    if not host or not base_host:
        return False
    if (host, got_port) == (base_host, base_port):
        return True
    labels = base_host.split(".")
    if got_port != base_port or base_host.replace(".", "").isdigit() or ":" in base_host:
        return False  # an IP address has no parent domain
    parent = ".".join(labels[1:]) if len(labels) > 2 else base_host
    return host.endswith("." + parent)


def timestamp(provider: str, field: str, value: object, *, millis: bool = False) -> datetime | None:
    """`epoch` for a payload field: None, "" and 0 are absent; anything unreadable (or outside
    years 2000-9000) is an AdapterError."""
    if value is None or value == "" or (value == 0 and not isinstance(value, bool)):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise AdapterError(provider, field, f"not a time: {value!r:.80}")
    try:
        moment = epoch(value, millis=millis)
    except (ValueError, OverflowError, OSError) as exc:
        raise AdapterError(provider, field, f"not a time: {value!r:.80}") from exc
    if moment is None or moment.timestamp() == 0:
        return None
    if not 2000 <= moment.year <= 9000:
        raise AdapterError(provider, field, f"not a plausible time: {value!r:.80}")
    return moment


def lifetime(
    completed: datetime | None, expires: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """(completed_at, expires_at): the payload's, else `now` and completion + LINK_LIFETIME."""
    done = completed or now
    return done, expires or done + LINK_LIFETIME


class CreatedId(BaseModel):
    """A create reply that names the new task as `id`."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)


def created_id(
    provider: str, status: int, headers: Mapping[str, str], body: bytes, now: datetime
) -> str:
    """The task id of a create reply `{"id": ...}`, or the provider's error."""
    if not 200 <= status < 300:
        raise http_error(provider, status, headers, body, now, gone=False)
    return validate(provider, CreatedId, load_json(provider, body)).id


def outcome_of(
    provider: str, states: Mapping[str, Outcome], status: str, field: str = "status"
) -> Outcome:
    """The normalized outcome of a provider's status value; an unknown one is an error that
    names `field`."""
    found = states.get(status)
    if found is None:
        raise AdapterError(provider, field, f"unknown {field.rsplit('.', 1)[-1]} {status!r:.80}")
    return found


def failed(
    provider: str, task_id: str, status: str, error: ErrorInfo | str | None,
    model: str | None, completed: datetime | None = None,
) -> ProviderResult:
    """A failed task's result, with the provider's own error code and message."""
    code, message = failure(error, status)
    return ProviderResult(provider, task_id, Outcome.FAILED, error_code=code,
                          error_message=message, completed_at=completed, model=model)


def succeeded(
    provider: str, task_id: str, urls: tuple[str, ...], model: str | None, now: datetime,
    completed: datetime | None = None, expires: datetime | None = None,
) -> ProviderResult:
    """A succeeded task's result; completion and link expiry default as `lifetime` says."""
    done, expires_at = lifetime(completed, expires, now)
    return ProviderResult(provider, task_id, Outcome.SUCCEEDED, urls, completed_at=done,
                          expires_at=expires_at, model=model)


def result_urls(provider: str, field: str, value: object) -> tuple[str, ...]:
    """The result URLs of a succeeded task (one string or a list): at least one, each a
    non-empty string. Whether a URL may be fetched (scheme, address, allow-list) is decided
    once, by the download's URL policy (worker/download.py): a task whose URLs are refused
    there ends `archive_failed` with `unsafe_url`, instead of its result being refused here."""
    urls = [value] if isinstance(value, str) else value
    if not isinstance(urls, list) or not urls:
        raise AdapterError(provider, field, "a succeeded task carries no result URLs")
    for i, url in enumerate(urls):
        if not isinstance(url, str) or not url.strip():
            raise AdapterError(provider, f"{field}[{i}]", f"not a URL: {url!r:.100}")
    return tuple(url.strip() for url in urls)


def same_task(provider: str, field: str, asked: str, got: str | None) -> str:
    """The task id a status reply is about; it must be the one asked for."""
    if got is not None and got != asked:
        raise AdapterError(provider, field, f"reply is about task {got!r:.80}, not {asked!r:.80}")
    return asked


def envelope_code(body: bytes) -> int | None:
    """The `code` of a `{"code", "message"|"msg", "data"}` envelope (crun, kie), if any."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    code = data.get("code") if isinstance(data, dict) else None
    if isinstance(code, str) and code.isascii() and code.isdigit() and len(code) < 10:
        return int(code)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def check_envelope(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    gone: bool,
) -> None:
    """Raise for an error reply of an API whose replies carry their own `code` (crun, kie),
    even under HTTP 200: 429, 455 and 5xx other than 501/505 are transient, 404 means the
    task is gone (when `gone`), 400/422 refuse the request itself, every other code is
    permanent. No `code`: the HTTP status decides."""
    code = envelope_code(body)
    message = body_message(body)
    if code is None or code == 200:
        if not 200 <= status < 300:
            raise http_error(provider, status, headers, body, now, gone=gone)
        return
    kwargs: dict[str, Any] = {"status": status, "provider_code": str(code)}
    if code in (429, 455) or (code >= 500 and code not in (501, 505)):
        raise TransientProviderError(
            provider, message, retry_after=retry_after(headers, now), **kwargs
        )
    if code == 404 and gone:
        raise TaskGoneError(provider, message, **kwargs)
    if code in REFUSED_INPUT:
        raise ProviderRefusedInputError(provider, message, **kwargs)
    raise PermanentProviderError(provider, message, **kwargs)


def eta(now: datetime, created: object, progress: object = None,
        estimated: object = None) -> float | None:
    """Seconds until a pending task should finish, from the provider's own hints: `estimated`
    seconds of work counted from `created`, else `progress` (percent) extrapolated from the
    time since `created`. None when the hints are absent, unreadable or already overdue: a
    hint never fails a reply."""
    try:
        start = timestamp("", "", created)
    except AdapterError:
        return None
    if start is None or (elapsed := (now - start).total_seconds()) < 0:
        return None
    left = None
    if (work := _number(estimated)) is not None and work > 0:
        left = work - elapsed
    elif (done := _number(progress)) is not None and 5 <= done < 100:
        left = elapsed * (100 - done) / done
    return left if left is not None and 0 < left < 86400 else None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
