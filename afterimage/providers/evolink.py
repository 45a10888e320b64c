"""evolink: callbacks (unsigned, retried 1 s/2 s/4 s) and status queries. Performs no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from afterimage.errors import TaskGoneError
from afterimage.models import HttpRequest, Outcome, ProviderResult
from afterimage.providers.base import (
    PollPlan,
    ProviderAdapter,
    body_message,
    load_model,
)
from afterimage.providers.fields import (
    ErrorInfo,
    body_code,
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
    "cancelled": Outcome.FAILED,
    "canceled": Outcome.FAILED,
}
GONE = "resource_not_found"  # the task id is invalid or expired


class _Task(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    status: str
    model: str | None = None
    results: list[Any] | None = None
    error: ErrorInfo | str | None = None


class Evolink(ProviderAdapter):
    name = "evolink"
    has_callbacks = True
    https_callbacks_only = True
    default_base_url = "https://api.evolink.ai"
    # Callbacks bring results; queries are the fallback for a lost callback.
    poll_plan = PollPlan(first=60.0, steps=((300.0, 15.0), (1800.0, 30.0), (float("inf"), 60.0)))

    def parse_callback(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> ProviderResult:
        return self._result(load_model(self.name, _Task, body), now)

    def status_request(self, base_url: str, api_key: str, task_id: str) -> HttpRequest:
        url = endpoint(base_url, "/v1/tasks/", task_id)
        return HttpRequest("GET", url, self.auth_headers(api_key))

    def parse_status(
        self, task_id: str, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> ProviderResult:
        if not 200 <= status < 300:
            if body_code(body) == GONE:
                raise TaskGoneError(
                    self.name, body_message(body), status=status, provider_code=GONE
                )
            raise http_error(self.name, status, headers, body, now)
        result = self._result(load_model(self.name, _Task, body), now)
        same_task(self.name, "id", task_id, result.task_id)
        return result

    def create_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None
    ) -> HttpRequest:
        payload = dict(body)
        if callback_url is not None:
            payload["callback_url"] = callback_url
        url = endpoint(base_url, "/v1/images/generations")
        return HttpRequest("POST", url, self.auth_headers(api_key), payload)

    def parse_create(
        self, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> str:
        if not 200 <= status < 300:
            raise http_error(self.name, status, headers, body, now, gone=False)
        return load_model(self.name, _Task, body).id

    def _result(self, task: _Task, now: datetime) -> ProviderResult:
        outcome = outcome_of(self.name, STATES, task.status)
        if outcome is Outcome.SUCCEEDED:
            urls = result_urls(self.name, "results", task.results)
            return succeeded(self.name, task.id, urls, task.model, now)  # the payload has no times
        if outcome is Outcome.FAILED:
            return failed(self.name, task.id, task.status, task.error, task.model)
        return ProviderResult(self.name, task.id, outcome, model=task.model)
