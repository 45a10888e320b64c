"""Benchmark 6 — retention: 1,000,000 tasks through their whole life (smoke: 20,000), and Redis
`used_memory` at the end against the start.

Every task is moved by the ledger's own transition script (afterimage/lua/transition.lua, with
the ARGV the receiver, the poller and the archive job give it), wrapped as in bench/poller.py so
that one EVALSHA moves a batch of tasks: registered (`pending`), its result recorded (`queued`,
with its inbox entry and link deadline), then `archived` with its images (8 in 10), or
`generation_failed` (1 in 10) or `expired` (1 in 10, its links dead). The dispatcher's part is
done as the dispatcher does it (XREADGROUP, XACK, XDEL of the inbox entries), without making
RQ jobs. Meanwhile the retention sweep (afterimage.retention, as the poller runs it: its own
batch and per-sweep limits) removes what has outlived a retention of a few seconds. At the end,
once the last tasks have outlived it too, `used_memory` must be within a few MB of the start.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis

from afterimage import keys
from afterimage.ledger import move_args
from afterimage.models import TaskState
from afterimage.retention import Retention
from bench.common import Results, Row, redis_server
from bench.poller import BULK, PROVIDER, task_id

RETENTION = 3.0  # seconds
WAVE = 50_000  # tasks moved through their life together
BATCH = 5_000  # tasks per EVALSHA
TARGET_MB = 5.0
IMAGES = json.dumps([{"index": 0, "key": f"archive/{PROVIDER}/task-unified-1763742000-00000000/"
                      "0.png", "bytes": 1048576, "sha256": "9f" * 32, "content_type": "image/png",
                      "width": 1024, "height": 1024}])
URLS = json.dumps(["https://files.evolink.example/images/2026/11/21/"
                   "c0ffee0123456789abcdef.png?Expires=1763828400&Signature=abcdefabcdef"])


def used_memory(client: redis.Redis) -> int:
    info: Any = client.info("memory")
    return int(info["used_memory"])


def moves(client: redis.Redis, template: list[str], ids: list[str]) -> None:
    """Run one transition (`template`, its task id replaced) for each of `ids`."""
    script = client.register_script(BULK)
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(ids), BATCH):
        script(args=[len(template), *template, *ids[start:start + BATCH]], client=pipe)
    pipe.execute()


def live(client: redis.Redis, first: int, count: int) -> None:
    """Tasks `first` .. `first + count - 1`, from registration to their final state."""
    ids = [task_id(n) for n in range(first, first + count)]
    failed = [i for n, i in enumerate(ids, first) if n % 10 == 0]
    expired = [i for n, i in enumerate(ids, first) if n % 10 == 1]
    done = {*failed, *expired}
    archived = [i for i in ids if i not in done]
    now = time.time()
    moves(client, move_args(PROVIDER, "?", TaskState.PENDING, allowed="none", now=now,
                            due_at=now + 5), ids)
    err = json.dumps({"code": "content_policy", "message": "the prompt was refused"})
    moves(client, move_args(PROVIDER, "?", TaskState.GENERATION_FAILED, allowed="pending",
                            now=time.time(), fields={"err": err}), failed)
    now = time.time()
    moves(client, move_args(PROVIDER, "?", TaskState.QUEUED, allowed="pending", now=now,
                            bump_gen=True, dispatch=True, fields={
                                "urls": URLS, "ca": now, "ea": now + 86400, "cf": "1"}),
          archived + expired)
    dispatch(client)
    moves(client, move_args(PROVIDER, "?", TaskState.ARCHIVED, allowed="queued", now=time.time(),
                            fields={"img": IMAGES, "err": None, "urls": None}), archived)
    gone = json.dumps({"code": "link_expired", "message": "links expired and no fresh ones"})
    moves(client, move_args(PROVIDER, "?", TaskState.EXPIRED, allowed="queued", now=time.time(),
                            fields={"err": gone}), expired)


def dispatch(client: redis.Redis) -> None:
    """What the dispatcher does to the inbox (worker/dispatcher.py), without the RQ jobs."""
    while True:
        reply: Any = client.xreadgroup(keys.DISPATCH_GROUP, "bench", {keys.INBOX: ">"},
                                       count=10_000)
        ids = [entry_id for _, batch in (reply or []) for entry_id, _ in batch]
        if not ids:
            return
        pipe = client.pipeline(transaction=True)
        pipe.xack(keys.INBOX, keys.DISPATCH_GROUP, *ids)
        pipe.xdel(keys.INBOX, *ids)
        pipe.execute()


def sweep(retention: Retention) -> int:
    """As the poller sweeps: again at once while a sweep fills its limit."""
    removed = 0
    while True:
        n = retention.sweep()
        removed += n
        if n < retention.sweep_max:
            return removed


def run(results: Results, work: Path, smoke: bool) -> None:
    total = 20_000 if smoke else 1_000_000
    wave = min(WAVE, total)
    with redis_server(work / "redis", appendonly=False) as rds:
        client = rds.client
        client.xgroup_create(keys.INBOX, keys.DISPATCH_GROUP, id="0", mkstream=True)
        retention = Retention(client, RETENTION)
        retention.sweep()  # its script loaded, as in a running poller
        client.register_script(BULK)(args=[0], client=None)
        start = used_memory(client)
        peak, removed = start, 0
        started = time.perf_counter()
        for first in range(0, total, wave):
            live(client, first, min(wave, total - first))
            peak = max(peak, used_memory(client))
            removed += sweep(retention)
        lived = time.perf_counter() - started
        time.sleep(RETENTION + 0.5)  # the last wave outlives the retention too
        removed += sweep(retention)
        took = time.perf_counter() - started
        end = used_memory(client)
        left = int(client.dbsize())
        opened = client.hlen(keys.OPEN)
    mb = 1024 * 1024
    grew = (end - start) / mb
    results.add(Row(
        "retention", f"Redis used_memory growth after {total:,} whole task lives", grew, "MB",
        target=f"≤{TARGET_MB:.0f} MB", ok=grew <= TARGET_MB and removed == total,
        note=f"start {start / mb:.1f} MB, end {end / mb:.1f} MB (peak {peak / mb:.1f} MB); "
             f"{removed:,} removed, {left} keys left, ai:opened {opened} fields; "
             f"retention {RETENTION:g} s",
        extra={"tasks": total, "used_memory_start": start, "used_memory_end": end,
               "used_memory_peak": peak, "removed": removed, "keys_left": left,
               "retention_seconds": RETENTION}))
    results.add(Row(
        "retention", "tasks through their whole life and removed", total / took, "tasks/s",
        note=f"{total:,} in {took:.1f} s ({lived:.1f} s of lives and sweeps, then "
             f"{RETENTION + 0.5:g} s for the last to outlive the retention)"))
