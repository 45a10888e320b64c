"""Signing in to /ops from a browser, which cannot send a bearer header when it navigates.

The API token is taken three ways: the `Authorization: Bearer` header (scripts), `?token=` on
a GET (turned at once into the cookie and a redirect, so it leaves the address bar), or the
login form (POST /ops/login). The cookie holds HMAC(token, "ops session"), never the token;
it is HttpOnly, SameSite=Strict and limited to /ops, and changing the token signs every browser
out. A POST signed in by the cookie must carry the CSRF token HMAC(token, "ops csrf") and, when
the browser says where it comes from (Origin, Sec-Fetch-Site), come from this host. Every
secret comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from receiver.body import read_request_body
from receiver.errors import ApiError
from receiver.pages import render, wants_html
from receiver.runtime import Runtime, runtime

COOKIE = "afterimage_ops"
SESSION_SECONDS = 12 * 3600
FORM_LIMIT = 16 * 1024


def _derive(rt: Runtime, purpose: bytes) -> str:
    token = rt.settings.api_token or ""
    return hmac.new(token.encode(), purpose, hashlib.sha256).hexdigest()


def csrf_token(rt: Runtime) -> str:
    return _derive(rt, b"afterimage ops csrf")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def auth(request: Request) -> str | None:
    """How the request proves it holds the API token: 'bearer', 'cookie', 'query', or None."""
    rt = runtime(request)
    token = rt.settings.api_token
    if not token:
        return None
    if hmac.compare_digest(request.headers.get("authorization", "").encode(), rt.api_token):
        return "bearer"
    given = request.query_params.get("token")
    if request.method == "GET" and given and _same(given, token):
        return "query"
    if _same(request.cookies.get(COOKIE, ""), _derive(rt, b"afterimage ops session")):
        return "cookie"
    return None


def start(request: Request, response: Response) -> Response:
    """Set the session cookie on `response`."""
    response.set_cookie(
        COOKIE, _derive(runtime(request), b"afterimage ops session"), max_age=SESSION_SECONDS,
        path="/ops", secure=request.url.scheme == "https", httponly=True, samesite="strict",
    )
    return response


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site."""
    origin = request.headers.get("origin")
    if origin is not None:
        return urlsplit(origin).netloc == request.headers.get("host", "")
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form (first value of each field)."""
    if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        raise ApiError(415, "not_a_form", "expected application/x-www-form-urlencoded")
    body = await read_request_body(request, FORM_LIMIT)
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(422, "invalid_request", "unreadable form") from None
    return {name: values[0] for name, values in fields.items()}


async def checked_form(request: Request) -> dict[str, str]:
    """The form of an authenticated POST; a cookie-signed one must pass the CSRF checks."""
    how = auth(request)
    if how is None:
        raise ApiError(401, "unauthorized", "sign in at /ops first")
    form = await read_form(request)
    if how == "cookie" and not (same_origin(request)
                                and _same(form.get("csrf", ""), csrf_token(runtime(request)))):
        raise ApiError(403, "csrf", "stale or foreign form; reload /ops and try again")
    return form


async def login(request: Request) -> Response:
    """POST /ops/login: the token from the form, answered with the session cookie."""
    form = await read_form(request)
    token = runtime(request).settings.api_token
    if not same_origin(request):
        raise ApiError(403, "csrf", "foreign form")
    if not token or not _same(form.get("token", ""), token):
        if not wants_html(request):
            raise ApiError(401, "unauthorized", "that is not the API token")
        return render("login.html", 401, error="That is not the API token.")
    return start(request, RedirectResponse("/ops", 303))


async def logout(request: Request) -> Response:
    """POST /ops/logout."""
    await checked_form(request)
    response = RedirectResponse("/ops", 303)
    response.delete_cookie(COOKIE, path="/ops", httponly=True, samesite="strict")
    return response
