"""Benchmark 4 — end to end: the simulator's callbacks through the receiver, the dispatcher and
the workers into S3, as `afterimage up` runs them (Redis with appendfsync always on a unix
socket, one receiver process, two workers, the poller).

Latency is from the provider's completion — the moment the simulator sends the callback (its
first attempt, from its own log) — to the task's `archived` time in Redis, written right after
manifest.json is stored. First one task at a time (the single-task figure, median of five),
then a steady 20 completions a second for 60 s (smoke: 5 s), 1 MB images; every manifest is
then counted in the bucket.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
import redis

from bench.common import (
    PY,
    Proc,
    Results,
    Row,
    Workers,
    free_port,
    make_bucket,
    moto_server,
    poll_until,
    port_open,
    redis_server,
    simulator,
    stack_env,
    wait_for,
)

IMAGE_BYTES = 1_000_000
RATE = 20.0
P99_TARGET = 1.5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Sim:
    def __init__(self, url: str, callback_url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.callback_url = callback_url

    def create(self, delay: float) -> str:
        made = self.http.post("/_sim/tasks", json={
            "provider": "evolink", "delay": delay, "callback_url": self.callback_url})
        task_id: str = made.raise_for_status().json()["id"]
        return task_id

    def callback_at(self, task_id: str) -> float | None:
        got = self.http.get(f"/_sim/tasks/evolink/{task_id}").raise_for_status().json()
        log = (got.get("callbacks") or {}).get("log") or []
        times = [e["at"] for e in log if "at" in e]
        return min(times) if times else None


def archived_at(client: redis.Redis, task_id: str) -> float | None:
    state, updated = client.hmget(f"ai:t:evolink:{task_id}", ["st", "u"])
    return float(updated) if state == b"archived" and updated else None


def latencies(sim: Sim, client: redis.Redis, ids: list[str]) -> tuple[list[float], list[str]]:
    with ThreadPoolExecutor(4) as pool:
        sent = list(pool.map(sim.callback_at, ids))
    got, missing = [], []
    for task_id, at in zip(ids, sent, strict=True):
        done = archived_at(client, task_id)
        if at is None or done is None:
            missing.append(task_id)
        else:
            got.append(done - at)
    return got, missing


def run(results: Results, work: Path, smoke: bool) -> None:
    seconds = 5.0 if smoke else 60.0
    singles = 1 if smoke else 5
    port = free_port()
    with redis_server(work / "redis") as rds, moto_server() as s3, \
            simulator(work, "--image-bytes", str(IMAGE_BYTES)) as sim_url:
        bucket = make_bucket(s3.url)
        env = stack_env(rds.url, sim_url=sim_url, s3_url=s3.url, bucket=bucket, port=port)
        client = rds.client
        receiver = Proc("receiver", [PY, "-m", "afterimage", "receiver"], work, env)
        workers = Workers(2, env, work, tag="e2e")
        poller = Proc("poller", [PY, "-m", "afterimage", "poller"], work, env)
        try:
            wait_for(lambda: port_open(port), 30, "the receiver to listen")
            token_url = httpx.get(
                f"http://127.0.0.1:{port}/v1/providers/evolink/callback-url",
                headers={"Authorization": f"Bearer {env['AFTERIMAGE_API_TOKEN']}"},
            ).raise_for_status().json()["callback_url"]
            sim = Sim(sim_url, token_url)
            warm = [sim.create(0.0) for _ in range(2)]  # one for each worker
            poll_until(lambda: all(archived_at(client, t) for t in warm), 30,
                       "the warm-up tasks to be archived", interval=0.01)
            single: list[float] = []
            for _ in range(singles):
                task_id = sim.create(0.0)
                poll_until(lambda t=task_id: archived_at(client, t) is not None, 30,
                           "a single task to be archived", interval=0.01)
                got, _ = latencies(sim, client, [task_id])
                single += got
            ids = load(sim, seconds)
            end = time.time() + 60
            while time.time() < end and any(archived_at(client, t) is None for t in ids[-20:]):
                time.sleep(0.2)
            time.sleep(2)
            lat, missing = latencies(sim, client, ids)
            manifests = count_manifests(s3.url, bucket)
        finally:
            poller.stop()
            workers.stop()
            receiver.stop()
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    results.add(Row(
        "e2e", f"{RATE:.0f}/s for {seconds:.0f} s, 1 MB: p99 callback→archived", p99 * 1000,
        "ms", target=f"p99≤{P99_TARGET * 1000:.0f} ms", ok=p99 <= P99_TARGET and not missing,
        note=f"p50 {p50 * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms, "
             f"{len(ids) - len(missing)}/{len(ids)} archived, "
             f"{manifests - singles - 2} manifests",
        extra={"p50": p50, "p99": p99, "max": max(lat), "tasks": len(ids),
               "missing": len(missing), "manifests": manifests}))
    results.add(Row("e2e", "one task alone, 1 MB: callback→archived",
                    statistics.median(single) * 1000, "ms", note=f"median of {len(single)}: "
                    + ", ".join(f"{s * 1000:.0f}" for s in single) + " ms",
                    extra={"seconds": single}))


def load(sim: Sim, seconds: float) -> list[str]:
    """Tasks completing at RATE per second from 3 s from now, for `seconds`."""
    count = round(seconds * RATE)
    start = time.time() + 2.0 + count / 400

    def one(i: int) -> str:
        return sim.create(max(0.0, start + i / RATE - time.time()))

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(one, range(count)))
    poll_until(lambda: time.time() > start + seconds, seconds + 10, "the load to be sent",
               interval=0.2)
    return ids


def count_manifests(s3_url: str, bucket: str) -> int:
    s3: Any = boto3.client("s3", endpoint_url=s3_url)
    found = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                            Prefix="archive/evolink/"):
        found += sum(1 for o in page.get("Contents", []) if o["Key"].endswith("manifest.json"))
    return found
