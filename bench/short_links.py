"""Benchmark — short links: replicate (1 h), fal (1 h) and bfl (10 min) end to end, as
`afterimage up` runs them (Redis with appendfsync always, one receiver, two workers, the
poller), against the simulator with its real link lifetimes.

Each task is submitted through the receiver's proxy (`POST /v1/providers/{p}/generations`,
with `?model=` for fal and bfl) and completes 0.5 s later; its callback is signed as the
provider signs it (Standard Webhooks, Ed25519 with the JWKS, the echoed secret). Latency is
from the provider's completion (the simulator's `ready_at`) to the task's `archived` time in
Redis, written right after manifest.json is stored. Then the same for bfl with every webhook
lost, so the fallback poll finds the result: the contract wants poll and archive inside a
tenth of the link's life (60 s for bfl, 6 min for an hour's links), whatever else is queued.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import httpx
import redis

from bench.common import (
    API_KEY,
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

PROVIDERS = {"replicate": ({"version": "black-forest-labs/flux-schnell",
                            "input": {"prompt": "a red kite", "sim": {"delay": 0.5}}}, None),
             "fal": ({"prompt": "a red kite", "sim": {"delay": 0.5}}, "fal-ai/flux/dev"),
             "bfl": ({"prompt": "a red kite", "sim": {"delay": 0.5}}, "flux-pro-1.1")}
TENTH = {"replicate": 360.0, "fal": 360.0, "bfl": 60.0}


def archived_at(client: redis.Redis, provider: str, task_id: str) -> float | None:
    state, updated = client.hmget(f"ai:t:{provider}:{task_id}", ["st", "u"])
    return float(updated) if state == b"archived" and updated else None


def one(api: httpx.Client, sim: httpx.Client, client: redis.Redis, provider: str,
        timeout: float) -> float:
    body, model = PROVIDERS[provider]
    made = api.post(f"/v1/providers/{provider}/generations", json=body,
                    params={"model": model} if model else None).raise_for_status().json()
    task_id = made["task"]["task_id"]
    poll_until(lambda: archived_at(client, provider, task_id) is not None, timeout,
               f"{provider} {task_id} to be archived", interval=0.05)
    ready = sim.get(f"/_sim/tasks/{provider}/{task_id}").raise_for_status().json()["ready_at"]
    done = archived_at(client, provider, task_id)
    assert done is not None
    return done - float(ready)


def run(results: Results, work: Path, smoke: bool) -> None:
    count = 1 if smoke else 5
    port = free_port()
    with redis_server(work / "redis") as rds, moto_server() as s3, simulator(work) as sim_url:
        bucket = make_bucket(s3.url)
        extra = {f"AFTERIMAGE_{p.upper()}_{k}": v for p in PROVIDERS
                 for k, v in (("BASE_URL", f"{sim_url}/{p}"), ("API_KEY", API_KEY))}
        extra["AFTERIMAGE_FAL_JWKS_URL"] = f"{sim_url}/fal/.well-known/jwks.json"
        env = stack_env(rds.url, sim_url=sim_url, s3_url=s3.url, bucket=bucket, port=port,
                        extra=extra)
        receiver = Proc("receiver", [PY, "-m", "afterimage", "receiver"], work, env)
        workers = Workers(2, env, work, tag="short")
        poller = Proc("poller", [PY, "-m", "afterimage", "poller"], work, env)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers={
            "Authorization": f"Bearer {env['AFTERIMAGE_API_TOKEN']}"})
        sim = httpx.Client(base_url=sim_url, timeout=30)
        measured: dict[str, list[float]] = {}
        try:
            wait_for(lambda: port_open(port), 30, "the receiver to listen")
            for provider in PROVIDERS:
                one(api, sim, rds.client, provider, 60)  # warm-up: keys fetched, workers warm
                measured[provider] = [one(api, sim, rds.client, provider, 60)
                                      for _ in range(count)]
            sim.post("/_sim/faults", json={"provider": "bfl", "drop": 1.0}).raise_for_status()
            measured["bfl, webhook lost"] = [one(api, sim, rds.client, "bfl", 90)
                                             for _ in range(count)]
        finally:
            api.close()
            sim.close()
            poller.stop()
            workers.stop()
            receiver.stop()
    for what, seconds in measured.items():
        provider = what.split(",")[0]
        median = statistics.median(seconds)
        results.add(Row(
            "short", f"{what}: completion→archived", median * 1000, "ms",
            target=f"≤{TENTH[provider]:.0f} s", ok=max(seconds) <= TENTH[provider],
            note=f"median of {len(seconds)}: " + ", ".join(f"{s * 1000:.0f}" for s in seconds)
            + " ms", extra={"seconds": seconds, "tenth_of_link_life": TENTH[provider]}))
