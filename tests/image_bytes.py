"""Real image files made with Pillow, and hand-made headers that lie about their size."""

from __future__ import annotations

import random
import struct
import zlib
from io import BytesIO
from typing import Any

from PIL import Image


def image_bytes(
    fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", noise: bool = False, **save: Any
) -> bytes:
    """An image encoded by Pillow; `noise` makes it incompressible (and so large)."""
    if noise:
        rnd = random.Random(size[0] * 7919 + size[1])
        raw = rnd.randbytes(size[0] * size[1] * len(mode))
        image = Image.frombytes(mode, size, raw)
    else:
        image = Image.new(mode, size, "teal")
    out = BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims `width` x `height` (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG with its SOF header patched to claim `width` x `height`."""
    data = bytearray(image_bytes("JPEG", (16, 16)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def jpeg_with_exif(exif_bytes: int) -> bytes:
    """A JPEG whose SOF sits behind an APP1 segment of about `exif_bytes` bytes."""
    plain = image_bytes("JPEG", (40, 30))
    payload = b"Exif\x00\x00" + b"\x00" * (exif_bytes - 6)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return plain[:2] + app1 + plain[2:]


def webp_vp8x_claiming(width: int, height: int) -> bytes:
    """A WebP extended-format header claiming a `width` x `height` canvas."""
    vp8x = bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body
