"""When to ask about a task, from what this deployment has learned. Performs no I/O.

Completion ages (seconds from tracking to completion) are kept per provider and model as a
fixed histogram: BIN_SECONDS wide bins up to the last one, which holds everything older. Its
size never grows with the number of tasks; the store halves every count once the total passes
DECAY_AT, so old observations fade and a provider that changes speed is followed.

With enough observations, the first query of a poll-only task comes one detection budget after
the earliest completions seen (never later than the latest ones, never earlier than the
provider's documented earliest query), then one every detection budget: a task completing at
any time is seen within the budget, asked about as few times as that allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

BIN_SECONDS = 5.0
BINS = 120  # 0-600 s in 5 s bins; the last bin holds every older completion
DECAY_AT = 512.0  # the store halves every count when the total passes this
MIN_SAMPLES = 20.0  # fewer observations than this: the static plan (a smaller sample's
# earliest completion lies too far above the true one, and detection suffers below it)
LOW, HIGH = 0.02, 0.98  # the quantiles that bound the learned completion window
GAP_SHARE = 0.8  # a gap is this share of the detection budget (room for the poll loop's own lag)
DEADLINE_SHARE = 0.25  # when a deadline is known, a gap is at most this share of the time left


def bin_of(age: float) -> int:
    """The histogram bin that holds a completion `age` seconds after tracking."""
    return min(BINS - 1, max(0, int(age // BIN_SECONDS)))


@dataclass(frozen=True)
class Sketch:
    """Observed completion ages of one provider (and model): counts per bin."""

    counts: tuple[float, ...]

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str | float]) -> Sketch:
        """Read a stored histogram (bin index -> count); unknown fields are ignored."""
        counts = [0.0] * BINS
        for key, value in fields.items():
            name = key.decode() if isinstance(key, bytes) else key
            if name.isdigit() and int(name) < BINS:
                try:
                    counts[int(name)] = max(0.0, float(value))
                except ValueError:
                    continue
        return cls(tuple(counts))

    @classmethod
    def of(cls, ages: Iterable[float]) -> Sketch:
        """A sketch of these completion ages (for tests and benchmarks)."""
        counts = [0.0] * BINS
        for age in ages:
            counts[bin_of(age)] += 1
        return cls(tuple(counts))

    @property
    def total(self) -> float:
        return sum(self.counts)

    def quantile(self, q: float, *, upper: bool) -> float:
        """The age below which a share `q` of completions came: the lower edge of its bin, or
        the upper edge with `upper` (the last bin has no upper edge: its lower edge is used)."""
        wanted, seen = q * self.total, 0.0
        for index, count in enumerate(self.counts):
            seen += count
            if count and seen >= wanted:
                edge = index + 1 if upper and index < BINS - 1 else index
                return edge * BIN_SECONDS
        return (BINS - 1) * BIN_SECONDS


@dataclass(frozen=True)
class Guidance:
    """The provider's own word, from its adapter: the static plan used until enough has been
    observed, the earliest first query and the shortest gap its docs allow."""

    first: float  # the static plan's first query
    earliest: float  # documented earliest first query
    min_gap: float  # documented shortest gap


def window(learned: Sketch | None) -> tuple[float, float] | None:
    """The learned completion window (LOW and HIGH quantiles), or None with too few samples."""
    if learned is None or learned.total < MIN_SAMPLES:
        return None
    return learned.quantile(LOW, upper=False), learned.quantile(HIGH, upper=True)


def gap(guide: Guidance, detection: float, deadline_left: float | None = None) -> float:
    """Seconds between two queries: inside the detection budget, shorter when a deadline is
    near, never shorter than the provider's documented gap."""
    step = detection * GAP_SHARE
    if deadline_left is not None:
        step = min(step, max(0.0, deadline_left) * DEADLINE_SHARE)
    return max(guide.min_gap, step)


def first_query(guide: Guidance, detection: float, learned: Sketch | None) -> float:
    """Task age (s) at its first status query."""
    span = window(learned)
    if span is None:
        return max(guide.earliest, guide.first)
    low, high = span
    return max(guide.earliest, min(low + gap(guide, detection), high))


def next_query(guide: Guidance, age: float, detection: float, learned: Sketch | None,
               deadline_left: float | None = None, eta: float | None = None) -> float:
    """Seconds from now to the next query of a task `age` seconds old that is still pending
    (asked about just now, or just tracked).
    `eta`, the provider's own estimate of the seconds left (slack for its clock included),
    brings the next query forward to it, never later than the plan and never sooner than
    the provider's shortest gap."""
    step = gap(guide, detection, deadline_left)
    # A query may come a little before its time (a batch takes tasks due soon along): the next
    # is then a whole gap later, not at the first query's time again.
    wait = max(first_query(guide, detection, learned) - age, step)
    if deadline_left is not None:
        wait = step
    if eta is not None:
        wait = min(wait, max(guide.min_gap, eta))
    return wait
