"""fetch_image against a real HTTP(S) server on loopback: SSRF rules, limits, truncation, errors."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import ssl
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from afterimage.errors import (
    DownloadError,
    ImageRejectedError,
    LinkExpiredError,
    TransientDownloadError,
    UnsafeUrlError,
)
from tests.image_bytes import image_bytes, png_claiming
from tests.worker.image_server import ImageServer, Reply, tls_contexts
from worker.addresses import Network
from worker.download import MAX_REDIRECTS, DownloadClient, FetchedImage, fetch_image

LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"),)
ONLY_FIRST: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.1/32"),)
SIGNED = "?X-Amz-Signature=deadbeefsecret&X-Amz-Expires=300"
PNG = image_bytes("PNG", (400, 300), noise=True)
JPEG = image_bytes("JPEG", (640, 480), noise=True, quality=90)
WEBP = image_bytes("WEBP", (320, 200), noise=True)


@pytest.fixture()
def server() -> Iterator[ImageServer]:
    with ImageServer() as srv:
        srv.routes["/a.png"] = Reply(PNG, content_type="image/png")
        yield srv


@pytest.fixture()
def other_server() -> Iterator[ImageServer]:
    """A second host on another loopback address."""
    with ImageServer("127.0.0.2") as srv:
        srv.routes["/b.png"] = Reply(PNG, content_type="image/png")
        yield srv


@pytest.fixture()
def client() -> Iterator[DownloadClient]:
    c = DownloadClient()
    yield c
    c.close()


def fetch(
    url: str,
    client: DownloadClient,
    allow: Sequence[Network] = LOOPBACK,
    sink: io.BytesIO | None = None,
    max_bytes: int = 10_000_000,
    stall_timeout: float = 10.0,
    time_limit: float = 10.0,
) -> FetchedImage:
    return fetch_image(
        url,
        sink if sink is not None else io.BytesIO(),
        max_bytes=max_bytes,
        max_pixels=100_000_000,
        allow_cidrs=allow,
        stall_timeout=stall_timeout,
        time_limit=time_limit,
        client=client,
    )


# --- SSRF -------------------------------------------------------------------------------------


def test_loopback_is_refused_unless_allowed_and_the_server_sees_nothing(
    server: ImageServer, client: DownloadClient
) -> None:
    with pytest.raises(UnsafeUrlError) as caught:
        fetch(server.url("/a.png" + SIGNED), client, allow=())
    assert server.connections == 0 and server.requests == []
    message = str(caught.value)
    assert server.url("/a.png") in message and "deadbeef" not in message and "?" not in message


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
        "[fe80::1]",
        "224.0.0.1",
        "0.0.0.0",  # reaches the local host on Linux
        "[fd00:ec2::254]",
        "2130706433",  # 127.0.0.1 as one decimal number
        "0x7f.1",
    ],
)
def test_literal_non_public_addresses_are_refused(
    host: str, server: ImageServer, client: DownloadClient
) -> None:
    with pytest.raises(UnsafeUrlError, match="non-public address"):
        fetch(server.url("/a.png", host=host), client, allow=())
    assert server.connections == 0


def test_metadata_address_is_refused_even_when_its_network_is_allowed(
    client: DownloadClient,
) -> None:
    allow = [ipaddress.ip_network("169.254.0.0/16")]
    with pytest.raises(UnsafeUrlError):
        fetch("http://169.254.169.254/latest/meta-data/", client, allow=allow)


def test_a_host_name_resolving_to_loopback_is_refused(
    server: ImageServer, client: DownloadClient
) -> None:
    with pytest.raises(UnsafeUrlError, match="'localhost' resolves to"):
        fetch(server.url("/a.png", host="localhost"), client, allow=())
    assert server.connections == 0


def test_a_host_name_is_fetched_when_all_its_addresses_are_allowed(
    server: ImageServer, client: DownloadClient
) -> None:
    allow = [*LOOPBACK, ipaddress.ip_network("::1/128")]
    got = fetch(server.url("/a.png", host="localhost"), client, allow=allow)
    assert got.sha256 == hashlib.sha256(PNG).hexdigest()


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://x/"])
def test_other_schemes_are_refused(url: str, client: DownloadClient) -> None:
    with pytest.raises(UnsafeUrlError, match="only http and https"):
        fetch(url, client)


def test_a_kept_alive_connection_is_not_reused_under_a_stricter_allow_list(
    server: ImageServer, client: DownloadClient
) -> None:
    fetch(server.url("/a.png"), client)
    with pytest.raises(UnsafeUrlError):
        fetch(server.url("/a.png"), client, allow=())
    assert server.requests == ["/a.png"]


# --- success ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "ext", "size"),
    [
        (PNG, "image/png", "png", (400, 300)),
        (JPEG, "image/jpeg", "jpg", (640, 480)),
        (WEBP, "image/webp", "webp", (320, 200)),
    ],
)
def test_downloads_stream_into_the_sink_with_size_hash_and_dimensions(
    body: bytes,
    content_type: str,
    ext: str,
    size: tuple[int, int],
    server: ImageServer,
    client: DownloadClient,
) -> None:
    server.routes["/img"] = Reply(body, content_type="application/octet-stream")
    sink = io.BytesIO()
    got = fetch(server.url("/img" + SIGNED), client, sink=sink)
    assert got == FetchedImage(
        bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        content_type=content_type,
        ext=ext,
        width=size[0],
        height=size[1],
        source_url=server.url("/img"),
    )
    assert sink.getvalue() == body


def test_connections_are_reused_across_calls(server: ImageServer, client: DownloadClient) -> None:
    for _ in range(3):
        fetch(server.url("/a.png"), client)
    assert server.requests == ["/a.png"] * 3
    assert server.connections == 1


def test_a_body_without_content_length_is_accepted_when_complete(
    server: ImageServer, client: DownloadClient
) -> None:
    server.routes["/close"] = Reply(JPEG, length=None)
    assert fetch(server.url("/close"), client).bytes == len(JPEG)


def test_content_type_is_ignored_both_ways(server: ImageServer, client: DownloadClient) -> None:
    server.routes["/text"] = Reply(PNG, content_type="text/plain")
    server.routes["/page"] = Reply(b"<html><body>hello</body></html>", content_type="image/png")
    assert fetch(server.url("/text"), client).content_type == "image/png"
    with pytest.raises(ImageRejectedError, match="not a PNG, JPEG or WebP"):
        fetch(server.url("/page"), client)


# --- truncation and limits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (Reply(PNG, cut_after=len(PNG) // 2), "connection failed or cut"),  # short of its length
        (Reply(PNG, length=None, cut_after=len(PNG) - 100), "ends early"),
        (Reply(JPEG, length=None, cut_after=len(JPEG) - 1), "ends early"),
        (Reply(WEBP, length=None, cut_after=len(WEBP) - 7), "ends early"),
        (Reply(PNG, chunked=True, cut_after=len(PNG) // 2), "connection failed or cut"),
    ],
)
def test_truncated_bodies_are_transient_failures(
    reply: Reply, match: str, server: ImageServer, client: DownloadClient
) -> None:
    server.routes["/cut"] = reply
    with pytest.raises(TransientDownloadError, match=match):
        fetch(server.url("/cut"), client)


def test_content_length_over_the_limit_is_refused_before_reading(
    server: ImageServer, client: DownloadClient
) -> None:
    sink = io.BytesIO()
    with pytest.raises(ImageRejectedError, match=r"Content-Length \d+ is over the limit"):
        fetch(server.url("/a.png"), client, sink=sink, max_bytes=len(PNG) - 1)
    assert sink.tell() == 0


def test_a_body_over_the_limit_is_cut_off_while_streaming(
    server: ImageServer, client: DownloadClient
) -> None:
    server.routes["/endless"] = Reply(PNG, length=None)
    sink = io.BytesIO()
    limit = r"body is over the limit of 100000 bytes \(AFTERIMAGE_MAX_IMAGE_BYTES\)"
    with pytest.raises(ImageRejectedError, match=limit):
        fetch(server.url("/endless"), client, sink=sink, max_bytes=100_000)
    assert sink.tell() <= 100_000


def test_a_decompression_bomb_is_refused(server: ImageServer, client: DownloadClient) -> None:
    server.routes["/bomb"] = Reply(png_claiming(20_000, 20_000), content_type="image/png")
    with pytest.raises(ImageRejectedError, match="20000x20000"):
        fetch(server.url("/bomb"), client)


def test_a_stalled_body_times_out(server: ImageServer, client: DownloadClient) -> None:
    server.routes["/stall"] = Reply(PNG, cut_after=1000, stall=True)
    started = time.monotonic()
    with pytest.raises(TransientDownloadError, match=r"stalled, nothing for 0\.5 s"):
        fetch(server.url("/stall"), client, stall_timeout=0.5, time_limit=30)
    assert time.monotonic() - started < 5


def test_the_time_limit_covers_the_whole_download_not_each_read(
    server: ImageServer, client: DownloadClient
) -> None:
    server.routes["/trickle"] = Reply(PNG, trickle=0.05)  # every read succeeds, slowly
    started = time.monotonic()
    with pytest.raises(TransientDownloadError, match="at the time limit of 1 s"):
        fetch(server.url("/trickle"), client, stall_timeout=0.5, time_limit=1.0)
    assert time.monotonic() - started < 4


def test_oversized_response_headers_are_refused(
    server: ImageServer, client: DownloadClient
) -> None:
    server.routes["/headers"] = Reply(PNG, headers=(("X-Padding", "x" * 200_000),))
    with pytest.raises(TransientDownloadError):
        fetch(server.url("/headers"), client)


@pytest.mark.parametrize("body", [b"", b"\x89PNG\r\n\x1a\n"])
def test_a_body_that_ends_before_a_header_is_refused(
    body: bytes, server: ImageServer, client: DownloadClient
) -> None:
    server.routes["/short"] = Reply(body)
    with pytest.raises(ImageRejectedError, match="ends before a complete image header"):
        fetch(server.url("/short"), client)


# --- status codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (403, LinkExpiredError),
        (404, LinkExpiredError),
        (410, LinkExpiredError),
        (429, TransientDownloadError),
        (500, TransientDownloadError),
        (503, TransientDownloadError),
        (400, DownloadError),
        (401, DownloadError),
        (204, DownloadError),
    ],
)
def test_status_codes_map_to_errors(
    status: int, error: type[DownloadError], server: ImageServer, client: DownloadClient
) -> None:
    server.routes["/status"] = Reply(b"<Error>nope</Error>", status=status)
    with pytest.raises(DownloadError) as caught:
        fetch(server.url("/status" + SIGNED), client)
    assert type(caught.value) is error
    assert f"HTTP {status}" in str(caught.value) and "deadbeef" not in str(caught.value)


# --- redirects --------------------------------------------------------------------------------


def test_a_redirect_to_another_allowed_host_is_followed(
    server: ImageServer, other_server: ImageServer, client: DownloadClient
) -> None:
    server.routes["/go"] = Reply(status=302, headers=(("Location", other_server.url("/b.png")),))
    got = fetch(server.url("/go" + SIGNED), client)
    assert got.bytes == len(PNG) and got.source_url == server.url("/go")
    assert server.requests == ["/go"] and other_server.requests == ["/b.png"]


def test_a_redirect_to_a_loopback_host_not_allowed_is_refused(
    server: ImageServer, other_server: ImageServer, client: DownloadClient
) -> None:
    target = other_server.url("/b.png" + SIGNED)
    server.routes["/go"] = Reply(status=307, headers=(("Location", target),))
    with pytest.raises(UnsafeUrlError, match=r"127\.0\.0\.2") as caught:
        fetch(server.url("/go"), client, allow=ONLY_FIRST)
    assert other_server.connections == 0
    assert "redirected from" in str(caught.value) and "deadbeef" not in str(caught.value)


@pytest.mark.parametrize(
    "location", ["http://169.254.169.254/latest/meta-data/", "file:///etc/passwd"]
)
def test_redirects_to_unsafe_places_are_refused(
    location: str, server: ImageServer, client: DownloadClient
) -> None:
    server.routes["/go"] = Reply(status=301, headers=(("Location", location),))
    with pytest.raises(UnsafeUrlError):
        fetch(server.url("/go"), client)


def _chain(server: ImageServer, length: int) -> str:
    for i in range(length, 0, -1):
        location = f"/chain/{i - 1}" if i > 1 else "/a.png"  # relative Location headers
        server.routes[f"/chain/{i}"] = Reply(status=302, headers=(("Location", location),))
    return server.url(f"/chain/{length}")


def test_a_chain_of_three_redirects_is_followed(
    server: ImageServer, client: DownloadClient
) -> None:
    assert fetch(_chain(server, MAX_REDIRECTS), client).bytes == len(PNG)


def test_a_chain_of_four_redirects_is_refused(server: ImageServer, client: DownloadClient) -> None:
    with pytest.raises(DownloadError, match="more than 3 redirects"):
        fetch(_chain(server, MAX_REDIRECTS + 1), client)
    assert server.hits("/a.png") == 0 and len(server.requests) == MAX_REDIRECTS + 1


# --- TLS to a pinned address ------------------------------------------------------------------


@pytest.fixture()
def tls_server(tmp_path: Path) -> Iterator[tuple[ImageServer, ssl.SSLContext, list[str]]]:
    server_ctx, client_ctx = tls_contexts(tmp_path, "localhost")
    names: list[str] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: names.append(name) and None
    with ImageServer(tls=server_ctx) as srv:
        srv.routes["/a.png"] = Reply(PNG, content_type="image/png")
        yield srv, client_ctx, names


def test_tls_verifies_the_host_name_while_connecting_to_the_checked_address(
    tls_server: tuple[ImageServer, ssl.SSLContext, list[str]],
) -> None:
    server, client_ctx, names = tls_server
    client = DownloadClient(ssl_context=client_ctx)
    allow = [*LOOPBACK, ipaddress.ip_network("::1/128")]
    try:
        got = fetch(server.url("/a.png", host="localhost"), client, allow=allow)
        assert got.sha256 == hashlib.sha256(PNG).hexdigest()
        assert names == ["localhost"]
        with pytest.raises(DownloadError, match="certificate") as caught:
            fetch(server.url("/a.png"), client)  # the certificate names localhost, not the IP
        assert not caught.value.transient
    finally:
        client.close()
