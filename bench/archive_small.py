"""Benchmark 2 — small-image archiving: 2,000 tasks with 256 KB images into SeaweedFS (S3).

The same `afterimage worker` processes (SimpleWorker and its dispatcher) run, in turn:
  * the real archive job, fed as the receiver feeds it: each task recorded with one transition
    (record + inbox entry), turned into RQ jobs by the dispatcher; the job confirms with a
    status query, streams the image, puts it once, writes the manifest, moves the state;
  * a minimal job with the same I/O and nothing else (GET the image, PUT it, PUT a small
    manifest: bench/jobs.py);
  * an empty job (what RQ costs per job);
and, to check the worker model, the empty and the real job under RQ's forking Worker.

A rate is jobs / (last job's end - first job's start), from RQ's own job timestamps. Every
variant gets a fresh bucket on one SeaweedFS and an emptied Redis. The real job writes every
object with its SHA-256 checksum, verified by the store, and If-None-Match; the minimal job is
a plain boto3 PutObject without either.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
from rq import Queue

from afterimage.ledger import Ledger, result_args
from afterimage.models import Outcome, ProviderResult
from bench.common import (
    Results,
    Row,
    Workers,
    finished_count,
    finished_window,
    make_bucket,
    poll_until,
    redis_server,
    seaweed_server,
    simulator,
    stack_env,
)

IMAGE_BYTES = 256 * 1024
WORKERS = 2
TARGET = 0.8


def create_tasks(sim_url: str, count: int) -> list[tuple[str, str]]:
    """Tasks finished in the simulator: (task id, signed image URL)."""
    with httpx.Client(base_url=sim_url, timeout=30) as client:

        def one(_: int) -> tuple[str, str]:
            made = client.post("/_sim/tasks", json={"provider": "evolink"}).raise_for_status()
            body = made.json()
            return body["id"], body["image_urls"][0]

        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(one, range(count)))


def record_callbacks(client: redis.Redis, tasks: list[tuple[str, str]], *,
                     confirmed: bool = False) -> None:
    """What the receiver writes for each callback (one transition each), pipelined."""
    ledger = Ledger(client)
    now = datetime.now(UTC)
    pipe = client.pipeline(transaction=False)
    for task_id, url in tasks:
        result = ProviderResult("evolink", task_id, Outcome.SUCCEEDED, (url,), completed_at=now,
                                expires_at=now + timedelta(hours=24), model="gpt-image-2")
        args = result_args(result, confirm=not confirmed, confirmed=confirmed, now=time.time(),
                           first_poll=60.0)
        ledger._transition(args=args, client=pipe)
    pipe.execute()


def enqueue(client: redis.Redis, func: str, args: list[tuple[Any, ...]]) -> None:
    queue = Queue("afterimage", connection=client)
    for start in range(0, len(args), 500):
        queue.enqueue_many([Queue.prepare_data(func, args=a, result_ttl=3600, timeout=600)
                            for a in args[start:start + 500]])


def run_variant(work: Path, redis_url: str, client: redis.Redis, sim_url: str, name: str,
                count: int, load: Any, s3_url: str, forking: bool = False) -> dict[str, Any]:
    bucket = make_bucket(s3_url, f"bench-{name}-{uuid.uuid4().hex[:8]}")
    env = stack_env(redis_url, sim_url=sim_url, s3_url=s3_url, bucket=bucket)
    client.flushall()
    workers = Workers(WORKERS, env, work, forking=forking, tag=name[:4])
    try:
        load(bucket)
        poll_until(lambda: finished_count(client) >= count, 600, f"{name}: {count} jobs",
                   interval=0.1)
    finally:
        workers.stop()
    done, failed, seconds = finished_window(client)
    archived = int(client.zcard("ai:s:archived:evolink"))
    return {"jobs": done, "failed": failed, "seconds": seconds,
            "rate": done / seconds if seconds else 0.0, "archived": archived}


def combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one variant as one: jobs over the sum of their windows."""
    out = {k: sum(r[k] for r in runs) for k in ("jobs", "failed", "seconds", "archived")}
    out["rate"] = out["jobs"] / out["seconds"] if out["seconds"] else 0.0
    out["rounds"] = runs
    return out


