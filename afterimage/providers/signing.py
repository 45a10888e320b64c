"""Callback signatures: what a verification proves, the keys it uses, the schemes' shared
checks. Performs no I/O: the receiver fetches keys (afterimage.keyring) and hands them in.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from afterimage.errors import CallbackAuthError

TOLERANCE = 300.0  # seconds a signed timestamp may differ from our clock


class Trust(StrEnum):
    """What a callback's verification proves."""

    NONE = "none"  # nothing beyond the callback URL's token
    SENDER = "sender"  # the provider sent it, but the body is not signed: confirm its URLs
    BODY = "body"  # the body itself is signed: its URLs may be trusted


@dataclass(frozen=True)
class VerifyKeys:
    """What verifies one provider's callbacks: shared secrets as configured (several allow
    rotation), public keys as raw bytes (from a JWKS), and when they were fetched."""

    secrets: tuple[str, ...] = ()
    public_keys: tuple[bytes, ...] = ()
    fetched_at: float | None = None
    tolerance: float = TOLERANCE  # seconds a signed timestamp may differ from our clock


class UnknownKeyError(CallbackAuthError):
    """No key we hold made this signature: the keys may have rotated, fetch them again."""


def header(headers: Mapping[str, str], name: str) -> str:
    """A header's value (case-insensitive), stripped; "" when absent."""
    name = name.lower()
    return next((v for k, v in headers.items() if k.lower() == name), "").strip()


def fresh_timestamp(provider: str, field: str, raw: str, now: datetime,
                    tolerance: float = TOLERANCE) -> int:
    """The unix-seconds timestamp of a signature header, which must be within `tolerance`."""
    if not raw:
        raise CallbackAuthError(f"{provider}: {field} is missing")
    if not (raw.isascii() and raw.isdigit() and len(raw) < 16):
        raise CallbackAuthError(f"{provider}: {field} is not unix seconds")
    if abs(now.timestamp() - int(raw)) > tolerance:
        raise CallbackAuthError(f"{provider}: {field} is outside the allowed window")
    return int(raw)


def same_secret(given: str, secrets: tuple[str, ...]) -> bool:
    """Does `given` equal one of `secrets`? Constant time, every secret compared."""
    ok = False
    raw = given.encode("utf-8", "surrogatepass")
    for secret in secrets:
        ok |= hmac.compare_digest(raw, secret.encode("utf-8", "surrogatepass"))
    return ok


def b64decode_loose(text: str, *, urlsafe: bool = False) -> bytes:
    """Base64 (or base64url) with or without its `=` padding; ValueError if it is neither."""
    text = text.strip().rstrip("=")
    if not text.isascii():
        raise ValueError("not base64")
    padded = text + "=" * (-len(text) % 4)
    if urlsafe:
        if any(c in text for c in "+/"):
            raise ValueError("not base64url")
        padded = padded.translate(str.maketrans("-_", "+/"))
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
