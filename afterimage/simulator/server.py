"""Serving the simulator: `run_simulator` in a background thread, `serve` in the foreground."""

from __future__ import annotations

import ipaddress
import shlex
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn

from afterimage.simulator.app import create_app
from afterimage.simulator.config import PROVIDERS, SimConfig
from afterimage.simulator.context import SimContext


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def public_url(host: str, port: int) -> str:
    """The URL clients use: a wildcard bind is reached through loopback."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def jwks_url(base: str) -> str:
    """Where the simulated fal publishes the keys its webhooks are signed with."""
    return f"{base}/fal/.well-known/jwks.json"


def env_lines(base: str) -> list[str]:
    """`AFTERIMAGE_<PROVIDER>_BASE_URL=...` for every provider, and AFTERIMAGE_FAL_JWKS_URL."""
    return [*(f"AFTERIMAGE_{p.upper()}_BASE_URL={base}/{p}" for p in PROVIDERS),
            f"AFTERIMAGE_FAL_JWKS_URL={jwks_url(base)}"]


SIM_KEY = "sim-key"  # what the export lines give a provider the simulator takes any key for


def allow_cidr(base: str) -> str | None:
    """The network afterimage must be allowed to download from to reach these image links
    (None when the address is public: downloads may go there anyway)."""
    host = urlsplit(base).hostname or "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.0/8" if host == "localhost" else None
    if address.is_global:
        return None
    if address.is_loopback:
        return "127.0.0.0/8" if address.version == 4 else "::1/128"
    return f"{address}/{address.max_prefixlen}"


def export_lines(base: str, keys: Mapping[str, str]) -> list[str]:
    """Ready-to-paste shell lines with everything afterimage needs to use this simulator: the
    download allow-list, and every provider's base URL and API key (one line each)."""
    lines = ["# afterimage's settings for this simulator; paste them into every shell that "
             "runs afterimage or its CLI"]
    if (network := allow_cidr(base)) is not None:
        lines.append(f"export AFTERIMAGE_DOWNLOAD_ALLOW_CIDRS={network}"
                     "   # the simulator's image links are not on a public address")
    for p in PROVIDERS:
        name = f"AFTERIMAGE_{p.upper()}"
        lines.append(f"export {name}_BASE_URL={shlex.quote(f'{base}/{p}')} "
                     f"{name}_API_KEY={shlex.quote(keys.get(p, SIM_KEY))}")
    lines.append(f"export AFTERIMAGE_FAL_JWKS_URL={shlex.quote(jwks_url(base))}"
                 "   # the keys that verify the simulated fal's webhooks")
    return lines


def _server(config: SimConfig, access_log: bool) -> tuple[uvicorn.Server, SimContext]:
    app = create_app(config)
    uv_config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="info" if access_log else "warning",
        access_log=access_log,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=30,
        ws="none",
    )
    ctx: SimContext = app.state.sim
    return uvicorn.Server(uv_config), ctx


class RunningSimulator:
    """A simulator serving from a background thread; a context manager that stops it."""

    def __init__(
        self,
        server: uvicorn.Server,
        thread: threading.Thread,
        url: str,
        context: SimContext,
    ) -> None:
        self.server = server
        self.thread = thread
        self.url = url
        self.context = context
        self._client = httpx.Client(base_url=url, timeout=10.0)

    def base_url(self, provider: str) -> str:
        """The provider's API base, e.g. `http://127.0.0.1:PORT/kie`."""
        return f"{self.url}/{provider}"

    def env(self) -> dict[str, str]:
        """`AFTERIMAGE_<PROVIDER>_BASE_URL` for every provider, and AFTERIMAGE_FAL_JWKS_URL."""
        return dict(line.split("=", 1) for line in env_lines(self.url))

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call `/_sim/<path>` and return its JSON; raises on a non-2xx answer."""
        reply = self._client.request(method, f"/_sim/{path.lstrip('/')}", json=body)
        reply.raise_for_status()
        return reply.json()

    def create_task(self, provider: str, **options: Any) -> dict[str, Any]:
        """A task made directly (see `POST /_sim/tasks`)."""
        result: dict[str, Any] = self.control("POST", "tasks", {"provider": provider, **options})
        return result

    def task(self, provider: str, task_id: str) -> dict[str, Any]:
        """The task's counters (see `GET /_sim/tasks/{provider}/{id}`)."""
        result: dict[str, Any] = self.control("GET", f"tasks/{provider}/{task_id}")
        return result

    def set_faults(self, provider: str | None = None, **faults: Any) -> dict[str, Any]:
        body = dict(faults) if provider is None else {"provider": provider, **faults}
        result: dict[str, Any] = self.control("POST", "faults", body)
        return result

    def configure(self, **settings: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.control("POST", "config", settings)
        return result

    def reset(self) -> None:
        self.control("POST", "reset")

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down and wait for its thread."""
        self._client.close()
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_simulator(
    host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False, **config: Any
) -> RunningSimulator:
    """Start the simulator in a background thread and return once it accepts connections.

    `config` takes SimConfig's fields (delay, images, image_format, width, height,
    image_bytes, link_ttl, keys, kie_webhook_key, ...) and fault names (drop=0.5, ...).
    """
    sock = bind(host, port)
    url = public_url(host, sock.getsockname()[1])
    sim_config = SimConfig.from_options(public_url=url, **config)
    server, ctx = _server(sim_config, access_log)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported to the starting thread
            failure.append(exc)
        finally:
            sock.close()

    thread = threading.Thread(target=target, name=f"afterimage-simulator-{url}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15.0
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5.0)
            raise RuntimeError(f"the simulator did not start: {failure[:1] or 'timeout'}")
        time.sleep(0.01)
    return RunningSimulator(server, thread, url, ctx)


def serve(
    host: str,
    port: int,
    config: SimConfig,
    access_log: bool = False,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve in the foreground until interrupted, announcing the base URLs first."""
    sock = bind(host, port)
    url = public_url(host, sock.getsockname()[1])
    config.public_url = url
    server, _ = _server(config, access_log)
    for line in export_lines(url, config.keys):
        announce(line)
    announce(f"# control API: {url}/_sim (Ctrl-C stops the simulator)")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
