"""The fallback poller: asks providers about every due task, so no task waits on a callback.

The schedule is a sorted set per provider (score = next poll time), so one poll costs the same
whether ten or a million tasks are tracked. Claiming is one Lua call that also applies the
provider's rate limit, shared by every poller through Redis; claimed tasks are leased, not
removed, so a poller killed mid-poll loses nothing. A lease is renewed while its poll waits in
this poller's queue or runs (lua/renew.lua, at half its length), and given back when the
poller stops before starting it: another poller takes a task only when this one is gone, so
a slow provider is never asked twice for one due time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import cast

import httpx
import redis

from afterimage import components, errors, keys, learning, poll_plan, redis_client
from afterimage.ledger import Ledger, move_args, result_args
from afterimage.metrics import POLL_QUERIES, Tally, flush
from afterimage.models import Outcome, ProviderResult, Task, TaskRef, TaskState
from afterimage.provider_api import new_client, query_batch, query_status
from afterimage.providers import NAMES, adapter
from afterimage.retention import Retention
from afterimage.schedule import learns, poll_gap
from afterimage.settings import Settings

log = logging.getLogger("afterimage.poller")
CLAIM = resources.files("afterimage").joinpath("lua/claim.lua").read_text()
RENEW = resources.files("afterimage").joinpath("lua/renew.lua").read_text()
BATCH = 50
BATCH_LOOKAHEAD = 2.0  # a batch query also takes tasks due this much later
ERROR_BACKOFF = 30.0
JOB_GRACE = 900.0  # a queued task's job may still be running this long after it was queued
HOUSEKEEPING_EVERY = 1.0  # deadline sweep and metrics flush: each loop runs this often
RETENTION_EVERY = 10.0  # the retention sweep (at once again while a sweep fills its limit)


class Poller:
    def __init__(self, settings: Settings, client: redis.Redis, *, threads: int = 8) -> None:
        self.settings = settings
        self.redis = client
        self.ledger = Ledger(client)
        self.claim = client.register_script(CLAIM)
        self.renew = client.register_script(RENEW)
        self.http: httpx.Client = new_client()
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="poll")
        self.rate = settings.poll_rate
        self.burst = max(1.0, settings.poll_rate * 2)
        self.providers = [p for p in settings.api_keys if p in settings.base_urls]
        self.unpollable = [p for p in NAMES if p not in self.providers]  # no API key here
        self.max_inflight = threads * 4  # polls claimed per provider, running or queued
        self.inflight = dict.fromkeys(self.providers, 0)
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified when a poll ends
        self._busy = False  # run_once last skipped a provider whose slots were mostly taken
        self._deferred: dict[str, dict[str, float]] = {}  # provider: {task id: next poll}
        self._held: dict[str, dict[str, float]] = {}  # provider: {task id: its lease's end}
        self._renew_at = 0.0  # when to look for leases to renew next
        self.tally = Tally()  # metric counts, written to Redis once per run_once

    def run_once(self, now: float | None = None, wait: bool = False) -> int:
        """Claim what is due (within rate limits and this poller's capacity) and ask about it.

        A slow or throttled provider holds only its own slots, never the others'.
        """
        now = time.time() if now is None else now
        self.flush_reschedules()
        self.renew_leases(now)
        futures = []
        claimed = 0
        busy = False
        for provider in self.providers:
            batch = BATCH if adapter(provider).supports_batch else 1
            with self._lock:
                free = self.max_inflight - self.inflight[provider]
            if free < self.max_inflight // 2:  # claim again once half are free: see pause()
                busy = True
                continue
            room = free * batch
            got = self.claim(
                keys=[keys.due(provider), keys.rate(provider), keys.pause(provider),
                      keys.probe(provider)],
                args=[now, min(room, 500), self.settings.poll_lease, self.rate, self.burst,
                      now + (BATCH_LOOKAHEAD * self.settings.poll_scale if batch > 1 else 0),
                      keys.task(provider, ""), batch],
            )
            ids = [i.decode() for i in got[::2]]
            created = {i: float(c) for i, c in zip(ids, got[1::2], strict=True) if c}
            claimed += len(ids)
            if ids:
                with self._lock:
                    self._held.setdefault(provider, {}).update(
                        dict.fromkeys(ids, now + self.settings.poll_lease))
            probing = len(ids) == 1  # after a 429 the claim gives one task at a time
            for start in range(0, len(ids), batch):
                with self._lock:
                    self.inflight[provider] += 1
                futures.append(self.pool.submit(self._poll, provider, ids[start:start + batch],
                                                created, probing))
        self._busy = busy
        if wait:
            for f in futures:
                f.result()
            self.flush_reschedules()
        return claimed

    def pause(self, stop: threading.Event, interval: float) -> None:
        """Wait before claiming again: `interval` when there was nothing to claim; but when the
        last run_once skipped a busy provider, only until one has half its slots free (its due
        tasks must not wait out the interval; the other half keeps the threads busy meanwhile,
        and claiming a slot at a time would cost about as much as the polls themselves)."""
        half = self.max_inflight // 2
        with self._lock:
            if self._busy:
                self._room.wait_for(
                    lambda: any(self.max_inflight - n >= half for n in self.inflight.values()),
                    interval)
                return
        stop.wait(interval)

    def flush_reschedules(self) -> None:
        """Write the next poll times of the tasks still pending: one ZADD per provider for all
        the polls that ended since the last claim. Until then a task keeps its lease (and a
        poller that dies before this re-polls it after the lease, as after any poll)."""
        with self._lock:
            deferred, self._deferred = self._deferred, {}
        if deferred:
            pipe = self.redis.pipeline(transaction=False)
            for provider, when in deferred.items():
                pipe.zadd(keys.due(provider), when, xx=True)
            pipe.execute()

    def renew_leases(self, now: float) -> None:
        """Renew the leases of claimed polls (queued here or running) with less than half their
        length left. Looked at every quarter lease, so none lapses while this poller lives."""
        lease = self.settings.poll_lease
        if now < self._renew_at:
            return
        self._renew_at = now + lease / 4
        with self._lock:
            due = {p: [(i, end) for i, end in held.items() if end - now < lease / 2]
                   for p, held in self._held.items()}
        for provider, leases in due.items():
            if leases:
                self._move_leases(provider, leases, now + lease)

    def give_back(self) -> None:
        """Make the polls claimed but never started due now, for another poller (on stop)."""
        with self._lock:
            held, self._held = self._held, {}
        for provider, leases in held.items():
            if leases:
                self._move_leases(provider, list(leases.items()), time.time(), keep=False)

    def _move_leases(self, provider: str, leases: Sequence[tuple[str, float]], to: float,
                     keep: bool = True) -> None:
        flat = [x for task_id, end in leases for x in (task_id, repr(end))]
        moved = {m.decode() for m in self.renew(keys=[keys.due(provider)], args=[to, *flat])}
        if keep:
            with self._lock:
                held = self._held.get(provider, {})
                for task_id, _ in leases:
                    if task_id in moved and task_id in held:
                        held[task_id] = to
                    else:  # rescheduled or gone meanwhile: no lease left to keep
                        held.pop(task_id, None)

    def flush_metrics(self) -> None:
        """Write the gathered counts (kept for the next flush if Redis fails)."""
        flush(self.tally, self.redis)

    def _poll(self, provider: str, ids: Sequence[str],
              created: Mapping[str, float] | None = None, probing: bool = True) -> None:
        try:
            self._poll_inner(provider, ids, created or {}, probing)
        except Exception:
            log.exception("poll %s: unexpected error; re-polled after the lease", provider)
        finally:
            with self._lock:
                self.inflight[provider] -= 1
                held = self._held.get(provider, {})
                for task_id in ids:
                    held.pop(task_id, None)
                if self.max_inflight - self.inflight[provider] == self.max_inflight // 2:
                    self._room.notify()  # what pause() waits for

    def _poll_inner(self, provider: str, ids: Sequence[str],
                    created: Mapping[str, float], probing: bool) -> None:
        try:
            results = self._ask(provider, ids)
        except errors.TransientProviderError as exc:
            self.tally.add(POLL_QUERIES, provider,
                           "rate_limited" if exc.status == 429 else "unavailable")
            pause = exc.retry_after or (5.0 if exc.status == 429 else ERROR_BACKOFF)
            pipe = self.redis.pipeline()
            pipe.set(keys.pause(provider), "1", px=int(pause * 1000))
            pipe.set(keys.probe(provider), "1", ex=600)
            pipe.execute()
            log.warning("poll %s: %s; pausing %s for %.1fs", provider, exc, provider, pause,
                        extra={"event": "poll_paused", "provider": provider})
            self._reschedule(provider, ids, time.time() + pause)
            return
        except errors.AfterimageError as exc:
            self.tally.add(POLL_QUERIES, provider, "error")
            log.error("poll %s: %s; retrying in %.0fs", provider, exc, ERROR_BACKOFF)
            self._reschedule(provider, ids, time.time() + ERROR_BACKOFF)
            return
        later = self.redis.pipeline(transaction=False)  # this poll's writes: one round trip
        if probing:
            later.delete(keys.probe(provider))  # a success ends the probing
        for task_id, outcome in results.items():
            try:
                self._apply(provider, task_id, outcome, later, created.get(task_id))
            except errors.AfterimageError as exc:
                log.error("poll %s %s: %s", provider, task_id, exc,
                          extra={"event": "poll_error", "provider": provider, "task_id": task_id})
        later.execute()

    def _ask(self, provider: str, ids: Sequence[str]) -> dict[str, ProviderResult | Exception]:
        if len(ids) > 1:
            found = query_batch(self.settings, self.http, provider, ids)
            self.tally.add(POLL_QUERIES, provider, "ok")
            if found is None:
                log.warning("poll %s: batch reply of unknown shape; asking one by one", provider)
            else:
                by_id: dict[str, ProviderResult | Exception] = {r.task_id: r for r in found}
                missing = [i for i in ids if i not in by_id]
                self._reschedule(provider, missing, time.time() + ERROR_BACKOFF)
                return by_id
        out: dict[str, ProviderResult | Exception] = {}
        for task_id, ref in zip(ids, self._refs(provider, ids), strict=True):
            try:
                out[task_id] = query_status(self.settings, self.http, provider, ref)
            except (errors.TaskGoneError, errors.AdapterError) as exc:
                out[task_id] = exc
            self.tally.add(POLL_QUERIES, provider, "ok")
        return out

    def _refs(self, provider: str, ids: Sequence[str]) -> list[TaskRef]:
        """The tasks as their status query needs them: with their model and polling URL,
        for providers that find a task by more than its id."""
        a = adapter(provider)
        if not (a.needs_model or a.uses_status_url):
            return [TaskRef(i) for i in ids]
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(keys.task(provider, task_id), "mdl", "su")
        found = cast(list[list[bytes | None]], pipe.execute())
        return [TaskRef(i, *(v.decode() if v is not None else None for v in got))
                for i, got in zip(ids, found, strict=True)]

    def _apply(self, provider: str, task_id: str, outcome: ProviderResult | Exception,
               later: redis.client.Pipeline, created: float | None = None) -> None:
        now = time.time()
        if (isinstance(outcome, ProviderResult) and outcome.outcome is Outcome.PENDING
                and created is not None and now - created <= self.settings.poll_give_up):
            # The common answer, handled without reading the task: only a pending task is in
            # the schedule, so ZADD XX leaves one that moved on meanwhile where it is. Written
            # with the others by flush_reschedules.
            gap = poll_gap(self.settings, provider, now - created,
                           self._learned(provider, outcome.model), eta=outcome.eta)
            with self._lock:
                self._deferred.setdefault(provider, {})[task_id] = now + gap
            return
        task = self.ledger.get(provider, task_id)
        if task is None or task.state is not TaskState.PENDING:
            return
        if isinstance(outcome, errors.TaskGoneError):
            self._end(task, "task_gone", f"the provider no longer knows the task: {outcome}")
        elif isinstance(outcome, Exception):
            log.error("poll %s %s: %s", provider, task_id, outcome,
                      extra={"event": "poll_error", "provider": provider, "task_id": task_id})
            self._reschedule(provider, [task_id], now + ERROR_BACKOFF, later)
        elif outcome.outcome is Outcome.PENDING:
            age = now - task.created_at.timestamp()
            if age > self.settings.poll_give_up:
                self._end(task, "never_completed",
                          f"still not complete after {age / 3600:.1f} h of polling")
            else:
                left = None if task.expires_at is None else task.expires_at.timestamp() - now
                gap = poll_gap(self.settings, provider, age,
                               self._learned(provider, outcome.model or task.model), left,
                               outcome.eta)
                self._reschedule(provider, [task_id], now + gap, later)
        else:
            args = result_args(outcome, confirm=False, confirmed=True, now=now, first_poll=0,
                               allowed="pending")
            move = self.ledger.move(args)
            if move.ok:
                self._learn(task, outcome, now)
            log.info("poll %s %s: %s", provider, task_id, outcome.outcome.value,
                     extra={"event": f"poll_{outcome.outcome.value}", "provider": provider,
                            "task_id": task_id, "state": args[4] if move.ok else move.previous,
                            "previous": move.previous})

    def _learned(self, provider: str, model: str | None) -> poll_plan.Sketch | None:
        if not learns(provider):
            return None
        try:
            return learning.learned(self.redis, provider, model)
        except redis.RedisError as exc:  # the static plan serves meanwhile
            log.warning("poll %s: learned schedule unavailable (%s)", provider, exc)
            return None

    def _learn(self, task: Task, outcome: ProviderResult, now: float) -> None:
        """Remember when the task completed, for the schedule of the provider's next tasks."""
        if not learns(task.provider):
            return
        scale = self.settings.poll_scale
        model = outcome.model or task.model
        completed = None if outcome.completed_at is None else outcome.completed_at.timestamp()
        gap = poll_gap(self.settings, task.provider, now - task.created_at.timestamp(),
                       self._learned(task.provider, model))
        age = learning.completion_age(task.created_at.timestamp(), now, completed, gap,
                                      tolerance=scale)
        try:
            learning.observe(self.redis, task.provider, model, age / scale)
        except redis.RedisError as exc:  # one observation less; the task itself is recorded
            log.warning("poll %s %s: completion time not learned (%s)", task.provider,
                        task.task_id, exc)

    def _reschedule(self, provider: str, ids: Sequence[str], when: float,
                    pipe: redis.client.Pipeline | None = None) -> None:
        if ids:
            (pipe or self.redis).zadd(keys.due(provider), dict.fromkeys(ids, when), xx=True)

    def _end(self, task: Task, code: str, message: str) -> None:
        move = self.ledger.move(move_args(
            task.provider, task.task_id, TaskState.EXPIRED, allowed="pending,queued,archive_failed",
            fields={"err": json.dumps({"code": code, "message": message})}))
        log.warning("task %s %s expired: %s", task.provider, task.task_id, message,
                    extra={"event": "expired", "provider": task.provider, "task_id": task.task_id,
                           "state": "expired" if move.ok else move.previous,
                           "previous": move.previous})

    def sweep_unpollable(self, now: float, limit: int = 500) -> None:
        """Pending tasks of a provider that cannot be asked (no API key) learn their result
        only from a callback: one that never comes ends them `expired` (`never_completed`) at
        the give-up time, as polling ends every other task. Their first due time (the first
        poll they will never get) is moved to that time, at most `limit` per provider."""
        give_up = self.settings.poll_give_up
        for provider in self.unpollable:
            ids = [i.decode() for i in cast(list[bytes], self.redis.zrangebyscore(
                keys.due(provider), "-inf", now, start=0, num=limit))]
            if not ids:
                continue
            pipe = self.redis.pipeline(transaction=False)
            for task_id in ids:
                pipe.hget(keys.task(provider, task_id), "c")
            created = cast(list[bytes | None], pipe.execute())
            later: dict[str, float] = {}
            for task_id, c in zip(ids, created, strict=True):
                end = float(c) + give_up if c is not None else now
                if end > now:
                    later[task_id] = end
                    continue
                message = (f"no result after {give_up / 3600:.1f} h: no callback came, and "
                           f"{provider} cannot be asked without "
                           f"AFTERIMAGE_{provider.upper()}_API_KEY")
                move = self.ledger.move(move_args(
                    provider, task_id, TaskState.EXPIRED, allowed="pending", now=now,
                    fields={"err": json.dumps({"code": "never_completed", "message": message})}))
                if move.ok:
                    log.warning("task %s %s expired: %s", provider, task_id, message,
                                extra={"event": "expired", "provider": provider,
                                       "task_id": task_id, "state": "expired",
                                       "previous": "pending"})
            if later:
                self.redis.zadd(keys.due(provider), later, xx=True)

    def sweep_deadlines(self, now: float) -> None:
        """Tasks whose links are past their deadline and still not archived end `expired`
        (a queued task's job gets JOB_GRACE to finish what it started)."""
        late = cast(list[bytes], self.redis.zrangebyscore(
            keys.DEADLINES, "-inf", now, start=0, num=100))
        for member in late:
            try:
                provider, task_id = keys.deadline_task(member)
                task = self.ledger.get(provider, task_id)
            except (KeyError, ValueError) as exc:  # not written by transition.lua
                log.error("deadline sweep: unreadable entry %r or its task record (%s: %s); "
                          "removed from %s", member, type(exc).__name__, exc, keys.DEADLINES,
                          extra={"event": "deadline_malformed"})
                self.redis.zrem(keys.DEADLINES, member)
                continue
            if task is None or task.state.terminal:
                self.redis.zrem(keys.DEADLINES, member)
            elif (task.state is not TaskState.QUEUED
                  or now - task.updated_at.timestamp() > JOB_GRACE):
                self._end(task, "deadline_passed", "the result links expired before archiving")


def run_poller(settings: Settings, stop: threading.Event | None = None,
               interval: float = 0.5) -> None:
    """Poll, sweep deadlines, remove what outlived the retention and flush metrics until `stop`
    is set (or forever): four loops that survive any error (afterimage.components)."""
    client = redis_client.connect(settings)
    poller = Poller(settings, client)
    if not poller.providers:
        log.warning("poller: no provider API key configured (AFTERIMAGE_<PROVIDER>_API_KEY); "
                    "nothing can be polled")
    stop = stop or threading.Event()

    def poll() -> float:
        if not poller.run_once():
            poller.pause(stop, interval)
        return 0.0

    def sweep() -> float:
        now = time.time()
        poller.sweep_deadlines(now)
        poller.sweep_unpollable(now)
        return HOUSEKEEPING_EVERY

    def write_metrics() -> float:
        poller.flush_metrics()
        return HOUSEKEEPING_EVERY

    retention = Retention(client, settings.retention_seconds)

    def retire() -> float:
        removed = retention.sweep()
        if removed:
            log.info("retention: %d final task(s) removed from Redis", removed,
                     extra={"event": "retention_swept"})
        return 0.0 if removed >= retention.sweep_max else RETENTION_EVERY

    loops = [components.start("deadlines", client, sweep, stop),
             components.start("retention", client, retire, stop),
             components.start("metrics", client, write_metrics, stop)]
    components.run_loop("poller", client, poll, stop)
    for loop in loops:
        loop.join()
    poller.pool.shutdown(wait=True, cancel_futures=True)  # polls running now end; queued ones
    with contextlib.suppress(redis.RedisError):  # what is lost is polled again after its lease
        poller.flush_reschedules()
        poller.give_back()  # ... are due at once for another poller
        poller.flush_metrics()
