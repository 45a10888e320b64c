"""The poller benchmark's baseline: the poller's status queries and nothing else — the same
GETs, through the same httpx client settings, from as many threads as the poller uses.
Prints one JSON line: calls, seconds.

    python -m bench.bare_poll BASE_URL SECONDS THREADS
"""

from __future__ import annotations

import json
import sys
import threading
import time

from afterimage.provider_api import new_client


def main() -> None:
    base, seconds, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    client = new_client()
    headers = {"Authorization": "Bearer sim-key"}
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def loop(n: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            client.get(f"{base}/v1/tasks/task-unified-1763742000-{n:02d}{i:06d}",
                       headers=headers).raise_for_status()
            counts[n] += 1

    started = time.monotonic()
    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps({"calls": sum(counts), "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    main()
