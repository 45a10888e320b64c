"""A slow CDN on loopback: `GET /img/{n}.png` answers after 300 ms (before the headers), then
sends the body at 4 MB/s per connection, 64 KiB at a time, paced by the clock. Raw asyncio on
uvloop, HTTP/1.1 with keep-alive. `GET /stats` is JSON: the peak number of requests open at
once (from the request read to the last byte written), requests and bytes served;
`GET /stats?reset=1` reads and then starts them again.

Image n is a valid PNG, 1,024 pixels wide and 325 to 1,301 rows high (1-4 MB, the height drawn
from a generator seeded by n): RGB noise, stored uncompressed (deflate's stored blocks), one
IDAT chunk per block. Every image's rows are a prefix of one 4 MB pool of noise made at start,
and a tEXt chunk names n, so the CDN holds one pool whatever the count; only the last IDAT
chunk (its block's header, the Adler-32 and the CRC) is made per image. `image(n)` is shared
with the benchmark, which takes each image's SHA-256 from it.

    python -m bench.cdn PORT
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import struct
import sys
import time
import zlib
from functools import cache

import uvloop

DELAY = 0.3  # seconds before the first byte
RATE = 4_000_000  # bytes per second, per connection
CHUNK = 64 * 1024
WIDTH = 1024
ROW = 1 + 3 * WIDTH  # filter byte (0, none) + RGB pixels
MIN_ROWS, MAX_ROWS = 1_000_000 // ROW, 4_000_000 // ROW
BLOCK = 65535  # a stored deflate block's largest payload


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


class Pool:
    """The rows every image starts with, and their whole blocks framed as IDAT chunks."""

    def __init__(self) -> None:
        noise = random.Random("afterimage-burst").randbytes(MAX_ROWS * 3 * WIDTH)
        self.raw = b"".join(b"\x00" + noise[r * 3 * WIDTH:(r + 1) * 3 * WIDTH]
                            for r in range(MAX_ROWS))
        blocks = len(self.raw) // BLOCK
        framed, adlers, adler = [], [1], 1
        for b in range(blocks):
            data = self.raw[b * BLOCK:(b + 1) * BLOCK]
            framed.append(_chunk(b"IDAT", struct.pack("<BHH", 0, BLOCK, BLOCK ^ 0xFFFF) + data))
            adler = zlib.adler32(data, adler)
            adlers.append(adler)
        self.framed = memoryview(b"".join(framed))
        self.chunk_len = 12 + 5 + BLOCK
        self.adlers = adlers


@cache
def pool() -> Pool:
    return Pool()


def rows(n: int) -> int:
    return random.Random(f"burst-{n}").randint(MIN_ROWS, MAX_ROWS)


def image(n: int) -> list[memoryview]:
    """Image n's bytes, in three parts (head, the shared whole blocks, tail)."""
    p = pool()
    size = rows(n) * ROW
    whole, rest = divmod(size, BLOCK)
    tail = p.raw[whole * BLOCK:size]
    last = struct.pack("<BHH", 1, rest, rest ^ 0xFFFF) + tail
    last += struct.pack(">I", zlib.adler32(tail, p.adlers[whole]))
    head = (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", WIDTH, rows(n), 8, 2, 0, 0, 0))
            + _chunk(b"tEXt", b"Comment\x00afterimage burst image %d" % n)
            + _chunk(b"IDAT", b"\x78\x01"))  # the zlib header; no preset dictionary
    return [memoryview(head), p.framed[:whole * p.chunk_len],
            memoryview(_chunk(b"IDAT", last) + _chunk(b"IEND", b""))]


def digests(count: int) -> dict[int, tuple[str, int]]:
    """Images 0 to count - 1: each one's SHA-256 (hex) and size."""
    out = {}
    for n in range(count):
        digest, parts = hashlib.sha256(), image(n)
        for part in parts:
            digest.update(part)
        out[n] = (digest.hexdigest(), sum(len(p) for p in parts))
    return out


class Stats:
    def __init__(self) -> None:
        self.open = self.peak = self.requests = self.bytes = 0

    def as_json(self) -> bytes:
        return json.dumps({"open": self.open, "peak": self.peak, "requests": self.requests,
                           "bytes": self.bytes}).encode()


STATS = Stats()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            line, *headers = head.decode("latin-1").split("\r\n")
            path = line.split(" ")[1] if line.count(" ") >= 2 else ""
            close = any(h.lower().replace(" ", "") == "connection:close" for h in headers)
            if not await respond(writer, path):
                return
            if close:
                return
    finally:
        writer.close()


async def respond(writer: asyncio.StreamWriter, path: str) -> bool:
    if path.startswith("/stats"):
        body = STATS.as_json()
        if "reset=1" in path:
            STATS.peak, STATS.requests, STATS.bytes = STATS.open, 0, 0
        await send_head(writer, 200, "application/json", len(body))
        writer.write(body)
        await writer.drain()
        return True
    name = path.removeprefix("/img/").removesuffix(".png")
    if not (path.startswith("/img/") and path.endswith(".png") and name.isdigit()):
        await send_head(writer, 404, "text/plain", 0)
        return True
    STATS.open += 1
    STATS.peak = max(STATS.peak, STATS.open)
    STATS.requests += 1
    try:
        parts = image(int(name))
        await asyncio.sleep(DELAY)
        await send_head(writer, 200, "image/png", sum(len(p) for p in parts))
        await paced(writer, parts)
        return True
    except ConnectionError:
        return False
    finally:
        STATS.open -= 1


async def send_head(writer: asyncio.StreamWriter, status: int, kind: str, length: int) -> None:
    reason = {200: "OK", 404: "Not Found"}[status]
    writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: {kind}\r\n"
                 f"content-length: {length}\r\n\r\n".encode())
    await writer.drain()


async def paced(writer: asyncio.StreamWriter, parts: list[memoryview]) -> None:
    """Each chunk leaves no earlier than its place in the body allows at RATE."""
    started = time.monotonic()
    sent = 0
    for part in parts:
        for off in range(0, len(part), CHUNK):
            wait = started + sent / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            piece = part[off:off + CHUNK]
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
            STATS.bytes += len(piece)


async def serve(port: int) -> None:
    pool()  # before listening: the first request is not slower than the others
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
