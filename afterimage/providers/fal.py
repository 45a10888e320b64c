"""fal: queue requests per app, webhooks signed with Ed25519 (keys from a JWKS), a result kept
an hour. Performs no I/O."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict, Field

from afterimage.errors import AdapterError, CallbackAuthError
from afterimage.models import HttpRequest, Outcome, ProviderResult, TaskRef
from afterimage.providers.base import (
    PollPlan,
    ProviderAdapter,
    body_message,
    load_json,
    load_model,
    validate,
)
from afterimage.providers.fields import (
    body_code,
    endpoint,
    failed,
    http_error,
    outcome_of,
    result_urls,
    succeeded,
)
from afterimage.providers.signing import (
    Trust,
    UnknownKeyError,
    VerifyKeys,
    b64decode_loose,
    fresh_timestamp,
    header,
)

STATES = {
    "IN_QUEUE": Outcome.PENDING,
    "IN_PROGRESS": Outcome.PENDING,
    "COMPLETED": Outcome.SUCCEEDED,
}
WEBHOOK_STATES = {"OK": Outcome.SUCCEEDED, "ERROR": Outcome.FAILED}
LIFETIME = timedelta(hours=1)  # a result is kept an hour (the CDN's lifetime is unconfirmed)
JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)+$")


class _Image(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: Any = None


class _Output(BaseModel):
    model_config = ConfigDict(extra="allow")
    images: list[_Image] | None = None
    image: _Image | None = None


class _Webhook(BaseModel):
    model_config = ConfigDict(extra="allow")
    request_id: str = Field(min_length=1)
    status: str
    payload: _Output | None = None
    error: str | None = None
    payload_error: str | None = None


class _Status(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str
    request_id: str | None = None
    error: str | None = None


class _Created(BaseModel):
    model_config = ConfigDict(extra="allow")
    request_id: str = Field(min_length=1)


class _Jwk(BaseModel):
    model_config = ConfigDict(extra="allow")
    x: str | None = None
    kty: str | None = None
    crv: str | None = None


class _Jwks(BaseModel):
    model_config = ConfigDict(extra="allow")
    keys: list[_Jwk]


def app_problem(model: str | None) -> str | None:
    """Why `model` cannot be a fal app id (`owner/name[/path]`), or None."""
    if model is None:
        return "fal needs the app id (model), e.g. fal-ai/flux/dev"
    if len(model) > 200 or not APP_ID.match(model) or ".." in model:
        return f"not a fal app id: {model!r:.100}"
    return None


class Fal(ProviderAdapter):
    name = "fal"
    has_callbacks = True
    signs_callbacks = True
    needs_model = True
    default_base_url = "https://queue.fal.run"
    link_lifetime = LIFETIME
    keys_url_setting = "FAL_JWKS_URL"
    signature_required = True
    default_keys_url = JWKS_URL
    # Webhooks bring results; queries are the fallback, inside a tenth of the result's hour.
    poll_plan = PollPlan(first=60.0, steps=((300.0, 15.0), (float("inf"), 60.0)))

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Key {api_key}"}

    def model_problem(self, model: str | None) -> str | None:
        return app_problem(model)

    def parse_callback(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> ProviderResult:
        hook = load_model(self.name, _Webhook, body)
        outcome = outcome_of(self.name, WEBHOOK_STATES, hook.status)
        if outcome is Outcome.FAILED:
            detail = hook.error or hook.payload_error or "the request failed"
            return failed(self.name, hook.request_id, "ERROR", detail, None, now)
        if hook.payload is None:  # too large to send: the result is fetched
            return ProviderResult(self.name, hook.request_id, Outcome.SUCCEEDED, fetch=True)
        return self._output(hook.request_id, hook.payload, "payload", now)

    def verify_callback(
        self, body: bytes, headers: Mapping[str, str], task_id: str, keys: VerifyKeys,
        now: datetime,
    ) -> Trust:
        """Ed25519 over `request_id \\n user_id \\n timestamp \\n sha256_hex(body)`, by any key
        of the JWKS."""
        request_id = header(headers, "x-fal-webhook-request-id")
        user_id = header(headers, "x-fal-webhook-user-id")
        signature = header(headers, "x-fal-webhook-signature")
        if not request_id or not user_id or not signature:
            raise CallbackAuthError("fal: a X-Fal-Webhook-* signature header is missing")
        stamp = fresh_timestamp(self.name, "X-Fal-Webhook-Timestamp",
                                header(headers, "x-fal-webhook-timestamp"), now, keys.tolerance)
        if request_id != task_id:
            raise CallbackAuthError("fal: the signed request id is not the body's")
        try:
            sig = bytes.fromhex(signature)
        except ValueError:
            raise CallbackAuthError("fal: X-Fal-Webhook-Signature is not hex") from None
        message = "\n".join(
            (request_id, user_id, str(stamp), hashlib.sha256(body).hexdigest())
        ).encode("utf-8", "surrogatepass")
        # Imported at the first fal signature: the processes that never check one (workers,
        # poller) do not carry cryptography (about 6 MB each).
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        for raw in keys.public_keys:
            try:
                Ed25519PublicKey.from_public_bytes(raw).verify(sig, message)
            except (InvalidSignature, ValueError):
                continue
            return Trust.BODY
        raise UnknownKeyError("fal: no known key made this signature")

    def keys_request(
        self, base_url: str, api_key: str | None, keys_url: str | None
    ) -> HttpRequest | None:
        return HttpRequest("GET", keys_url or JWKS_URL)

    def parse_keys(self, status: int, headers: Mapping[str, str], body: bytes) -> VerifyKeys:
        if not 200 <= status < 300:
            raise http_error(self.name, status, headers, body, datetime.now(UTC), gone=False)
        jwks = validate(self.name, _Jwks, load_json(self.name, body))
        found = []
        for jwk in jwks.keys:
            if jwk.x is None or jwk.kty not in (None, "OKP") or jwk.crv not in (None, "Ed25519"):
                continue
            try:
                raw = b64decode_loose(jwk.x, urlsafe=True)
            except ValueError:
                continue
            if len(raw) == 32:
                found.append(raw)
        if not found:
            raise AdapterError(self.name, "keys", "the JWKS holds no Ed25519 key")
        return VerifyKeys(public_keys=tuple(found))

    def status_request(self, base_url: str, api_key: str, task_id: str) -> HttpRequest:
        raise AdapterError(self.name, "model", "a fal request is only found with its app id")

    def status_request_for(self, base_url: str, api_key: str, ref: TaskRef) -> HttpRequest:
        url = self._requests(base_url, ref) + "/status"
        return HttpRequest("GET", url, self.auth_headers(api_key))

    def parse_status(
        self, task_id: str, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> ProviderResult:
        if not 200 <= status < 300:
            raise http_error(self.name, status, headers, body, now)
        found = load_model(self.name, _Status, body)
        if found.request_id not in (None, task_id):
            raise AdapterError(self.name, "request_id", f"reply is about {found.request_id!r:.80}")
        outcome = outcome_of(self.name, STATES, found.status)
        if outcome is Outcome.PENDING:
            return ProviderResult(self.name, task_id, outcome)
        if found.error:
            return failed(self.name, task_id, "ERROR", found.error, None, now)
        return ProviderResult(self.name, task_id, Outcome.SUCCEEDED, fetch=True)

    def result_request(self, base_url: str, api_key: str, ref: TaskRef) -> HttpRequest:
        return HttpRequest("GET", self._requests(base_url, ref), self.auth_headers(api_key))

    def parse_result(
        self, task_id: str, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> ProviderResult:
        """A failed request's result answers 4xx with `{"detail"}`: generation failed (404
        means fal no longer knows it, 429 and 5xx are transient)."""
        if status in (404, 429) or status >= 500 or status < 200:
            raise http_error(self.name, status, headers, body, now)
        if status >= 300:
            return failed(self.name, task_id, body_code(body) or str(status), body_message(body),
                          None, now)
        return self._output(task_id, load_model(self.name, _Output, body), "(body)", now)

    def submit_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None,
        *, model: str | None = None, webhook_secret: str | None = None,
    ) -> HttpRequest:
        if (problem := app_problem(model)) is not None:
            raise AdapterError(self.name, "model", problem)
        url = endpoint(base_url, "/" + quote(str(model), safe="/"))
        if callback_url is not None:
            url += "?" + urlencode({"fal_webhook": callback_url})
        return HttpRequest("POST", url, self.auth_headers(api_key), dict(body))

    def create_request(
        self, base_url: str, api_key: str, body: Mapping[str, Any], callback_url: str | None
    ) -> HttpRequest:
        raise AdapterError(self.name, "model", "fal needs the app id (model), e.g. fal-ai/flux/dev")

    def parse_create(
        self, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> str:
        if not 200 <= status < 300:
            raise http_error(self.name, status, headers, body, now, gone=False)
        return load_model(self.name, _Created, body).request_id

    def _requests(self, base_url: str, ref: TaskRef) -> str:
        """`{base}/{owner}/{name}/requests/{id}`: the app id's first two segments."""
        if (problem := app_problem(ref.model)) is not None:
            raise AdapterError(self.name, "model", problem)
        owner_name = "/".join(str(ref.model).split("/")[:2])
        return endpoint(base_url, f"/{quote(owner_name, safe='/')}/requests/", ref.task_id)

    def _output(self, task_id: str, out: _Output, where: str, now: datetime) -> ProviderResult:
        if out.images is not None:
            field, values = "images", [i.url for i in out.images]
        elif out.image is not None:
            field, values = "image", [out.image.url]
        else:
            raise AdapterError(self.name, f"{where}.images", "neither images nor image is given")
        prefix = "" if where == "(body)" else f"{where}."
        urls = result_urls(self.name, f"{prefix}{field}", values)
        return succeeded(self.name, task_id, urls, None, now, now, now + LIFETIME)