def run(results: Results, work: Path, smoke: bool) -> None:
    count = 40 if smoke else 2000
    empty_count = 40 if smoke else 1000
    fork_empty_count = 20 if smoke else 400
    fork_count = 10 if smoke else 100
    with redis_server(work / "redis") as rds, seaweed_server(work / "seaweedfs") as s3, \
            simulator(work, "--image-bytes", str(IMAGE_BYTES)) as sim_url:
        client = rds.client
        tasks = create_tasks(sim_url, count)
        fork_tasks = tasks[:fork_count]

        def real(subset: list[tuple[str, str]]) -> Any:
            return lambda bucket: record_callbacks(client, subset)

        def minimal(subset: list[tuple[str, str]]) -> Any:
            return lambda bucket: enqueue(
                client, "bench.jobs.minimal_archive",
                [(bucket, f"minimal/{task_id}", url) for task_id, url in subset])

        def empty(n: int) -> Any:
            return lambda bucket: enqueue(client, "bench.jobs.empty", [()] * n)

        # The real and the minimal job take turns on halves of the tasks, so that a change in
        # the machine's speed during the run weighs on both alike.
        rounds: dict[str, list[dict[str, Any]]] = {"real": [], "minimal": []}
        half = (count + 1) // 2
        for part in (tasks[:half], tasks[half:]) if not smoke else (tasks,):
            for name, load in (("real", real(part)), ("minimal", minimal(part))):
                rounds[name].append(
                    run_variant(work, rds.url, client, sim_url, name, len(part), load, s3.url))
        got = {
            **{name: combined(runs) for name, runs in rounds.items()},
            "empty": run_variant(work, rds.url, client, sim_url, "empty", empty_count,
                                 empty(empty_count), s3.url),
            "fork-empty": run_variant(work, rds.url, client, sim_url, "fork-empty",
                                      fork_empty_count, empty(fork_empty_count), s3.url,
                                      forking=True),
            "fork-real": run_variant(work, rds.url, client, sim_url, "fork-real", fork_count,
                                     real(fork_tasks), s3.url, forking=True),
        }
    real_rate, minimal_rate = got["real"]["rate"], got["minimal"]["rate"]
    ratio = real_rate / minimal_rate if minimal_rate else 0.0
    results.add(Row(
        "small", f"real archive job, 256 KB, {WORKERS} SimpleWorkers", real_rate, "tasks/s",
        ratio, f"≥{TARGET}x minimal", ratio >= TARGET and got["real"]["archived"] == count,
        f"{got['real']['archived']}/{count} archived, {got['real']['failed']} failed",
        got["real"]))
    results.add(Row("small", "minimal job: GET, PUT, PUT manifest", minimal_rate, "jobs/s", 1.0,
                    note=f"{got['minimal']['failed']} failed", extra=got["minimal"]))
    empty_rate = got["empty"]["rate"]
    results.add(Row("small", "empty job, SimpleWorker", empty_rate, "jobs/s",
                    real_rate / empty_rate if empty_rate else None,
                    note="ratio: real job / empty job; minimal job / empty job "
                         f"{minimal_rate / empty_rate if empty_rate else 0:.2f}x",
                    extra=got["empty"]))
    results.add(Row("small", "empty job, forking Worker", got["fork-empty"]["rate"], "jobs/s",
                    got["fork-empty"]["rate"] / got["empty"]["rate"]
                    if got["empty"]["rate"] else None,
                    note="ratio: forking / SimpleWorker", extra=got["fork-empty"]))
    results.add(Row("small", "real archive job, forking Worker", got["fork-real"]["rate"],
                    "tasks/s", got["fork-real"]["rate"] / real_rate if real_rate else None,
                    note=f"ratio: forking / SimpleWorker ({fork_count} tasks)",
                    extra=got["fork-real"]))
