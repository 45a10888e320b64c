"""`afterimage up`: runs the receiver, workers and the poller as child processes, restarting
any that dies, and stops them all cleanly on SIGINT/SIGTERM.

`up` prepares (settings, the store check, secrets, the embedded redis-server) with the whole
CLI loaded, then replaces itself (`exec_supervisor`, same pid, so its children stay its
children) with `python -m afterimage.supervisor`, which imports only this module and the log
set-up: the process that only watches the others holds about 15 MB instead of 60 to 85 MB.

The children die with `up` however it ends, `kill -9` included: on Linux the kernel sends
each one SIGKILL when `up` dies (PR_SET_PDEATHSIG, `die_with_parent`); everywhere, each child
also watches for itself (`watch_parent`: `up` passes its pid in SUPERVISOR_ENV) and stops
once its parent is no longer `up`, within about WATCH_EVERY seconds.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("afterimage.up")
STOP_GRACE = 30.0
PR_SET_PDEATHSIG = 1
SUPERVISOR_ENV = "AFTERIMAGE_SUPERVISOR_PID"  # set by `up` for its children only
PLAN_ENV = "AFTERIMAGE_UP_PLAN"  # what `up` hands its lean supervisor (`exec_supervisor`)
WATCH_EVERY = 1.0


@dataclass
class Child:
    role: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: float = field(default=0.0)


class Supervisor:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = {**env, SUPERVISOR_ENV: str(os.getpid())}
        self.children: list[Child] = []
        self.stopping = False

    def add(self, role: str, *args: str) -> None:
        self.children.append(Child(role, [sys.executable, "-m", "afterimage", role, *args]))

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.args, env=self.env, preexec_fn=die_with_parent())
        child.started = time.monotonic()

    def run(self) -> int:
        """Start every child and watch them until a signal says stop."""

        def on_signal(signum: int, frame: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        for child in self.children:
            self._start(child)
        while not self.stopping:
            for child in self.children:
                assert child.proc is not None
                code = child.proc.poll()
                if code is not None and not self.stopping:
                    child.restarts += 1
                    log.warning("%s exited with %s; restarting", child.role, code)
                    if time.monotonic() - child.started < 5:
                        time.sleep(min(child.restarts, 10))
                    self._start(child)
            time.sleep(0.2)
        return self.stop()

    def stop(self) -> int:
        """SIGTERM every child (workers finish the job in hand), then wait, then kill."""
        for child in self.children:
            if child.proc and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", child.role, STOP_GRACE)
                child.proc.kill()
                child.proc.wait()
        return 0


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel SIGKILL the child when this process dies, however it
    dies (Linux; elsewhere None). A child of a `kill -9`ed `up` would otherwise live on: a
    receiver holding the port, a redis-server on the data dir next to the next `up`'s own."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


def watch_parent(env: Mapping[str, str] = os.environ) -> threading.Thread | None:
    """In a child of `up` (SUPERVISOR_ENV set): a thread that stops this process once its
    parent is not `up` any more — SIGTERM, as `up` itself would send, then SIGKILL after
    STOP_GRACE. The fallback for systems without PR_SET_PDEATHSIG, and for a child whose
    parent died before it could ask for it. None when not started by `up`."""
    try:
        parent = int(env.get(SUPERVISOR_ENV, ""))
    except ValueError:
        return None

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_EVERY)
        log.warning("afterimage up (pid %d) is gone; stopping", parent,
                    extra={"event": "supervisor_gone"})
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_GRACE)
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, daemon=True, name="parent-watch")
    thread.start()
    return thread


def exec_supervisor(env: Mapping[str, str], children: list[list[str]], redis_pid: int | None,
                    log_level: str) -> None:
    """Become the lean supervisor of `children` (each `[role, *args]`); never returns."""
    plan = {"children": children, "redis_pid": redis_pid, "log_level": log_level}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "afterimage.supervisor"],  # noqa: S606
              {**env, PLAN_ENV: json.dumps(plan)})


def stop_pid(pid: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM a child of this process by pid, wait up to `grace` seconds, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def main() -> int:
    from afterimage.logs import setup_logging

    env = dict(os.environ)
    plan = json.loads(env.pop(PLAN_ENV))
    setup_logging(plan["log_level"])
    sup = Supervisor(env)
    for role, *args in plan["children"]:
        sup.add(role, *args)
    try:
        return sup.run()
    finally:
        if plan["redis_pid"]:
            stop_pid(plan["redis_pid"])


if __name__ == "__main__":
    sys.exit(main())
