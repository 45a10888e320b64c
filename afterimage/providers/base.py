"""The shape every provider adapter has, and helpers they share. Performs no I/O.

An adapter turns a provider's bytes into a `ProviderResult` and builds the requests the
network layer sends. Every malformed input raises `AdapterError` naming provider and field;
every error reply becomes a `ProviderApiError` subclass.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from afterimage.errors import (
    AdapterError,
    NotJsonError,
    PermanentProviderError,
    ProviderApiError,
    ProviderRefusedInputError,
    TaskGoneError,
    TransientProviderError,
)
from afterimage.models import Created, HttpRequest, ProviderResult, TaskRef
from afterimage.providers.signing import Trust, VerifyKeys

M = TypeVar("M", bound=BaseModel)

LINK_LIFETIME = timedelta(hours=24)
REFUSED_INPUT = (400, 422)  # statuses (or envelope codes) that refuse the request's own fields


@dataclass(frozen=True)
class PollPlan:
    """When to ask: the first query after `first`, then each gap in `steps`, repeating the last.
    `earliest` and `min_gap` are the provider's documented earliest first query and shortest
    gap, the floor of a learned schedule (afterimage.poll_plan); by default `first` and the
    shortest of `steps`."""

    first: float
    steps: tuple[tuple[float, float], ...]  # (until task age in s, gap in s)
    earliest: float | None = None
    min_gap: float | None = None

    def next_gap(self, age: float) -> float:
        for until, gap in self.steps:
            if age < until:
                return gap
        return self.steps[-1][1]


class ProviderAdapter(ABC):
    """One provider's API, as data in and data out.

    Callback signatures are part of it: `verify_callback` checks one callback with the keys
    the receiver holds for the provider. Those come from the setting named by
    `keys_setting`, from a secret afterimage derives and hands out (`hands_out_secret`),
    or from the request `keys_request` builds (fetched by the receiver, cached for
    `keys_max_age` seconds and fetched again, rate-limited, on an UnknownKeyError).
    """

    name: ClassVar[str]
    has_callbacks: ClassVar[bool]
    signs_callbacks: ClassVar[bool] = False
    https_callbacks_only: ClassVar[bool] = False  # refuses a callback URL that is not https
    supports_batch: ClassVar[bool] = False
    default_base_url: ClassVar[str]
    poll_plan: ClassVar[PollPlan]
    link_lifetime: ClassVar[timedelta] = LINK_LIFETIME  # result links live this long
    needs_model: ClassVar[bool] = False  # a task is only found with its model (app id)
    uses_status_url: ClassVar[bool] = False  # a task is polled at the URL its create gave
    keys_setting: ClassVar[str | None] = None  # AFTERIMAGE_<this>: configured secrets
    hands_out_secret: ClassVar[bool] = False  # afterimage derives a secret, given at create
    keys_url_setting: ClassVar[str | None] = None  # AFTERIMAGE_<this>: where public keys lie
    default_keys_url: ClassVar[str | None] = None
    keys_max_age: ClassVar[float] = 24 * 3600.0
    signature_required: ClassVar[bool] = False  # callbacks are refused without keys to check

    def verify_callback(
        self, body: bytes, headers: Mapping[str, str], task_id: str, keys: VerifyKeys,
        now: datetime,
    ) -> Trust:
        """Check a callback's signature with `keys`; raise CallbackAuthError when it fails
        (UnknownKeyError when fresher keys might verify it)."""
        return Trust.NONE

    def model_problem(self, model: str | None) -> str | None:
        """Why `model` cannot name a task's model here (None: it can, or none is needed)."""
        if model is not None and not 0 < len(model) <= 200:
            return "a model must be 1 to 200 characters long"
        return None

    def status_url_problem(self, base_url: str, status_url: str | None) -> str | None:
        """Why a task's `status_url` cannot be used (None: it can, or none was given)."""
        if status_url is not None:
            return f"{self.name} takes no status_url"
        return None

    def keys_request(
        self, base_url: str, api_key: str | None, keys_url: str | None
    ) -> HttpRequest | None:
        """Where to fetch the keys that verify callbacks when none are configured."""
        return None

    def parse_keys(self, status: int, headers: Mapping[str, str], body: bytes) -> VerifyKeys:
        """The keys in a reply to `keys_request`."""
        raise AdapterError(self.name, "(keys)", "this provider has no keys to fetch")

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def parse_callback(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> ProviderResult:
        """Read a callback body; raise AdapterError when it cannot be read."""
        raise AdapterError(self.name, "(callback)", "this provider does not send callbacks")

    @abstractmethod
    def status_request(self, base_url: str, api_key: str, task_id: str) -> HttpRequest:
        """The request that asks the provider about one task."""

    @abstractmethod
    def parse_status(
        self, task_id: str, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> ProviderResult:
        """Read a status reply; raise ProviderApiError for error replies."""

    @abstractmethod
    def create_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None
    ) -> HttpRequest:
        """The provider's own create request, with our callback URL where it has callbacks."""

    @abstractmethod
    def parse_create(
        self, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> str:
        """The task id from a create reply; raise ProviderApiError for error replies."""

    def status_request_for(self, base_url: str, api_key: str, ref: TaskRef) -> HttpRequest:
        """The status request for a task known by more than its id (model, polling URL)."""
        return self.status_request(base_url, api_key, ref.task_id)

    def result_request(self, base_url: str, api_key: str, ref: TaskRef) -> HttpRequest:
        """Where the URLs of a result marked `fetch` lie."""
        raise AdapterError(self.name, "(result)", "this provider has no separate result")

    def parse_result(
        self, task_id: str, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> ProviderResult:
        """Read the reply to `result_request`."""
        raise AdapterError(self.name, "(result)", "this provider has no separate result")

    def submit_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None,
        *, model: str | None = None, webhook_secret: str | None = None,
    ) -> HttpRequest:
        """The create request of the submit proxy: `create_request`, for providers whose
        create URL names no model and who take no secret."""
        if model is not None:
            raise AdapterError(self.name, "model", "this provider takes the model in the body")
        return self.create_request(base_url, api_key, body, callback_url)

    def parse_submit(
        self, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> Created:
        """What a create reply tells: `parse_create`'s task id, and a polling URL if any."""
        return Created(self.parse_create(status, headers, body, now))

    def batch_request(self, base_url: str, api_key: str, task_ids: Sequence[str]) -> HttpRequest:
        raise NotImplementedError(f"{self.name} has no batch query")

    def parse_batch(
        self,
        task_ids: Sequence[str],
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime,
    ) -> list[ProviderResult] | None:
        """Results for a batch reply, or None when its shape is unknown (fall back to singles)."""
        raise NotImplementedError(f"{self.name} has no batch query")


def load_json(provider: str, body: bytes) -> Any:
    """Parse JSON bytes or raise AdapterError."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise NotJsonError(provider, "(body)", f"not JSON: {exc}") from exc


def validate(provider: str, model: type[M], data: Any) -> M:
    """Validate `data` against `model`; errors name the first failing field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(body)"
        raise AdapterError(provider, where, first["msg"]) from exc


def load_model(provider: str, model: type[M], body: bytes) -> M:
    """`load_json` and `validate` in one step, parsed by pydantic's own JSON reader (half the
    time of both on a callback): bytes that are not JSON raise NotJsonError, JSON that does
    not fit `model` raises AdapterError naming the first failing field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise NotJsonError(provider, "(body)", f"not JSON: {first['msg']}") from exc
        where = ".".join(str(part) for part in first["loc"]) or "(body)"
        raise AdapterError(provider, where, first["msg"]) from exc


def retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta or HTTP date), if any."""
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def error_for_status(
    provider: str,
    status: int,
    message: str,
    headers: Mapping[str, str],
    now: datetime,
    *,
    provider_code: str | None = None,
    gone_statuses: tuple[int, ...] = (404,),
) -> ProviderApiError:
    """Classify a failed reply: 429/5xx transient, gone statuses end the task, 400/422 refuse
    the request itself, else permanent."""
    kwargs: dict[str, Any] = {"status": status, "provider_code": provider_code}
    if status == 429 or status >= 500:
        return TransientProviderError(
            provider, message, retry_after=retry_after(headers, now), **kwargs
        )
    if status in gone_statuses:
        return TaskGoneError(provider, message, **kwargs)
    if status in REFUSED_INPUT:
        return ProviderRefusedInputError(provider, message, **kwargs)
    return PermanentProviderError(provider, message, **kwargs)


def epoch(value: float | int | str | None, *, millis: bool = False) -> datetime | None:
    """A unix timestamp (s or ms) or ISO string as an aware datetime; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            value = float(value)
        else:
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    seconds = float(value) / 1000 if millis else float(value)
    return datetime.fromtimestamp(seconds, UTC)


def body_message(body: bytes) -> str:
    """A short message from an error body, whatever its shape."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return body[:200].decode("utf-8", "replace") or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        for key in ("message", "msg", "error", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return json.dumps(data)[:200]
