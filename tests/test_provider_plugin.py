"""A door for more providers: a package installed beside afterimage names its adapter in the
`afterimage.providers` entry-point group, and afterimage speaks it end to end (callback, poll,
submit, archive) with nothing in afterimage changed. The package is tests/data/example_provider,
installed here by pip into a directory of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from afterimage.simulator import RunningSimulator, run_simulator
from tests.faults.upproc import Up, up_env
from tests.support import wait_for

PACKAGE = Path(__file__).parent / "data" / "example_provider"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package, installed by pip (with its dist-info and entry point)."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-index", "--target", str(target), str(PACKAGE)],
        check=True, capture_output=True, env={"PATH": "/usr/bin:/bin", "HOME": str(build),
                                               "PIP_NO_CACHE_DIR": "1"},
        cwd=build)
    (entry_points,) = target.glob("afterimage_example_provider-*.dist-info/entry_points.txt")
    assert "example = afterimage_example:Example" in entry_points.read_text()
    return target


@pytest.fixture()
def run(site: Path, tmp_path: Path) -> Iterator[tuple[Up, RunningSimulator]]:
    sim = run_simulator(delay=0.2)
    env = up_env(tmp_path / "data", sim, **{
        "PYTHONPATH": str(site),  # what installing the package into the environment does
        "AFTERIMAGE_EXAMPLE_BASE_URL": sim.base_url("evolink"),  # it speaks evolink's shapes
        "AFTERIMAGE_EXAMPLE_API_KEY": "sim-key",
        "AFTERIMAGE_POLL_SCALE": "0.05",
    })
    up = Up(env, tmp_path / "up.log")
    try:
        yield up, sim
    finally:
        up.stop()
        sim.stop()


def test_afterimage_alone_does_not_know_it() -> None:
    from afterimage.providers import NAMES

    assert "example" not in NAMES


def test_an_installed_provider_package_works_end_to_end(
    run: tuple[Up, RunningSimulator], tmp_path: Path,
) -> None:
    up, sim = run
    archive = tmp_path / "data" / "archive" / "example"

    # a callback to /callbacks/example/{token}
    called = sim.create_task("evolink", callback_url=up.callback_url("example"))["id"]
    # a task found by the poller
    polled = sim.create_task("evolink")["id"]
    r = up.api.post("/v1/tasks", json={"provider": "example", "task_id": polled})
    assert r.status_code == 201, r.text
    # a task submitted through afterimage
    r = up.api.post("/v1/providers/example/generations",
                    json={"model": "gpt-image-2", "prompt": "a red kite"})
    assert r.status_code == 201, r.text
    submitted = r.json()["task"]["task_id"]

    for task_id in (called, polled, submitted):
        wait_for(lambda t=task_id: up.task("example", t)["state"] == "archived", 40,
                 f"example {task_id} archived")
        manifest = json.loads((archive / task_id / "manifest.json").read_text())
        assert manifest["provider"] == "example" and len(manifest["images"]) == 1
    assert sim.task("evolink", polled)["queries"]["count"] >= 1
    assert sim.task("evolink", called)["callbacks"]["delivered"] >= 1
    metrics = up.api.get("/metrics").text
    assert 'afterimage_tasks{provider="example",state="archived"} 3' in metrics
