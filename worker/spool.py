"""Where an image waits between its download and its upload: in memory while the process's
byte budget allows, in a temporary file otherwise.

A worker archives many images at once (worker.slots); each spool takes from one shared
MemoryBudget as it grows and moves to disk, giving its bytes back, when the budget has no
more. The budget never blocks: a full budget only sends bodies to disk (the page cache, not the
process's memory), so the resident memory of a worker stays near its idle size plus the budget,
whatever the number and size of the images in flight.
"""

from __future__ import annotations

import io
import tempfile
import threading
from typing import IO


class MemoryBudget:
    """Bytes of image bodies a process may hold in memory at once. Thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Take `size` bytes if they fit under the limit (all or nothing)."""
        with self._lock:
            if self._used + size > self.limit:
                return False
            self._used += size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self._used -= size

    @property
    def used(self) -> int:
        return self._used


class Spool(io.RawIOBase):
    """A file for one image body: in memory while `budget` has room, then on disk.

    Readable and seekable like a file, so the store uploads from it (and rereads it for a
    resend); `close` gives its bytes back to the budget."""

    def __init__(self, budget: MemoryBudget) -> None:
        super().__init__()
        self._budget = budget
        self._held = 0
        self._file: IO[bytes] = io.BytesIO()

    @property
    def in_memory(self) -> bool:
        return isinstance(self._file, io.BytesIO)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.in_memory:
            if self._budget.take(len(data)):
                self._held += len(data)
            else:
                self._to_disk()
        return self._file.write(data)

    def _to_disk(self) -> None:
        memory = self._file
        assert isinstance(memory, io.BytesIO)
        disk = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        disk.write(memory.getbuffer())
        disk.seek(memory.tell())
        self._file = disk
        memory.close()
        self._release()

    def _release(self) -> None:
        self._budget.give(self._held)
        self._held = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        if not self.closed:
            self._file.close()
            self._release()
        super().close()
