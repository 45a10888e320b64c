"""Benchmark 5 — the poller at scale: 1,000,000 tracked pending tasks (smoke: 10,000).

Tasks are made by the ledger's own transition script (afterimage/lua/transition.lua, with the
ARGV `POST /v1/tasks` gives it), wrapped so that one EVALSHA runs it for a batch of task ids:
the data is exactly what tracking leaves, made in seconds. Memory per task is Redis's
used_memory delta over the count, with what its parts cost (MEMORY USAGE) beside it.

Then `afterimage poller` works through the due tasks against a provider that answers at once
(bench/instant.py), and the rate of tasks claimed, asked about and rescheduled is compared with
bench/bare_poll.py: the same GETs from as many threads, and nothing else. Appendonly is
switched on (fsync always, as `afterimage up` runs it) after the bulk load, so the poll runs
against a freshly rewritten AOF as after a restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from afterimage.ledger import TRANSITION, move_args
from afterimage.models import TaskState
from bench.common import (
    PY,
    ROOT,
    Proc,
    Results,
    Row,
    free_port,
    poll_until,
    port_open,
    redis_server,
    stack_env,
    wait_for,
)

PROVIDER = "evolink"
THREADS = 8  # the poller's default pool
BATCH = 10_000
BYTES_TARGET = 300
RATE_TARGET = 0.7

# The transition script as a function of its ARGV, run once per id in the batch. ARGV of the
# wrapper: the template's length, the template (a transition's ARGV; its task id is replaced),
# then the task ids.
BULK = f"""
local function transition(ARGV)
{TRANSITION}
end
local n = tonumber(ARGV[1])
local template = {{}}
for i = 1, n do template[i] = ARGV[i + 1] end
for i = n + 2, #ARGV do
  template[3] = ARGV[i]
  transition(template)
