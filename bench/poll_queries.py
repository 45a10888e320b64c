"""Status queries per archived task, for each provider (issue: the fallback poller).

Every provider's tasks are submitted through afterimage (`afterimage up` with the real poller
and workers) against the simulator, completing after a typical 45 s; poll plans and the
completion time are scaled by the same factor so the run is short and the counts are those of
the real schedule. A query is one HTTP request to the provider's status API (an apimart batch
of many ids is one). Callback providers are asked once per task, to confirm the callback.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    API_KEY,
    API_TOKEN,
    PY,
    Proc,
    Results,
    Row,
    free_port,
    poll_until,
    redis_server,
    simulator,
    stack_env,
)

PROVIDERS = ("crun", "kie", "evolink", "apimart", "toapis", "xingchao")
SCALE = 0.1
TYPICAL_COMPLETION = 45.0
BODY = {"model": "gpt-image-2", "prompt": "a lighthouse", "input": {"prompt": "a lighthouse"}}


def run(results: Results, work: Path, smoke: bool) -> None:
    per_provider = 5 if smoke else 60
    with redis_server(work / "redis", fsync="everysec") as rds, \
            simulator(work, "--delay", str(TYPICAL_COMPLETION * SCALE)) as sim:
        port = free_port()
        extra = {"AFTERIMAGE_POLL_SCALE": str(SCALE), "AFTERIMAGE_POLL_RATE": "200",
                 "AFTERIMAGE_STORAGE_URL": f"file://{work / 'archive'}"}
        for p in PROVIDERS:
            extra[f"AFTERIMAGE_{p.upper()}_BASE_URL"] = f"{sim}/{p}"
            extra[f"AFTERIMAGE_{p.upper()}_API_KEY"] = API_KEY
        env = stack_env(rds.url, port=port, extra=extra)
        up = Proc("up", [PY, "-m", "afterimage", "up", "--workers", "2"], work, env)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                           headers={"Authorization": f"Bearer {API_TOKEN}"})
        try:
            poll_until(lambda: _ready(api), 30, "afterimage up to answer")
            ids = {p: [_submit(api, p) for _ in range(per_provider)] for p in PROVIDERS}
            for p, tasks in ids.items():
                poll_until(lambda p=p, tasks=tasks: all(  # type: ignore[misc]
                    _state(api, p, t) == "archived" for t in tasks), 120, f"{p} archived")
            stats = httpx.get(f"{sim}/_sim/stats").json()["providers"]
            for p, tasks in ids.items():
                singles = sum(_singles(sim, p, t) for t in tasks)
                calls = singles + stats.get(p, {}).get("batch_queries", 0)
                per_task = calls / len(tasks)
                results.add(Row(
                    "poll", f"{p}: status queries per archived task", per_task, "q/task",
                    target="apimart < 1" if p == "apimart" else "",
                    ok=(per_task < 1) if p == "apimart" else None,
                    note=f"{len(tasks)} tasks, {calls} requests",
                    extra={"tasks": len(tasks), "requests": calls},
                ))
        finally:
            api.close()
            up.stop(40)


def _ready(api: httpx.Client) -> bool:
    try:
        return api.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _submit(api: httpx.Client, provider: str) -> str:
    r = api.post(f"/v1/providers/{provider}/generations", json=BODY)
    r.raise_for_status()
    return str(r.json()["task"]["task_id"])


def _state(api: httpx.Client, provider: str, task_id: str) -> str:
    state: Any = api.get(f"/v1/tasks/{provider}/{task_id}").json().get("state")
    return str(state)


def _singles(sim: str, provider: str, task_id: str) -> int:
    log = httpx.get(f"{sim}/_sim/tasks/{provider}/{task_id}").json()["queries"]["log"]
    return sum(1 for q in log if not q["batch"])


if __name__ == "__main__":
    import sys
    import tempfile

    out = Results(smoke="--smoke" in sys.argv)
    start = time.monotonic()
    run(out, Path(tempfile.mkdtemp(prefix="poll-queries-")), out.smoke)
    print(f"{time.monotonic() - start:.0f} s")
