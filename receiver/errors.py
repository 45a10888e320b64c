"""The one table that maps afterimage's exceptions to HTTP responses."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from afterimage import errors

log = logging.getLogger("afterimage.receiver")

STATUS: dict[type[errors.AfterimageError], int] = {
    errors.NotJsonError: 415,
    errors.AdapterError: 422,
    errors.CallbackAuthError: 401,
    errors.UnknownProviderError: 404,
    errors.LedgerUnavailableError: 503,
    errors.TaskGoneError: 404,
    errors.PermanentProviderError: 502,
    errors.TransientProviderError: 503,
    errors.ConfigError: 500,
}


class ApiError(errors.AfterimageError):
    """An error the receiver raises itself, with its status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_response(
    status: int, code: str, message: str, request: Request | None = None
) -> JSONResponse:
    """The JSON error body; the connection is closed when `request` left a body unread."""
    headers = {"Connection": "close"} if request is not None and _body_left(request) else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def _body_left(request: Request) -> bool:
    """A body was announced and not read to its end (refused early, too large, too slow):
    closing stops the client from streaming on into bytes that would only be thrown away."""
    length = request.headers.get("content-length", "0")
    announced = length.strip() not in ("", "0") or "transfer-encoding" in request.headers
    return announced and not getattr(request.state, "body_complete", False)


async def on_afterimage_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.AfterimageError)
    if isinstance(exc, ApiError):
        status, code = exc.status, exc.code
    else:
        status = next((s for t, s in STATUS.items() if isinstance(exc, t)), 500)
        code = exc.code
    if isinstance(exc, errors.ProviderApiError) and exc.status and 400 <= exc.status < 600:
        status = exc.status  # the provider's own status, as the contract asks
    log.warning("%s %s -> %d %s: %s", request.method, request.url.path, status, code, exc)
    return error_response(status, code, str(exc), request)


class ClientGone(Exception):
    """The client disconnected before its body was complete; there is no one to answer."""


async def on_client_gone(request: Request, exc: Exception) -> Response:
    log.info("%s %s: the client disconnected before its body was complete",
             request.method, request.url.path)
    return Response(status_code=400)  # not sent: uvicorn drops what follows a disconnect


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), request)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error (logged)", request)
