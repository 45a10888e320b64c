"""Whatever bytes arrive, an adapter answers with a result or an AdapterError/ProviderApiError."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afterimage.errors import AdapterError, CallbackAuthError, ProviderApiError
from afterimage.models import Outcome, ProviderResult
from afterimage.providers import ADAPTERS, NAMES
from afterimage.providers.base import ProviderAdapter
from afterimage.providers.kie import verify_signature
from afterimage.providers.signing import Trust, VerifyKeys
from tests.providers.helpers import NOW, SAMPLES

FUZZ = settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
ALLOWED = (AdapterError, ProviderApiError)

# Field names and values the providers use, so that generated payloads get past the first check.
KEYS = [
    "code", "msg", "message", "data", "task_id", "taskId", "id", "status", "state", "result",
    "media_urls", "resultJson", "resultUrls", "failCode", "failMsg", "completeTime",
    "complete_at", "completed", "completed_at", "expires_at", "url", "image_url", "images",
    "results", "error", "model", "model_version", "type",
]  # fmt: skip
WORDS = [
    "t", "success", "failed", "fail", "completed", "pending", "processing", "queued", "waiting",
    "in_progress", "submitted", "cancelled", "running", "https://cdn.example/a.png", "ftp://x",
    "task does not exist or has expired", "resource_not_found", "2026-05-01T12:00:00Z", "",
]  # fmt: skip
CODES = [200, 401, 404, 422, 429, 455, 500, 501, 505, 0, -1, 10**30, 1e308, float("inf")]

scalars = st.one_of(
    st.sampled_from([None, True, False, *CODES, *WORDS]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=16,
)
shaped = st.recursive(
    scalars | json_values.map(json.dumps),  # resultJson is JSON inside a string
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=8)
    ),
    max_leaves=30,
)


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, inner in items:
        yield from _paths(inner, (*prefix, key))


def _recode(value: Any, decode: bool) -> Any:
    """kie's resultJson: decoded so mutations reach inside it, encoded again afterwards."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            if key == "resultJson" and decode and isinstance(inner, str):
                out[key] = json.loads(inner)
            elif key == "resultJson" and not decode and not isinstance(inner, str):
                out[key] = json.dumps(inner)
            else:
                out[key] = _recode(inner, decode)
        return out
    return [_recode(v, decode) for v in value] if isinstance(value, list) else value


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Any]) -> bytes:
    """A documented body with up to four of its values replaced or removed."""
    body = _recode(copy.deepcopy(draw(st.sampled_from(seeds))), decode=True)
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(list(_paths(body))))
        if not path:
            body = draw(json_values)
            break
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(scalars | json_values)
    return _dump(_recode(body, decode=False) if draw(st.booleans()) else body)


def bodies_for(name: str, kind: str) -> st.SearchStrategy[bytes]:
    seeds = SAMPLES[name][kind]
    generic = st.binary(max_size=200) | json_values.map(_dump) | shaped.map(_dump)
    return st.one_of(mutated(seeds), generic) if seeds else generic


statuses = st.one_of(  # mostly 200: only a 2xx reply gets past the first check
    st.just(200),
    st.sampled_from([200, 201, 204, 400, 401, 404, 410, 429, 500, 503]),
    st.integers(-1, 999),
)
headers = st.dictionaries(
    st.sampled_from(["Retry-After", "retry-after", "Content-Type"]) | st.text(max_size=8),
    st.text(max_size=40) | st.sampled_from(["0", "12", "1.5", "-3", "nan", "inf", "²", "Wed"]),
    max_size=3,
)
everyone = pytest.mark.parametrize("name", NAMES)


def _check(a: ProviderAdapter, result: ProviderResult) -> None:
    assert result.provider == a.name
    assert isinstance(result.task_id, str) and result.task_id
    if result.outcome is Outcome.SUCCEEDED and result.fetch:
        assert not result.urls  # the result is fetched with result_request
    elif result.outcome is Outcome.SUCCEEDED:
        # any non-empty string: the download's URL policy judges it (unsafe_url)
        assert result.urls and all(isinstance(u, str) and u.strip() for u in result.urls)
        assert result.expires_at is not None and result.expires_at.tzinfo is not None
        assert result.completed_at is not None and result.completed_at.tzinfo is not None
    elif result.outcome is Outcome.FAILED:
        assert result.error_code and result.error_message and not result.urls
    else:
        assert not result.urls


@everyone
@FUZZ
@given(data=st.data(), hdrs=headers)
def test_parse_callback_raises_only_adapter_errors(name: str, data: Any, hdrs: Any) -> None:
    a = ADAPTERS[name]
    body = data.draw(bodies_for(name, "callback"))
    try:
        result = a.parse_callback(body, hdrs, NOW)
    except ALLOWED:
        return
    assert a.has_callbacks
    _check(a, result)


