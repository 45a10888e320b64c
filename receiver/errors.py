"""The one table that maps exceptions to HTTP answers, and the one handler that answers them.

`answer` serves the callback route in front of Starlette (receiver/callbacks.py) and every
Starlette route alike. The status is found by walking the exception's class hierarchy, most
specific class first, so a subclass answers as its nearest listed ancestor unless it is listed
itself: `NotJsonError` (400) before `AdapterError` (422), any `AfterimageError` not listed 500.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from afterimage import errors

log = logging.getLogger("afterimage.receiver")

STATUS: dict[type[BaseException], int] = {
    errors.NotJsonError: 400,  # not valid JSON, or nested deeper than the parser allows
    errors.AdapterError: 422,  # valid JSON the provider's adapter cannot read
    errors.CallbackAuthError: 401,
    errors.UnknownProviderError: 404,
    errors.InvalidRequestError: 422,
    errors.TaskNotFoundError: 404,
    errors.NotReplayableError: 409,
    errors.LedgerUnavailableError: 503,
    errors.StorageError: 503,  # the bucket cannot be read now (a removed task's manifest)
    errors.ProviderRefusedInputError: 422,  # the provider refuses the caller's own fields
    errors.ProviderApiError: 502,  # the provider's API failed us: auth, credit, rate, 5xx
    errors.ConfigError: 500,
    errors.AfterimageError: 500,
    Exception: 500,
}


class ApiError(errors.AfterimageError):
    """An error the receiver raises itself, with its status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ClientGone(Exception):
    """The client disconnected before its body was complete; there is no one to answer."""


def status_of(exc: BaseException) -> int:
    """The HTTP status for `exc`: its own (ApiError, Starlette's HTTPException), else the
    table's entry for the most specific class in its hierarchy."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    return next(STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS)


def code_of(exc: BaseException) -> str:
    if isinstance(exc, errors.AfterimageError):
        return exc.code
    if isinstance(exc, HTTPException):
        return {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return "internal_error"


def error_response(
    status: int, code: str, message: str, request: Request | None = None,
    *, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The JSON error body; the connection is closed when `request` left a body unread."""
    headers = dict(headers or {})
    if request is not None and _body_left(request):
        headers["Connection"] = "close"
    return JSONResponse({"error": {"code": code, "message": message, **(details or {})}},
                        status_code=status, headers=headers or None)


def _body_left(request: Request) -> bool:
    """A body was announced and not read to its end (refused early, too large, too slow):
    closing stops the client from streaming on into bytes that would only be thrown away."""
    length = request.headers.get("content-length", "0")
    announced = length.strip() not in ("", "0") or "transfer-encoding" in request.headers
    return announced and not getattr(request.state, "body_complete", False)


async def answer(request: Request, exc: Exception) -> Response:
    """The answer to any exception a route raised: status from the table, the JSON error
    object, one log line."""
    if isinstance(exc, ClientGone):
        log.info("%s %s: the client disconnected before its body was complete",
                 request.method, request.url.path)
        return Response(status_code=400)  # not sent: uvicorn drops what follows a disconnect
    status, code = status_of(exc), code_of(exc)
    if not isinstance(exc, errors.AfterimageError | HTTPException):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, code, "internal error (logged)", request)
    message = str(exc.detail) if isinstance(exc, HTTPException) else str(exc)
    details: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, errors.ProviderApiError):
        details = {"provider": exc.provider, "provider_status": exc.status,
                   "provider_code": exc.provider_code}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if isinstance(exc, errors.AfterimageError):
        log.warning("%s %s -> %d %s: %s", request.method, request.url.path, status, code, exc)
    return error_response(status, code, message, request, details=details, headers=headers)
