"""POST many bodies at once over keep-alive connections: raw asyncio HTTP/1.1, so the client
costs next to nothing (httpx's async pool took 2 s for 300 POSTs over 100 connections here,
this 0.05 s).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


async def post_all(url: str, bodies: list[bytes], connections: int = 64) -> list[int]:
    """Every body POSTed to `url` (JSON) over `connections` connections; the status codes, in
    the order of the answers."""
    where = urlsplit(url)
    todo = iter(bodies)
    codes: list[int] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        try:
            for body in todo:
                writer.write(f"POST {where.path} HTTP/1.1\r\nhost: {where.netloc}\r\n"
                             "content-type: application/json\r\n"
                             f"content-length: {len(body)}\r\n\r\n".encode() + body)
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                length = next(int(line.split(":", 1)[1]) for line in head
                              if line.lower().startswith("content-length:"))
                await reader.readexactly(length)
                codes.append(int(head[0].split(" ")[1]))
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(min(connections, len(bodies)))))
    return codes
