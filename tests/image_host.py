"""An image host the tests control: it counts the downloads open at once, and can hold every
download until enough are open together (`together`) or until the test lets them go (`hold`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.image_bytes import image_bytes

HOLD_LIMIT = 60.0  # a held download is answered 503 after this long (a test that failed)


class ImageHost:
    def __init__(self, together: int = 0) -> None:
        self.images = {n: image_bytes("PNG", (40 + n, 30), noise=True) for n in range(32)}
        self.lock = threading.Lock()
        self.open = 0
        self.most_open = 0
        self.served = 0
        self.refused = 0
        self.released = threading.Event()
        self.barrier = threading.Barrier(together, timeout=HOLD_LIMIT) if together else None
        self.holding = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, n: int, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/img/{n}.png"

    def hold(self) -> None:
        """Keep every download open until `release`."""
        self.holding = True

    def release(self) -> None:
        self.released.set()

    def _arrive(self) -> bool:
        """Wait as told; False: the wait failed (answer 503)."""
        with self.lock:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        if self.barrier is not None:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                return False
        return not self.holding or self.released.wait(HOLD_LIMIT)

    def _leave(self, ok: bool) -> None:
        with self.lock:
            self.open -= 1
            self.served += ok
            self.refused += not ok

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                n = int(self.path.rsplit("/", 1)[-1].split(".")[0])
                ok = host._arrive()
                try:
                    body = host.images[n] if ok else b"busy"
                    self.send_response(200 if ok else 503)
                    self.send_header("Content-Type", "image/png" if ok else "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except ConnectionError:  # the client went away (a test that ended early)
                    ok = False
                finally:
                    host._leave(ok)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def open_now(self) -> int:
        with self.lock:
            return self.open


@contextmanager
def image_host(together: int = 0) -> Iterator[ImageHost]:
    host = ImageHost(together)
    thread = threading.Thread(target=host.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        host.release()
        host.server.shutdown()
        host.server.server_close()
