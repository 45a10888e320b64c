"""Completion events for consumers, signed per Standard Webhooks. Performs no I/O.

The scheme (https://www.standardwebhooks.com): the headers `webhook-id` (the same on every
retry of one event), `webhook-timestamp` (unix seconds of this attempt) and
`webhook-signature` = `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")). A secret
written `whsec_<base64>` means the bytes that base64 decodes to; any other secret is used as
its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

ARCHIVED = "afterimage.task.archived"
PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key a configured secret stands for; ValueError for a bad `whsec_` secret."""
    if not secret.startswith(PREFIX):
        return secret.encode()
    encoded = secret.removeprefix(PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a whsec_ secret must be base64 after the prefix") from None
    if not key:
        raise ValueError("a whsec_ secret must not be empty")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of one delivery attempt."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }


def message_id(provider: str, task_id: str, generation: int) -> str:
    """One id per archived task and generation, so consumers can drop repeats."""
    digest = hashlib.sha256(f"{provider}\n{task_id}\n{generation}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def archived_event(manifest: bytes, manifest_key: str) -> bytes:
    """The `afterimage.task.archived` body: the manifest as written, and where it lies."""
    doc: dict[str, Any] = json.loads(manifest)
    event = {
        "type": ARCHIVED,
        "timestamp": doc["archived_at"],
        "data": {**doc, "manifest_key": manifest_key},
    }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
