"""Expiring signed links for the simulator's own image host: `?exp=UNIX&sig=HMAC`."""

from __future__ import annotations

import hashlib
import hmac
import math


class LinkSigner:
    """Signs `path` together with its expiry, like a CDN's presigned URLs."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def sign(self, path: str, expires: float) -> str:
        """The query string for `path`, valid until `expires` (rounded down to a second)."""
        exp = math.floor(expires)
        return f"exp={exp}&sig={self._digest(path, exp)}"

    def check(self, path: str, exp: str, sig: str) -> int | None:
        """The link's expiry when the signature is right, else None."""
        try:
            when = int(exp)
        except ValueError:
            return None
        if not sig.isascii() or not hmac.compare_digest(self._digest(path, when), sig):
            return None
        return when

    def _digest(self, path: str, exp: int) -> str:
        message = f"{path}\n{exp}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]
