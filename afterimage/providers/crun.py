"""crun: callbacks (unsigned, bare or enveloped), status queries, error codes inside HTTP 200
replies. Performs no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from afterimage.errors import AdapterError
from afterimage.models import HttpRequest, Outcome, ProviderResult
from afterimage.providers.base import PollPlan, ProviderAdapter, body_message, load_json, validate
from afterimage.providers.fields import (
    check_envelope,
    endpoint,
    envelope_code,
    result_urls,
    same_task,
    succeeded,
    timestamp,
)

# Terminal values; every other status means the task is still running.
STATES = {"success": Outcome.SUCCEEDED, "failed": Outcome.FAILED}
GENERATION_FAILED = 501


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: int | str | None = None
    message: str | None = None
    media_urls: list[Any] | str | None = None


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow")
    task_id: str = Field(min_length=1)
    status: str
    model_version: str | None = None
    complete_at: float | str | None = None
    result: _Result | None = None


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: int
    message: str | None = None
    data: _Data | None = None


class _Created(BaseModel):
    model_config = ConfigDict(extra="allow")
    task_id: str = Field(min_length=1)


class _CreateEnvelope(BaseModel):
    model_config = ConfigDict(extra="allow")
    data: _Created


class Crun(ProviderAdapter):
    name = "crun"
    has_callbacks = True
    default_base_url = "https://api.crun.ai"
    # Callbacks bring results; queries are the fallback for a lost callback.
    poll_plan = PollPlan(first=60.0, steps=((300.0, 15.0), (1800.0, 30.0), (float("inf"), 60.0)))

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    def parse_callback(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> ProviderResult:
        data = load_json(self.name, body)
        if not (isinstance(data, dict) and "data" in data and "task_id" not in data):
            return self._result(validate(self.name, _Data, data), now)
        env = validate(self.name, _Envelope, data)
        if env.data is None:
            raise AdapterError(self.name, "data", "the callback names no task")
        if env.code == GENERATION_FAILED:
            return self._failed(env.data, str(env.code), env.message)
        if env.code != 200:
            raise AdapterError(self.name, "code", f"callback with error code {env.code}")
        return self._result(env.data, now)

    def status_request(self, base_url: str, api_key: str, task_id: str) -> HttpRequest:
        url = endpoint(base_url, "/api/v1/client/job/TaskInfo?") + urlencode({"task_id": task_id})
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
        same_task(self.name, "data.task_id", task_id, env.data.task_id)
        return self._result(env.data, now)

    def create_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None
    ) -> HttpRequest:
        payload = dict(body)
        if callback_url is not None:
            payload["callback_url"] = callback_url
        url = endpoint(base_url, "/api/v1/client/job/CreateTask")
        return HttpRequest("POST", url, self.auth_headers(api_key), payload)

    def parse_create(
        self, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> str:
        check_envelope(self.name, status, headers, body, now, gone=False)
        return validate(self.name, _CreateEnvelope, load_json(self.name, body)).data.task_id

    def _result(self, data: _Data, now: datetime) -> ProviderResult:
        outcome = STATES.get(data.status, Outcome.PENDING)
        if outcome is Outcome.FAILED:
            return self._failed(data, None, None)
        if outcome is Outcome.PENDING:
            return ProviderResult(self.name, data.task_id, outcome, model=data.model_version)
        urls = result_urls(
            self.name, "result.media_urls", data.result.media_urls if data.result else None
        )
        completed = timestamp(self.name, "complete_at", data.complete_at)
        return succeeded(self.name, data.task_id, urls, data.model_version, now, completed)

    def _failed(self, data: _Data, code: str | None, message: str | None) -> ProviderResult:
        res = data.result or _Result()
        return ProviderResult(
            self.name,
            data.task_id,
            Outcome.FAILED,
            error_code=str(res.code) if res.code not in (None, "") else (code or data.status),
            error_message=res.message or message or "generation failed",
            completed_at=timestamp(self.name, "complete_at", data.complete_at),
            model=data.model_version,
        )
