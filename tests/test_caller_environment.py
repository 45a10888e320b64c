"""The suite is immune to the caller's shell: a newcomer who followed the README's walkthrough
(its `export` lines still set) and then runs the tests gets the same answers as a clean shell."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Checks that depend on settings the walkthrough exports: the allow-list (a loopback link
# must be refused without it), API keys (the unconfirmed path), and the CLI run in-process
# and as a child.
KEY_CHECKS = [
    "tests/test_pipeline.py::test_a_loopback_url_outside_the_allow_list_is_never_fetched",
    "tests/security/test_image_attacks.py::test_a_redirect_to_the_cloud_metadata_address_is_never_followed",
    "tests/test_cli.py::test_track_status_and_tasks",
    "tests/test_cli.py::test_callback_url_uses_the_first_secret",
    "tests/test_replay.py::test_status_and_tasks_show_what_happened",
]


def walkthrough_exports() -> dict[str, str]:
    """Every `export NAME=value` of the README, as a shell would set them."""
    found: dict[str, str] = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        if re.match(r"\s*export\s+AFTERIMAGE_", line):
            for word in shlex.split(line, comments=True)[1:]:
                name, _, value = word.partition("=")
                found[name] = value
    return found


def test_the_walkthrough_exports_are_what_this_test_sets() -> None:
    exports = walkthrough_exports()
    assert exports["AFTERIMAGE_DOWNLOAD_ALLOW_CIDRS"] == "127.0.0.0/8"
    assert "AFTERIMAGE_EVOLINK_API_KEY" in exports
    assert "AFTERIMAGE_EVOLINK_BASE_URL" in exports


def test_key_checks_pass_with_the_walkthrough_exports_set(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(walkthrough_exports())
    # and what else a shell might carry: another deployment's Redis, store, token and secret
    env.update({"AFTERIMAGE_REDIS_URL": "redis://127.0.0.1:1/0",
                "AFTERIMAGE_STORAGE_URL": f"file://{tmp_path / 'elsewhere'}",
                "AFTERIMAGE_API_TOKEN": "shell-token", "AFTERIMAGE_SECRET": "shell-secret",
                "AFTERIMAGE_DATA_DIR": str(tmp_path / "shell-data")})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *KEY_CHECKS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{len(KEY_CHECKS)} passed" in done.stdout
