"""When to ask a provider about a task, scaled by AFTERIMAGE_POLL_SCALE.

Providers that call back keep their adapter's static plan (the poll is a fallback). Poll-only
providers follow afterimage.poll_plan: what this deployment has learned about their completion
times, inside AFTERIMAGE_POLL_DETECTION_SECONDS, never earlier or more often than their docs
allow. Learned ages are kept unscaled, so a scaled test or benchmark learns the same plan.

Where a provider's links live short (an hour or less: replicate, fal, bfl), no wait is longer
than a twentieth of their life, so the fallback poll and the archive both fit in a tenth of it;
such tasks are archived ahead of others (`urgent`)."""

from __future__ import annotations

from afterimage import poll_plan
from afterimage.poll_plan import Guidance, Sketch
from afterimage.providers import adapter
from afterimage.settings import Settings

SHORT_LIVED = 3600.0  # links that live this long or less get the tight schedule
GAP_SHARE = 1 / 20  # of a short link life: the longest wait between polls
ETA_SLACK = 2.0  # s after a provider's ETA: its times come in whole seconds (start and length)
URGENT_SHARE = 1 / 8  # archived ahead of others once less than this share of the life is left


def _cap(provider: str) -> float:
    """The longest wait between two polls of the provider's tasks, unscaled."""
    life = adapter(provider).link_lifetime.total_seconds()
    return life * GAP_SHARE if life <= SHORT_LIVED else float("inf")


def urgent(provider: str, expires_at: float | None, now: float) -> bool:
    """Is a task whose links die at `expires_at` to be archived ahead of the others? Yes when
    its provider's links live an hour or less at all, or when less than an eighth of their
    life is left (three hours of a day's links)."""
    life = adapter(provider).link_lifetime.total_seconds()
    if life <= SHORT_LIVED:
        return True
    return expires_at is not None and expires_at - now < life * URGENT_SHARE


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
        return min(adapter(provider).poll_plan.first, _cap(provider)) * settings.poll_scale
    return poll_plan.first_query(guidance(provider), settings.poll_detection,
                                 learned) * settings.poll_scale


def poll_gap(settings: Settings, provider: str, age: float, learned: Sketch | None = None,
             deadline_left: float | None = None, eta: float | None = None) -> float:
    """Seconds to the next status query of a task `age` seconds old (and `deadline_left`
    seconds before its links die, when that is known; `eta` seconds before the provider
    expects it done, when it says)."""
    scale = settings.poll_scale
    if not learns(provider):
        return min(adapter(provider).poll_plan.next_gap(age / scale), _cap(provider)) * scale
    return poll_plan.next_query(
        guidance(provider), age / scale, settings.poll_detection, learned,
        None if deadline_left is None else deadline_left / scale,
        None if eta is None else (eta + ETA_SLACK) / scale) * scale
