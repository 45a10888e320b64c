"""Logging: one JSON object per line on stderr, for afterimage's own loggers and uvicorn's alike,
with every secret taken out of each line before it is written (see `Redactor`)."""

from __future__ import annotations

import json
import logging
import logging.config
import re
import time
from collections.abc import Iterable
from typing import Any

# A query string after a URL or a path: signed links and `/ops?token=` carry credentials there.
_QUERY = re.compile(r"((?:https?://|/)[^\s?\"'<>]*)\?[^\s\"'<>]*", re.IGNORECASE)
# The token of a callback path: /callbacks/{provider}/{token}
_CALLBACK = re.compile(r"(/callbacks/[^/\s\"'?]+/)[^/\s\"'?<>]+")
# An Authorization header's value, should one ever be printed.
_BEARER = re.compile(r"\b(Bearer|Basic) +[\w\-.~+/=]{8,}")
# Secrets shorter than this are not searched for by value (they would blank ordinary words);
# every secret afterimage makes itself is far longer.
MIN_SECRET = 8
HIDDEN = "…"
# Fields taken from `extra={...}`: what happened, to which task, and the state it moved to.
FIELDS = ("event", "provider", "task_id", "state", "previous", "outcome")
QUIET = ("httpx", "httpcore", "botocore", "boto3", "urllib3", "s3transfer", "rq.worker")


class Redactor:
    """Takes secrets out of text: query strings, callback-path tokens, Authorization values,
    and every configured secret by its value wherever it appears."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
        self.secrets = tuple(values)

    def __call__(self, text: str) -> str:
        if "?" in text:
            text = _QUERY.sub(rf"\1?{HIDDEN}", text)
        if "/callbacks/" in text:
            text = _CALLBACK.sub(rf"\1{HIDDEN}", text)
        if " " in text:
            text = _BEARER.sub(rf"\1 {HIDDEN}", text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, HIDDEN)
        return text


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        redact = self.redact
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(out, ensure_ascii=False)


def log_config(level: str = "INFO", secrets: Iterable[str] = ()) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: JSON lines on stderr through one redacting handler,
    which uvicorn's own loggers (`uvicorn.error`, `uvicorn.access`) use too. Given to uvicorn
    as its `log_config`, so every uvicorn worker process sets itself up the same way."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "secrets": list(secrets)}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            **{name: {"handlers": [], "propagate": True}
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")},
            **{name: {"level": "WARNING"} for name in QUIET},
        },
    }


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """JSON lines to stderr at `level`, without `secrets` (and without any query string or
    callback token) in any line."""
    logging.config.dictConfig(log_config(level, secrets))
