"""A worker keeps many archive jobs in flight (AFTERIMAGE_ARCHIVE_CONCURRENCY), at most
AFTERIMAGE_DOWNLOAD_PER_HOST downloads from one host, and finishes the jobs in hand when told to
stop."""

from __future__ import annotations

import hashlib
import ipaddress
import signal
import threading
from io import BytesIO
from pathlib import Path

import httpx
import pytest

from tests.image_host import ImageHost, image_host
from tests.seaweed import SeaweedServer
from tests.stack import Stack, running_stack
from tests.support import wait_for
from worker.download import DownloadClient, FetchedImage, fetch_image


def completed(task_id: str, url: str) -> dict[str, object]:
    return {"id": task_id, "object": "image.generation.task", "model": "gpt-image-2",
            "status": "completed", "progress": 100, "created": 1760000000, "results": [url]}


def send(stack: Stack, host: ImageHost, n: int) -> str:
    task_id = f"task-burst-{n}"
    reply = httpx.post(stack.callback_url("evolink"), json=completed(task_id, host.url(n)))
    assert reply.status_code == 200, reply.text
    return task_id


def stored_image(stack: Stack, task_id: str) -> bytes:
    return stack.objects(f"archive/evolink/{task_id}/")[f"archive/evolink/{task_id}/0.png"]


@pytest.mark.parametrize("memory", ["67108864", "0"], ids=["in-memory", "all-on-disk"])
def test_one_worker_downloads_as_many_images_at_once_as_its_concurrency(
    redis_url: str, s3_server: SeaweedServer, s3_bucket: str, tmp_path: Path, memory: str
) -> None:
    """Each download is held until four are open together: a worker that ran one job at a
    time would never get there (its download would be refused after a minute)."""
    with image_host(together=4) as host, running_stack(
        redis_url, s3_server.url, s3_bucket, tmp_path, keys=False,
        extra_env={"AFTERIMAGE_ARCHIVE_CONCURRENCY": "4",
                   "AFTERIMAGE_ARCHIVE_MEMORY_BYTES": memory},
    ) as stack:  # fmt: skip
        ids = [send(stack, host, n) for n in range(4)]
        for task_id in ids:
            stack.wait_state("evolink", task_id, "archived", timeout=90)
        assert (host.most_open, host.refused) == (4, 0)
        for n, task_id in enumerate(ids):
            assert stored_image(stack, task_id) == host.images[n]


def test_at_most_per_host_downloads_from_one_host_at_once() -> None:
    client = DownloadClient(max_connections=8, per_host=2)
    allow = (ipaddress.ip_network("127.0.0.0/8"),)
    got: dict[int, FetchedImage] = {}
    sinks = {n: BytesIO() for n in range(4)}

    def fetch(n: int) -> None:
        got[n] = fetch_image(host.url(n), sinks[n], max_bytes=10**7, max_pixels=10**7,
                             allow_cidrs=allow, client=client)

    with image_host() as host:
        host.hold()
        threads = [threading.Thread(target=fetch, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        wait_for(lambda: client.users("127.0.0.1", host.port) == 4 and host.open_now() == 2, 30,
                 "four downloads started, two of them at the host")
        host.release()
        for thread in threads:
            thread.join(30)
        assert host.most_open == 2
        for n in range(4):
            assert sinks[n].getvalue() == host.images[n]
            assert got[n].sha256 == hashlib.sha256(host.images[n]).hexdigest()
        assert client.users("127.0.0.1", host.port) == 0  # the host is forgotten


def test_a_stopped_worker_finishes_the_jobs_in_flight_and_takes_no_more(
    redis_url: str, s3_server: SeaweedServer, s3_bucket: str, tmp_path: Path
) -> None:
    with image_host() as host, running_stack(
        redis_url, s3_server.url, s3_bucket, tmp_path, keys=False,
        extra_env={"AFTERIMAGE_ARCHIVE_CONCURRENCY": "3"},
    ) as stack:  # fmt: skip
        host.hold()
        ids = [send(stack, host, n) for n in range(3)]
        wait_for(lambda: host.open_now() == 3, 30, "three downloads in flight")
        worker = stack.procs["worker0"]
        worker.send_signal(signal.SIGTERM)
        late = send(stack, host, 3)  # acknowledged while the worker stops: left for the next
        host.release()
        for task_id in ids:
            stack.wait_state("evolink", task_id, "archived", timeout=60)
        assert worker.wait(30) == 0
        stack.procs.pop("worker0")
        assert host.served == 3
        assert stack.task("evolink", late)["state"] == "queued"
        stack.start("worker", name="worker1")
        stack.wait_state("evolink", late, "archived", timeout=60)
        assert stored_image(stack, late) == host.images[3]

