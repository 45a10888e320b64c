"""Logging: one JSON object per line on stderr, no secrets, no signed query strings."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_QUERY = re.compile(r"(https?://[^\s?\"']+)\?[^\s\"']*", re.IGNORECASE)
# Fields taken from `extra={...}`: what happened, to which task, and the state it moved to.
FIELDS = ("event", "provider", "task_id", "state", "previous", "outcome")


def scrub(text: str) -> str:
    """Drop query strings from URLs (signed links carry their credentials there)."""
    return _QUERY.sub(r"\1?…", text) if "?" in text else text  # most text has no query


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "INFO") -> None:
    """JSON lines to stderr at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "botocore", "boto3", "urllib3", "rq.worker"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
