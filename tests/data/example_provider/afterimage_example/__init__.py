"""An example provider package for afterimage: a reseller whose task API is shaped like
evolink's (tasks with `id`, `status`, `results`; callbacks carry the same object).

Nothing in afterimage names it: pyproject.toml lists `Example` in the `afterimage.providers`
entry-point group, and afterimage finds it once this package is installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from afterimage.models import HttpRequest, Outcome, ProviderResult
from afterimage.providers.base import PollPlan, ProviderAdapter, load_model
from afterimage.providers.fields import (
    created_id,
    endpoint,
    failed,
    http_error,
    outcome_of,
    result_urls,
    same_task,
    succeeded,
)

STATES = {
    "pending": Outcome.PENDING,
    "processing": Outcome.PENDING,
    "completed": Outcome.SUCCEEDED,
    "failed": Outcome.FAILED,
}


class _Task(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    status: str
    model: str | None = None
    results: list[Any] | None = None
    error: Any = None


class Example(ProviderAdapter):
    name = "example"
    has_callbacks = True
    default_base_url = "https://api.example.com"
    poll_plan = PollPlan(first=30.0, steps=((300.0, 10.0), (float("inf"), 60.0)))

    def parse_callback(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> ProviderResult:
        return self._result(load_model(self.name, _Task, body), now)

    def status_request(self, base_url: str, api_key: str, task_id: str) -> HttpRequest:
        return HttpRequest("GET", endpoint(base_url, "/v1/tasks/", task_id),
                           self.auth_headers(api_key))

    def parse_status(
        self, task_id: str, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> ProviderResult:
        if not 200 <= status < 300:
            raise http_error(self.name, status, headers, body, now)
        result = self._result(load_model(self.name, _Task, body), now)
        same_task(self.name, "id", task_id, result.task_id)
        return result

    def create_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None
    ) -> HttpRequest:
        payload = {**body, **({"callback_url": callback_url} if callback_url else {})}
        return HttpRequest("POST", endpoint(base_url, "/v1/images/generations"),
                           self.auth_headers(api_key), payload)

    def parse_create(
        self, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> str:
        return created_id(self.name, status, headers, body, now)

    def _result(self, task: _Task, now: datetime) -> ProviderResult:
        outcome = outcome_of(self.name, STATES, task.status)
        if outcome is Outcome.SUCCEEDED:
            urls = result_urls(self.name, "results", task.results)
            return succeeded(self.name, task.id, urls, task.model, now)
        if outcome is Outcome.FAILED:
            return failed(self.name, task.id, task.status, None, task.model)
        return ProviderResult(self.name, task.id, outcome, model=task.model)
