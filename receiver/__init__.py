"""The receiver: the Starlette app that takes provider callbacks and the /v1 API."""

from receiver.app import create_app

__all__ = ["create_app"]
