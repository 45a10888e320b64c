"""Image sniffing and completeness checks on real Pillow-made files and on hostile bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afterimage.errors import ImageRejectedError
from afterimage.images import MAX_HEAD, TAIL_SIZE, ImageInfo, looks_complete, sniff
from tests.image_bytes import (
    image_bytes,
    jpeg_claiming,
    jpeg_with_exif,
    png_claiming,
    webp_vp8x_claiming,
)

MP = 100_000_000

REAL = [
    ("PNG", {}, "image/png", "png"),
    ("PNG", {"mode": "RGBA"}, "image/png", "png"),
    ("PNG", {"mode": "L", "interlace": 1}, "image/png", "png"),
    ("JPEG", {}, "image/jpeg", "jpg"),
    ("JPEG", {"progressive": True, "quality": 60}, "image/jpeg", "jpg"),
    ("JPEG", {"mode": "CMYK"}, "image/jpeg", "jpg"),
    ("WEBP", {}, "image/webp", "webp"),  # lossy: VP8
    ("WEBP", {"lossless": True}, "image/webp", "webp"),  # VP8L
    ("WEBP", {"mode": "RGBA", "noise": True}, "image/webp", "webp"),  # alpha: VP8X
    ("WEBP", {"exif": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"}, "image/webp", "webp"),
]


@pytest.mark.parametrize(("fmt", "options", "content_type", "ext"), REAL)
def test_real_images_are_identified(
    fmt: str, options: dict[str, object], content_type: str, ext: str
) -> None:
    opts = dict(options)
    mode = str(opts.pop("mode", "RGB"))
    data = image_bytes(fmt, (123, 45), mode, **opts)
    assert sniff(data, MP) == ImageInfo(content_type, ext, 123, 45)
    assert looks_complete(ext, data[:16], data[-TAIL_SIZE:], len(data))


@pytest.mark.parametrize(("fmt", "options", "content_type", "ext"), REAL)
def test_every_prefix_of_a_real_image_needs_more_or_is_identified(
    fmt: str, options: dict[str, object], content_type: str, ext: str
) -> None:
    opts = dict(options)
    mode = str(opts.pop("mode", "RGB"))
    data = image_bytes(fmt, (30, 20), mode, **opts)
    for n in range(len(data)):
        assert sniff(data[:n], MP) in (None, ImageInfo(content_type, ext, 30, 20)), n


def test_jpeg_header_behind_large_exif_needs_more_bytes() -> None:
    data = jpeg_with_exif(60_000)
    assert sniff(data[:4096], MP) is None
    assert sniff(data[:30_000], MP) is None
    assert sniff(data, MP) == ImageInfo("image/jpeg", "jpg", 40, 30)


@pytest.mark.parametrize(
    "data",
    [
        png_claiming(20_000, 20_000),
        png_claiming(20_000, 20_000)[:40],  # the IHDR alone is enough to refuse
        jpeg_claiming(20_000, 20_000),
        webp_vp8x_claiming(16_384, 16_384),
    ],
)
def test_decompression_bombs_are_refused(data: bytes) -> None:
    with pytest.raises(ImageRejectedError, match=r"over the limit .*AFTERIMAGE_MAX_IMAGE_PIXELS"):
        sniff(data, MP)


def test_pixel_limit_is_inclusive() -> None:
    data = png_claiming(1000, 1000)
    assert sniff(data, 1_000_000) == ImageInfo("image/png", "png", 1000, 1000)
    with pytest.raises(ImageRejectedError):
        sniff(data, 999_999)


def test_empty_size_is_refused() -> None:
    with pytest.raises(ImageRejectedError, match="empty size"):
        sniff(png_claiming(0, 10), MP)


@pytest.mark.parametrize(
    "data",
    [
        b"<!doctype html><html><body>Not found</body></html>",
        b'{"error": "expired"}',
        image_bytes("GIF"),
        image_bytes("BMP"),
        image_bytes("TIFF"),
        b"RIFF\x10\x00\x00\x00WAVEfmt ",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIDAT" + bytes(16),  # PNG without IHDR first
        b"RIFF\x20\x00\x00\x00WEBPVP8 " + bytes(18),  # VP8 without its start code
    ],
)
def test_non_images_are_refused(data: bytes) -> None:
    with pytest.raises(ImageRejectedError):
        sniff(data, MP)


def test_short_heads_that_could_still_be_images_need_more() -> None:
    for head in (b"", b"\x89P", b"\xff\xd8", b"RIFF\x00\x00", b"RIFF\x00\x00\x00\x00WE"):
        assert sniff(head, MP) is None


def test_a_header_never_found_is_refused_at_max_head() -> None:
    comment = b"\xff\xfe\xff\xff" + bytes(65_533)  # COM segments forever, no SOF
    data = b"\xff\xd8" + comment * (MAX_HEAD // len(comment) + 1)
    assert sniff(data[: MAX_HEAD // 2], MP) is None
    with pytest.raises(ImageRejectedError, match="no readable jpg header"):
        sniff(data, MP)


@pytest.mark.parametrize(("fmt", "ext"), [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")])
def test_truncated_bodies_do_not_look_complete(fmt: str, ext: str) -> None:
    data = image_bytes(fmt, (300, 200), noise=True)
    for cut in (1, 2, 13, len(data) // 2):
        part = data[:-cut]
        assert not looks_complete(ext, part[:16], part[-TAIL_SIZE:], len(part)), cut


def test_jpeg_with_trailing_padding_looks_complete() -> None:
    data = image_bytes("JPEG", (30, 20)) + bytes(8)
    assert looks_complete("jpg", data[:16], data[-TAIL_SIZE:], len(data))


_MAGICS = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x01\x00\x00WEBP"]
_MAGICS += [m + c for m in _MAGICS[1:] for c in (b"\x00\x00\x00\x0dIHDR", b"VP8 ", b"VP8L")]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_MAGICS), st.binary(max_size=600), st.integers(1, 10**9))
def test_sniff_only_ever_refuses_or_needs_more(magic: bytes, rest: bytes, limit: int) -> None:
    head = magic + rest
    try:
        info = sniff(head, limit)
    except ImageRejectedError:
        return
    if info is not None:
        assert info.ext in ("png", "jpg", "webp")
        assert 0 < info.width * info.height <= limit
        for ext in ("png", "jpg", "webp"):
            looks_complete(ext, head[:16], head[-TAIL_SIZE:], len(head))


_SEEDS = [image_bytes(fmt, (24, 16)) for fmt in ("PNG", "JPEG", "WEBP")]
_SEEDS.append(image_bytes("WEBP", (24, 16), "RGBA", noise=True, lossless=True))


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    st.integers(0, 10**6),
)
def test_sniff_survives_damaged_real_images(
    seed: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(seed)
    for at, value in flips:
        data[at % len(data)] = value
    head = bytes(data[: cut % (len(data) + 1)])
    try:
        info = sniff(head, 10_000)
    except ImageRejectedError:
        return
    assert info is None or info.width * info.height <= 10_000
