"""The keys that verify each provider's callbacks, and the one check every callback passes.

Keys are configured (AFTERIMAGE_KIE_WEBHOOK_HMAC_KEY, AFTERIMAGE_REPLICATE_WEBHOOK_SECRET),
derived from AFTERIMAGE_SECRET and handed out (bfl), or fetched with the request the adapter
builds (replicate's account secret, fal's JWKS): cached for the adapter's `keys_max_age`, and
fetched again when a signature is by no key we hold — such re-fetches at most once per
REFETCH_EVERY seconds per provider, so forged callbacks cannot make us hammer the provider.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from datetime import datetime

import httpx
from starlette.concurrency import run_in_threadpool

from afterimage import provider_api
from afterimage.errors import AfterimageError
from afterimage.providers.base import ProviderAdapter
from afterimage.providers.signing import Trust, UnknownKeyError, VerifyKeys
from afterimage.settings import Settings
from afterimage.tokens import webhook_secret

log = logging.getLogger("afterimage.receiver")
REFETCH_EVERY = 60.0  # seconds between re-fetches for signatures by unknown keys
RETRY_FAILED = 10.0  # seconds after a failed fetch before the next one


class Keyring:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http: httpx.Client | None = None  # made at the first fetch
        self._fetched: dict[str, VerifyKeys] = {}
        self._refetched_at: dict[str, float] = {}  # monotonic time of the last re-fetch
        self._failed_at: dict[str, float] = {}  # monotonic time of the last failed fetch
        self._locks: dict[str, asyncio.Lock] = {}

    async def verify(
        self, a: ProviderAdapter, body: bytes, headers: Mapping[str, str], task_id: str,
        now: datetime,
    ) -> Trust:
        """The adapter's check with the keys we hold; once more with fresh keys when it says
        they may have rotated. Raises CallbackAuthError when the callback is not verified."""
        keys = await self.keys(a)
        try:
            return a.verify_callback(body, headers, task_id, keys, now)
        except UnknownKeyError:
            fresh = await self.keys(a, refresh=True)
            if fresh is keys:
                raise
            return a.verify_callback(body, headers, task_id, fresh, now)

    async def keys(self, a: ProviderAdapter, *, refresh: bool = False) -> VerifyKeys:
        s = self.settings
        tolerance = s.signature_tolerance
        if configured := s.webhook_secrets.get(a.name):
            return VerifyKeys(secrets=tuple(configured), tolerance=tolerance)
        if a.hands_out_secret:
            derived = tuple(webhook_secret(secret, a.name) for secret in s.secrets)
            return VerifyKeys(secrets=derived, tolerance=tolerance)
        held = self._fetched.get(a.name)
        stale = held is None or held.fetched_at is None or (
            time.time() - held.fetched_at > a.keys_max_age)
        if not (refresh or stale):
            assert held is not None
            return held
        empty = VerifyKeys(tolerance=tolerance)
        lock = self._locks.setdefault(a.name, asyncio.Lock())
        async with lock:
            current = self._fetched.get(a.name)
            if current is not held and current is not None:  # fetched while we waited
                return current
            now = time.monotonic()
            if stale:  # none held, or too old: fetch, unless that just failed
                allowed = now - self._failed_at.get(a.name, -math.inf) >= RETRY_FAILED
            else:  # a signature by a key we do not hold: fetch again, at most once a minute
                allowed = now - self._refetched_at.get(a.name, -math.inf) >= REFETCH_EVERY
            if allowed:
                if not stale:
                    self._refetched_at[a.name] = now
                fetched = await run_in_threadpool(self._fetch, a)
                if fetched is not None:
                    self._fetched[a.name] = fetched
                    return fetched
                self._failed_at[a.name] = now
            return held if held is not None and not stale else empty

    def _fetch(self, a: ProviderAdapter) -> VerifyKeys | None:
        s = self.settings
        base = s.base_urls.get(a.name, a.default_base_url)
        keys_url = s.keys_urls.get(a.name, a.default_keys_url)
        req = a.keys_request(base, s.api_keys.get(a.name), keys_url)
        if req is None:
            return None
        if self.http is None:
            self.http = provider_api.new_client()
        try:
            resp = provider_api.send(self.http, a.name, req)
            found = a.parse_keys(resp.status_code, resp.headers, resp.content)
        except AfterimageError as exc:
            log.warning("%s: callback keys not fetched: %s", a.name, exc,
                        extra={"event": "keys_fetch_failed", "provider": a.name})
            return None
        log.info("%s: callback keys fetched (%d)", a.name,
                 len(found.secrets) + len(found.public_keys),
                 extra={"event": "keys_fetched", "provider": a.name})
        return VerifyKeys(found.secrets, found.public_keys, time.time(),
                          s.signature_tolerance)
