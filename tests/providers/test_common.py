"""The adapter registry and the helpers every adapter relies on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from afterimage.errors import AdapterError, UnknownProviderError
from afterimage.providers import ADAPTERS, NAMES, adapter
from afterimage.providers.base import epoch, retry_after
from afterimage.providers.fields import result_urls, timestamp
from tests.providers.helpers import NOW, T0, at


def test_registry_order_and_lookup() -> None:
    assert NAMES == ("crun", "kie", "evolink", "apimart", "toapis", "xingchao",
                     "replicate", "fal", "bfl")
    assert all(adapter(n).name == n and ADAPTERS[n] is adapter(n) for n in NAMES)
    with pytest.raises(UnknownProviderError):
        adapter("openai")


def test_capabilities() -> None:
    assert [n for n in NAMES if ADAPTERS[n].has_callbacks] == [
        "crun", "kie", "evolink", "replicate", "fal", "bfl"]
    assert [n for n in NAMES if ADAPTERS[n].signs_callbacks] == ["kie", "replicate", "fal"]
    assert adapter("crun").auth_headers("K") == {"x-api-key": "K"}
    assert adapter("fal").auth_headers("K") == {"Authorization": "Key K"}
    assert adapter("bfl").auth_headers("K") == {"x-key": "K"}
    for name in ("kie", "evolink", "apimart", "toapis", "xingchao", "replicate"):
        assert adapter(name).auth_headers("K") == {"Authorization": "Bearer K"}


@pytest.mark.parametrize("name", ["apimart", "toapis", "xingchao"])
def test_poll_only_providers_refuse_callbacks(name: str) -> None:
    with pytest.raises(AdapterError) as info:
        adapter(name).parse_callback(b"{}", {}, NOW)
    assert info.value.provider == name


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("12", 12.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("Fri, 01 May 2026 12:01:00 GMT", 60.0),
        ("Fri, 01 May 2026 12:01:00 -0000", 60.0),  # a naive date: read as UTC
        ("Thu, 30 Apr 2026 12:00:00 GMT", 0.0),  # in the past: retry now
        ("-3", None),
        ("nan", None),
        ("inf", None),
        ("²", None),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after(header: str, expected: float | None) -> None:
    assert retry_after({"Retry-After": header}, NOW) == expected
    assert retry_after({}, NOW) is None


def test_epoch_reads_naive_iso_as_utc() -> None:
    assert epoch("2026-05-01T12:00:00") == NOW
    assert epoch("2026-05-01T14:00:00+02:00") == NOW
    assert epoch(T0 * 1000, millis=True) == NOW
    assert epoch(str(T0)) == NOW


@pytest.mark.parametrize("value", [None, "", 0, "0"])
def test_timestamp_absent(value: object) -> None:
    assert timestamp("p", "f", value) is None


@pytest.mark.parametrize("value", [True, [T0], {"t": T0}, "noon", "nan", 1e308, -1, 1.0])
def test_timestamp_unreadable(value: object) -> None:
    with pytest.raises(AdapterError) as info:
        timestamp("p", "when", value)
    assert (info.value.provider, info.value.field) == ("p", "when")


def test_timestamp_readable() -> None:
    assert timestamp("p", "f", T0 + 0.5) == at(T0 + 0.5)
    assert timestamp("p", "f", "2026-05-01T12:00:00Z") == NOW
    assert timestamp("p", "f", T0 * 1000, millis=True) == datetime(2026, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (None, "u"),
        ([], "u"),
        ({"a": "https://x/y"}, "u"),
        (["https://x/y", None], "u[1]"),
        ([""], "u[0]"),
        (["  "], "u[0]"),
        ([7], "u[0]"),
    ],
)
def test_result_urls_refuses(value: object, field: str) -> None:
    with pytest.raises(AdapterError) as info:
        result_urls("p", "u", value)
    assert info.value.field == field


def test_result_urls_leaves_the_url_policy_to_the_download() -> None:
    # Refused or not, a URL is the download's to judge (the task ends archive_failed,
    # unsafe_url): the result itself is read.
    odd = ["gopher://x/y", "file:///etc/passwd", "http://[::1", "https:///nohost", "not a url"]
    assert result_urls("p", "u", odd) == tuple(odd)


def test_result_urls_accepts_a_string_or_a_list() -> None:
    assert result_urls("p", "u", "https://x/y") == ("https://x/y",)
    assert result_urls("p", "u", ["HTTP://x/1", "https://x/2"]) == ("HTTP://x/1", "https://x/2")
