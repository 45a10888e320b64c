"""The simulator's shared context: settings, tasks, faults, links, images and callbacks."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import math
import secrets
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from afterimage.simulator.config import PROVIDERS, SimConfig
from afterimage.simulator.faults import FaultBook, chance
from afterimage.simulator.images import ImageCache, ImageSpec, normalize_format
from afterimage.simulator.links import LinkSigner
from afterimage.simulator.state import SimTask, Store

if TYPE_CHECKING:
    from afterimage.simulator.apis.base import ProviderApi
    from afterimage.simulator.callbacks import CallbackDispatcher

OUTCOMES = {
    "succeeded": "succeeded",
    "success": "succeeded",
    "completed": "succeeded",
    "failed": "failed",
    "fail": "failed",
}
MAX_IMAGES = 10


@dataclass
class TaskOptions:
    """Per-task choices; None means the simulator's configured default."""

    delay: float | None = None
    images: int | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    outcome: str | None = None
    link_ttl: float | None = None
    callback_url: str | None = None
    model: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    webhook_secret: str | None = None  # echoed in X-Webhook-Secret (bfl)
    result_url: str | None = None  # handed out instead of the image links (any string)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TaskOptions:
        """Read and check options (the control API's names); ValueError on a bad one."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown task option(s): {', '.join(sorted(unknown))}")
        opts = cls()
        for name in ("delay", "link_ttl"):
            if values.get(name) is not None:
                setattr(opts, name, _number(name, values[name], allow_negative=name == "link_ttl"))
        for name in ("images", "width", "height", "bytes"):
            if values.get(name) is not None:
                setattr(opts, name, _integer(name, values[name]))
        if opts.images is not None and not 1 <= opts.images <= MAX_IMAGES:
            raise ValueError(f"images must be from 1 to {MAX_IMAGES}")
        if opts.bytes is not None and opts.bytes < 64:
            raise ValueError("bytes must be at least 64")
        if values.get("format") is not None:
            opts.format = normalize_format(values["format"])
        if values.get("outcome") is not None:
            outcome = OUTCOMES.get(str(values["outcome"]).lower())
            if outcome is None:
                raise ValueError("outcome must be succeeded or failed")
            opts.outcome = outcome
        for name in ("callback_url", "model", "error_code", "error_message", "webhook_secret",
                     "result_url"):
            if values.get(name) is not None:
                if not isinstance(values[name], str):
                    raise ValueError(f"{name} must be a string")
                setattr(opts, name, values[name])
        return opts


def _number(name: str, value: Any, allow_negative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number")
    if value < 0 and not allow_negative:
        raise ValueError(f"{name} must not be negative")
    return float(value)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer")
    return value


class SimContext:
    """What every route needs; one per app, never module-level."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._start_config = copy.deepcopy(config)
        self.store = Store()
        self.faults = FaultBook(config.faults, config.provider_faults)
        self.signer = LinkSigner(config.secret)
        self.images = ImageCache()
        self.public_url = config.public_url.rstrip("/")
        self.apis: dict[str, ProviderApi] = {}
        self.callbacks: CallbackDispatcher | None = None
        self.fal_key = Ed25519PrivateKey.generate()  # signs fal webhooks; in the JWKS
        self.fal_old_keys: list[Ed25519PrivateKey] = []  # rotated out, still in the JWKS
        self._background: set[asyncio.Task[Any]] = set()

    def rotate_fal_key(self, keep_old: bool = True) -> None:
        """Sign fal webhooks with a new key from now on (the JWKS lists it at once)."""
        if keep_old:
            self.fal_old_keys.append(self.fal_key)
        self.fal_key = Ed25519PrivateKey.generate()

    def base_url(self, provider: str) -> str:
        return f"{self.public_url}/{provider}"

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` in the background, keeping a reference until it ends."""
        job = asyncio.get_running_loop().create_task(coro)
        self._background.add(job)
        job.add_done_callback(self._finished)

    def _finished(self, job: asyncio.Task[Any]) -> None:
        self._background.discard(job)
        if not job.cancelled():
            job.exception()  # failures are already logged where they happen

    def create_task(self, provider: str, task_id: str, opts: TaskOptions) -> SimTask | None:
        """Start a simulated generation; None when the id is taken."""
        config = self.config
        now = time.time()
        outcome = opts.outcome
        if outcome is None:
            outcome = "failed" if chance(self.faults.for_provider(provider).fail) else "succeeded"
        nbytes = opts.bytes if opts.bytes is not None else config.image_bytes
        spec = ImageSpec(
            opts.format or config.image_format,
            opts.width or config.width,
            opts.height or config.height,
            nbytes,
        )
        delay = config.delay if opts.delay is None else opts.delay
        task = SimTask(
            provider=provider,
            id=task_id,
            created_at=now,
            ready_at=now + delay,
            count=opts.images or config.images,
            image=spec,
            outcome=outcome,
            link_ttl=config.link_ttl_for(provider) if opts.link_ttl is None else opts.link_ttl,
            token=secrets.token_urlsafe(12),
            model=opts.model or "gpt-image-2",
            callback_url=opts.callback_url,
            error_code=opts.error_code,
            error_message=opts.error_message,
            result_url=opts.result_url,
        )
        if not self.store.add(task):
            return None
        if task.callback_url and self.callbacks is not None:
            self.callbacks.schedule(task)
        if outcome == "succeeded" and self.images.cached(spec) is None:
            self.spawn(self.images.get(spec))  # render now, so the first download is instant
        return task

    def complete_now(self, task: SimTask) -> None:
        """Make a pending task finish immediately (its callback, if any, goes out now)."""
        now = time.time()
        if task.ready_at <= now:
            return
        task.ready_at = now
        task.link_exp = now + task.link_ttl
        if task.callback_url and self.callbacks is not None:
            self.callbacks.schedule(task)

    def links(self, task: SimTask, now: float, resign: bool = True) -> list[str]:
        """The image URLs a status query hands out now (re-signed when that fault is on)."""
        if task.result_url is not None:
            return [task.result_url]
        expires = math.floor(task.link_exp)  # what the URL carries
        dead = now >= expires or expires <= task.revoked_before
        if dead and resign and self.faults.for_provider(task.provider).resign:
            fresh = now + task.link_ttl
            if task.link_ttl > 0:  # strictly newer than every revoked link, even within a second
                fresh = max(fresh, math.floor(task.revoked_before) + 1)
            task.link_exp = fresh
        return [self.url_for(task, name, task.link_exp) for name in task.names]

    def url_for(self, task: SimTask, name: str, expires: float) -> str:
        path = task.path(name)
        return f"{self.public_url}{path}?{self.signer.sign(path, expires)}"

    def expire_links(self, task: SimTask) -> None:
        """Kill every link handed out so far, as when a CDN's links lapse."""
        task.revoked_before = max(task.revoked_before, task.link_exp)

    def reset(self) -> None:
        """Forget every task and counter; faults and settings go back to how they started."""
        for task in self.store.clear():
            if task.timer is not None:
                task.timer.cancel()
                task.timer = None
        for job in list(self._background):
            job.cancel()
        self.faults.reset()
        start = copy.deepcopy(self._start_config)
        for f in dataclasses.fields(start):
            setattr(self.config, f.name, getattr(start, f.name))

    async def aclose(self) -> None:
        """Cancel timers and background work (callbacks in flight) at shutdown."""
        for task in list(self.store.tasks.values()):
            if task.timer is not None:
                task.timer.cancel()
        jobs = list(self._background)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)


def check_provider(name: str) -> str:
    if name not in PROVIDERS:
        raise ValueError(f"unknown provider {name!r}; one of {', '.join(PROVIDERS)}")
    return name
