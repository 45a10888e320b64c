"""What the first and last bytes of a body say about the image in it. Performs no I/O.

Only PNG, JPEG and WebP are accepted: the magic bytes must match and the header must parse.
A Content-Type header is never consulted. PNG and JPEG headers are parsed by Pillow's format
readers, which need only the bytes before the image data; Pillow's WebP reader wants the whole
file, so the WebP container and bitstream headers are read here (RFC 9649).
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

from PIL import JpegImagePlugin, PngImagePlugin

from afterimage.errors import ImageRejectedError

MAX_HEAD = 2 * 1024 * 1024  # a header not found in this many bytes is refused
TAIL_SIZE = 64  # looks_complete() wants at least this many of the last bytes

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_MAGIC = b"\xff\xd8\xff"
_JPEG_EOI = b"\xff\xd9"


@dataclass(frozen=True)
class ImageInfo:
    content_type: str
    ext: str
    width: int
    height: int


def sniff(head: bytes, max_pixels: int) -> ImageInfo | None:
    """Identify the image that `head` begins; None while more bytes are needed to decide."""
    ext = _magic(head)
    if ext is None:
        return None
    if ext == "webp":
        size = _webp_size(head)
    else:
        if ext == "png" and len(head) >= 24:
            _check_pixels(_png_ihdr_size(head), max_pixels)  # refuse a bomb before parsing on
        size = _pillow_size(ext, head)
    if size is None:
        if len(head) >= MAX_HEAD:
            raise ImageRejectedError(f"no readable {ext} header in the first {MAX_HEAD} bytes")
        return None
    _check_pixels(size, max_pixels)
    content_type = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}[ext]
    return ImageInfo(content_type, ext, size[0], size[1])


def looks_complete(ext: str, head: bytes, tail: bytes, size: int) -> bool:
    """Whether a `size`-byte body starting with `head` and ending with `tail` holds a whole image.

    `tail` must hold the last TAIL_SIZE bytes (or the whole body, if shorter).
    """
    if ext == "png":
        return _PNG_IEND in tail
    if ext == "jpg":
        # 0xFF in entropy-coded data is always followed by 0x00 or a restart marker, so an
        # end-of-image marker near the end means the scan finished.
        return _JPEG_EOI in tail
    if ext == "webp":
        return len(head) >= 8 and size >= int.from_bytes(head[4:8], "little") + 8
    raise ValueError(f"unknown image extension {ext!r}")


def _magic(head: bytes) -> str | None:
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpg"
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    short = len(head) < 12
    if short and (_PNG_MAGIC.startswith(head[:8]) or _JPEG_MAGIC.startswith(head[:3])):
        return None
    if short and b"RIFF".startswith(head[:4]) and b"WEBP".startswith(head[8:12]):
        return None
    raise ImageRejectedError("not a PNG, JPEG or WebP image")


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageRejectedError(f"image claims an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageRejectedError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
            " (AFTERIMAGE_MAX_IMAGE_PIXELS)"
        )


def _png_ihdr_size(head: bytes) -> tuple[int, int]:
    if head[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise ImageRejectedError("PNG does not start with an IHDR chunk")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _pillow_size(ext: str, head: bytes) -> tuple[int, int] | None:
    # The format classes are used directly rather than Image.open(), whose own bomb check warns
    # (a global warnings filter would be needed to silence it); the limit is enforced above.
    reader = PngImagePlugin.PngImageFile if ext == "png" else JpegImagePlugin.JpegImageFile
    try:
        with reader(BytesIO(head)) as image:
            return image.size
    except Exception:  # Pillow signals a short or broken header with many exception types
        return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 30:
        return None
    fourcc, data = head[12:16], head[20:30]
    if fourcc == b"VP8X":
        return 1 + int.from_bytes(data[4:7], "little"), 1 + int.from_bytes(data[7:10], "little")
    if fourcc == b"VP8L":
        bits = int.from_bytes(data[1:5], "little")
        if data[0] != 0x2F or bits >> 29:
            raise ImageRejectedError("WebP lossless header does not parse")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if fourcc == b"VP8 ":
        if data[0] & 1 or data[3:6] != b"\x9d\x01\x2a":
            raise ImageRejectedError("WebP lossy header does not parse")
        return (
            int.from_bytes(data[6:8], "little") & 0x3FFF,
            int.from_bytes(data[8:10], "little") & 0x3FFF,
        )
    raise ImageRejectedError(f"WebP starts with an unknown chunk {fourcc!r}")
