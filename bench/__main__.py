"""`python -m bench [--smoke] [--only NAME,...]`: every benchmark, a table, bench/results.json.

Figures are ratios to a baseline measured side by side in the same run; see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import (
    archive_large,
    archive_small,
    burst,
    e2e,
    ingest,
    poll_queries,
    poller,
    retention,
    short_links,
)
from bench.common import ROOT, Results, table, write_json

BENCHES = {
    "ingest": ingest.run,
    "small": archive_small.run,
    "large": archive_large.run,
    "e2e": e2e.run,
    "poller": poller.run,
    "retention": retention.run,
    "polls": poll_queries.run,
    "short": short_links.run,
    "burst": burst.run,
}


def merged(fresh: dict[str, Any], out: Path, chosen: list[str]) -> dict[str, Any]:
    """The results of this run, with the rows of the benchmarks it did not run kept from the
    file it replaces (so `--only retention` leaves the others' figures in place; each row
    keeps the run it came from in `extra.run`)."""
    if set(chosen) == set(BENCHES) or not out.exists():
        return fresh
    try:
        old = json.loads(out.read_text())
    except ValueError:
        return fresh
    run = {k: old.get(k) for k in ("started", "machine")}
    kept = [{**row, "extra": {**row.get("extra", {}), "run": row.get("extra", {}).get("run", run)}}
            for row in old.get("rows", []) if row.get("bench") not in chosen]
    return {**fresh, "rows": kept + fresh["rows"]}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny counts (under a minute); timings are not judged")
    parser.add_argument("--only", default=",".join(BENCHES),
                        help=f"comma-separated subset of {', '.join(BENCHES)}")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default bench/results.json; --smoke: not written "
                             "unless given)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args()
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    results = Results(args.smoke)
    m = results.machine
    print(f"{m['cpus']} CPUs ({m['cpu']}), load average {m['load_average_at_start'][0]:.2f} "
          f"at start, commit {m['commit']}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="afterimage-bench-"))
    failed = False
    try:
        for name in chosen:
            started = time.monotonic()
            print(f"== {name}", flush=True)
            (work / name).mkdir(parents=True)
            try:
                BENCHES[name](results, work / name, args.smoke)
            except Exception as exc:  # one broken benchmark does not hide the others
                failed = True
                print(f"!! {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                import traceback

                traceback.print_exc()
            print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        if args.keep or failed:
            print(f"work dir (logs): {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(results.rows))
    out = args.out or (None if args.smoke else ROOT / "bench" / "results.json")
    if out is not None:
        write_json(out, merged(results.to_json(), out, chosen))
        print(f"\nwritten: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
