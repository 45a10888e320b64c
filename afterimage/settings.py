"""Settings: built once from a mapping (normally os.environ); the only reader of the environment."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from afterimage.errors import ConfigError
from afterimage.providers import ADAPTERS, NAMES
from afterimage.redis_client import check_url
from afterimage.tokens import callback_token, webhook_secret
from afterimage.webhooks import secret_key

PROVIDERS = NAMES
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Secret(str):
    """A string that never shows itself in repr()."""

    def __repr__(self) -> str:
        return "Secret('**********')"


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    redis_min_replicas: int = 0
    data_dir: Path = Path("afterimage-data")
    storage_url: str = ""
    s3_endpoint_url: str | None = None
    public_url: str = "http://127.0.0.1:8080"
    secrets: tuple[Secret, ...] = ()
    api_token: Secret | None = None
    api_keys: Mapping[str, Secret] = field(default_factory=dict)
    base_urls: Mapping[str, str] = field(default_factory=dict)
    webhook_secrets: Mapping[str, tuple[Secret, ...]] = field(default_factory=dict)
    keys_urls: Mapping[str, str] = field(default_factory=dict)
    signature_tolerance: float = 300.0
    download_allow_cidrs: tuple[Network, ...] = ()
    max_image_bytes: int = 100 * 1024 * 1024
    max_image_pixels: int = 100_000_000
    download_stall_timeout: float = 30.0
    download_min_rate: float = 1_000_000.0
    host: str = "127.0.0.1"
    port: int = 8080
    archive_retries: int = 5
    archive_concurrency: int = 16
    archive_memory: int = 8 * 1024 * 1024
    download_per_host: int = 16
    poll_give_up: float = 6 * 3600.0
    log_level: str = "INFO"
    poll_scale: float = 1.0
    poll_detection: float = 30.0
    poll_lease: float = 60.0
    poll_rate: float = 10.0
    notify_url: str | None = None
    notify_secret: Secret | None = None
    callback_read_timeout: float = 10.0
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    forwarded_allow_ips: str | None = None
    retention_seconds: float = 30 * 86400.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the contract's AFTERIMAGE_* variables from `env` (default: os.environ)."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"AFTERIMAGE_{name}", "").strip()
            return value or None

        data_dir = Path(get("DATA_DIR") or "afterimage-data").absolute()
        storage = get("STORAGE_URL") or f"file://{data_dir / 'archive'}"
        keys = {p: Secret(k) for p in PROVIDERS if (k := get(f"{p.upper()}_API_KEY"))}
        bases = {p: (get(f"{p.upper()}_BASE_URL") or a.default_base_url).rstrip("/")
                 for p, a in ADAPTERS.items()}
        return cls(
            redis_url=_redis_url(get("REDIS_URL")),
            redis_min_replicas=_count(get, "REDIS_MIN_REPLICAS"),
            data_dir=data_dir,
            storage_url=storage,
            s3_endpoint_url=get("S3_ENDPOINT_URL"),
            public_url=(get("PUBLIC_URL") or "http://127.0.0.1:8080").rstrip("/"),
            secrets=_secrets(get("SECRET")),
            api_token=Secret(t) if (t := get("API_TOKEN")) else None,
            api_keys=keys,
            base_urls=bases,
            webhook_secrets=_webhook_secrets(get),
            keys_urls={p: url for p, a in ADAPTERS.items() if a.keys_url_setting
                       and (url := get(a.keys_url_setting) or a.default_keys_url)},
            signature_tolerance=_number(
                get, "SIGNATURE_TOLERANCE", _number(get, "KIE_SIGNATURE_TOLERANCE", 300.0)),
            download_allow_cidrs=_cidrs(get("DOWNLOAD_ALLOW_CIDRS")),
            max_image_bytes=int(_number(get, "MAX_IMAGE_BYTES", 100 * 1024 * 1024)),
            max_image_pixels=int(_number(get, "MAX_IMAGE_PIXELS", 100_000_000)),
            download_stall_timeout=_positive(get, "DOWNLOAD_STALL_TIMEOUT", 30.0),
            download_min_rate=_positive(get, "DOWNLOAD_MIN_RATE", 1_000_000.0),
            host=get("HOST") or "127.0.0.1",
            port=int(_number(get, "PORT", 8080)),
            archive_retries=int(_number(get, "ARCHIVE_RETRIES", 5)),
            archive_concurrency=_at_least_one(get, "ARCHIVE_CONCURRENCY", 16),
            archive_memory=_count(get, "ARCHIVE_MEMORY_BYTES", 8 * 1024 * 1024),
            download_per_host=_at_least_one(get, "DOWNLOAD_PER_HOST", 16),
            poll_give_up=_number(get, "POLL_GIVE_UP_SECONDS", 6 * 3600.0),
            log_level=(get("LOG_LEVEL") or "INFO").upper(),
            poll_scale=_number(get, "POLL_SCALE", 1.0),
            poll_detection=_positive(get, "POLL_DETECTION_SECONDS", 30.0),
            poll_lease=_number(get, "POLL_LEASE_SECONDS", 60.0),
            poll_rate=_number(get, "POLL_RATE", 10.0),
            notify_url=_notify_url(get("NOTIFY_URL"), get("NOTIFY_SECRET")),
            notify_secret=Secret(n) if (n := get("NOTIFY_SECRET")) else None,
            callback_read_timeout=_number(get, "CALLBACK_READ_TIMEOUT", 10.0),
            **_tls(get("TLS_CERT_FILE"), get("TLS_KEY_FILE")),
            forwarded_allow_ips=get("FORWARDED_ALLOW_IPS"),
            retention_seconds=_retention(_number(get, "RETENTION_SECONDS", 30 * 86400.0)),
        )

    @property
    def download_time_limit(self) -> float:
        """The longest one image download may take while it keeps making progress: long enough
        for an image of the size limit at the minimum rate, never under the stall timeout."""
        return max(self.download_stall_timeout, self.max_image_bytes / self.download_min_rate)

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def secret_values(self) -> tuple[str, ...]:
        """Every secret these settings hold or make, for the logs to leave out: the callback
        secrets and the tokens they sign, the API token, provider API keys, signing keys."""
        tokens = [callback_token(s, p) for s in self.secrets for p in PROVIDERS]
        handed_out = [webhook_secret(s, p) for s in self.secrets
                      for p, a in ADAPTERS.items() if a.hands_out_secret]
        return (*self.secrets, *tokens, *handed_out,
                *([self.api_token] if self.api_token else []), *self.api_keys.values(),
                *(k for keys in self.webhook_secrets.values() for k in keys),
                *([self.notify_secret] if self.notify_secret else []))

    def https_warnings(self) -> list[str]:
        """What is wrong with a plain-http public URL: the providers that refuse it."""
        if not self.public_url.startswith("http://"):
            return []
        return [f"{name} refuses a callback URL that is not https, and AFTERIMAGE_PUBLIC_URL is "
                f"{self.public_url}: serve TLS (AFTERIMAGE_TLS_CERT_FILE and "
                "AFTERIMAGE_TLS_KEY_FILE) or put an https proxy in front and set "
                "AFTERIMAGE_PUBLIC_URL to its https:// address"
                for name, adapter in ADAPTERS.items()
                if adapter.https_callbacks_only and name in self.api_keys
                and not _loopback(self.base_urls.get(name, ""))]  # a local stand-in does not

    def signature_warnings(self) -> list[str]:
        """Providers whose callbacks must be signed but that have nothing to check them with:
        every callback of theirs will be refused (401)."""
        out = []
        for name, a in ADAPTERS.items():
            base = self.base_urls.get(name) or a.default_base_url
            keys_url = self.keys_urls.get(name) or a.default_keys_url
            if (a.signature_required and a.has_callbacks and not self.webhook_secrets.get(name)
                    and a.keys_request(base, self.api_keys.get(name), keys_url) is None):
                setting = f"AFTERIMAGE_{a.keys_setting}" if a.keys_setting else "a key"
                out.append(f"{name} signs its callbacks and there is nothing to check them "
                           f"with: set {setting} or AFTERIMAGE_{name.upper()}_API_KEY; until "
                           f"then every {name} callback is refused (401)")
        return out

    def require_receiver_secrets(self) -> None:
        """The plain receiver refuses to start without a secret and an API token."""
        if not self.secrets:
            raise ConfigError("AFTERIMAGE_SECRET is not set; callback URLs cannot be made")
        if self.api_token is None:
            raise ConfigError("AFTERIMAGE_API_TOKEN is not set; the /v1 API would be open")


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls(cert: str | None, key: str | None) -> dict[str, Path | None]:
    """Both PEM files or neither; each must exist."""
    if (cert is None) != (key is None):
        raise ConfigError("AFTERIMAGE_TLS_CERT_FILE and AFTERIMAGE_TLS_KEY_FILE go together: "
                          "set both (PEM certificate chain and its private key) or neither")
    out: dict[str, Path | None] = {"tls_cert_file": None, "tls_key_file": None}
    for name, raw in (("CERT", cert), ("KEY", key)):
        if raw is not None:
            path = Path(raw).absolute()
            if not path.is_file():
                raise ConfigError(f"AFTERIMAGE_TLS_{name}_FILE: no such file {raw!r}")
            out[f"tls_{name.lower()}_file"] = path
    return out


def _secrets(raw: str | None) -> tuple[Secret, ...]:
    return tuple(Secret(s.strip()) for s in (raw or "").split(",") if s.strip())


def _webhook_secrets(get: object) -> dict[str, tuple[Secret, ...]]:
    """Each provider's configured callback secrets (AFTERIMAGE_KIE_WEBHOOK_HMAC_KEY, ...);
    a `whsec_` secret must decode."""
    out: dict[str, tuple[Secret, ...]] = {}
    for p, a in ADAPTERS.items():
        if a.keys_setting and (found := _secrets(get(a.keys_setting))):  # type: ignore[operator]
            for s in found:
                try:
                    secret_key(s)
                except ValueError as exc:
                    raise ConfigError(f"AFTERIMAGE_{a.keys_setting}: {exc}") from None
            out[p] = found
    return out


def _number(get: object, name: str, default: float) -> float:
    raw = get(name)  # type: ignore[operator]
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"AFTERIMAGE_{name} must be a number, not {raw!r}") from None


def _positive(get: object, name: str, default: float) -> float:
    value = _number(get, name, default)
    if not 0 < value < float("inf"):
        raise ConfigError(f"AFTERIMAGE_{name} must be a positive number of seconds, not {value}")
    return value


def _redis_url(url: str | None) -> str | None:
    if url is not None:
        check_url(url)
    return url


def _count(get: object, name: str, default: int = 0) -> int:
    value = _number(get, name, default)
    if value < 0 or value != int(value):
        raise ConfigError(f"AFTERIMAGE_{name} must be a whole number, 0 or more")
    return int(value)


def _at_least_one(get: object, name: str, default: int) -> int:
    value = _count(get, name, default)
    if value < 1:
        raise ConfigError(f"AFTERIMAGE_{name} must be a whole number, 1 or more")
    return value


def _retention(seconds: float) -> float:
    if seconds < 0:
        raise ConfigError(f"AFTERIMAGE_RETENTION_SECONDS must not be negative, not {seconds:g}")
    return seconds


def _notify_url(url: str | None, secret: str | None) -> str | None:
    """Completion events go only to an http(s) URL, and are always signed."""
    if url is None:
        return None
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ConfigError(f"AFTERIMAGE_NOTIFY_URL must be an http(s) URL, not {url!r}")
    if secret is None:
        raise ConfigError("AFTERIMAGE_NOTIFY_URL is set but AFTERIMAGE_NOTIFY_SECRET is not; "
                          "completion events are always signed")
    try:
        secret_key(secret)
    except ValueError as exc:
        raise ConfigError(f"AFTERIMAGE_NOTIFY_SECRET: {exc}") from None
    return url


def _cidrs(raw: str | None) -> tuple[Network, ...]:
    out: list[Network] = []
    for part in (raw or "").split(","):
        if part.strip():
            try:
                out.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                msg = f"AFTERIMAGE_DOWNLOAD_ALLOW_CIDRS: not a network {part!r}"
                raise ConfigError(msg) from None
    return tuple(out)
