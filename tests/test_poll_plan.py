"""The learned poll schedule (afterimage.poll_plan, afterimage.schedule): pure functions, the
clock passed in."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
import redis

from afterimage import keys, learning
from afterimage.poll_plan import (
    BIN_SECONDS,
    BINS,
    DECAY_AT,
    Guidance,
    Sketch,
    first_query,
    next_query,
)
from afterimage.providers import adapter, fields
from afterimage.schedule import first_poll, guidance, poll_gap
from afterimage.settings import Settings

APIMART = guidance("apimart")


def test_guidance_comes_from_the_providers_docs() -> None:
    assert Guidance(first=30.0, earliest=10.0, min_gap=3.0) == APIMART  # first 10-20 s, 3-5 s
    assert guidance("toapis").earliest == 2.0 and guidance("toapis").min_gap == 3.0
    assert guidance("xingchao").min_gap == 2.0


def test_sketch_is_bounded_and_reads_its_quantiles() -> None:
    sketch = Sketch.of([31.0, 44.0, 60.0, 119.0, 10_000.0])
    assert len(sketch.counts) == BINS  # whatever the ages, the same size
    assert sketch.total == 5
    assert sketch.quantile(0.01, upper=False) == 30.0
    assert sketch.quantile(0.6, upper=True) == 65.0
    assert sketch.quantile(1.0, upper=True) == (BINS - 1) * BIN_SECONDS  # the overflow bin


def test_sketch_reads_stored_fields_and_ignores_others() -> None:
    sketch = Sketch.from_fields({b"6": b"3", b"n": b"3", b"999": b"1", "7": "x", b"8": b"-2"})
    assert sketch.total == 3 and sketch.counts[6] == 3


def test_without_enough_observations_the_static_first_query_and_the_detection_budget() -> None:
    few = Sketch.of([60.0] * 3)
    assert first_query(APIMART, 30.0, None) == 30.0
    assert first_query(APIMART, 30.0, few) == 30.0
    assert next_query(APIMART, 0.0, 30.0, None) == 30.0
    assert next_query(APIMART, 30.0, 30.0, None) == pytest.approx(24.0)


def test_learned_first_query_is_one_budget_after_the_earliest_completions() -> None:
    spread = Sketch.of(30.0 + i for i in range(91))  # 30-120 s
    assert first_query(APIMART, 30.0, spread) == pytest.approx(54.0)
    assert next_query(APIMART, 10.0, 30.0, spread) == pytest.approx(44.0)
    assert next_query(APIMART, 54.0, 30.0, spread) == pytest.approx(24.0)
    assert next_query(APIMART, 53.0, 30.0, spread) == pytest.approx(24.0)  # asked a bit early


def test_narrow_completions_are_asked_about_at_their_end() -> None:
    narrow = Sketch.of([60.0, 61.0, 62.0, 63.0] * 6)
    assert first_query(APIMART, 30.0, narrow) == 65.0  # not 60 + 24: none completes after 65


def test_never_earlier_or_more_often_than_the_docs() -> None:
    fast = Sketch.of([0.5] * 30)
    assert first_query(APIMART, 30.0, fast) == 10.0  # apimart: first query 10-20 s after submit
    assert next_query(APIMART, 20.0, 1.0, fast) == 3.0  # budget 1 s, but gaps of 3-5 s


def test_tighter_as_a_deadline_nears() -> None:
    spread = Sketch.of(30.0 + i for i in range(91))
    assert next_query(APIMART, 80.0, 30.0, spread, deadline_left=40.0) == 10.0
    assert next_query(APIMART, 0.0, 30.0, spread, deadline_left=40.0) == 10.0
    assert next_query(APIMART, 80.0, 30.0, spread, deadline_left=1.0) == 3.0  # still the docs'


def test_completion_age_learns_the_earliest_possible_completion() -> None:
    assert learning.completion_age(100.0, 190.0, 170.0, 27.0) == 70.0  # the provider's time
    assert learning.completion_age(100.0, 190.0, 250.0, 27.0) == 63.0  # not after detection
    assert learning.completion_age(100.0, 190.0, None, 27.0) == 63.0  # the previous query
    assert learning.completion_age(100.0, 190.0, 189.9, 27.0) == 63.0  # the reply's own time
    assert learning.completion_age(100.0, 110.0, None, 27.0) == 0.0


def test_a_scaled_schedule_is_the_same_plan() -> None:
    spread = Sketch.of(30.0 + i for i in range(91))
    settings = Settings(poll_scale=0.1)
    assert first_poll(settings, "apimart", spread) == pytest.approx(5.4)
    assert poll_gap(settings, "apimart", 6.0, spread) == pytest.approx(2.4)
    assert first_poll(settings, "kie") == 6.0  # callback providers keep their static plan
    assert poll_gap(settings, "kie", 1.0) == 1.0


@pytest.mark.parametrize("provider_times", [True, False])
def test_the_target_holds_for_completions_spread_over_30_to_120_s(provider_times: bool) -> None:
    """The loop that runs in production, run on paper: each completion is learned as the
    poller would (the provider's time, or the previous query's age), and the plan for the
    next task comes from what was learned. ≤ 3 queries per task, detection p95 ≤ 30 s."""
    rng = random.Random(14)
    ages: list[float] = []
    queries, delays = [], []
    for _ in range(400):
        done = rng.uniform(30.0, 120.0)
        sketch = Sketch.of(ages)
        asked, at = 1, first_query(APIMART, 30.0, sketch)
        while at < done:
            at += next_query(APIMART, at, 30.0, sketch)
            asked += 1
        gap = next_query(APIMART, at, 30.0, sketch)
        ages.append(learning.completion_age(0.0, at, done if provider_times else None, gap))
        queries.append(asked)
        delays.append(at - done)
    late = sorted(delays[100:])
    assert sum(queries[100:]) / 300 <= 3.0
    assert late[int(0.95 * len(late))] <= 30.0
    assert first_query(APIMART, 30.0, Sketch.of(ages)) >= 50.0  # learned, and did not drift
    assert first_query(APIMART, 30.0, Sketch.of(ages)) <= 60.0


def test_the_store_stays_bounded_and_prefers_the_models_own_history(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    rng = random.Random(7)
    for _ in range(3000):
        learning.observe(client, "apimart", "gpt-image-2", rng.uniform(0, 5000))
    for _ in range(20):
        learning.observe(client, "apimart", "gpt image/2r", 61.0)
    whole = client.hgetall(keys.learned("apimart"))
    assert len(whole) <= BINS + 1  # one field per bin and the total
    assert float(whole[b"n"]) <= DECAY_AT
    assert sum(float(v) for k, v in whole.items() if k != b"n") == pytest.approx(
        float(whole[b"n"]))
    assert 0 < client.ttl(keys.learned("apimart", "gpt-image-2")) <= learning.TTL
    odd = learning.learned(client, "apimart", "gpt image/2r")  # stored as gpt_image/2r
    assert odd is not None and odd.quantile(0.5, upper=False) == 60.0
    unknown = learning.learned(client, "apimart", "never-seen")  # falls back to the provider's
    assert unknown is not None and unknown.total == pytest.approx(float(whole[b"n"]))
    assert learning.learned(client, "toapis") is None
    client.close()


def test_a_providers_eta_brings_the_next_query_forward_never_back() -> None:
    spread = Sketch.of(30.0 + i for i in range(91))
    assert next_query(APIMART, 60.0, 30.0, spread, eta=7.0) == 7.0
    assert next_query(APIMART, 60.0, 30.0, spread, eta=90.0) == pytest.approx(24.0)
    assert next_query(APIMART, 60.0, 30.0, spread, eta=0.5) == 3.0  # the docs' shortest gap
    settings = Settings(poll_scale=0.5)
    assert poll_gap(settings, "apimart", 30.0, spread, eta=3.0) == pytest.approx(5.0)  # +2 s


NOW = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
START = NOW.timestamp() - 40


@pytest.mark.parametrize(("created", "progress", "estimated", "expected"), [
    (START, None, 60, 20.0),  # 60 s of work, 40 done
    (START, 80, None, 10.0),  # 80 % in 40 s
    (START, 80, 60, 20.0),  # the estimate wins
    (START, 2, None, None),  # too early to extrapolate
    (START, None, 30, None),  # overdue: no hint
    (None, 50, 60, None),  # no start
    ("yesterday", 50, 60, None),  # unreadable: no hint, no error
    (START, True, "60", None),
    (NOW.timestamp() + 5, 50, None, None),  # a start in the future
])
def test_eta_from_the_providers_hints(created: object, progress: object, estimated: object,
                                     expected: float | None) -> None:
    got = fields.eta(NOW, created, progress, estimated)
    assert got == (None if expected is None else pytest.approx(expected))


def test_apimart_and_toapis_pending_replies_carry_their_eta() -> None:
    created = int(START)
    body = {"code": 200, "data": {"id": "t1", "status": "processing", "progress": 50,
                                  "created": created, "estimated_time": 100}}
    pending = adapter("apimart").parse_status("t1", 200, {}, json.dumps(body).encode(), NOW)
    assert pending.eta == pytest.approx(60.0, abs=1)
    body2 = {"id": "t2", "status": "in_progress", "progress": 50, "created_at": created}
    pending = adapter("toapis").parse_status("t2", 200, {}, json.dumps(body2).encode(), NOW)
    assert pending.eta == pytest.approx(40.0, abs=1)
