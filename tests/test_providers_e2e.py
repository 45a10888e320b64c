"""Every provider end to end through the simulator: submitted directly and through afterimage,
ending as the right bytes in S3. Poll-only providers are found by the poller."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from afterimage.providers import ADAPTERS
from tests.stack import Stack, running_stack
from tests.support import MotoServer, wait_for

CREATE_BODIES = {
    "crun": {"model": "openai/gpt-image-2-stable", "input": {"prompt": "a red kite"}},
    "kie": {"model": "gpt-image-2-text-to-image",
            "input": {"prompt": "a red kite", "aspect_ratio": "1:1", "resolution": "1K"}},
    "evolink": {"model": "gpt-image-2", "prompt": "a red kite", "size": "1024x1024", "n": 1},
    "apimart": {"model": "gpt-image-2", "prompt": "a red kite", "size": "1:1", "n": 1},
    "toapis": {"model": "gpt-image-2", "prompt": "a red kite", "size": "1:1",
               "response_format": "url"},
    "xingchao": {"model": "gpt-image-2", "prompt": "a red kite"},
    "replicate": {"version": "black-forest-labs/flux-schnell", "input": {"prompt": "a red kite"}},
    "fal": {"prompt": "a red kite", "num_images": 1},
    "bfl": {"prompt": "a red kite", "width": 1024, "height": 1024},
}
MODELS = {"fal": "fal-ai/flux/dev", "bfl": "flux-pro-1.1"}  # named in the create URL
KIE_KEY = "kie-webhook-key"


@pytest.fixture(scope="module")
def stack(
    redis_server: object, s3_server: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    import boto3

    from tests.support import RedisServer

    assert isinstance(redis_server, RedisServer)
    bucket = "providers-e2e"
    boto3.client("s3", endpoint_url=s3_server.url).create_bucket(Bucket=bucket)
    tmp = tmp_path_factory.mktemp("providers")
    extra = {"AFTERIMAGE_POLL_SCALE": "0.05", "AFTERIMAGE_KIE_WEBHOOK_HMAC_KEY": KIE_KEY}
    with running_stack(redis_server.url, s3_server.url, bucket, Path(tmp), poller=True,
                       workers=2, extra_env=extra,
                       sim_options={"delay": 0.3, "kie_webhook_key": KIE_KEY}) as s:
        yield s


def check_archived(stack: Stack, provider: str, task_id: str) -> None:
    task = stack.wait_state(provider, task_id, "archived", timeout=40)
    prefix = f"archive/{provider}/{task_id}/"
    objects = stack.objects(prefix)
    manifest = json.loads(objects.pop(prefix + "manifest.json"))
    served = [httpx.get(u).content for u in stack.sim.task(provider, task_id)["image_urls"]]
    stored = [objects[img["key"]] for img in task["images"]]
    assert stored == served
    assert [i["sha256"] for i in manifest["images"]] == [
        hashlib.sha256(b).hexdigest() for b in served]
    assert len(objects) == len(served)


@pytest.mark.parametrize("provider", list(ADAPTERS))
def test_submitted_directly(stack: Stack, provider: str) -> None:
    if ADAPTERS[provider].has_callbacks:
        given = stack.api.get(f"/v1/providers/{provider}/callback-url").json()
        options = {"callback_url": given["callback_url"]}
        if "webhook_secret" in given:  # bfl echoes it in X-Webhook-Secret
            options["webhook_secret"] = given["webhook_secret"]
        if provider in MODELS:
            options["model"] = MODELS[provider]
        made = stack.sim.create_task(provider, **options)
    else:
        made = stack.sim.create_task(provider)
        r = stack.api.post("/v1/tasks", json={"provider": provider, "task_id": made["id"]})
        assert r.status_code == 201
    check_archived(stack, provider, made["id"])
    if ADAPTERS[provider].has_callbacks:
        wait_for(
            lambda: stack.sim.task(provider, made["id"])["callbacks"]["delivered"] >= 1,
            10,
            "the simulator to count its callback as delivered",
        )


@pytest.mark.parametrize("provider", list(ADAPTERS))
def test_submitted_through_afterimage(stack: Stack, provider: str) -> None:
    r = stack.api.post(f"/v1/providers/{provider}/generations", json=CREATE_BODIES[provider],
                       params={"model": MODELS[provider]} if provider in MODELS else None)
    assert r.status_code == 201, r.text
    task_id = r.json()["task"]["task_id"]
    assert r.json()["task"]["state"] == "pending"
    assert r.json()["provider_response"]
    check_archived(stack, provider, task_id)
    if ADAPTERS[provider].has_callbacks:
        wait_for(
            lambda: stack.sim.task(provider, task_id)["callbacks"]["delivered"] >= 1,
            10,
            "the simulator to count its callback as delivered",
        )


@pytest.mark.parametrize("provider", list(ADAPTERS))
def test_a_provider_refusing_our_key_is_a_502_with_its_status(stack: Stack, provider: str) -> None:
    """The provider answers 401 because afterimage's key is wrong: a gateway failure, not the
    caller's bearer token."""
    stack.sim.configure(keys={provider: "a-key-we-do-not-have"})
    try:
        r = stack.api.post(f"/v1/providers/{provider}/generations",
                           json=CREATE_BODIES[provider],
                           params={"model": MODELS[provider]} if provider in MODELS else None)
    finally:
        stack.sim.configure(keys={})
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["code"] == "provider_rejected"
    assert (error["provider"], error["provider_status"]) == (provider, 401)
    assert "provider_code" in error
    assert provider in error["message"]


def test_a_provider_refusing_the_callers_fields_stays_a_4xx(stack: Stack) -> None:
    body = {**CREATE_BODIES["evolink"], "format": "gif"}  # evolink has no gif
    r = stack.api.post("/v1/providers/evolink/generations", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "provider_refused_request"
    assert (error["provider"], error["provider_status"]) == ("evolink", 422)
    assert "format" in error["message"]


def test_documented_variants_of_the_new_providers(stack: Stack) -> None:
    """fal's webhook without its payload (the result is fetched), fal's `image` and
    replicate's `output` as one string: archived all the same."""
    stack.sim.configure(fal_webhook_payload=False, fal_output="image", replicate_output="string")
    try:
        made = {}
        for provider in ("fal", "replicate"):
            r = stack.api.post(f"/v1/providers/{provider}/generations",
                               json=CREATE_BODIES[provider],
                               params={"model": MODELS[provider]} if provider in MODELS else None)
            assert r.status_code == 201, r.text
            made[provider] = r.json()["task"]["task_id"]
        for provider, task_id in made.items():
            check_archived(stack, provider, task_id)
        log = stack.sim.task("fal", made["fal"])["queries"]["log"]
        assert log  # the payload was not in the webhook: afterimage asked for the result
    finally:
        stack.sim.configure(fal_webhook_payload=True, fal_output="images",
                            replicate_output="list")