@everyone
@FUZZ
@given(data=st.data(), status=statuses, hdrs=headers)
def test_parse_status_raises_only_adapter_or_api_errors(
    name: str, data: Any, status: int, hdrs: Any
) -> None:
    body = data.draw(bodies_for(name, "status"))
    a = ADAPTERS[name]
    try:
        result = a.parse_status("t", status, hdrs, body, NOW)
    except ProviderApiError as exc:
        if exc.retry_after is not None:
            assert exc.retry_after >= 0
        return
    except AdapterError:
        return
    _check(a, result)
    assert result.task_id == "t"


@everyone
@FUZZ
@given(data=st.data(), status=statuses, hdrs=headers)
def test_parse_create_raises_only_adapter_or_api_errors(
    name: str, data: Any, status: int, hdrs: Any
) -> None:
    body = data.draw(bodies_for(name, "create"))
    try:
        task_id = ADAPTERS[name].parse_create(status, hdrs, body, NOW)
    except ALLOWED:
        return
    assert isinstance(task_id, str) and task_id


@pytest.mark.parametrize("name", [n for n in NAMES if ADAPTERS[n].supports_batch])
@FUZZ
@given(data=st.data(), status=statuses, hdrs=headers)
def test_parse_batch_raises_only_adapter_or_api_errors(
    name: str, data: Any, status: int, hdrs: Any
) -> None:
    body = data.draw(bodies_for(name, "batch"))
    a = ADAPTERS[name]
    try:
        results = a.parse_batch(["t", "u"], status, hdrs, body, NOW)
    except ALLOWED:
        return
    if results is not None:
        ids = [r.task_id for r in results]
        assert len(ids) == len(set(ids)) and set(ids) <= {"t", "u"}
        for result in results:
            _check(a, result)


@pytest.mark.parametrize("name", [n for n in NAMES if SAMPLES[n].get("result")])
@FUZZ
@given(data=st.data(), status=statuses, hdrs=headers)
def test_parse_result_raises_only_adapter_or_api_errors(
    name: str, data: Any, status: int, hdrs: Any
) -> None:
    body = data.draw(bodies_for(name, "result"))
    a = ADAPTERS[name]
    try:
        result = a.parse_result("t", status, hdrs, body, NOW)
    except ALLOWED:
        return
    _check(a, result)
    assert not result.fetch


SIGNATURE_HEADERS = [
    "X-Webhook-Timestamp", "X-Webhook-Signature", "X-Webhook-Secret", "webhook-id",
    "webhook-timestamp", "webhook-signature", "X-Fal-Webhook-Request-Id",
    "X-Fal-Webhook-User-Id", "X-Fal-Webhook-Timestamp", "X-Fal-Webhook-Signature",
]  # fmt: skip


@pytest.mark.parametrize("name", [n for n in NAMES if ADAPTERS[n].has_callbacks])
@FUZZ
@given(
    body=st.binary(max_size=100),
    task_id=st.text(max_size=20),
    hdrs=st.dictionaries(
        st.sampled_from(SIGNATURE_HEADERS),
        st.text(max_size=60) | st.integers(0, 2 * 10**9).map(str)
        | st.sampled_from(["v1,AAAA", "v1,=", "00" * 64, str(int(NOW.timestamp()))]),
    ),
    secrets=st.lists(st.text(max_size=10) | st.just("whsec_AAAA") | st.just("whsec_%"),
                     min_size=1, max_size=3),
    public_keys=st.lists(st.binary(min_size=0, max_size=40), max_size=2),
)
def test_verify_callback_raises_only_callback_auth_errors(
    name: str, body: bytes, task_id: str, hdrs: dict[str, str], secrets: list[str],
    public_keys: list[bytes],
) -> None:
    """Whatever the headers and keys, a forged callback is refused with CallbackAuthError."""
    keys = VerifyKeys(tuple(secrets), tuple(public_keys))
    try:
        trust = ADAPTERS[name].verify_callback(body, hdrs, task_id, keys, NOW)
    except CallbackAuthError:
        return
    if name == "bfl":  # a plain shared secret: passes only when the header is one of them
        assert trust is Trust.SENDER and hdrs["X-Webhook-Secret"].strip() in secrets
    else:
        assert trust is Trust.NONE  # only a provider that signs nothing lets it pass


def test_only_apimart_has_a_batch_query() -> None:
    assert [n for n in NAMES if ADAPTERS[n].supports_batch] == ["apimart"]


@FUZZ
@given(
    task_id=st.text(max_size=20),
    hdrs=st.dictionaries(
        st.sampled_from(["X-Webhook-Timestamp", "x-webhook-signature", "X-Webhook-Signature"]),
        st.text(max_size=50) | st.integers(0, 2 * 10**9).map(str),
    ),
    keys=st.lists(st.text(max_size=10), max_size=3),
)
def test_verify_signature_raises_only_callback_auth_errors(
    task_id: str, hdrs: dict[str, str], keys: list[str]
) -> None:
    with pytest.raises(CallbackAuthError):
        verify_signature(keys, task_id, hdrs, NOW)
