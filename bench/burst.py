"""Benchmark — a burst over slow links: 300 evolink callbacks at once, each with one 1-4 MB
PNG on a CDN that takes 300 ms to answer and then sends 4 MB/s per connection (bench/cdn.py),
archived by `afterimage up` with its default settings into SeaweedFS; then the same 300 URLs
copied by a plain asyncio copier, 32 at a time (bench/copier.py), into a fresh bucket.

Images/s is the count over the time from the first callback sent (the copier: its first GET)
to the last task's `archived` time in Redis (the copier: its last PUT's end); MB/s likewise.
The RSS of `afterimage up`'s whole process tree (up, redis-server, receiver, workers, poller;
the copier's one process) is summed from /proc every 50 ms and its peak kept, with the idle
tree's just before the burst. The CDN counts the downloads open at once. Every stored image's
bytes are read back and their SHA-256 compared with the CDN's. Two rounds (a fresh `up` each),
taking turns with the copier (afterimage, copier, copier, afterimage) after a few writes warm
SeaweedFS up; rates are images over the sum of the rounds' windows.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import boto3
import httpx
import redis

from afterimage import embedded
from afterimage.tokens import callback_url
from bench.burst_rows import add_rows, combined
from bench.cdn import digests
from bench.common import (
    API_TOKEN,
    PY,
    ROOT,
    SECRET,
    Proc,
    Results,
    free_port,
    make_bucket,
    poll_until,
    port_open,
    seaweed_server,
    wait_for,
)
from bench.proctree import PeakRss, pss_mb, tree_by_role, tree_rss_mb
from bench.rawpost import post_all
from bench.stored import fixed, from_manifest, wrong_images
from tests.support import aws_env

ROUNDS = 2
ENDED = ("archived", "archive_failed", "expired", "generation_failed")


@contextmanager
def cdn_server(log_dir: Path) -> Iterator[str]:
    port = free_port()
    proc = Proc("cdn", [PY, "-m", "bench.cdn", str(port)], log_dir)
    try:
        wait_for(lambda: port_open(port), 20, "the CDN to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def cdn_stats(cdn: str, reset: bool = False) -> dict[str, int]:
    got: dict[str, int] = httpx.get(f"{cdn}/stats{'?reset=1' if reset else ''}",
                                    timeout=10).raise_for_status().json()
    return got


def up_env(data: Path, s3_url: str, bucket: str, port: int) -> dict[str, str]:
    """What an operator sets to run `afterimage up` here, and nothing more."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERIMAGE_")}
    env.update(aws_env())
    env.update({
        "AFTERIMAGE_DATA_DIR": str(data),
        "AFTERIMAGE_STORAGE_URL": f"s3://{bucket}",
        "AFTERIMAGE_S3_ENDPOINT_URL": s3_url,
        "AFTERIMAGE_SECRET": SECRET,
        "AFTERIMAGE_API_TOKEN": API_TOKEN,
        "AFTERIMAGE_PORT": str(port),
        "AFTERIMAGE_DOWNLOAD_ALLOW_CIDRS": "127.0.0.1/32",
    })
    return env


def callback_body(task_id: str, url: str) -> bytes:
    """A completed evolink task as its callback carries it, with one result."""
    return json.dumps({
        "created": int(time.time()) - 30, "id": task_id, "model": "gpt-image-2",
        "object": "image.generation.task", "progress": 100, "status": "completed",
        "results": [url], "task_info": {"can_cancel": False, "estimated_time": 0},
        "type": "image", "usage": {"billing_rule": "per_call", "credits_reserved": 4,
                                   "credits_used": 4, "user_group": "default"},
        "size": "1024x1024", "quality": "high", "output_format": "png",
    }).encode()


def states(client: redis.Redis, ids: list[str]) -> list[tuple[bytes | None, bytes | None]]:
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.hmget(f"ai:t:evolink:{task_id}", ["st", "u"])
    return [(st, u) for st, u in pipe.execute()]


def ended(client: redis.Redis) -> int:
    return sum(int(client.zcard(f"ai:s:{state}:evolink")) for state in ENDED)


