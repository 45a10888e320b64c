"""A provider that answers at once: every `GET .../v1/tasks/{id}` gets evolink's reply for a
task still pending, echoing the id. Raw asyncio on uvloop, keep-alive, nothing else — so the
poller benchmark measures the poller, not the provider.

    python -m bench.instant PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

import uvloop


class Instant(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            path = head.split(b" ", 2)[1]
            task_id = path.rsplit(b"/", 1)[-1].decode()
            body = json.dumps({"created": 1763742000, "id": task_id, "model": "gpt-image-2",
                               "object": "image.generation.task", "progress": 40,
                               "status": "processing", "type": "image"}).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(body), body))


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Instant, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
