"""`afterimage simulate`: local stand-ins for all nine providers on one port."""

from __future__ import annotations

from typing import Any

import click

from afterimage.simulator.config import PROVIDERS, SimConfig


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise click.BadParameter(f"expected NAME=VALUE, got {value!r}", param_hint=what)
        out[name.strip()] = rest.strip()
    return out


def _provider_faults(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for provider_fault, value in _pairs(values, "--fault").items():
        provider, sep, fault = provider_fault.partition(":")
        if not sep or provider not in PROVIDERS:
            raise click.BadParameter(
                f"expected PROVIDER:FAULT=VALUE, got {provider_fault!r}", param_hint="--fault"
            )
        parsed: Any
        if value.lower() in ("true", "on", "yes"):
            parsed = True
        elif value.lower() in ("false", "off", "no"):
            parsed = False
        else:
            try:
                parsed = int(value) if value.isdigit() else float(value)
            except ValueError as exc:
                raise click.BadParameter(
                    f"{value!r} is not a number", param_hint="--fault"
                ) from exc
        out.setdefault(provider, {})[fault] = parsed
    return out


FRACTION = click.FloatRange(0.0, 1.0)


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=9090, show_default=True, type=int, help="Port (0: any free).")
@click.option(
    "--delay",
    default=3.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds from create to completion.",
)
@click.option(
    "--images",
    default=1,
    show_default=True,
    type=click.IntRange(1, 10),
    help="Images per task, unless the create call asks for `n`.",
)
@click.option(
    "--format",
    "image_format",
    default="png",
    show_default=True,
    type=click.Choice(["png", "jpeg", "webp"]),
    help="Image format.",
)
@click.option("--width", default=256, show_default=True, type=click.IntRange(min=1),
              help="Width of the generated images in pixels.")
@click.option("--height", default=256, show_default=True, type=click.IntRange(min=1),
              help="Height of the generated images in pixels.")
@click.option(
    "--image-bytes",
    type=click.IntRange(min=64),
    default=None,
    help="Approximate image size in bytes (noise; overrides width and height).",
)
@click.option(
    "--link-ttl",
    default=86400.0,
    show_default=True,
    type=float,
    help="Seconds the signed image links stay valid after completion (replicate, fal and bfl "
    "keep their own shorter lives: see --link-scale).",
)
@click.option(
    "--link-scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.0, min_open=True),
    help="Scales the short link lives of replicate and fal (1 h) and bfl (10 min).",
)
@click.option(
    "--expired-status",
    default="410",
    show_default=True,
    type=click.Choice(["403", "410"]),
    help="What an expired link answers.",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="PROVIDER=KEY",
    help="Accept only this API key for the provider (repeatable).",
)
@click.option("--kie-webhook-key", default=None, help="Sign kie callbacks with this HMAC key.")
@click.option(
    "--crun-callback-wrapped",
    is_flag=True,
    help="Send crun callbacks in the {code,message,data} envelope.",
)
@click.option(
    "--unknown",
    default="not_found",
    show_default=True,
    type=click.Choice(["not_found", "pending"]),
    help="How status queries for unknown task ids answer.",
)
@click.option(
    "--no-track-unknown",
    is_flag=True,
    help="Do not keep per-id query logs for unknown ids (large benchmarks).",
)
@click.option("--drop", default=0.0, type=FRACTION, help="Fraction of callbacks dropped.")
@click.option(
    "--duplicate", default=0.0, type=FRACTION, help="Fraction of callbacks sent more than once."
)
@click.option(
    "--copies",
    default=2,
    show_default=True,
    type=click.IntRange(2, 10),
    help="Deliveries of a duplicated callback.",
)
@click.option("--late", default=0.0, type=FRACTION, help="Fraction of callbacks sent late.")
@click.option(
    "--late-delay",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Extra seconds for a late callback.",
)
@click.option(
    "--rate-limit", default=0.0, type=FRACTION, help="Fraction of status queries answered 429."
)
@click.option(
    "--retry-after",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Retry-After seconds on a 429.",
)
@click.option(
    "--storm",
    default=0.0,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Answer every status query 429 for this long after start.",
)
@click.option(
    "--server-errors", default=0.0, type=FRACTION, help="Fraction of status queries answered 5xx."
)
@click.option(
    "--truncate", default=0.0, type=FRACTION, help="Fraction of image downloads cut short."
)
@click.option("--fail", default=0.0, type=FRACTION, help="Fraction of generations that fail.")
@click.option(
    "--resign/--no-resign",
    default=False,
    show_default=True,
    help="Status queries hand out fresh links for expired ones.",
)
@click.option(
    "--fault",
    "provider_faults",
    multiple=True,
    metavar="PROVIDER:FAULT=VALUE",
    help="A fault for one provider only, e.g. kie:drop=0.5 (repeatable).",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
def simulate(
    host: str,
    port: int,
    delay: float,
    images: int,
    image_format: str,
    width: int,
    height: int,
    image_bytes: int | None,
    link_ttl: float,
    link_scale: float,
    expired_status: str,
    keys: tuple[str, ...],
    kie_webhook_key: str | None,
    crun_callback_wrapped: bool,
    unknown: str,
    no_track_unknown: bool,
    drop: float,
    duplicate: float,
    copies: int,
    late: float,
    late_delay: float,
    rate_limit: float,
    retry_after: int,
    storm: float,
    server_errors: float,
    truncate: float,
    fail: float,
    resign: bool,
    provider_faults: tuple[str, ...],
    access_log: bool,
) -> None:
    """Serve local stand-ins for all nine providers (for trying afterimage without accounts)."""
    faults: dict[str, Any] = {
        "drop": drop,
        "duplicate": duplicate,
        "copies": copies,
        "late": late,
        "late_delay": late_delay,
        "rate_limit": rate_limit,
        "storm_seconds": storm,
        "server_error": server_errors,
        "truncate": truncate,
        "fail": fail,
        "resign": resign,
    }
    try:
        config = SimConfig.from_options(
            delay=delay,
            images=images,
            image_format=image_format,
            width=width,
            height=height,
            image_bytes=image_bytes,
            link_ttl=link_ttl,
            link_scale=link_scale,
            expired_status=int(expired_status),
            keys=_pairs(keys, "--key"),
            kie_webhook_key=kie_webhook_key,
            crun_callback_wrapped=crun_callback_wrapped,
            unknown=unknown,
            track_unknown=not no_track_unknown,
            retry_after=retry_after,
            faults=faults,
            provider_faults=_provider_faults(provider_faults),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    def announce(line: str) -> None:
        click.echo(line)

    try:
        from afterimage.simulator.server import serve  # not loaded by the other commands

        serve(host, port, config, access_log=access_log, announce=announce)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc
