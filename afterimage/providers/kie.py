"""kie: signed (opt-in HMAC) callbacks, status queries, error codes inside HTTP 200 replies.
Performs no I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from afterimage.errors import AdapterError, CallbackAuthError
from afterimage.models import HttpRequest, Outcome, ProviderResult
from afterimage.providers.base import PollPlan, ProviderAdapter, body_message, load_json, validate
from afterimage.providers.fields import (
    check_envelope,
    endpoint,
    envelope_code,
    outcome_of,
    result_urls,
    same_task,
    succeeded,
    timestamp,
)
from afterimage.providers.signing import Trust, VerifyKeys

STATES = {
    "waiting": Outcome.PENDING,
    "queuing": Outcome.PENDING,
    "generating": Outcome.PENDING,
    "success": Outcome.SUCCEEDED,
    "fail": Outcome.FAILED,
}
GENERATION_FAILED = 501


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow")
    taskId: str | None = Field(default=None, min_length=1)
    task_id: str | None = Field(default=None, min_length=1)
    model: str | None = None
    state: str | None = None
    resultJson: str | dict[str, Any] | None = None
    failCode: str | int | None = None
    failMsg: str | None = None
    completeTime: float | str | None = None


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: int | None = None
    msg: str | None = None
    message: str | None = None
    taskId: str | None = Field(default=None, min_length=1)
    data: _Data | None = None


class Kie(ProviderAdapter):
    name = "kie"
    has_callbacks = True
    signs_callbacks = True
    keys_setting = "KIE_WEBHOOK_HMAC_KEY"
    default_base_url = "https://api.kie.ai"
    # kie's guidance: 2-3 s in the first 30 s, 5-10 s up to 2 min, then 15-30 s.
    # kie calls back, so polling is the fallback: the first query waits for a callback that is
    # overdue (60 s); then kie's guidance (5-10 s up to 2 min, then 15-30 s).
    poll_plan = PollPlan(first=60.0, steps=((120.0, 10.0), (float("inf"), 30.0)))

    def parse_callback(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> ProviderResult:
        env = validate(self.name, _Envelope, load_json(self.name, body))
        data = env.data or _Data()
        task_id = self._task_id(env)
        if env.code is not None and env.code != 200:
            return self._failed(task_id, data, str(env.code), env.msg or env.message)
        if data.state is None and env.code is None:
            raise AdapterError(self.name, "code", "neither code nor data.state is given")
        return self._result(task_id, data, data.state or "success", now)

    def verify_callback(
        self, body: bytes, headers: Mapping[str, str], task_id: str, keys: VerifyKeys,
        now: datetime,
    ) -> Trust:
        """Opt-in: with no key configured nothing is checked. kie signs the task id and time,
        not the body, so a good signature proves the sender only."""
        if not keys.secrets:
            return Trust.NONE
        verify_signature(keys.secrets, task_id, headers, now, keys.tolerance)
        return Trust.SENDER

    def status_request(self, base_url: str, api_key: str, task_id: str) -> HttpRequest:
        url = endpoint(base_url, "/api/v1/jobs/recordInfo?") + urlencode({"taskId": task_id})
        return HttpRequest("GET", url, self.auth_headers(api_key))

    def parse_status(
        self, task_id: str, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> ProviderResult:
        if envelope_code(body) == GENERATION_FAILED:
            message = body_message(body)
            return ProviderResult(
                self.name, task_id, Outcome.FAILED, error_code="501", error_message=message
            )
        check_envelope(self.name, status, headers, body, now, gone=True)
        env = validate(self.name, _Envelope, load_json(self.name, body))
        if env.data is None:
            raise AdapterError(self.name, "data", "the reply carries no task")
        if env.data.state is None:
            raise AdapterError(self.name, "data.state", "missing")
        found = env.data.taskId or env.data.task_id or env.taskId
        task_id = same_task(self.name, "data.taskId", task_id, found)
        return self._result(task_id, env.data, env.data.state, now)

    def create_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None
    ) -> HttpRequest:
        payload = dict(body)
        if callback_url is not None:
            payload["callBackUrl"] = callback_url
        url = endpoint(base_url, "/api/v1/jobs/createTask")
        return HttpRequest("POST", url, self.auth_headers(api_key), payload)

    def parse_create(
        self, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> str:
        check_envelope(self.name, status, headers, body, now, gone=False)
        return self._task_id(validate(self.name, _Envelope, load_json(self.name, body)))

    def _task_id(self, env: _Envelope) -> str:
        data = env.data or _Data()
        found = {i for i in (data.taskId, data.task_id, env.taskId) if i is not None}
        if len(found) != 1:
            problem = "conflicting task ids" if found else "no task id"
            raise AdapterError(self.name, "data.taskId", problem)
        return found.pop()

    def _result(self, task_id: str, data: _Data, state: str, now: datetime) -> ProviderResult:
        outcome = outcome_of(self.name, STATES, state, "data.state")
        if outcome is Outcome.FAILED:
            return self._failed(task_id, data, state, None)
        if outcome is Outcome.PENDING:
            return ProviderResult(self.name, task_id, outcome, model=data.model)
        urls = result_urls(self.name, "data.resultJson.resultUrls", self._result_urls(data))
        completed = timestamp(self.name, "data.completeTime", data.completeTime, millis=True)
        return succeeded(self.name, task_id, urls, data.model, now, completed)

    def _result_urls(self, data: _Data) -> object:
        raw = data.resultJson
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                raise AdapterError(self.name, "data.resultJson", f"not JSON: {exc}") from exc
        return raw.get("resultUrls") if isinstance(raw, dict) else None

    def _failed(self, task_id: str, data: _Data, code: str, message: str | None) -> ProviderResult:
        return ProviderResult(
            self.name,
            task_id,
            Outcome.FAILED,
            error_code=str(data.failCode) if data.failCode not in (None, "") else code,
            error_message=data.failMsg or message or "generation failed",
            completed_at=timestamp(self.name, "data.completeTime", data.completeTime, millis=True),
            model=data.model,
        )


def sign(key: str, task_id: str, timestamp: int | str) -> str:
    """kie's callback signature: base64(HMAC-SHA256(key, f"{task_id}.{timestamp}"))."""
    message = f"{task_id}.{timestamp}".encode("utf-8", "surrogatepass")
    digest = hmac.new(key.encode("utf-8", "surrogatepass"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(
    keys: Sequence[str],
    task_id: str,
    headers: Mapping[str, str],
    now: datetime,
    tolerance: float = 300.0,
) -> None:
    """Raise CallbackAuthError unless the kie callback headers carry a fresh signature of
    `task_id` by one of `keys` (several keys allow rotation)."""
    lower = {k.lower(): v for k, v in headers.items()}
    stamp = lower.get("x-webhook-timestamp", "").strip()
    signature = lower.get("x-webhook-signature", "").strip()
    if not stamp or not signature:
        raise CallbackAuthError("kie: X-Webhook-Timestamp or X-Webhook-Signature is missing")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) < 16):
        raise CallbackAuthError("kie: X-Webhook-Timestamp is not unix seconds")
    if abs(now.timestamp() - int(stamp)) > tolerance:
        raise CallbackAuthError("kie: X-Webhook-Timestamp is outside the allowed window")
    given = signature.encode("utf-8", "surrogatepass")
    if not any(hmac.compare_digest(sign(k, task_id, stamp).encode(), given) for k in keys):
        raise CallbackAuthError("kie: bad callback signature")