def run_afterimage(work: Path, s3_url: str, cdn: str, count: int,
                   want: dict[int, str]) -> dict[str, Any]:
    bucket = make_bucket(s3_url, f"burst-up-{uuid.uuid4().hex[:8]}")
    port, data = free_port(), work / "up"
    env = up_env(data, s3_url, bucket, port)
    up = Proc("up", [PY, "-m", "afterimage", "up"], work, env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: ready(base), 60, "afterimage up to be ready (/readyz)")
        client = redis.Redis(unix_socket_path=str(embedded.socket_path(data)))
        wait_for(lambda: workers(client) >= 2, 60, "afterimage up's workers to register")
        time.sleep(2.0)  # the poller's and workers' first rounds over
        idle, processes = tree_rss_mb(up.pid)
        idle_roles, idle_pss = tree_by_role(up.pid), pss_mb(up.pid)
        run = uuid.uuid4().hex[:6]
        ids = [f"burst-{run}-{n:04d}" for n in range(count)]
        hook = callback_url(base, SECRET, "evolink")
        bodies = [callback_body(t, f"{cdn}/img/{n}.png") for n, t in enumerate(ids)]
        cdn_stats(cdn, reset=True)
        sampler = PeakRss(up.pid).start()
        started = time.time()
        try:
            codes = asyncio.run(post_all(hook, bodies))
            sent = time.time() - started
            try:
                poll_until(lambda: ended(client) >= count, 60 + count,
                           f"{count} tasks archived", interval=0.1)
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}: {ended(client)} ended") from None
        finally:
            peak = sampler.stop()
        got = states(client, ids)
        stats = cdn_stats(cdn)
        client.close()
    finally:
        up.proc.send_signal(signal.SIGTERM)  # up stops its children, then its redis-server
        with suppress(subprocess.TimeoutExpired):
            up.proc.wait(30)
        up.stop()
    archived = [float(u) for st, u in got if st == b"archived" and u]
    keys = {n: from_manifest(bucket, f"evolink/{t}/", want[n]) for n, t in enumerate(ids)}
    wrong = wrong_images(s3_url, bucket, keys, want)
    return {"seconds": max(archived) - started if archived else 0.0, "archived": len(archived),
            "not_200": count - codes.count(200), "callbacks_seconds": sent,
            "peak_mb": peak, "peak_pss_mb": sampler.peak_pss, "processes": sampler.processes,
            "samples": sampler.samples,
            "at_peak": sampler.at_peak, "idle_mb": idle, "idle_processes": processes,
            "idle_by_role": idle_roles, "idle_pss_mb": idle_pss, "cdn": stats, "wrong": wrong}


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def workers(client: redis.Redis) -> int:
    from rq import Worker

    try:
        return len(Worker.all(connection=client))
    except (redis.ConnectionError, FileNotFoundError):
        return 0


def run_copier(work: Path, s3_url: str, cdn: str, count: int,
               want: dict[int, str]) -> dict[str, Any]:
    bucket = make_bucket(s3_url, f"burst-copier-{uuid.uuid4().hex[:8]}")
    env = {**os.environ, **aws_env(), "AFTERIMAGE_S3_ENDPOINT_URL": s3_url}
    cdn_stats(cdn, reset=True)
    with open(work / "copier.log", "wb") as log:
        proc = subprocess.Popen([PY, "-m", "bench.copier", cdn, str(count), bucket],
                                stdout=subprocess.PIPE, stderr=log, env=env, cwd=ROOT)
        sampler = PeakRss(proc.pid).start()
        try:
            out, _ = proc.communicate(timeout=60 + count)
        finally:
            peak = sampler.stop()
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    if proc.returncode != 0:
        raise RuntimeError(f"the copier failed: {(work / 'copier.log').read_text()[-2000:]}")
    got: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    keys = {n: fixed(f"copier/{n}.png") for n in range(count)}
    return {**got, "seconds": got["ended"] - got["started"], "peak_mb": peak,
            "peak_pss_mb": sampler.peak_pss,
            "hwm_mb": got["VmHWM"] / 1024, "cdn": cdn_stats(cdn),
            "wrong": wrong_images(s3_url, bucket, keys, want)}


def run(results: Results, work: Path, smoke: bool) -> None:
    count = 20 if smoke else 300
    rounds = 1 if smoke else ROUNDS
    sizes = digests(count)
    want = {n: sha for n, (sha, _) in sizes.items()}
    total = sum(size for _, size in sizes.values())
    ours: list[dict[str, Any]] = []
    plain: list[dict[str, Any]] = []
    with seaweed_server(work / "seaweedfs") as s3, cdn_server(work) as cdn:
        warm_store(s3.url)
        for i in range(rounds):  # afterimage, copier, copier, afterimage: a drift in the
            here = work / f"round{i}"  # machine's speed weighs on both alike
            here.mkdir()
            sides = [(ours, run_afterimage), (plain, run_copier)]
            for runs, side in sides if i % 2 == 0 else sides[::-1]:
                runs.append(side(here, s3.url, cdn, count, want))
    add_rows(results, count, total, combined(ours), combined(plain))


def warm_store(s3_url: str) -> None:
    """SeaweedFS's first writes (its filer, its first volumes) on nobody's clock."""
    s3: Any = boto3.client("s3", endpoint_url=s3_url)
    bucket = make_bucket(s3_url, "burst-warm-up")
    for i in range(16):
        s3.put_object(Bucket=bucket, Key=f"warm/{i}", Body=os.urandom(1 << 20))
