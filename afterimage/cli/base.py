"""The `afterimage` command group and what its commands share."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from afterimage import embedded
from afterimage.errors import AfterimageError, UnknownProviderError
from afterimage.settings import Secret, Settings

F = TypeVar("F", bound=Callable[..., Any])


class BadUsage(AfterimageError):
    """An argument the command cannot take (exit status 2)."""

    code = "bad_usage"


def fails_cleanly(func: F) -> F:
    """Errors become one line on stderr and exit status 1; bad usage (an unknown provider, an
    argument the command cannot take) exits 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (BadUsage, UnknownProviderError) as exc:
            click.echo(f"afterimage: error: {exc}", err=True)
            sys.exit(2)
        except AfterimageError as exc:
            click.echo(f"afterimage: error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def effective_settings() -> Settings:
    """Settings from the environment, completed from what `afterimage up` keeps in the data dir."""
    settings = Settings.from_env()
    changes: dict[str, Any] = {}
    stored = settings.data_dir / "secrets.json"
    if stored.exists() and (not settings.secrets or settings.api_token is None):
        kept = embedded.load_or_create_secrets(settings.data_dir)
        if not settings.secrets:
            changes["secrets"] = (Secret(kept["secret"]),)
        if settings.api_token is None:
            changes["api_token"] = Secret(kept["api_token"])
    if settings.redis_url is None and embedded.socket_path(settings.data_dir).exists():
        changes["redis_url"] = embedded.redis_url(settings.data_dir)
    return settings.with_(**changes) if changes else settings


def need_redis(settings: Settings) -> str:
    if settings.redis_url is None:
        raise AfterimageError(
            "AFTERIMAGE_REDIS_URL is not set and no `afterimage up` is running in "
            f"{settings.data_dir}"
        )
    return settings.redis_url


@click.group()
@click.version_option(package_name="afterimage")
def main() -> None:
    """afterimage: catch image-generation results and archive them before their links expire."""


def command(name: str | None = None) -> Callable[[F], F]:
    def deco(func: F) -> F:
        return main.command(name)(fails_cleanly(func))  # type: ignore[return-value]

    return deco


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))
