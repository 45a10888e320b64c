"""When to ask a provider about a task: its poll plan, scaled by AFTERIMAGE_POLL_SCALE."""

from __future__ import annotations

from afterimage.providers import adapter
from afterimage.settings import Settings


def first_poll(settings: Settings, provider: str) -> float:
    """Seconds from tracking a task to its first status query."""
    return adapter(provider).poll_plan.first * settings.poll_scale


def poll_gap(settings: Settings, provider: str, age: float) -> float:
    """Seconds to the next status query of a task `age` seconds old."""
    return adapter(provider).poll_plan.next_gap(age / settings.poll_scale) * settings.poll_scale
