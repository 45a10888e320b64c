"""apimart: poll only, with a batch query. Performs no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from afterimage.errors import AdapterError, TaskGoneError
from afterimage.models import HttpRequest, Outcome, ProviderResult
from afterimage.providers.base import PollPlan, ProviderAdapter, load_json, validate
from afterimage.providers.fields import (
    ErrorInfo,
    body_code,
    endpoint,
    envelope_code,
    eta,
    failed,
    http_error,
    lifetime,
    outcome_of,
    result_urls,
    same_task,
    timestamp,
)

STATES = {
    "submitted": Outcome.PENDING,
    "pending": Outcome.PENDING,
    "processing": Outcome.PENDING,
    "completed": Outcome.SUCCEEDED,
    "failed": Outcome.FAILED,
    "cancelled": Outcome.FAILED,
    "canceled": Outcome.FAILED,
}
GONE = "task does not exist or has expired"


class _Image(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: list[Any] | str | None = None
    expires_at: float | str | None = None


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow")
    images: list[_Image] | None = None


class _Task(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = Field(default=None, min_length=1)
    status: str
    model: str | None = None
    result: _Result | None = None
    completed: float | str | None = None
    error: ErrorInfo | str | None = None
    created: Any = None  # hints for the poll schedule, never validated
    progress: Any = None
    estimated_time: Any = None


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="allow")
    data: _Task


class _Submitted(BaseModel):
    model_config = ConfigDict(extra="allow")
    task_id: str = Field(min_length=1)


class _Created(BaseModel):
    model_config = ConfigDict(extra="allow")
    data: list[_Submitted] = Field(min_length=1, max_length=1)


class Apimart(ProviderAdapter):
    name = "apimart"
    has_callbacks = False
    supports_batch = True
    default_base_url = "https://api.apimart.ai"
    # apimart's guidance: first query 10-20 s after submit, then every 3-5 s.
    # The first query waits for the typical completion time (30 s), then every 4 s (guidance: 3-5).
    poll_plan = PollPlan(first=30.0, steps=((600.0, 4.0), (float("inf"), 15.0)),
                         earliest=10.0, min_gap=3.0)

    def status_request(self, base_url: str, api_key: str, task_id: str) -> HttpRequest:
        return HttpRequest(
            "GET", endpoint(base_url, "/v1/tasks/", task_id), self.auth_headers(api_key)
        )

    def parse_status(
        self, task_id: str, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> ProviderResult:
        message = _gone_message(body)  # an expired task is gone, whatever the status
        if message is not None:
            raise TaskGoneError(self.name, message, status=status, provider_code=body_code(body))
        if not 200 <= status < 300:
            raise http_error(self.name, status, headers, body, now)
        code = envelope_code(body)
        if code is not None and code != 200:
            raise http_error(self.name, code, headers, body, now)
        env = validate(self.name, _Envelope, load_json(self.name, body))
        same_task(self.name, "data.id", task_id, env.data.id)
        return self._result(task_id, env.data, now, "data.")

    def batch_request(self, base_url: str, api_key: str, task_ids: Sequence[str]) -> HttpRequest:
        url = endpoint(base_url, "/v1/tasks/batch")
        return HttpRequest("POST", url, self.auth_headers(api_key), {"task_ids": list(task_ids)})

    def parse_batch(
        self,
        task_ids: Sequence[str],
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime,
    ) -> list[ProviderResult] | None:
        if status == 429 or status >= 500:  # singles would only add to the load
            raise http_error(self.name, status, headers, body, now)
        try:
            data = json.loads(body) if 200 <= status < 300 else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not (isinstance(data, dict) and data.get("code") == 200):
            return None
        entries, wanted = data.get("data"), set(task_ids)
        if not isinstance(entries, list):
            return None
        out: dict[str, ProviderResult] = {}
        for entry in entries:
            if isinstance(entry, dict) and "id" not in entry:
                entry = entry.get("data")  # one single-query reply per id
            try:
                task = validate(self.name, _Task, entry)
                if task.id is None:
                    return None
                if task.id in wanted and task.id not in out:
                    out[task.id] = self._result(task.id, task, now, "")
            except AdapterError:
                return None  # single queries will name the task it is about
        return list(out.values())

    def create_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None
    ) -> HttpRequest:
        url = endpoint(base_url, "/v1/images/generations")
        return HttpRequest("POST", url, self.auth_headers(api_key), dict(body))

    def parse_create(
        self, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> str:
        if not 200 <= status < 300:
            raise http_error(self.name, status, headers, body, now, gone=False)
        code = envelope_code(body)
        if code is not None and code != 200:
            raise http_error(self.name, code, headers, body, now, gone=False)
        return validate(self.name, _Created, load_json(self.name, body)).data[0].task_id

    def _result(self, task_id: str, task: _Task, now: datetime, at: str) -> ProviderResult:
        outcome = outcome_of(self.name, STATES, task.status, f"{at}status")
        if outcome is Outcome.PENDING:
            hint = eta(now, task.created, task.progress, task.estimated_time)
            return ProviderResult(self.name, task_id, outcome, model=task.model, eta=hint)
        completed = timestamp(self.name, f"{at}completed", task.completed)
        if outcome is Outcome.FAILED:
            return failed(self.name, task_id, task.status, task.error, task.model, completed)
        done, _ = lifetime(completed, None, now)
        urls: list[str] = []
        expiries = []
        images = task.result.images if task.result else None
        for i, image in enumerate(images or []):
            urls += result_urls(self.name, f"{at}result.images[{i}].url", image.url)
            field = f"{at}result.images[{i}].expires_at"
            expiries.append(lifetime(done, timestamp(self.name, field, image.expires_at), now)[1])
        if not urls:
            raise AdapterError(self.name, f"{at}result.images", "a completed task has no images")
        return ProviderResult(
            self.name,
            task_id,
            outcome,
            tuple(urls),
            completed_at=done,
            expires_at=min(expiries),
            model=task.model,
        )


def _gone_message(body: bytes) -> str | None:
    """The provider's "task does not exist or has expired" message, if the body carries it."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        text = body[:500].decode("utf-8", "replace")
        return text if GONE in text.lower() else None
    for _ in range(3):  # {"error": {"message"}}, {"data": {"error": {"message"}}}, ...
        if not isinstance(data, dict):
            return None
        for key in ("message", "msg", "error", "detail"):
            value = data.get(key)
            if isinstance(value, str) and GONE in value.lower():
                return value
        data = data.get("error") if isinstance(data.get("error"), dict) else data.get("data")
    return None
