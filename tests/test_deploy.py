"""What the image runs: deploy/entrypoint.sh with each role, and the compose file's roles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AFTERIMAGE_")}
    base["PATH"] = f"{Path(sys.executable).parent}:{base['PATH']}"
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60, check=False)


def test_an_unknown_role_is_bad_usage() -> None:
    done = run("frobnicate")
    assert done.returncode == 2
    assert "unknown role" in done.stderr


def test_the_plain_receiver_refuses_to_start_without_secrets(redis_url: str) -> None:
    done = run("receiver", env={"AFTERIMAGE_REDIS_URL": redis_url})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "afterimage: error: AFTERIMAGE_SECRET is not set; callback URLs cannot be made"]


def test_a_command_role_runs_the_command() -> None:
    done = run("callback-url", "evolink", env={"AFTERIMAGE_SECRET": "k",
                                               "AFTERIMAGE_PUBLIC_URL": "https://a.example"})
    assert done.returncode == 0
    assert done.stdout.startswith("https://a.example/callbacks/evolink/")


def test_the_receiver_role_serves(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"AFTERIMAGE_REDIS_URL": redis_url, "AFTERIMAGE_SECRET": "k",
           "AFTERIMAGE_API_TOKEN": "t", "AFTERIMAGE_PORT": str(port),
           "AFTERIMAGE_STORAGE_URL": f"file://{tmp_path}"}
    base = {k: v for k, v in os.environ.items() if not k.startswith("AFTERIMAGE_")}
    base["PATH"] = f"{Path(sys.executable).parent}:{base['PATH']}"
    proc = subprocess.Popen(["sh", str(ENTRYPOINT), "receiver"], env={**base, **env})
    try:
        ready = wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200,
                         30, "the receiver to be ready")
        assert ready
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown


def test_compose_services_use_roles_the_entrypoint_knows() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    roles = {name: svc["command"][0] for name, svc in compose["services"].items()
             if svc.get("image") == "afterimage:latest"}
    assert roles == {"receiver": "receiver", "worker": "worker", "poller": "poller"}
    for role in set(roles.values()):
        assert run(role, "--help").returncode == 0
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile  # numeric: runAsNonRoot can check it
    assert 'ENTRYPOINT ["tini", "--", "afterimage-entrypoint"]' in dockerfile


def test_the_sentinel_override_points_afterimage_at_its_sentinels() -> None:
    """compose.sentinel.yaml: every afterimage service gets a Sentinel URL that names the
    override's sentinels and the service its sentinel.conf monitors."""
    from afterimage.redis_client import parse_sentinel

    base = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    extra = yaml.safe_load((ROOT / "deploy" / "compose.sentinel.yaml").read_text())
    conf = (ROOT / "deploy" / "sentinel" / "sentinel.conf").read_text().splitlines()
    monitored = next(line.split()[2] for line in conf if line.startswith("sentinel monitor"))
    sentinels = {name for name, svc in extra["services"].items()
                 if "redis-sentinel" in " ".join(svc.get("command", []))}
    assert len(sentinels) == 3
    roles = {name for name, svc in base["services"].items()
             if svc.get("image") == "afterimage:latest"}
    assert roles and roles <= set(extra["services"])
    for name in roles:
        env = extra["services"][name]["environment"]
        url = parse_sentinel(env["AFTERIMAGE_REDIS_URL"])
        assert {host for host, _ in url.hosts} == sentinels
        assert url.service == monitored
        assert int(env["AFTERIMAGE_REDIS_MIN_REPLICAS"]) >= 1


def test_the_dockerfile_is_clean_under_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, "")


def test_compose_offers_minio_and_seaweedfs_with_the_same_bucket_set_up() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    stores = {"minio": "http://minio:9000", "seaweedfs": "http://seaweedfs:8333"}
    for store, endpoint in stores.items():
        init = services[f"{store}-init"]
        assert services[store]["profiles"] == init["profiles"] == [store]
        assert init["environment"]["S3_ENDPOINT"] == endpoint
        assert "mc mb --ignore-existing store/afterimage" in init["command"][0]
    assert services["minio-init"]["command"] == services["seaweedfs-init"]["command"]
    assert "-master.telemetry=false" in services["seaweedfs"]["command"]
    for role in ("receiver", "worker", "poller"):
        needs = services[role]["depends_on"]
        assert {k: v.get("required", True) for k, v in needs.items()} == {
            "redis": True, "minio-init": False, "seaweedfs-init": False}
    example = (ROOT / "deploy" / "env.example").read_text()
    assert "COMPOSE_PROFILES=minio" in example and "S3_ENDPOINT=http://minio:9000" in example
