"""toapis: poll only; 429 carries Retry-After. Performs no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from afterimage.models import HttpRequest, Outcome, ProviderResult
from afterimage.providers.base import PollPlan, ProviderAdapter, load_json, validate
from afterimage.providers.fields import (
    ErrorInfo,
    created_id,
    endpoint,
    eta,
    failed,
    http_error,
    outcome_of,
    result_urls,
    same_task,
    succeeded,
    timestamp,
)

STATES = {
    "submitted": Outcome.PENDING,
    "queued": Outcome.PENDING,
    "in_progress": Outcome.PENDING,
    "completed": Outcome.SUCCEEDED,
    "failed": Outcome.FAILED,
}


class _Task(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    status: str
    model: str | None = None
    url: list[Any] | str | None = None
    completed_at: float | str | None = None
    expires_at: float | str | None = None
    error: ErrorInfo | str | None = None
    created_at: Any = None  # hints for the poll schedule, never validated
    progress: Any = None


class Toapis(ProviderAdapter):
    name = "toapis"
    has_callbacks = False
    default_base_url = "https://toapis.com"
    # toapis's guidance: 2-3 s after submit, then every 3-5 s.
    # The first query waits for the typical completion time (30 s), then every 4 s (guidance: 3-5).
    poll_plan = PollPlan(first=30.0, steps=((600.0, 4.0), (float("inf"), 15.0)),
                         earliest=2.0, min_gap=3.0)

    def status_request(self, base_url: str, api_key: str, task_id: str) -> HttpRequest:
        url = endpoint(base_url, "/v1/images/generations/", task_id)
        return HttpRequest("GET", url, self.auth_headers(api_key))

    def parse_status(
        self, task_id: str, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> ProviderResult:
        if not 200 <= status < 300:
            raise http_error(self.name, status, headers, body, now)
        task = validate(self.name, _Task, load_json(self.name, body))
        same_task(self.name, "id", task_id, task.id)
        outcome = outcome_of(self.name, STATES, task.status)
        if outcome is Outcome.PENDING:
            hint = eta(now, task.created_at, task.progress)
            return ProviderResult(self.name, task_id, outcome, model=task.model, eta=hint)
        completed = timestamp(self.name, "completed_at", task.completed_at)
        if outcome is Outcome.FAILED:
            return failed(self.name, task_id, task.status, task.error, task.model, completed)
        urls = result_urls(self.name, "url", task.url)
        expires = timestamp(self.name, "expires_at", task.expires_at)
        return succeeded(self.name, task_id, urls, task.model, now, completed, expires)

    def create_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None
    ) -> HttpRequest:
        url = endpoint(base_url, "/v1/images/generations")
        return HttpRequest("POST", url, self.auth_headers(api_key), dict(body))

    def parse_create(
        self, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> str:
        return created_id(self.name, status, headers, body, now)
