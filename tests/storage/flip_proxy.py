"""A TCP proxy in front of an HTTP/1.1 server that damages request bodies on the way: it flips
one byte in the middle of the body of the first `damage` requests whose method is in `methods`.
Responses pass through untouched (and are kept, to see what the server said)."""

from __future__ import annotations

import contextlib
import socket
import threading

_HEAD_LIMIT = 64 * 1024


class FlipProxy:
    def __init__(self, target_port: int, damage: int = 1, methods: tuple[str, ...] = ("PUT",)):
        self.target_port = target_port
        self.damage_left = damage
        self.methods = {m.encode() for m in methods}
        self.damaged: list[str] = []  # request lines of the requests damaged
        self.responses = bytearray()  # the first bytes of every response chunk, in order
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FlipProxy:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._spawn(self._responses, upstream, client)
            self._spawn(self._requests, client, upstream)

    def _responses(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                with self._lock:
                    self.responses += data[:4096]
                client.sendall(data)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = client.recv(65536)
                    if not data or len(buffer) > _HEAD_LIMIT:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                upstream.sendall(head + b"\r\n\r\n")
                length = _content_length(head)
                flip_at = length // 2 if self._take(head, length) else -1
                sent = 0
                while sent < length:
                    if not buffer:
                        buffer = client.recv(65536)
                        if not buffer:
                            return
                    piece, buffer = buffer[: length - sent], buffer[length - sent:]
                    if sent <= flip_at < sent + len(piece):
                        i = flip_at - sent
                        piece = piece[:i] + bytes([piece[i] ^ 0x01]) + piece[i + 1:]
                    upstream.sendall(piece)
                    sent += len(piece)
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

    def _take(self, head: bytes, length: int) -> bool:
        """Whether to damage this request (and count it)."""
        line = head.split(b"\r\n", 1)[0]
        with self._lock:
            if length and self.damage_left > 0 and line.split(b" ", 1)[0] in self.methods:
                self.damage_left -= 1
                self.damaged.append(line.decode("latin-1"))
                return True
        return False


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0
