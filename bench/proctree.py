"""The resident memory of a process and all its descendants, read from /proc, and a thread
that samples it and keeps the peak."""

from __future__ import annotations

import os
import threading
from pathlib import Path

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def descendants(root: int) -> list[int]:
    """`root` and every process below it (parents from each /proc/<pid>/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def rss_kib(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss_mb(root: int) -> tuple[float, int]:
    """(the summed RSS of `root`'s tree in MB of 2^20 bytes, how many processes it has)."""
    pids = descendants(root)
    return sum(rss_kib(p) for p in pids) / 1024, len(pids)


def role(pid: int) -> str:
    """A short name: the afterimage command or module a process runs, or its program's name."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    module = args[args.index("-m") + 1] if "-m" in args[:-1] else ""
    if module == "afterimage" and len(args) > args.index("-m") + 2:
        return args[args.index("-m") + 2]  # python -m afterimage worker ...
    if module.startswith("afterimage."):
        return module.rsplit(".", 1)[1]  # python -m afterimage.supervisor
    return Path(args[0].split(" ")[0]).name


def tree_by_role(root: int) -> dict[str, float]:
    """The tree's RSS in MB (2^20 bytes) by role; processes of one role summed ("2x worker")."""
    mb: dict[str, float] = {}
    count: dict[str, int] = {}
    for pid in descendants(root):
        name = role(pid)
        mb[name] = mb.get(name, 0.0) + rss_kib(pid) / 1024
        count[name] = count.get(name, 0) + 1
    return {(f"{count[k]}x {k}" if count[k] > 1 else k): v for k, v in mb.items()}


def pss_mb(root: int) -> float:
    """The tree's proportional set size: shared pages counted once across the processes."""
    total = 0
    for pid in descendants(root):
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("Pss:"))
    return total / 1024


class PeakRss:
    """Samples the tree's RSS and PSS every `interval` seconds from start() to stop(); keeps
    the max of each."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        self.root = root
        self.interval = interval
        self.peak = 0.0
        self.peak_pss = 0.0
        self.processes = 0
        self.samples = 0
        self.at_peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> PeakRss:
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(10)
        return self.peak

    def _run(self) -> None:
        while True:
            mb, count = tree_rss_mb(self.root)
            self.peak_pss = max(self.peak_pss, pss_mb(self.root))
            self.samples += 1
            if mb > self.peak:
                self.peak, self.processes = mb, count
                self.at_peak = tree_by_role(self.root)
            if self._stop.wait(self.interval):
                return
