"""HTML pages: the Jinja2 environment (autoescaping everything) and the headers every page gets."""

from __future__ import annotations

from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make form posts say Origin: null
    "Cache-Control": "no-store",
}
TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("receiver", "templates"), autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def wants_html(request: Request) -> bool:
    """The client asks for HTML: its Accept header names `text/html` (with a quality above
    zero). Browsers do; API clients, scripts and probes (`*/*`, JSON, nothing) do not."""
    for item in request.headers.get("accept", "").split(","):
        media, *params = (part.strip().lower() for part in item.split(";"))
        if media == "text/html":
            return _quality(params) > 0
    return False


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                return float(value)
            except ValueError:
                return 1.0
    return 1.0


def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    """Template `name` with `values`, every value escaped."""
    html = TEMPLATES.get_template(name).render(**values)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
