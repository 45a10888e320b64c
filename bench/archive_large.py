"""Benchmark 3 — one large image: afterimage's streaming archive against a plain script.

The real job runs in one `afterimage worker` (warmed by one small task first, as a running
worker is); the baseline is bench/plain_upload.py: httpx streams the same kind of URL into
boto3's upload_fileobj. Both write into the same SeaweedFS bucket (the job with SHA-256
checksums, verified by the store, and If-None-Match; the baseline without either). Runs
alternate and the median of each is kept. The worker's peak RSS (VmHWM, reset before each
large job) is reported with its idle RSS; the target is a peak under 100 MB whatever the
image size.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.archive_small import record_callbacks
from bench.common import (
    PY,
    ROOT,
    Results,
    Row,
    Workers,
    finished_count,
    make_bucket,
    memory_kib,
    poll_until,
    redis_server,
    reset_peak,
    seaweed_server,
    simulator,
    stack_env,
)

MB = 1_000_000
TARGET = 0.8
PEAK_TARGET_MB = 100.0


def sim_task(sim_url: str, nbytes: int) -> tuple[str, str]:
    body = httpx.post(f"{sim_url}/_sim/tasks", json={"provider": "evolink", "bytes": nbytes},
                      timeout=120).raise_for_status().json()
    return body["id"], body["image_urls"][0]


def job_seconds(client: redis.Redis, job_id: str) -> float:
    from rq.job import Job

    job = Job.fetch(job_id, connection=client)
    assert job.started_at and job.ended_at, job_id
    return (job.ended_at - job.started_at).total_seconds()


def archive_once(client: redis.Redis, task: tuple[str, str], expect_jobs: int) -> float:
    from afterimage.manifest import archive_job_id

    record_callbacks(client, [task])
    poll_until(lambda: finished_count(client) >= expect_jobs, 300, "the large archive job",
               interval=0.05)
    state = client.hget(f"ai:t:evolink:{task[0]}", "st")
    if state != b"archived":
        raise RuntimeError(f"the large task ended {state!r}")
    return job_seconds(client, archive_job_id("evolink", task[0], 1))


def plain_once(env: dict[str, str], bucket: str, task: tuple[str, str]) -> dict[str, Any]:
    out = subprocess.run([PY, "-m", "bench.plain_upload", task[1], bucket, f"plain/{task[0]}"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"plain upload failed: {out.stderr[-2000:]}")
    got: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return got


def run(results: Results, work: Path, smoke: bool) -> None:
    nbytes = 5 * MB if smoke else 50 * MB
    runs = 1 if smoke else 5
    with redis_server(work / "redis") as rds, simulator(work) as sim_url, \
            seaweed_server(work / "seaweedfs") as s3:
        client = rds.client
        bucket = make_bucket(s3.url)
        env = stack_env(rds.url, sim_url=sim_url, s3_url=s3.url, bucket=bucket)
        warm = sim_task(sim_url, 256 * 1024)
        tasks = [sim_task(sim_url, nbytes) for _ in range(runs)]
        small = None if smoke else sim_task(sim_url, 5 * MB)  # under the 8 MiB spool: in memory
        with httpx.Client(timeout=120) as http:  # the simulator renders the image once
            http.get(tasks[0][1]).raise_for_status()
        workers = Workers(1, env, work, tag="large")
        pid = workers.pids[0]
        try:
            archive_once(client, warm, 1)
            idle = memory_kib(pid)["VmRSS"] / 1024
            ours: list[float] = []
            plain: list[dict[str, Any]] = []
            peaks: list[float] = []
            for i, task in enumerate(tasks):
                reset_peak(pid)
                ours.append(archive_once(client, task, i + 2))
                peaks.append(memory_kib(pid)["VmHWM"] / 1024)
                plain.append(plain_once(env, bucket, sim_task(sim_url, nbytes)))
            if small is not None:
                reset_peak(pid)
                archive_once(client, small, len(tasks) + 2)
                small_peak = memory_kib(pid)["VmHWM"] / 1024
        finally:
            workers.stop()
    size = plain[0]["bytes"]
    our_rate = size / MB / statistics.median(ours)
    plain_rate = size / MB / statistics.median(p["seconds"] for p in plain)
    ratio = our_rate / plain_rate
    peak = max(peaks)
    plain_peak = max(p["VmHWM"] for p in plain) / 1024
    label = f"{size / MB:.0f} MB"
    results.add(Row("large", f"afterimage archive job, one {label} image", our_rate, "MB/s",
                    ratio, f"≥{TARGET}x plain", ratio >= TARGET,
                    f"median of {runs}: {statistics.median(ours):.2f} s (whole job: confirm, "
                    "stream, multipart put-once, manifest)", {"seconds": ours}))
    results.add(Row("large", "plain httpx stream + boto3 upload_fileobj", plain_rate, "MB/s", 1.0,
                    note=f"peak RSS {plain_peak:.0f} MB",
                    extra={"runs": plain}))
    results.add(Row("large", f"worker peak RSS during the {label} job", peak, "MB",
                    target=f"<{PEAK_TARGET_MB:.0f} MB", ok=peak < PEAK_TARGET_MB,
                    note=f"idle worker RSS {idle:.0f} MB",
                    extra={"peaks_mb": peaks, "idle_mb": idle}))
    if small is not None:
        results.add(Row("large", "worker peak RSS during a 5 MB job (spooled in memory)",
                        small_peak, "MB", target=f"<{PEAK_TARGET_MB:.0f} MB",
                        ok=small_peak < PEAK_TARGET_MB))
