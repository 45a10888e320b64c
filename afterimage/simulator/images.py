"""Real PNG/JPEG/WebP images, rendered once per (format, size) and served from memory."""

from __future__ import annotations

import asyncio
import io
import math
import os
import threading
from typing import NamedTuple

from PIL import Image

# format name -> (Pillow format, content type, file extension)
FORMATS = {
    "png": ("PNG", "image/png", "png"),
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "webp": ("WEBP", "image/webp", "webp"),
}
ALIASES = {"jpg": "jpeg", "image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}


def normalize_format(name: str) -> str:
    """`png`, `jpeg`/`jpg` or `webp` (any case, or a MIME type); ValueError otherwise."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in FORMATS:
        raise ValueError(f"unsupported image format {name!r} (png, jpeg, webp)")
    return key


def content_type(fmt: str) -> str:
    return FORMATS[fmt][1]


def extension(fmt: str) -> str:
    return FORMATS[fmt][2]


class ImageSpec(NamedTuple):
    """What to render: `nbytes` (approximate encoded size) wins over width and height."""

    fmt: str
    width: int
    height: int
    nbytes: int | None = None


def render(spec: ImageSpec) -> bytes:
    """Encode one image for `spec`; noise when a byte size is asked, a gradient otherwise."""
    if spec.nbytes is None:
        return _encode(_gradient(spec.width, spec.height), spec.fmt)
    return _sized(spec.fmt, spec.nbytes)


def _gradient(width: int, height: int) -> Image.Image:
    ramp = Image.linear_gradient("L")
    red = ramp.rotate(90).resize((width, height))
    green = ramp.resize((width, height))
    blue = Image.new("L", (width, height), 160)
    return Image.merge("RGB", (red, green, blue))


def _noise(pixels: int) -> Image.Image:
    side = max(8, math.isqrt(max(pixels, 64)))
    return Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, "PNG", compress_level=1)
    elif fmt == "jpeg":
        image.save(out, "JPEG", quality=90)
    else:
        image.save(out, "WEBP", quality=90, method=0)
    return out.getvalue()


def _sized(fmt: str, nbytes: int) -> bytes:
    # Noise does not compress, so bytes grow with pixels; a few rescaling steps land close.
    pixels = max(64, nbytes // 3)
    data = _encode(_noise(pixels), fmt)
    for _ in range(4):
        ratio = nbytes / len(data)
        if 0.97 <= ratio <= 1.03:
            break
        pixels = max(64, int(pixels * ratio))
        data = _encode(_noise(pixels), fmt)
    return data


class ImageCache:
    """Rendered bytes per spec; rendering happens off the event loop, once per spec."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._images: dict[ImageSpec, bytes] = {}
        self._pending: dict[ImageSpec, asyncio.Future[bytes]] = {}

    def cached(self, spec: ImageSpec) -> bytes | None:
        return self._images.get(spec)

    def get_sync(self, spec: ImageSpec) -> bytes:
        data = self._images.get(spec)
        if data is None:
            data = render(spec)
            with self._lock:
                data = self._images.setdefault(spec, data)
        return data

    async def get(self, spec: ImageSpec) -> bytes:
        """The bytes for `spec`, rendering them in a worker thread the first time."""
        data = self._images.get(spec)
        if data is not None:
            return data
        pending = self._pending.get(spec)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._pending[spec] = pending
            try:
                data = await asyncio.to_thread(self.get_sync, spec)
            except asyncio.CancelledError:
                pending.cancel()
                raise
            except Exception as exc:
                pending.set_exception(exc)
                pending.exception()  # retrieved here, so an unawaited failure is not logged
                raise
            finally:
                self._pending.pop(spec, None)
            pending.set_result(data)
            return data
        return await asyncio.shield(pending)
