"""Throughput of fetch_image: a ~50 MB PNG over loopback into a temporary file.

    .venv/bin/python bench/download_throughput.py [--side 4100] [--runs 5]

The server is `python -m http.server` in its own process, so it does not share our GIL.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from worker.download import DownloadClient, fetch_image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=4100, help="image side in pixels (RGB noise)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.png"
        raw = random.Random(1).randbytes(args.side * args.side * 3)
        Image.frombytes("RGB", (args.side, args.side), raw).save(path, compress_level=0)
        size = path.stat().st_size
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        cmd = [sys.executable, "-m", "http.server", "-b", "127.0.0.1", "-d", tmp, str(port)]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(port)
            client = DownloadClient()
            allow = [ipaddress.ip_network("127.0.0.0/8")]
            rates = []
            for _ in range(args.runs):
                with tempfile.TemporaryFile() as sink:
                    started = time.perf_counter()
                    got = fetch_image(
                        f"http://127.0.0.1:{port}/big.png",
                        sink,
                        max_bytes=200 * 1024 * 1024,
                        max_pixels=100_000_000,
                        allow_cidrs=allow,
                        client=client,
                    )
                    elapsed = time.perf_counter() - started
                assert got.bytes == size
                rates.append(size / elapsed / 1e6)
                print(f"{size / 1e6:.1f} MB in {elapsed * 1000:.0f} ms: {rates[-1]:.0f} MB/s")
            print(f"median {statistics.median(rates):.0f} MB/s, best {max(rates):.0f} MB/s")
        finally:
            server.terminate()
            server.wait(10)


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("the HTTP server did not start")


if __name__ == "__main__":
    main()
