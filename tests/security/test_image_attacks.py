"""Result URLs that serve something other than a plain image, end to end: the receiver takes
the callback (no API key is configured, so the URLs are trusted as far as they go), the worker
fetches them over real HTTP, and nothing that is not a real PNG, JPEG or WebP within the pixel
limit is ever stored. Whatever the Content-Type says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.image_bytes import image_bytes, jpeg_claiming, png_claiming, webp_vp8x_claiming
from tests.stack import Stack, running_stack
from tests.support import MotoServer
from tests.worker.image_server import ImageServer, Reply

PNG = image_bytes("PNG", (32, 32))
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.fixture()
def stack(redis_url: str, s3_server: MotoServer, s3_bucket: str,
          tmp_path: Path) -> Iterator[Stack]:
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path, keys=False) as s:
        yield s


@pytest.fixture()
def host() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


def callback(stack: Stack, task_id: str, urls: list[str]) -> None:
    body = {"id": task_id, "object": "image.generation.task", "model": "gpt-image-2",
            "status": "completed", "progress": 100, "created": 1760000000, "results": urls}
    assert httpx.post(stack.callback_url("evolink"), json=body).status_code == 200


@pytest.mark.parametrize(
    ("name", "reply"),
    [
        ("html-as-png", Reply(HTML, content_type="image/png")),
        ("svg-as-png", Reply(SVG, content_type="image/png")),
        ("png-magic-then-junk", Reply(b"\x89PNG\r\n\x1a\n" + b"\x00" * 4096,
                                      content_type="image/png")),
        ("gif", Reply(b"GIF89a" + b"\x00" * 64, content_type="image/gif")),
        ("png-bomb", Reply(png_claiming(50_000, 50_000), content_type="image/png")),
        ("jpeg-bomb", Reply(jpeg_claiming(65_000, 65_000), content_type="image/jpeg")),
        ("webp-bomb", Reply(webp_vp8x_claiming(16_000, 16_000), content_type="image/webp")),
    ],
)
def test_what_is_not_a_safe_image_is_refused_and_nothing_is_stored(
    stack: Stack, host: ImageServer, name: str, reply: Reply
) -> None:
    host.routes["/evil"] = reply
    callback(stack, name, [host.url("/evil")])
    task = stack.wait_state("evolink", name, "archive_failed")
    assert task["error"]["code"] == "image_rejected"
    assert host.hits("/evil") == 1  # refused once for all: never retried
    assert stack.objects() == {}


def test_one_bad_image_fails_the_task_and_no_manifest_claims_it_complete(
    stack: Stack, host: ImageServer
) -> None:
    host.routes["/good.png"] = Reply(PNG, content_type="image/png")
    host.routes["/bad.png"] = Reply(HTML, content_type="image/png")
    callback(stack, "mixed", [host.url("/good.png"), host.url("/bad.png")])
    task = stack.wait_state("evolink", "mixed", "archive_failed")
    assert task["error"]["code"] == "image_rejected"
    assert "archive/evolink/mixed/manifest.json" not in stack.objects()


def test_a_redirect_to_the_cloud_metadata_address_is_never_followed(
    stack: Stack, host: ImageServer
) -> None:
    host.routes["/hop"] = Reply(status=302, content_type=None, headers=(
        ("Location", "http://169.254.169.254/latest/meta-data/iam/security-credentials/"),))
    callback(stack, "hop", [host.url("/hop")])
    task = stack.wait_state("evolink", "hop", "archive_failed")
    assert task["error"]["code"] == "unsafe_url"
    assert stack.objects() == {}


def test_a_png_served_as_text_plain_is_still_stored_as_image_png(
    stack: Stack, host: ImageServer
) -> None:
    host.routes["/plain"] = Reply(PNG, content_type="text/plain")
    callback(stack, "plain", [host.url("/plain")])
    stack.wait_state("evolink", "plain", "archived")
    head = stack.s3.head_object(Bucket=stack.bucket, Key="archive/evolink/plain/0.png")
    assert head["ContentType"] == "image/png"
