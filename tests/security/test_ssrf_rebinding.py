"""DNS rebinding: a name that resolves to an allowed address for the check and to a forbidden
one a moment later. The downloader resolves once and connects to the very address it checked,
so the second answer is never asked for, let alone used."""

from __future__ import annotations

import io
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from afterimage.errors import UnsafeUrlError
from tests.image_bytes import image_bytes
from tests.worker.image_server import ImageServer, Reply
from worker.download import DownloadClient, fetch_image

PNG = image_bytes("PNG", (8, 8))
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.fixture()
def server() -> Iterator[ImageServer]:
    with ImageServer() as srv:
        srv.routes["/a.png"] = Reply(PNG, content_type="image/png")
        yield srv


@pytest.fixture()
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The system resolver, except that `rebind.test` answers loopback once, then metadata."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        asked.append(host)
        address = "127.0.0.1" if len(asked) == 1 else "169.254.169.254"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def fetch(url: str) -> bytes:
    sink = io.BytesIO()
    client = DownloadClient()
    try:
        fetch_image(url, sink, max_bytes=10**6, max_pixels=10**6, allow_cidrs=LOOPBACK,
                    stall_timeout=10, time_limit=10, client=client)
    finally:
        client.close()
    return sink.getvalue()


def test_the_checked_address_is_the_one_connected_to(
    server: ImageServer, rebinding_dns: list[str]
) -> None:
    assert fetch(f"http://rebind.test:{server.port}/a.png") == PNG
    assert rebinding_dns == ["rebind.test"]  # resolved once: the rebound answer is never seen


def test_the_rebound_answer_is_refused_when_it_is_the_first(
    server: ImageServer, rebinding_dns: list[str]
) -> None:
    rebinding_dns.append("rebind.test")  # the loopback answer has been used up
    with pytest.raises(UnsafeUrlError, match=r"169\.254\.169\.254"):
        fetch(f"http://rebind.test:{server.port}/a.png")
    assert server.connections == 0
