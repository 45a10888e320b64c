"""`kill -9` of a worker in the middle of a job: another worker takes the job up again within
a minute, and the task ends archived with every object written once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.faults.helpers import archived_exactly_once, busy_worker_pid, versioned
from tests.stack import running_stack
from tests.support import MotoServer, wait_for

MB = 1_000_000


def test_a_worker_killed_mid_stream_is_replaced_and_nothing_is_written_twice(
    redis_url: str, s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path, workers=2,
                       sim_options={"image_bytes": 3 * MB}) as stack:
        versioned(stack)
        stack.sim.set_faults("evolink", slow=6.0)  # each image takes 6 s to download
        made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"),
                                     images=2)
        task_id = made["id"]
        second = made["image_urls"][1].split("?")[0]
        # The first image is stored and the second is half-way through its download.
        wait_for(lambda: stack.sim.task("evolink", task_id)["downloads"].get(second), 30,
                 "the second image's download to start")
        pid = wait_for(lambda: busy_worker_pid(stack), 10, "the busy worker")
        proc = next(p for p in stack.procs.values() if p.pid == pid)
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        stack.sim.set_faults("evolink", slow=0.0)

        task = stack.wait_state("evolink", task_id, "archived", timeout=60)

        assert task["attempts"] == 2
        manifest = archived_exactly_once(stack, "evolink", task_id, images=2)
        assert [i["key"] for i in manifest["images"]] == [i["key"] for i in task["images"]]
