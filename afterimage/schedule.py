"""When to ask a provider about a task, scaled by AFTERIMAGE_POLL_SCALE.

Providers that call back keep their adapter's static plan (the poll is a fallback). Poll-only
providers follow afterimage.poll_plan: what this deployment has learned about their completion
times, inside AFTERIMAGE_POLL_DETECTION_SECONDS, never earlier or more often than their docs
allow. Learned ages are kept unscaled, so a scaled test or benchmark learns the same plan."""

from __future__ import annotations

from afterimage import poll_plan
from afterimage.poll_plan import Guidance, Sketch
from afterimage.providers import adapter
from afterimage.settings import Settings


def guidance(provider: str) -> Guidance:
    plan = adapter(provider).poll_plan
    return Guidance(
        first=plan.first,
        earliest=plan.first if plan.earliest is None else plan.earliest,
        min_gap=min(g for _, g in plan.steps) if plan.min_gap is None else plan.min_gap,
    )


def learns(provider: str) -> bool:
    """Whether the provider's schedule is learned (poll-only providers)."""
    return not adapter(provider).has_callbacks


def first_poll(settings: Settings, provider: str, learned: Sketch | None = None) -> float:
    """Seconds from tracking a task to its first status query."""
    if not learns(provider):
        return adapter(provider).poll_plan.first * settings.poll_scale
    return poll_plan.first_query(guidance(provider), settings.poll_detection,
                                 learned) * settings.poll_scale


def poll_gap(settings: Settings, provider: str, age: float, learned: Sketch | None = None,
             deadline_left: float | None = None) -> float:
    """Seconds to the next status query of a task `age` seconds old (and `deadline_left`
    seconds before its links die, when that is known)."""
    scale = settings.poll_scale
    if not learns(provider):
        return adapter(provider).poll_plan.next_gap(age / scale) * scale
    return poll_plan.next_query(
        guidance(provider), age / scale, settings.poll_detection, learned,
        None if deadline_left is None else deadline_left / scale) * scale
