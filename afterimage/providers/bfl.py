"""bfl (Black Forest Labs): tasks polled at the URL their create names, webhooks that echo a
secret, signed result links that live ten minutes. Performs no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from afterimage.errors import AdapterError, CallbackAuthError, TransientProviderError
from afterimage.models import Created, HttpRequest, Outcome, ProviderResult, TaskRef
from afterimage.providers.base import (
    PollPlan,
    ProviderAdapter,
    body_message,
    load_model,
    retry_after,
)
from afterimage.providers.fields import (
    endpoint,
    failed,
    http_error,
    outcome_of,
    result_urls,
    same_site,
    same_task,
    succeeded,
)
from afterimage.providers.signing import Trust, VerifyKeys, header, same_secret

STATES = {
    "Pending": Outcome.PENDING,
    "Ready": Outcome.SUCCEEDED,
    "Error": Outcome.FAILED,
    "Task not found": Outcome.FAILED,
    "Request Moderated": Outcome.FAILED,
    "Content Moderated": Outcome.FAILED,
}
LIFETIME = timedelta(minutes=10)  # result.sample is a signed URL valid ten minutes
MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow")
    sample: Any = None


class _Task(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = Field(default=None, min_length=1)
    task_id: str | None = Field(default=None, min_length=1)
    status: str
    result: _Result | None = None
    details: Any = None


class _Created(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    polling_url: str | None = Field(default=None, min_length=1)


class Bfl(ProviderAdapter):
    name = "bfl"
    has_callbacks = True
    hands_out_secret = True
    uses_status_url = True
    default_base_url = "https://api.bfl.ai"
    link_lifetime = LIFETIME
    # Webhooks bring results (always confirmed by a query); polling is the fallback and must
    # leave time to archive inside the links' ten minutes.
    poll_plan = PollPlan(first=20.0, steps=((120.0, 10.0), (float("inf"), 20.0)))

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-key": api_key}

    def model_problem(self, model: str | None) -> str | None:
        if model is not None and not MODEL.match(model):
            return f"not a bfl model path: {model!r:.100}"
        return None

    def status_url_problem(self, base_url: str, status_url: str | None) -> str | None:
        if status_url is not None and not same_site(base_url, status_url):
            return ("status_url must be on the bfl API's host or a host under its parent "
                    "domain (the API key is sent there)")
        return None

    def parse_callback(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> ProviderResult:
        task = load_model(self.name, _Task, body)
        found = {i for i in (task.id, task.task_id) if i is not None}
        if len(found) != 1:
            raise AdapterError(self.name, "id", "conflicting task ids" if found else "missing")
        return self._result(found.pop(), task, now)

    def verify_callback(
        self, body: bytes, headers: Mapping[str, str], task_id: str, keys: VerifyKeys,
        now: datetime,
    ) -> Trust:
        """Not signed: the secret given at create comes back in X-Webhook-Secret. It proves
        the sender, not the body (confirmed by a status query)."""
        given = header(headers, "x-webhook-secret")
        if not given:
            raise CallbackAuthError("bfl: X-Webhook-Secret is missing")
        if not same_secret(given, keys.secrets):
            raise CallbackAuthError("bfl: wrong X-Webhook-Secret")
        return Trust.SENDER

    def status_request(self, base_url: str, api_key: str, task_id: str) -> HttpRequest:
        url = endpoint(base_url, "/v1/get_result?") + urlencode({"id": task_id})
        return HttpRequest("GET", url, self.auth_headers(api_key))

    def status_request_for(self, base_url: str, api_key: str, ref: TaskRef) -> HttpRequest:
        if ref.status_url is None:
            return self.status_request(base_url, api_key, ref.task_id)
        if (problem := self.status_url_problem(base_url, ref.status_url)) is not None:
            raise AdapterError(self.name, "status_url", problem)
        return HttpRequest("GET", ref.status_url, self.auth_headers(api_key))

    def parse_status(
        self, task_id: str, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> ProviderResult:
        if status == 429:
            raise TransientProviderError(
                self.name, body_message(body), status=status,
                retry_after=retry_after(headers, now) or _retry_after(body),
            )
        if not 200 <= status < 300:
            raise http_error(self.name, status, headers, body, now)
        task = load_model(self.name, _Task, body)
        return self._result(same_task(self.name, "id", task_id, task.id or task.task_id), task,
                            now)

    def submit_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None,
        *, model: str | None = None, webhook_secret: str | None = None,
    ) -> HttpRequest:
        if model is None:
            raise AdapterError(self.name, "model", "bfl needs the model path, e.g. flux-pro-1.1")
        if (problem := self.model_problem(model)) is not None:
            raise AdapterError(self.name, "model", problem)
        payload = dict(body)
        if callback_url is not None:
            payload["webhook_url"] = callback_url
            if webhook_secret is not None:
                payload["webhook_secret"] = webhook_secret
        return HttpRequest("POST", endpoint(base_url, f"/v1/{model}"),
                           self.auth_headers(api_key), payload)

    def create_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None
    ) -> HttpRequest:
        raise AdapterError(self.name, "model", "bfl needs the model path, e.g. flux-pro-1.1")

    def parse_create(
        self, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> str:
        return self.parse_submit(status, headers, body, now).task_id

    def parse_submit(
        self, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> Created:
        if not 200 <= status < 300:
            raise http_error(self.name, status, headers, body, now, gone=False)
        created = load_model(self.name, _Created, body)
        return Created(created.id, created.polling_url)

    def _result(self, task_id: str, task: _Task, now: datetime) -> ProviderResult:
        outcome = outcome_of(self.name, STATES, task.status)
        if outcome is Outcome.PENDING:
            return ProviderResult(self.name, task_id, outcome)
        if outcome is Outcome.FAILED:
            detail = task.details if isinstance(task.details, str) else None
            code = task.status.lower().replace(" ", "_")
            return failed(self.name, task_id, code, detail or f"task {task.status}", None)
        sample = task.result.sample if task.result is not None else None
        urls = result_urls(self.name, "result.sample", sample)
        return succeeded(self.name, task_id, urls, None, now, now, now + LIFETIME)


def _retry_after(body: bytes) -> float | None:
    """bfl's 429 names its wait as `retry_after` in the body."""
    try:
        value = json.loads(body).get("retry_after")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 86400:
        return float(value)
    return None
