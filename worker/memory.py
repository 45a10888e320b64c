"""Keeping a long-running worker's memory flat (glibc only; elsewhere these do nothing)."""

from __future__ import annotations

import ctypes
from typing import Any

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt parameters (malloc.h)


def _libc() -> Any:
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


_LIBC = _libc()


def bound_malloc() -> None:
    """Keep a long-running worker's memory flat, whatever the image size (glibc only).

    Images pass through in chunks, but glibc keeps what is freed: each upload thread gets its
    own arena, and the mmap threshold rises to the largest buffer seen, so spool buffers end up
    in arenas that are never given back. Two arenas at most, and every block of 512 KiB or more
    mapped (so returned when freed; socket reads stay below it, see worker.download.READ_SIZE),
    keep the peak near the idle size plus the image bytes held in memory
    (AFTERIMAGE_ARCHIVE_MEMORY_BYTES; bench/README.md: the large-image and burst benchmarks).
    """
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is None:  # not glibc
        return
    mallopt(M_ARENA_MAX, 2)
    mallopt(M_MMAP_THRESHOLD, 512 * 1024)


def give_back() -> None:
    """Return the pages malloc holds free to the system (after a job: the jobs in flight free
    their buffers in any order, which leaves free memory in the middle of the heaps)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
