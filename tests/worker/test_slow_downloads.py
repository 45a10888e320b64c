"""Downloads are bounded by progress, not by a fixed total: a stall timeout between bytes, and
an overall limit scaled to the size limit (size limit / minimum rate). Real slow images from
the simulator's `slow` fault; the limits are scaled down so that each test takes seconds."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from afterimage.errors import ConfigError, TransientDownloadError
from afterimage.settings import Settings
from afterimage.simulator import run_simulator
from afterimage.simulator.files import SLOW_CHUNK
from tests.seaweed import SeaweedServer
from tests.stack import running_stack
from tests.worker.test_download import LOOPBACK
from worker.download import DownloadClient, fetch_image

MiB, MB = 1024 * 1024, 1_000_000


def test_a_100_mib_image_at_2_mb_s_fits_the_default_limits() -> None:
    settings = Settings.from_env({})
    at_2_mb_s = settings.max_image_bytes / (2 * MB)  # 52.4 s for 100 MiB
    assert settings.max_image_bytes == 100 * MiB
    assert at_2_mb_s < settings.download_time_limit  # 104.9 s: 100 MiB at 1 MB/s
    assert settings.download_stall_timeout > SLOW_CHUNK / (2 * MB)  # gaps of 8 ms, not 30 s
    bigger = Settings.from_env({"AFTERIMAGE_MAX_IMAGE_BYTES": str(1000 * MiB)})
    assert bigger.download_time_limit == pytest.approx(10 * settings.download_time_limit, 0.01)
    small = Settings.from_env({"AFTERIMAGE_MAX_IMAGE_BYTES": "1000",
                               "AFTERIMAGE_DOWNLOAD_STALL_TIMEOUT": "20"})
    assert small.download_time_limit == 20.0  # never under the stall timeout


@pytest.mark.parametrize("name", ["DOWNLOAD_STALL_TIMEOUT", "DOWNLOAD_MIN_RATE"])
@pytest.mark.parametrize("value", ["0", "-1", "fast"])
def test_the_limits_must_be_positive_numbers(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"AFTERIMAGE_{name}"):
        Settings.from_env({f"AFTERIMAGE_{name}": value})


def test_an_image_that_keeps_coming_outlasts_the_stall_timeout_and_is_archived(
    redis_url: str, s3_server: SeaweedServer, s3_bucket: str, tmp_path: Path
) -> None:
    """About 6 MB over 3 s (2 MB/s): three times the stall timeout, within the scaled limit
    of 8 MiB / 1 MB/s = 8.4 s (the 100 MiB at 2 MB/s case, scaled down by 12.5)."""
    env = {"AFTERIMAGE_DOWNLOAD_STALL_TIMEOUT": "1", "AFTERIMAGE_MAX_IMAGE_BYTES": str(8 * MiB),
           "AFTERIMAGE_DOWNLOAD_MIN_RATE": str(MB), "AFTERIMAGE_ARCHIVE_RETRIES": "1"}
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path, extra_env=env,
                       sim_options={"image_bytes": 6 * MB}) as stack:
        assert stack.settings.download_time_limit == pytest.approx(8.39, abs=0.01)
        stack.sim.set_faults("evolink", slow=3.0)
        made = stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
        task = stack.wait_state("evolink", made["id"], "archived", timeout=60)
        assert task["attempts"] == 1
        key = f"archive/evolink/{made['id']}/0.png"
        stored = stack.objects(key)[key]
        assert 5 * MB < len(stored) < 8 * MiB
        assert task["images"][0]["sha256"] == hashlib.sha256(stored).hexdigest()


def test_an_image_slower_than_the_minimum_rate_ends_at_the_scaled_limit() -> None:
    """4 MB spread over 4 s (1 MB/s) against a limit of 4 MiB / 2 MB/s = 2.1 s."""
    settings = Settings.from_env({"AFTERIMAGE_DOWNLOAD_STALL_TIMEOUT": "1",
                                  "AFTERIMAGE_MAX_IMAGE_BYTES": str(4 * MiB),
                                  "AFTERIMAGE_DOWNLOAD_MIN_RATE": str(2 * MB)})
    with run_simulator(delay=0.0, image_bytes=4 * MB) as sim:
        url = sim.create_task("evolink")["image_urls"][0]
        sim.set_faults("evolink", slow=4.0)
        with pytest.raises(TransientDownloadError, match=r"at the time limit of 2\.09"):
            fetch_image(url, io.BytesIO(), max_bytes=settings.max_image_bytes,
                        max_pixels=settings.max_image_pixels, allow_cidrs=LOOPBACK,
                        stall_timeout=settings.download_stall_timeout,
                        time_limit=settings.download_time_limit, client=DownloadClient())
