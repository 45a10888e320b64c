"""The simulated replicate, fal and bfl: their wire shapes, signed webhooks checked with the
reference library and keys from the simulator's JWKS, short links, and fault switches."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks import Webhook

from afterimage.simulator import RunningSimulator, run_simulator
from tests.simulator.test_simulator import Recorder
from tests.support import wait_for


@pytest.fixture(scope="module")
def server() -> Iterator[RunningSimulator]:
    sim = run_simulator(delay=0.0)
    yield sim
    sim.stop()


@pytest.fixture()
def sim(server: RunningSimulator) -> RunningSimulator:
    server.reset()
    return server


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    rec = Recorder().start()
    yield rec
    rec.stop()


def hook(recorder: Recorder, name: str) -> dict[str, Any]:
    (found,) = recorder.wait_count(name, 1)
    return found


def test_replicate_predictions_and_standard_webhooks(
    sim: RunningSimulator, recorder: Recorder
) -> None:
    base = sim.base_url("replicate")
    auth = {"Authorization": "Bearer k"}
    created = httpx.post(f"{base}/v1/predictions", headers=auth, json={
        "version": "black-forest-labs/flux-schnell", "input": {"prompt": "x"},
        "webhook": recorder.hook_url("rep"), "webhook_events_filter": ["completed"]}).json()
    assert created["status"] == "starting" and created["output"] is None
    got = hook(recorder, "rep")
    secret = httpx.get(f"{base}/v1/webhooks/default/secret", headers=auth).json()["key"]
    assert secret.startswith("whsec_")
    Webhook(secret).verify(got["body"], got["headers"])  # the reference library agrees
    assert got["json"]["status"] == "succeeded" and len(got["json"]["output"]) == 1
    polled = httpx.get(f"{base}/v1/predictions/{created['id']}", headers=auth).json()
    assert polled["output"] == got["json"]["output"] and polled["completed_at"]
    sim.configure(replicate_output="string")
    assert isinstance(httpx.get(f"{base}/v1/predictions/{created['id']}",
                                headers=auth).json()["output"], str)
    assert httpx.get(f"{base}/v1/webhooks/default/secret").status_code == 401
    info = sim.task("replicate", created["id"])
    assert info["links_expire_at"] - info["ready_at"] == pytest.approx(3600, abs=1)


def test_fal_queue_webhook_signed_by_a_jwks_key(sim: RunningSimulator, recorder: Recorder) -> None:
    base = sim.base_url("fal")
    auth = {"Authorization": "Key k"}
    created = httpx.post(f"{base}/fal-ai/flux/dev", headers=auth, params={
        "fal_webhook": recorder.hook_url("fal")}, json={"prompt": "x"}).json()
    request_id = created["request_id"]
    assert created["status_url"] == f"{base}/fal-ai/flux/requests/{request_id}/status"
    got = hook(recorder, "fal")
    h = got["headers"]
    message = "\n".join((h["x-fal-webhook-request-id"], h["x-fal-webhook-user-id"],
                         h["x-fal-webhook-timestamp"], hashlib.sha256(got["body"]).hexdigest()))
    jwks = httpx.get(f"{base}/.well-known/jwks.json").json()["keys"]
    assert all("=" not in k["x"] for k in jwks)
    raw = base64.urlsafe_b64decode(jwks[0]["x"] + "==")
    Ed25519PublicKey.from_public_bytes(raw).verify(
        bytes.fromhex(h["x-fal-webhook-signature"]), message.encode())
    assert got["json"]["status"] == "OK" and got["json"]["payload"]["images"][0]["url"]
    status = httpx.get(created["status_url"], headers=auth).json()
    assert status["status"] == "COMPLETED"
    result = httpx.get(created["response_url"], headers=auth).json()
    assert result["images"] == got["json"]["payload"]["images"]
    assert httpx.get(created["status_url"]).status_code == 401


def test_fal_payload_null_image_style_and_a_failed_request(
    sim: RunningSimulator, recorder: Recorder
) -> None:
    base, auth = sim.base_url("fal"), {"Authorization": "Key k"}
    sim.configure(fal_webhook_payload=False, fal_output="image")
    created = httpx.post(f"{base}/fal-ai/gpt-image-2", headers=auth, params={
        "fal_webhook": recorder.hook_url("fal-null")}, json={"prompt": "x"}).json()
    got = hook(recorder, "fal-null")
    assert got["json"]["payload"] is None and got["json"]["payload_error"]
    assert httpx.get(created["response_url"], headers=auth).json()["image"]["url"]
    sim.set_faults("fal", fail=1.0)
    failed = httpx.post(f"{base}/fal-ai/gpt-image-2", headers=auth, json={"prompt": "x"}).json()
    wait_for(lambda: httpx.get(failed["status_url"], headers=auth).json()["status"]
             == "COMPLETED", 5, "the failed request to complete")
    reply = httpx.get(failed["response_url"], headers=auth)
    assert reply.status_code == 422 and reply.json()["detail"]


def test_bfl_polling_url_secret_and_ten_minute_links(
    sim: RunningSimulator, recorder: Recorder
) -> None:
    base = sim.base_url("bfl")
    created = httpx.post(f"{base}/v1/flux-pro-1.1", headers={"x-key": "k"}, json={
        "prompt": "x", "webhook_url": recorder.hook_url("bfl"), "webhook_secret": "s3cret"}).json()
    assert created["polling_url"] == f"{base}/v1/get_result?id={created['id']}"
    got = hook(recorder, "bfl")
    assert got["headers"]["x-webhook-secret"] == "s3cret"
    assert got["json"]["status"] == "Ready" and got["json"]["result"]["sample"]
    polled = httpx.get(created["polling_url"], headers={"x-key": "k"}).json()
    assert polled == {**got["json"], "result": polled["result"]} and polled["id"] == created["id"]
    info = sim.task("bfl", created["id"])
    assert info["links_expire_at"] - info["ready_at"] == pytest.approx(600, abs=1)
    sim.configure(link_scale=0.01)  # ten minutes become six seconds
    made = sim.create_task("bfl")
    assert made["links_expire_at"] - made["ready_at"] == pytest.approx(6, abs=1)
    sim.set_faults("bfl", rate_limit=1.0)
    limited = httpx.get(created["polling_url"], headers={"x-key": "k"})
    assert limited.status_code == 429 and limited.json()["retry_after"] >= 0


def test_simulate_takes_a_link_scale() -> None:
    from click.testing import CliRunner

    from afterimage.simulator.cli import simulate

    for bad in ("0", "-1", "x"):
        assert CliRunner().invoke(simulate, ["--link-scale", bad]).exit_code == 2