end
return #ARGV - n - 1
"""


def task_id(n: int) -> str:
    """An evolink-shaped id (task-unified-<unix time>-<8 chars>)."""
    return f"task-unified-1763742000-{n:08d}"


def create_pending(client: redis.Redis, count: int, due_at: float) -> float:
    """`count` tracked tasks, all due at `due_at`; returns the seconds it took."""
    template = move_args(PROVIDER, "?", TaskState.PENDING, allowed="none", now=time.time(),
                         due_at=due_at)
    script = client.register_script(BULK)
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for start in range(0, count, BATCH):
        ids = [task_id(n) for n in range(start, min(count, start + BATCH))]
        script(args=[len(template), *template, *ids], client=pipe)
        if len(pipe) >= 8:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - started


def used_memory(client: redis.Redis) -> int:
    info: Any = client.info("memory")
    return int(info["used_memory"])


def breakdown(client: redis.Redis, count: int) -> dict[str, float]:
    """Bytes per task of each part, from MEMORY USAGE (samples of the sorted sets' entries)."""
    sample = task_id(count // 2)
    parts: dict[str, float] = {
        "task hash (key + fields)": float(client.memory_usage(f"ai:t:{PROVIDER}:{sample}") or 0),
    }
    name = f"ai:due:{PROVIDER}"
    if client.exists(name):
        total = client.memory_usage(name, samples=0) or 0
        parts[f"{name} entry"] = total / max(1, int(client.zcard(name)))
    parts["ai:opened (whole hash)"] = float(client.memory_usage("ai:opened") or 0)
    fields: Any = client.hgetall(f"ai:t:{PROVIDER}:{sample}")
    parts["hash fields"] = float(len(fields))
    return parts


def wait_rewrite(client: redis.Redis) -> None:
    def done() -> bool:
        info: Any = client.info("persistence")
        return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]

    poll_until(done, 300, "the AOF rewrite", interval=0.2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu(client: redis.Redis) -> float:
    info: Any = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def poll_rate(client: redis.Redis, env: dict[str, str], work: Path, seconds: float,
              since: float) -> tuple[float, float, float]:
    """Tasks claimed by the poller per second in its steady state, and the poller's and
    Redis's CPU time per task handled (µs)."""
    def handled() -> int:
        return int(client.zcount(f"ai:due:{PROVIDER}", since, "+inf"))

    proc = Proc("poller", [PY, "-m", "afterimage", "poller"], work, env)
    try:
        poll_until(lambda: handled() > 200 or not proc.alive(), 60, "the poller to start")
        if not proc.alive():
            raise RuntimeError(f"the poller died:\n{proc.tail()}")
        time.sleep(1.0)
        first, t1 = handled(), time.monotonic()
        cpu1, rcpu1 = cpu_seconds(proc.pid), redis_cpu(client)
        time.sleep(seconds)
        last, t2 = handled(), time.monotonic()
        cpu2, rcpu2 = cpu_seconds(proc.pid), redis_cpu(client)
    finally:
        proc.stop()
    done = max(1, last - first)
    return (last - first) / (t2 - t1), (cpu2 - cpu1) / done * 1e6, (rcpu2 - rcpu1) / done * 1e6


def bare_rate(base_url: str, seconds: float) -> float:
    out = subprocess.run([PY, "-m", "bench.bare_poll", base_url, str(seconds), str(THREADS)],
                         capture_output=True, text=True, cwd=ROOT, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return float(got["calls"]) / float(got["seconds"])


def run(results: Results, work: Path, smoke: bool) -> None:
    counts = (10_000,) if smoke else (100_000, 1_000_000)
    seconds = 3.0 if smoke else 12.0
    port = free_port()
    instant = Proc("instant", [PY, "-m", "bench.instant", str(port)], work)
    try:
        wait_for(lambda: port_open(port), 20, "the instant provider to listen")
        base = f"http://127.0.0.1:{port}/{PROVIDER}"
        for count in counts:
            measure(results, work, base, count, seconds, with_bare=count == counts[-1])
    finally:
        instant.stop()


def measure(results: Results, work: Path, base: str, count: int, seconds: float,
            with_bare: bool) -> None:
    """`count` pending tasks in a fresh Redis: their memory, then the poller working on them
    (and, with `with_bare`, the bare loop before and after it)."""
    with redis_server(work / f"redis-{count}", appendonly=False) as rds:
        client = rds.client
        before = used_memory(client)
        since = time.time()
        made = create_pending(client, count, due_at=since - 60)
        per_task = (used_memory(client) - before) / count
        parts = breakdown(client, count)
        client.config_set("appendonly", "yes")
        wait_rewrite(client)
        env = stack_env(rds.url, extra={
            f"AFTERIMAGE_{PROVIDER.upper()}_BASE_URL": base,
            f"AFTERIMAGE_{PROVIDER.upper()}_API_KEY": "sim-key",
            "AFTERIMAGE_POLL_RATE": "1000000",  # the shared rate limit must not be the bound
            "AFTERIMAGE_LOG_LEVEL": "WARNING",
        })
        # The bare loop before and after the poller, its rate their mean: the VM's speed
        # drifts over minutes, and this way it weighs on both sides alike.
        bares = [bare_rate(base, seconds)] if with_bare else []
        ours, cpu_us, redis_us = poll_rate(client, env, work, seconds, since)
        if with_bare:
            bares.append(bare_rate(base, seconds))
    what = ", ".join(f"{k} {v:.0f}" for k, v in parts.items())
    results.add(Row("poller", f"Redis memory per pending task ({count:,} tasks)", per_task, "bytes",
                    target=f"≤{BYTES_TARGET} B", ok=per_task <= BYTES_TARGET,
                    note=f"{what}; made in {made:.1f} s",
                    extra={"tasks": count, "parts": parts, "create_seconds": made}))
    results.add(Row("poller", f"CPU per due task ({count:,} tracked)", cpu_us, "µs",
                    note=f"poller process; Redis {redis_us:.0f} µs; {ours:,.0f} tasks/s",
                    extra={"tasks": count, "poller_us": cpu_us, "redis_us": redis_us,
                           "rate": ours}))
    if not bares:
        return
    bare = sum(bares) / len(bares)
    ratio = ours / bare if bare else 0.0
    results.add(Row("poller", f"poller: due tasks handled, {THREADS} threads", ours, "tasks/s",
                    ratio, f"≥{RATE_TARGET}x bare", ratio >= RATE_TARGET,
                    note="provider answers at once (bench/instant.py)"))
    results.add(Row("poller", f"bare loop: the same GETs, {THREADS} threads", bare, "calls/s", 1.0,
                    note=f"mean of {bares[0]:,.0f} before and {bares[1]:,.0f} after"))
