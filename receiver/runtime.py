"""What the receiver's routes share: settings, the ledger, precomputed tokens."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from starlette.requests import Request

from afterimage.ledger import AsyncLedger
from afterimage.metrics import Tally
from afterimage.providers import ADAPTERS
from afterimage.settings import Settings
from afterimage.tokens import callback_token
from receiver.deadlines import BodyDeadlines
from receiver.errors import ApiError
from receiver.keyring import Keyring


@dataclass
class Runtime:
    settings: Settings
    ledger: AsyncLedger
    tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)
    api_token: bytes = b""
    tally: Tally = field(default_factory=Tally)  # this process's counts, flushed to Redis
    deadlines: BodyDeadlines = field(init=False)  # request bodies' time limit
    keyring: Keyring = field(init=False)  # what verifies callback signatures

    def __post_init__(self) -> None:
        self.deadlines = BodyDeadlines(self.settings.callback_read_timeout)
        self.keyring = Keyring(self.settings)
        self.tokens = {
            name: tuple(callback_token(s, name) for s in self.settings.secrets)
            for name in ADAPTERS
        }
        token = self.settings.api_token
        self.api_token = f"Bearer {token}".encode() if token else b""

    def callback_token_ok(self, provider: str, token: str) -> bool:
        """Constant-time check against every configured secret."""
        ok = False
        given = token.encode()
        for expected in self.tokens.get(provider, ()):
            ok |= hmac.compare_digest(expected.encode(), given)
        return ok

    def require_api_token(self, request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        if not self.api_token or not hmac.compare_digest(given, self.api_token):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token")


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt
