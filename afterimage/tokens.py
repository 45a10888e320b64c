"""Callback-URL tokens: HMAC of the provider name under the configured secrets. Performs no I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac


def callback_token(secret: str, provider: str) -> str:
    """The path token that authenticates `provider`'s callbacks."""
    digest = hmac.new(secret.encode(), f"afterimage-callback:{provider}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:24]).decode().rstrip("=")


def callback_url(public_url: str, secret: str, provider: str) -> str:
    return f"{public_url}/callbacks/{provider}/{callback_token(secret, provider)}"


def webhook_secret(secret: str, provider: str) -> str:
    """The secret afterimage hands out for `provider`'s webhooks to echo back (bfl's
    `webhook_secret`, checked against X-Webhook-Secret)."""
    digest = hmac.new(secret.encode(), f"afterimage-webhook:{provider}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")
