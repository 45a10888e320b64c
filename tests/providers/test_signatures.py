"""Every callback signature scheme, with keys and secrets made here: good, bad, stale,
rotated, unknown key, replayed with another body, missing."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from standardwebhooks import Webhook

from afterimage.errors import CallbackAuthError
from afterimage.providers import adapter
from afterimage.providers.kie import sign as kie_sign
from afterimage.providers.signing import Trust, UnknownKeyError, VerifyKeys
from tests.providers.helpers import NOW, bfl_task, fal_webhook, js, replicate_prediction

STAMP = int(NOW.timestamp())
STALE = STAMP - 301
BODY = js(replicate_prediction())


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def replicate_headers(secret: str, body: bytes = BODY, stamp: int = STAMP,
                      msg_id: str = "msg_1") -> dict[str, str]:
    """Signed by the Standard Webhooks reference library, not by our code."""
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
            "webhook-signature": signature}


def verify_replicate(headers: dict[str, str], *secrets_: str, body: bytes = BODY) -> Trust:
    return adapter("replicate").verify_callback(body, headers, "t", VerifyKeys(secrets_), NOW)


def test_replicate_good_signature_trusts_the_body() -> None:
    secret = whsec()
    assert verify_replicate(replicate_headers(secret), secret) is Trust.BODY


def test_replicate_several_signatures_and_rotated_secrets() -> None:
    old, new = whsec(), whsec()
    by_old = replicate_headers(old)["webhook-signature"]
    by_new = replicate_headers(new)["webhook-signature"]
    both = replicate_headers(new) | {"webhook-signature": f"v1,AAAA {by_old} {by_new}"}
    assert verify_replicate(both, new) is Trust.BODY
    assert verify_replicate(both, old) is Trust.BODY
    assert verify_replicate(replicate_headers(old), new, old) is Trust.BODY  # rotation list


@pytest.mark.parametrize("forge", [
    lambda h: h | {"webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()},
    lambda h: h | {"webhook-signature": h["webhook-signature"].replace("v1,", "v2,")},
    lambda h: h | {"webhook-id": "msg_2"},  # the id is signed
    lambda h: {k: v for k, v in h.items() if k != "webhook-signature"},
    lambda h: {k: v for k, v in h.items() if k != "webhook-id"},
    lambda h: {k: v for k, v in h.items() if k != "webhook-timestamp"},
    lambda h: h | {"webhook-timestamp": str(STAMP + 1)},
])
def test_replicate_forged(forge: Callable[[dict[str, str]], dict[str, str]]) -> None:
    secret = whsec()
    with pytest.raises(CallbackAuthError):
        verify_replicate(forge(replicate_headers(secret)), secret)


def test_replicate_stale_other_body_and_unknown_secret() -> None:
    secret = whsec()
    with pytest.raises(CallbackAuthError, match="window"):
        verify_replicate(replicate_headers(secret, stamp=STALE), secret)
    other = js(replicate_prediction(output="https://evil.example/x.png"))
    with pytest.raises(CallbackAuthError):
        verify_replicate(replicate_headers(secret), secret, body=other)
    with pytest.raises(UnknownKeyError):  # the receiver fetches the account's secret again
        verify_replicate(replicate_headers(secret), whsec())
    with pytest.raises(UnknownKeyError):
        verify_replicate(replicate_headers(secret))


class FalSigner:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def headers(self, body: bytes, request_id: str = "t", stamp: int = STAMP) -> dict[str, str]:
        message = f"{request_id}\nuser-1\n{stamp}\n{hashlib.sha256(body).hexdigest()}"
        return {"X-Fal-Webhook-Request-Id": request_id, "X-Fal-Webhook-User-Id": "user-1",
                "X-Fal-Webhook-Timestamp": str(stamp),
                "X-Fal-Webhook-Signature": self.key.sign(message.encode()).hex()}

    def jwk(self, padded: bool) -> dict[str, str]:
        x = base64.urlsafe_b64encode(self.public).decode()
        return {"kty": "OKP", "crv": "Ed25519", "x": x if padded else x.rstrip("=")}


FAL_BODY = js(fal_webhook())


def verify_fal(headers: dict[str, str], *keys: bytes, body: bytes = FAL_BODY) -> Trust:
    return adapter("fal").verify_callback(body, headers, "t", VerifyKeys(public_keys=keys), NOW)


@pytest.mark.parametrize("padded", [True, False])
def test_fal_good_signature_with_keys_from_a_jwks(padded: bool) -> None:
    signer, other = FalSigner(), FalSigner()
    jwks = js({"keys": [other.jwk(padded), signer.jwk(padded)]})
    keys = adapter("fal").parse_keys(200, {}, jwks)
    assert verify_fal(signer.headers(FAL_BODY), *keys.public_keys) is Trust.BODY


def test_fal_refused() -> None:
    signer = FalSigner()
    good = signer.headers(FAL_BODY)
    with pytest.raises(UnknownKeyError):  # signed by a key we do not hold: fetch the JWKS
        verify_fal(good, FalSigner().public)
    with pytest.raises(UnknownKeyError):
        verify_fal(good)
    with pytest.raises(CallbackAuthError):  # replayed with another body
        verify_fal(good, signer.public, body=js(fal_webhook(payload=None)))
    with pytest.raises(CallbackAuthError, match="window"):
        verify_fal(signer.headers(FAL_BODY, stamp=STALE), signer.public)
    with pytest.raises(CallbackAuthError):  # signed for another request
        verify_fal(signer.headers(FAL_BODY, request_id="u"), signer.public)
    for name in good:
        with pytest.raises(CallbackAuthError):
            verify_fal({k: v for k, v in good.items() if k != name}, signer.public)
    with pytest.raises(CallbackAuthError):
        verify_fal(good | {"X-Fal-Webhook-Signature": "zz"}, signer.public)
    with pytest.raises(CallbackAuthError):
        verify_fal(good | {"X-Fal-Webhook-User-Id": "user-2"}, signer.public)


def test_bfl_secret_header() -> None:
    a, body = adapter("bfl"), js(bfl_task())
    keys = VerifyKeys(("new-secret", "old-secret"))
    for given in ("new-secret", "old-secret"):
        assert a.verify_callback(body, {"X-Webhook-Secret": given}, "t", keys, NOW) is Trust.SENDER
    for headers in ({}, {"X-Webhook-Secret": "new-secre"}, {"X-Webhook-Secret": ""},
                    {"X-Other": "new-secret"}):
        with pytest.raises(CallbackAuthError):
            a.verify_callback(body, headers, "t", keys, NOW)


def test_kie_through_the_same_interface() -> None:
    a = adapter("kie")
    assert a.verify_callback(b"{}", {}, "t", VerifyKeys(), NOW) is Trust.NONE  # opt-in
    headers = {"X-Webhook-Timestamp": str(STAMP), "X-Webhook-Signature": kie_sign("k2", "t", STAMP)}
    assert a.verify_callback(b"{}", headers, "t", VerifyKeys(("k1", "k2")), NOW) is Trust.SENDER
    with pytest.raises(CallbackAuthError):
        a.verify_callback(b"{}", headers, "u", VerifyKeys(("k1", "k2")), NOW)


@pytest.mark.parametrize("name", ["crun", "evolink"])
def test_unsigned_providers_check_nothing(name: str) -> None:
    assert adapter(name).verify_callback(b"{}", {}, "t", VerifyKeys(), NOW) is Trust.NONE
