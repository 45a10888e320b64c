"""The `slow` fault: an image download spread over time in small pieces, still whole."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from afterimage.simulator import run_simulator
from afterimage.simulator.server import RunningSimulator


@pytest.fixture()
def sim() -> Iterator[RunningSimulator]:
    with run_simulator(delay=0.0) as running:
        yield running


def test_a_slow_download_arrives_whole_in_many_pieces(sim: RunningSimulator) -> None:
    task = sim.create_task("kie", bytes=200_000)
    url = task["image_urls"][0]
    fast = httpx.get(url).content
    sim.set_faults("kie", slow=1.0)
    with httpx.stream("GET", url) as reply:
        pieces = list(reply.iter_raw())
    assert b"".join(pieces) == fast
    assert len(pieces) >= 4  # paced in small pieces, not sent at once
    assert sim.task("kie", task["id"])["downloads"] == {url.split("?")[0]: 2}


def test_slow_must_be_a_non_negative_number(sim: RunningSimulator) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        sim.set_faults(slow=-1)
    with pytest.raises(httpx.HTTPStatusError):
        sim.set_faults(slow="fast")
