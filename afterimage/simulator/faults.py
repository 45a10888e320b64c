"""Fault switches: global values with per-provider overrides, changeable while serving."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FRACTIONS = ("drop", "duplicate", "late", "rate_limit", "server_error", "truncate", "fail")


@dataclass(frozen=True)
class Faults:
    """One provider's fault switches; fractions are probabilities from 0 to 1."""

    drop: float = 0.0  # callbacks never sent
    duplicate: float = 0.0  # callbacks sent `copies` times
    copies: int = 2  # deliveries of a duplicated callback (twice or thrice)
    late: float = 0.0  # callbacks sent `late_delay` seconds after completion
    late_delay: float = 5.0
    rate_limit: float = 0.0  # status queries answered 429 with Retry-After
    storm_until: float = 0.0  # unix time until which every status query answers 429
    server_error: float = 0.0  # status queries answered 500/502/503
    truncate: float = 0.0  # image downloads that stop short of their Content-Length
    slow: float = 0.0  # seconds every image download is spread over (0: full speed)
    slow_status: float = 0.0  # seconds every status query waits before it is answered
    fail: float = 0.0  # generations that end failed
    resign: bool = False  # a status query re-signs links that have expired

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Faults:
        return cls().updated(values)

    def updated(self, values: Mapping[str, Any]) -> Faults:
        """A copy with `values` applied; `storm_seconds` opens a 429 storm starting now."""
        changes = dict(_checked(values))
        return dataclasses.replace(self, **changes)

    def storming(self, now: float) -> bool:
        return now < self.storm_until

    def to_json(self, now: float) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["storm_seconds_left"] = max(0.0, round(self.storm_until - now, 3))
        return out


def chance(fraction: float) -> bool:
    """True with probability `fraction`; exact for 0 and 1."""
    if fraction <= 0.0:
        return False
    return fraction >= 1.0 or random.random() < fraction


def _checked(values: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(Faults)}
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name == "storm_seconds":
            seconds = _number(name, value)
            out["storm_until"] = time.time() + seconds if seconds > 0 else 0.0
        elif name not in names:
            raise ValueError(f"unknown fault: {name}")
        elif name == "resign":
            if not isinstance(value, bool):
                raise ValueError("resign must be true or false")
            out[name] = value
        elif name == "copies":
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 10:
                raise ValueError("copies must be an integer from 2 to 10")
            out[name] = value
        else:
            number = _number(name, value)
            if name in FRACTIONS and not 0.0 <= number <= 1.0:
                raise ValueError(f"{name} must be a fraction from 0 to 1")
            out[name] = number
    return out


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a non-negative number")
    return float(value)


class FaultBook:
    """Global faults plus per-provider overrides; lookups return a cached merged view."""

    def __init__(self, base: Faults, overrides: Mapping[str, Mapping[str, Any]]) -> None:
        self._lock = threading.Lock()
        self._start = (base, {p: dict(_checked(v)) for p, v in overrides.items()})
        self._global = base
        self._overrides: dict[str, dict[str, Any]] = {}
        self._merged: dict[str, Faults] = {}
        self.reset()

    def reset(self) -> None:
        """Back to the faults the simulator was started with."""
        with self._lock:
            self._global = self._start[0]
            self._overrides = {p: dict(v) for p, v in self._start[1].items()}
            self._merged = {}

    def for_provider(self, provider: str) -> Faults:
        merged = self._merged.get(provider)
        if merged is None:
            with self._lock:
                merged = dataclasses.replace(self._global, **self._overrides.get(provider, {}))
                self._merged[provider] = merged
        return merged

    def set(self, values: Mapping[str, Any], provider: str | None = None) -> None:
        checked = _checked(values)
        with self._lock:
            if provider is None:
                self._global = dataclasses.replace(self._global, **checked)
            else:
                self._overrides.setdefault(provider, {}).update(checked)
            self._merged = {}

    def clear(self, provider: str | None = None) -> None:
        """Remove every fault (globally and per provider), or one provider's overrides."""
        with self._lock:
            if provider is None:
                self._global = Faults()
                self._overrides = {}
            else:
                self._overrides.pop(provider, None)
            self._merged = {}

    def snapshot(self, providers: tuple[str, ...]) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            overrides = {p: dict(v) for p, v in self._overrides.items()}
            base = self._global
        return {
            "global": base.to_json(now),
            "overrides": overrides,
            "effective": {p: self.for_provider(p).to_json(now) for p in providers},
        }
