"""replicate: predictions, webhooks signed per Standard Webhooks, files deleted after an hour.
Performs no I/O."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from afterimage.errors import CallbackAuthError
from afterimage.models import HttpRequest, Outcome, ProviderResult
from afterimage.providers.base import PollPlan, ProviderAdapter, load_json, load_model, validate
from afterimage.providers.fields import (
    created_id,
    endpoint,
    failed,
    http_error,
    outcome_of,
    result_urls,
    same_task,
    succeeded,
    timestamp,
)
from afterimage.providers.signing import (
    Trust,
    UnknownKeyError,
    VerifyKeys,
    b64decode_loose,
    fresh_timestamp,
    header,
)
from afterimage.webhooks import secret_key

STATES = {
    "starting": Outcome.PENDING,
    "processing": Outcome.PENDING,
    "succeeded": Outcome.SUCCEEDED,
    "failed": Outcome.FAILED,
    "canceled": Outcome.FAILED,
}
LIFETIME = timedelta(hours=1)  # an API prediction's files are deleted an hour after it ends


class _Prediction(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    status: str
    model: str | None = None
    output: Any = None
    error: str | None = None
    completed_at: str | None = None


class _Secret(BaseModel):
    model_config = ConfigDict(extra="allow")
    key: str = Field(min_length=7, pattern=r"^whsec_")


class Replicate(ProviderAdapter):
    name = "replicate"
    has_callbacks = True
    signs_callbacks = True
    default_base_url = "https://api.replicate.com"
    link_lifetime = LIFETIME
    keys_setting = "REPLICATE_WEBHOOK_SECRET"
    signature_required = True
    # Webhooks bring results; queries are the fallback, inside a tenth of the links' hour.
    poll_plan = PollPlan(first=60.0, steps=((300.0, 15.0), (float("inf"), 60.0)))

    def parse_callback(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> ProviderResult:
        return self._result(load_model(self.name, _Prediction, body), now)

    def verify_callback(
        self, body: bytes, headers: Mapping[str, str], task_id: str, keys: VerifyKeys,
        now: datetime,
    ) -> Trust:
        """Standard Webhooks: `v1,<base64 HMAC-SHA256>` over `id.timestamp.body`, any of the
        space-separated signatures by any of the secrets."""
        msg_id = header(headers, "webhook-id")
        signatures = header(headers, "webhook-signature")
        if not msg_id or not signatures:
            raise CallbackAuthError("replicate: webhook-id or webhook-signature is missing")
        stamp = fresh_timestamp(self.name, "webhook-timestamp",
                                header(headers, "webhook-timestamp"), now, keys.tolerance)
        if not keys.secrets:
            raise UnknownKeyError("replicate: no webhook secret to verify with (set "
                                  "AFTERIMAGE_REPLICATE_WEBHOOK_SECRET or _API_KEY)")
        given: list[bytes] = []
        for part in signatures.split():
            version, _, encoded = part.partition(",")
            if version == "v1":
                try:
                    given.append(b64decode_loose(encoded))
                except ValueError:
                    continue
        signed = msg_id.encode("utf-8", "surrogatepass") + b"." + str(stamp).encode() + b"." + body
        ok = False
        for secret in keys.secrets:
            try:
                key = secret_key(secret)
            except ValueError:
                continue
            expected = hmac.new(key, signed, hashlib.sha256).digest()
            for digest in given:
                ok |= hmac.compare_digest(expected, digest)
        if not ok:
            raise UnknownKeyError("replicate: bad webhook signature")
        return Trust.BODY

    def keys_request(
        self, base_url: str, api_key: str | None, keys_url: str | None
    ) -> HttpRequest | None:
        if api_key is None:
            return None
        url = endpoint(base_url, "/v1/webhooks/default/secret")
        return HttpRequest("GET", url, self.auth_headers(api_key))

    def parse_keys(self, status: int, headers: Mapping[str, str], body: bytes) -> VerifyKeys:
        if not 200 <= status < 300:
            raise http_error(self.name, status, headers, body, datetime.now(UTC),
                             gone=False)
        found = validate(self.name, _Secret, load_json(self.name, body))
        try:
            secret_key(found.key)
        except ValueError as exc:
            raise CallbackAuthError(f"replicate: the webhook secret is unusable: {exc}") from None
        return VerifyKeys(secrets=(found.key,))

    def status_request(self, base_url: str, api_key: str, task_id: str) -> HttpRequest:
        return HttpRequest("GET", endpoint(base_url, "/v1/predictions/", task_id),
                           self.auth_headers(api_key))

    def parse_status(
        self, task_id: str, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> ProviderResult:
        if not 200 <= status < 300:
            raise http_error(self.name, status, headers, body, now)
        result = self._result(load_model(self.name, _Prediction, body), now)
        same_task(self.name, "id", task_id, result.task_id)
        return result

    def create_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None
    ) -> HttpRequest:
        payload = dict(body)
        if callback_url is not None:
            payload["webhook"] = callback_url
            payload["webhook_events_filter"] = ["completed"]
        return HttpRequest("POST", endpoint(base_url, "/v1/predictions"),
                           self.auth_headers(api_key), payload)

    def parse_create(
        self, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> str:
        return created_id(self.name, status, headers, body, now)

    def _result(self, p: _Prediction, now: datetime) -> ProviderResult:
        outcome = outcome_of(self.name, STATES, p.status)
        completed = timestamp(self.name, "completed_at", p.completed_at)
        if outcome is Outcome.SUCCEEDED:
            urls = result_urls(self.name, "output", p.output)
            done = completed or now
            return succeeded(self.name, p.id, urls, p.model, now, done, done + LIFETIME)
        if outcome is Outcome.FAILED:
            return failed(self.name, p.id, p.status, p.error, p.model, completed)
        return ProviderResult(self.name, p.id, outcome, model=p.model)
