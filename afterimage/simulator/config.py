"""The simulator's settings: one mutable dataclass, built from keyword options."""

from __future__ import annotations

import base64
import dataclasses
import secrets
from dataclasses import dataclass, field
from typing import Any

from afterimage.providers import BUILT_IN
from afterimage.simulator.faults import Faults
from afterimage.simulator.images import normalize_format

PROVIDERS = tuple(a.name for a in BUILT_IN)  # the simulator speaks the built-in providers
# Providers whose links live less than the default day, as the real ones do (link_scale
# scales them, so a test can see a ten-minute link die in seconds).
SHORT_LINKS = {"replicate": 3600.0, "fal": 3600.0, "bfl": 600.0}
UNKNOWN_MODES = ("not_found", "pending")
APIMART_URL_STYLES = ("list", "string", "grouped")
REPLICATE_OUTPUTS = ("list", "string")
FAL_OUTPUTS = ("images", "image")
KIE_CALLBACK_IDS = ("data.taskId", "data.task_id", "taskId")

# Fields that make no sense to change while the server runs.
FIXED_FIELDS = frozenset({"secret", "public_url", "faults", "provider_faults",
                          "replicate_webhook_secret"})


@dataclass
class SimConfig:
    """Everything the simulator can be told; tests and the CLI build it with `from_options`."""

    delay: float = 3.0  # seconds from create to completion
    images: int = 1  # images per task unless the create call asks for `n`
    image_format: str = "png"  # png | jpeg | webp
    width: int = 256
    height: int = 256
    image_bytes: int | None = None  # approximate encoded size; overrides width/height
    link_ttl: float = 86400.0  # lifetime of signed image links, counted from completion
    link_scale: float = 1.0  # scales the short lives of replicate's, fal's and bfl's links
    expired_status: int = 410  # what an expired link answers (403 or 410, like real CDNs)
    keys: dict[str, str] = field(default_factory=dict)  # provider -> the only accepted key
    kie_webhook_key: str | None = None  # signs kie callbacks when set
    crun_callback_wrapped: bool = False  # crun callbacks in the {"code","message","data"} envelope
    kie_callback_id: str = "data.taskId"  # where kie callbacks name the task (all are documented)
    unknown: str = "not_found"  # how status queries for unknown ids answer: not_found | pending
    track_unknown: bool = True  # keep per-id query logs for unknown ids too
    envelope_status: bool = True  # crun/kie errors: HTTP status mirrors the envelope code
    kie_message_field: str = "msg"  # kie replies carry "msg" or "message"
    apimart_url_style: str = "list"  # list | string | grouped (one entry with every URL)
    evolink_retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0)
    replicate_output: str = "list"  # list | string: how `output` carries the URLs
    fal_output: str = "images"  # images | image: how the app's output carries the URLs
    fal_webhook_payload: bool = True  # false: webhooks carry payload null (too large)
    fal_jwks_padded: bool = False  # the JWKS's `x` with its `=` padding
    callback_timeout: float = 10.0
    retry_after: int = 1  # Retry-After seconds on a simulated 429
    faults: Faults = field(default_factory=Faults)
    provider_faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    secret: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    replicate_webhook_secret: str = field(default_factory=lambda: "whsec_" + base64.b64encode(
        secrets.token_bytes(24)).decode(), repr=False)
    public_url: str = "http://127.0.0.1:9090"

    @classmethod
    def from_options(cls, **options: Any) -> SimConfig:
        """Build a config; fault names (`drop=0.5`) given directly go to the global faults."""
        fault_names = {f.name for f in dataclasses.fields(Faults)}
        fault_values = {k: options.pop(k) for k in list(options) if k in fault_names}
        faults = options.pop("faults", None)
        if isinstance(faults, dict):
            faults = Faults.from_mapping(faults)
        config = cls(faults=faults or Faults(), **options)
        if fault_values:
            config.faults = config.faults.updated(fault_values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError on a setting the simulator cannot honour."""
        self.image_format = normalize_format(self.image_format)
        if self.unknown not in UNKNOWN_MODES:
            raise ValueError(f"unknown must be one of {UNKNOWN_MODES}")
        if self.apimart_url_style not in APIMART_URL_STYLES:
            raise ValueError(f"apimart_url_style must be one of {APIMART_URL_STYLES}")
        if self.kie_callback_id not in KIE_CALLBACK_IDS:
            raise ValueError(f"kie_callback_id must be one of {KIE_CALLBACK_IDS}")
        if self.replicate_output not in REPLICATE_OUTPUTS:
            raise ValueError(f"replicate_output must be one of {REPLICATE_OUTPUTS}")
        if self.fal_output not in FAL_OUTPUTS:
            raise ValueError(f"fal_output must be one of {FAL_OUTPUTS}")
        if not self.link_scale > 0:
            raise ValueError("link_scale must be positive")
        if self.kie_message_field not in ("msg", "message"):
            raise ValueError("kie_message_field must be msg or message")
        if self.images < 1 or self.width < 1 or self.height < 1:
            raise ValueError("images, width and height must be positive")
        if self.image_bytes is not None and self.image_bytes < 64:
            raise ValueError("image_bytes must be at least 64")
        for name in (*self.keys, *self.provider_faults):
            if name not in PROVIDERS:
                raise ValueError(f"unknown provider {name!r}")
        for values in self.provider_faults.values():
            Faults().updated(values)  # raises on an unknown fault or a bad value
        if self.expired_status not in (403, 404, 410):
            raise ValueError("expired_status must be 403, 404 or 410")
        self.evolink_retry_delays = tuple(float(d) for d in self.evolink_retry_delays)

    def link_ttl_for(self, provider: str) -> float:
        """How long a new task's links live: the provider's own short life (scaled), or
        link_ttl."""
        short = SHORT_LINKS.get(provider)
        return self.link_ttl if short is None else short * self.link_scale

    def update(self, values: dict[str, Any]) -> None:
        """Change settings at runtime (the control API); values are checked before use."""
        types = {f.name: f for f in dataclasses.fields(self)}
        for name, value in values.items():
            if name not in types or name in FIXED_FIELDS:
                raise ValueError(f"not a runtime setting: {name}")
            current = getattr(self, name)
            setattr(self, name, _coerce(name, value, current))
        self.validate()

    def public(self) -> dict[str, Any]:
        """The settings as JSON, without the signing secret and the keys' values."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("secret", "faults", "provider_faults", "replicate_webhook_secret"):
                continue
            value = getattr(self, f.name)
            if f.name == "keys":
                value = sorted(value)
            elif f.name == "kie_webhook_key":
                value = value is not None
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def _coerce(name: str, value: Any, current: Any) -> Any:
    if name == "image_bytes":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError("image_bytes must be an integer or null")
        return value
    if name == "kie_webhook_key":
        if value is not None and not isinstance(value, str):
            raise ValueError("kie_webhook_key must be a string or null")
        return value
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if isinstance(current, int | float) and not isinstance(current, bool):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number")
        return type(current)(value)
    if isinstance(current, tuple):
        if not isinstance(value, list):
            raise ValueError(f"{name} must be a list")
        return tuple(value)
    if isinstance(current, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be an object")
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value
