"""The provider simulator over real HTTP: wire shapes, images, links, callbacks, faults, counts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afterimage.providers import NAMES
from afterimage.settings import Settings
from afterimage.simulator import RunningSimulator, run_simulator
from afterimage.simulator.cli import simulate
from tests.support import free_port, wait_for

PROVIDERS = ("crun", "kie", "evolink", "apimart", "toapis", "xingchao")
KIE_HOOK_KEY = "kie-hook-key"
FAST_RETRIES = (0.05, 0.1, 0.2)
PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


# --- a tiny callback receiver ----------------------------------------------------------------
class Recorder:
    """Records every request to `/hooks/{name}`; answers from a per-name plan of statuses."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.plans: dict[str, list[int]] = {}
        self.stall: dict[str, float] = {}  # seconds to wait before answering, once per name
        app = Starlette(routes=[Route("/hooks/{name}", self.hook, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                ws="none")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> Recorder:
        self.thread.start()
        wait_for(lambda: self.server.started, 10, "the recorder to start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def hook_url(self, name: str) -> str:
        return f"{self.url}/hooks/{name}"

    async def hook(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        with self.lock:
            self.requests.append(
                {
                    "name": name,
                    "headers": dict(request.headers),
                    "body": body,
                    "json": json.loads(body),
                }
            )
            plan = self.plans.get(name)
            status = plan.pop(0) if plan else 200
            stall = self.stall.pop(name, 0.0)
        if stall:
            await asyncio.sleep(stall)
        return JSONResponse({"code": status, "msg": "recorded"}, status_code=status)

    def received(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["name"] == name]

    def wait_count(self, name: str, count: int) -> list[dict[str, Any]]:
        """Wait until exactly `count` requests to `name` have arrived; return them."""
        wait_for(lambda: len(self.received(name)) >= count, 10, f"{count} requests to {name}")
        found = self.received(name)
        assert len(found) == count
        return found


# --- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server() -> Iterator[RunningSimulator]:
    sim = run_simulator(
        "127.0.0.1",
        free_port(),
        delay=0.0,
        kie_webhook_key=KIE_HOOK_KEY,
        evolink_retry_delays=FAST_RETRIES,
    )
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


@pytest.fixture()
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


# --- each provider's documented wire shapes, written from the spec ----------------------------
def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Wire:
    create_path: str
    headers: Callable[[str], dict[str, str]]
    status_path: Callable[[str], str]
    task_id: Callable[[dict[str, Any]], str]
    parse: Callable[[dict[str, Any]], tuple[str, list[str]]]
    fields: frozenset[str]  # documented fields of the status object

    def create(self, http: httpx.Client, base: str, body: dict[str, Any], key: str = "k") -> str:
        reply = http.post(base + self.create_path, json=body, headers=self.headers(key))
        assert reply.status_code == 200, reply.text
        return self.task_id(reply.json())

    def status(self, http: httpx.Client, base: str, task_id: str, key: str = "k") -> httpx.Response:
        return http.get(base + self.status_path(task_id), headers=self.headers(key))


def _state(value: str, pending: set[str], done: str, failed: set[str]) -> str:
    if value == done:
        return "succeeded"
    if value in failed:
        return "failed"
    assert value in pending, value
    return "pending"


def _crun(reply: dict[str, Any]) -> tuple[str, list[str]]:
    assert reply["code"] == 200 and reply["message"] == "success"
    data = reply["data"]
    state = _state(data["status"], {"running"}, "success", {"failed"})
    return state, data["result"]["media_urls"] if state == "succeeded" else []


def _kie(reply: dict[str, Any]) -> tuple[str, list[str]]:
    assert reply["code"] == 200 and reply["msg"] == "success"
    data = reply["data"]
    state = _state(data["state"], {"waiting", "queuing", "generating"}, "success", {"fail"})
    assert isinstance(data["resultJson"], str) and isinstance(data["param"], str)
    assert isinstance(data["createTime"], int) and data["createTime"] > 10**12  # milliseconds
    if state != "succeeded":
        return state, []
    assert data["completeTime"] > 10**12
    return state, json.loads(data["resultJson"])["resultUrls"]


def _evolink(reply: dict[str, Any]) -> tuple[str, list[str]]:
    state = _state(reply["status"], {"pending", "processing"}, "completed", {"failed"})
    assert reply["object"] == "image.generation.task" and reply["type"] == "image"
    return state, reply["results"] if state == "succeeded" else []


def _apimart_object(data: dict[str, Any]) -> tuple[str, list[str]]:
    state = _state(
        data["status"], {"submitted", "pending", "processing"}, "completed", {"failed", "cancelled"}
    )
    if state != "succeeded":
        return state, []
    urls: list[str] = []
    for image in data["result"]["images"]:
        assert isinstance(image["expires_at"], int)
        urls.extend(image["url"] if isinstance(image["url"], list) else [image["url"]])
    return state, urls


def _apimart(reply: dict[str, Any]) -> tuple[str, list[str]]:
    assert reply["code"] == 200
    return _apimart_object(reply["data"])


def _toapis(reply: dict[str, Any]) -> tuple[str, list[str]]:
    state = _state(reply["status"], {"submitted", "queued", "in_progress"}, "completed", {"failed"})
    if state != "succeeded":
        return state, []
    assert reply["expires_at"] > reply["completed_at"]
    return state, [reply["url"]]


def _xingchao(reply: dict[str, Any]) -> tuple[str, list[str]]:
    assert reply["object"] == "image.generation"
    state = _state(reply["status"], {"queued", "processing"}, "completed", {"failed"})
    return state, [reply["image_url"]] if state == "succeeded" else []


WIRES = {
    "crun": Wire(
        "/api/v1/client/job/CreateTask",
        lambda key: {"x-api-key": key},
        lambda tid: f"/api/v1/client/job/TaskInfo?task_id={tid}",
        lambda r: r["data"]["task_id"],
        _crun,
        frozenset(
            {
                "task_id",
                "provider",
                "model_version",
                "status",
                "param",
                "create_at",
                "complete_at",
                "duration_s",
                "result",
                "source",
            }
        ),
    ),
    "kie": Wire(
        "/api/v1/jobs/createTask",
        bearer,
        lambda tid: f"/api/v1/jobs/recordInfo?taskId={tid}",
        lambda r: r["data"]["taskId"],
        _kie,
        frozenset(
            {
                "taskId",
                "model",
                "state",
                "param",
                "resultJson",
                "failCode",
                "failMsg",
                "costTime",
                "completeTime",
                "createTime",
                "updateTime",
            }
        ),
    ),
    "evolink": Wire(
        "/v1/images/generations",
        bearer,
        lambda tid: f"/v1/tasks/{tid}",
        lambda r: r["id"],
        _evolink,
        frozenset(
            {"created", "id", "model", "object", "progress", "status", "task_info", "type", "usage"}
        ),
    ),
    "apimart": Wire(
        "/v1/images/generations",
        bearer,
        lambda tid: f"/v1/tasks/{tid}",
        lambda r: r["data"][0]["task_id"],
        _apimart,
        frozenset(
            {"id", "status", "progress", "created", "completed", "estimated_time", "actual_time"}
        ),
    ),
    "toapis": Wire(
        "/v1/images/generations",
        bearer,
        lambda tid: f"/v1/images/generations/{tid}",
        lambda r: r["id"],
        _toapis,
        frozenset(
            {
                "id",
                "object",
                "model",
                "status",
                "progress",
                "created_at",
                "completed_at",
                "expires_at",
                "result",
                "error",
            }
        ),
    ),
    "xingchao": Wire(
        "/v1/image2/images",
        bearer,
        lambda tid: f"/v1/result/{tid}",
        lambda r: r["id"],
        _xingchao,
        frozenset({"id", "object", "created", "model", "status", "image_url", "error"}),
    ),
}

# A documented create body per provider, asking for an image format and (where the API has
# it) a count; `sim` holds the simulator's own per-task knobs.
CREATE_BODIES: dict[str, tuple[dict[str, Any], str, int]] = {
    "crun": (
        {"model": "openai/gpt-image-2-stable", "input": {"prompt": "a fox", "format": "jpeg"}},
        "jpeg",
        1,
    ),
    "kie": (
        {
            "model": "gpt-image-2-text-to-image",
            "input": {
                "prompt": "a fox",
                "aspect_ratio": "1:1",
                "resolution": "1K",
                "output_format": "webp",
            },
        },
        "webp",
        1,
    ),
    "evolink": (
        {
            "model": "gpt-image-2",
            "prompt": "a fox",
            "size": "1024x1024",
            "resolution": "1K",
            "quality": "low",
            "n": 2,
        },
        "png",
        2,
    ),
    "apimart": (
        {
            "model": "gpt-image-2",
            "prompt": "a fox",
            "size": "1:1",
            "resolution": "1K",
            "n": 2,
            "format": "jpeg",
        },
        "jpeg",
        2,
    ),
    "toapis": (
        {
            "model": "gpt-image-2",
            "prompt": "a fox",
            "size": "1:1",
            "resolution": "1K",
            "response_format": "url",
            "format": "webp",
        },
        "webp",
        1,
    ),
    "xingchao": (
        {"model": "gpt-image-2", "prompt": "a fox", "ratio": "1:1", "format": "jpeg"},
        "jpeg",
        1,
    ),
}


def status_object(provider: str, reply: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = reply["data"] if provider in ("crun", "kie", "apimart") else reply
    return obj


def query(http: httpx.Client, sim: RunningSimulator, provider: str, task_id: str) -> dict[str, Any]:
    reply = WIRES[provider].status(http, sim.base_url(provider), task_id)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def succeeded_urls(
    http: httpx.Client, sim: RunningSimulator, provider: str, task_id: str
) -> list[str]:
    state, urls = WIRES[provider].parse(query(http, sim, provider, task_id))
    assert state == "succeeded"
    return urls


def download_image(http: httpx.Client, url: str) -> Image.Image:
    reply = http.get(url)
    assert reply.status_code == 200, reply.text
    assert int(reply.headers["content-length"]) == len(reply.content)
    image = Image.open(io.BytesIO(reply.content))
    image.load()
    return image


# --- the round trip, per provider ------------------------------------------------------------
@pytest.mark.parametrize("provider", PROVIDERS)
def test_create_pending_complete_download(
    sim: RunningSimulator, http: httpx.Client, provider: str
) -> None:
    wire = WIRES[provider]
    body, fmt, count = CREATE_BODIES[provider]
    task_id = wire.create(http, sim.base_url(provider), {**body, "sim": {"delay": 3600}})

    reply = query(http, sim, provider, task_id)
    assert wire.parse(reply) == ("pending", [])
    assert wire.fields <= set(status_object(provider, reply))

    sim.control("POST", f"tasks/{provider}/{task_id}/complete")
    reply = query(http, sim, provider, task_id)
    state, urls = wire.parse(reply)
    assert state == "succeeded"
    assert wire.fields <= set(status_object(provider, reply))
    assert len(urls) == count
    for url in urls:
        assert url.startswith(f"{sim.url}/files/") and "exp=" in url and "sig=" in url
        image = download_image(http, url)
        assert image.format == PIL_FORMATS[fmt]
        assert image.size == (256, 256)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_task_completes_after_its_delay(
    sim: RunningSimulator, http: httpx.Client, provider: str
) -> None:
    body, _, _ = CREATE_BODIES[provider]
    task_id = WIRES[provider].create(http, sim.base_url(provider), {**body, "sim": {"delay": 0.2}})
    wait_for(
        lambda: WIRES[provider].parse(query(http, sim, provider, task_id))[0] == "succeeded",
        10,
        f"{provider} task to complete",
    )


def test_create_answers_the_documented_reply(sim: RunningSimulator, http: httpx.Client) -> None:
    replies = {}
    for provider in PROVIDERS:
        body, _, _ = CREATE_BODIES[provider]
        wire = WIRES[provider]
        reply = http.post(
            sim.base_url(provider) + wire.create_path, json=body, headers=wire.headers("k")
        )
        assert reply.status_code == 200
        replies[provider] = reply.json()
    assert replies["crun"]["code"] == 200 and replies["crun"]["message"] == "success"
    assert replies["kie"]["code"] == 200 and replies["kie"]["msg"] == "success"
    assert replies["evolink"]["id"].startswith("task-unified-")
    assert replies["evolink"]["object"] == "image.generation.task"
    assert replies["evolink"]["status"] == "pending" and "results" not in replies["evolink"]
    assert {"created", "model", "progress", "status", "task_info", "type", "usage"} <= set(
        replies["evolink"]
    )
    assert replies["apimart"]["data"][0]["status"] == "submitted"
    assert replies["apimart"]["data"][0]["task_id"].startswith("task_")
    toapis = replies["toapis"]
    assert toapis["object"] == "generation.task" and toapis["status"] == "queued"
    assert toapis["progress"] == 0 and toapis["metadata"] == {} and "created_at" in toapis
    xingchao = replies["xingchao"]
    assert xingchao["object"] == "image" and xingchao["status"] in ("queued", "processing")
    assert xingchao["error"] is None and "created" in xingchao


@pytest.mark.parametrize("provider", PROVIDERS)
def test_failed_generation(sim: RunningSimulator, http: httpx.Client, provider: str) -> None:
    sim.set_faults(provider=provider, fail=1.0)
    body, _, _ = CREATE_BODIES[provider]
    task_id = WIRES[provider].create(http, sim.base_url(provider), body)
    reply = query(http, sim, provider, task_id)
    assert WIRES[provider].parse(reply) == ("failed", [])
    obj = status_object(provider, reply)
    if provider == "evolink":
        assert obj["error"]["code"] and obj["error"]["message"]
    elif provider == "kie":
        assert obj["failCode"] and obj["failMsg"] and obj["resultJson"] == ""
    elif provider in ("apimart", "toapis", "xingchao"):
        assert obj["error"]["message"]


# --- auth and unknown ids --------------------------------------------------------------------
UNAUTHORIZED_SHAPES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "crun": lambda b: b["code"] == 401 and "message" in b,
    "kie": lambda b: b["code"] == 401 and "msg" in b,
    "evolink": lambda b: b["error"]["type"] == "authentication_error",
    "apimart": lambda b: b["code"] == 401 and b["error"]["type"] == "authentication_error",
    "toapis": lambda b: b["error"]["type"] == "authentication_error",
    "xingchao": lambda b: b["error"]["type"] == "authentication_error",
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_or_wrong_key_is_refused(
    sim: RunningSimulator, http: httpx.Client, provider: str
) -> None:
    wire = WIRES[provider]
    base = sim.base_url(provider)
    body, _, _ = CREATE_BODIES[provider]
    missing = http.post(base + wire.create_path, json=body)
    assert missing.status_code == 401 and UNAUTHORIZED_SHAPES[provider](missing.json())

    # Any key is taken until one is configured; then only that one.
    task_id = wire.create(http, base, body, key="anything")
    sim.configure(keys={provider: "the-key"})
    wrong = wire.status(http, base, task_id, key="anything")
    assert wrong.status_code == 401 and UNAUTHORIZED_SHAPES[provider](wrong.json())
    assert wire.status(http, base, task_id, key="the-key").status_code == 200
    other = next(p for p in PROVIDERS if p != provider)
    other_id = WIRES[other].create(http, sim.base_url(other), CREATE_BODIES[other][0], "x")
    assert WIRES[other].status(http, sim.base_url(other), other_id, key="x").status_code == 200


NOT_FOUND_SHAPES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "crun": lambda b: b["code"] == 404 and b["data"] is None,
    "kie": lambda b: b["code"] == 404 and b["data"] is None,
    "evolink": lambda b: b["error"]["code"] == "resource_not_found",
    "apimart": lambda b: b["code"] == 404 and "expired" in b["error"]["message"],
    "toapis": lambda b: b["error"]["code"] == "task_not_found",
    "xingchao": lambda b: "message" in b["error"],
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unknown_id_not_found_or_pending(
    sim: RunningSimulator, http: httpx.Client, provider: str
) -> None:
    wire = WIRES[provider]
    reply = wire.status(http, sim.base_url(provider), "no-such-task")
    assert reply.status_code == 404 and NOT_FOUND_SHAPES[provider](reply.json())

    sim.configure(unknown="pending")
    reply = wire.status(http, sim.base_url(provider), "no-such-task")
    assert reply.status_code == 200
    assert wire.parse(reply.json()) == ("pending", [])
    stats = sim.task(provider, "no-such-task")
    assert stats["known"] is False
    assert [q["status"] for q in stats["queries"]["log"]] == [404, 200]


def test_envelope_errors_can_answer_http_200(sim: RunningSimulator, http: httpx.Client) -> None:
    sim.configure(envelope_status=False, kie_message_field="message")
    reply = WIRES["kie"].status(http, sim.base_url("kie"), "missing")
    assert reply.status_code == 200
    assert reply.json()["code"] == 404 and "message" in reply.json()


# --- image links -----------------------------------------------------------------------------
def test_expired_and_forged_links_are_refused(sim: RunningSimulator, http: httpx.Client) -> None:
    task = sim.create_task("evolink", link_ttl=0)
    url = task["image_urls"][0]
    assert http.get(url).status_code == 410

    fresh = sim.create_task("evolink")["image_urls"][0]
    assert http.get(fresh).status_code == 200
    assert http.get(fresh.replace("sig=", "sig=0")).status_code == 403
    assert http.get(fresh.split("?")[0]).status_code == 403
    later = fresh.replace("exp=", "exp=9")  # a longer life without a new signature
    assert http.get(later).status_code == 403


def test_expire_then_resign(sim: RunningSimulator, http: httpx.Client) -> None:
    task = sim.create_task("toapis", format="webp")
    [url] = succeeded_urls(http, sim, "toapis", task["id"])
    assert http.get(url).status_code == 200

    sim.control("POST", f"tasks/toapis/{task['id']}/expire")
    assert http.get(url).status_code == 410
    assert succeeded_urls(http, sim, "toapis", task["id"]) == [url]  # no fresh links by default

    sim.set_faults(provider="toapis", resign=True)
    [renewed] = succeeded_urls(http, sim, "toapis", task["id"])
    assert renewed != url
    assert download_image(http, renewed).format == "WEBP"
    assert http.get(url).status_code == 410


def test_expired_status_is_configurable(sim: RunningSimulator, http: httpx.Client) -> None:
    sim.configure(expired_status=403)
    url = sim.create_task("xingchao", link_ttl=-10)["image_urls"][0]
    assert http.get(url).status_code == 403


def test_sized_images_and_download_counts(sim: RunningSimulator, http: httpx.Client) -> None:
    for fmt in ("png", "jpeg", "webp"):
        task = sim.create_task("apimart", format=fmt, bytes=200_000, images=2)
        urls = succeeded_urls(http, sim, "apimart", task["id"])
        first = http.get(urls[0])
        assert 150_000 < len(first.content) < 250_000
        assert Image.open(io.BytesIO(first.content)).format == PIL_FORMATS[fmt]
        http.get(urls[0])
        http.get(urls[1])
        downloads = sim.task("apimart", task["id"])["downloads"]
        assert downloads == {urls[0].split("?")[0]: 2, urls[1].split("?")[0]: 1}


def test_truncated_download(sim: RunningSimulator, http: httpx.Client) -> None:
    sim.set_faults(truncate=1.0)
    task = sim.create_task("kie", bytes=300_000)
    url = task["image_urls"][0]
    with pytest.raises(httpx.RemoteProtocolError), http.stream("GET", url) as reply:
        assert reply.status_code == 200
        assert int(reply.headers["content-length"]) > 250_000
        reply.read()
    sim.set_faults(truncate=0.0)
    assert len(http.get(url).content) > 250_000


# --- callbacks -------------------------------------------------------------------------------
def test_crun_callback_is_the_unwrapped_data_object(
    sim: RunningSimulator, http: httpx.Client, recorder: Recorder
) -> None:
    hook = recorder.hook_url("crun-plain")
    body, _, _ = CREATE_BODIES["crun"]
    task_id = WIRES["crun"].create(http, sim.base_url("crun"), {**body, "callback_url": hook})
    [received] = wait_for(lambda: recorder.received("crun-plain"), 10, "the crun callback")
    payload = received["json"]
    assert payload["task_id"] == task_id and payload["status"] == "success"
    assert WIRES["crun"].fields <= set(payload)
    assert payload["result"]["media_urls"] == succeeded_urls(http, sim, "crun", task_id)

    sim.configure(crun_callback_wrapped=True)
    wrapped_hook = recorder.hook_url("crun-wrapped")
    task_id = WIRES["crun"].create(
        http, sim.base_url("crun"), {**body, "callback_url": wrapped_hook}
    )
    [received] = wait_for(lambda: recorder.received("crun-wrapped"), 10, "the wrapped callback")
    assert received["json"]["code"] == 200 and received["json"]["data"]["task_id"] == task_id
    # The recorder answers before the simulator tallies the answer: wait for the tally.
    stats = wait_for(
        lambda: (s := sim.task("crun", task_id)["callbacks"])["delivered"] == 1 and s,
        10,
        "the wrapped callback counted as delivered",
    )
    assert stats["attempts"] == 1


def test_kie_callback_is_wrapped_and_signed(
    sim: RunningSimulator, http: httpx.Client, recorder: Recorder
) -> None:
    body, _, _ = CREATE_BODIES["kie"]
    hook = recorder.hook_url("kie-signed")
    task_id = WIRES["kie"].create(http, sim.base_url("kie"), {**body, "callBackUrl": hook})
    [received] = wait_for(lambda: recorder.received("kie-signed"), 10, "the kie callback")
    payload = received["json"]
    assert payload["code"] == 200 and payload["msg"] == "success"
    assert payload["data"]["taskId"] == task_id and "creditsConsumed" in payload["data"]
    assert json.loads(payload["data"]["resultJson"])["resultUrls"]

    timestamp = received["headers"]["x-webhook-timestamp"]
    expected = base64.b64encode(
        hmac.new(KIE_HOOK_KEY.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    ).decode()
    assert received["headers"]["x-webhook-signature"] == expected


def test_kie_failure_callback_and_unsigned_mode(
    sim: RunningSimulator, http: httpx.Client, recorder: Recorder
) -> None:
    sim.configure(kie_webhook_key=None)
    sim.create_task("kie", outcome="failed", callback_url=recorder.hook_url("kie-fail"))
    [received] = wait_for(lambda: recorder.received("kie-fail"), 10, "the kie failure callback")
    assert received["json"]["code"] != 200 and received["json"]["data"]["state"] == "fail"
    assert "x-webhook-signature" not in received["headers"]


@pytest.mark.parametrize("where", ["data.task_id", "taskId"])
def test_kie_callback_task_id_variants(
    sim: RunningSimulator, recorder: Recorder, where: str
) -> None:
    sim.configure(kie_callback_id=where)
    name = f"kie-id-{where}"
    task = sim.create_task("kie", callback_url=recorder.hook_url(name))
    [received] = wait_for(lambda: recorder.received(name), 10, "the kie callback")
    payload = received["json"]
    assert "taskId" not in payload["data"]
    found = payload["taskId"] if where == "taskId" else payload["data"]["task_id"]
    assert found == task["id"]


def test_evolink_retries_after_non_2xx(
    sim: RunningSimulator, http: httpx.Client, recorder: Recorder
) -> None:
    recorder.plans["evo-retry"] = [500, 503]
    body, _, _ = CREATE_BODIES["evolink"]
    hook = recorder.hook_url("evo-retry")
    task_id = WIRES["evolink"].create(http, sim.base_url("evolink"), {**body, "callback_url": hook})
    received = recorder.wait_count("evo-retry", 3)
    assert {r["body"] for r in received} == {received[0]["body"]}
    assert received[0]["json"]["id"] == task_id and received[0]["json"]["status"] == "completed"
    stats = wait_for(
        lambda: (s := sim.task("evolink", task_id)["callbacks"])["delivered"] == 1 and s,
        10,
        "the delivery to be counted",
    )
    assert stats["attempts"] == 3 and stats["failed"] == 2
    assert [e.get("status") for e in stats["log"]] == [500, 503, 200]


def test_evolink_gives_up_after_three_retries(sim: RunningSimulator, recorder: Recorder) -> None:
    recorder.plans["evo-down"] = [500] * 10
    task = sim.create_task("evolink", callback_url=recorder.hook_url("evo-down"))
    stats = wait_for(
        lambda: (s := sim.task("evolink", task["id"])["callbacks"])["failed"] == 4 and s,
        10,
        "four failed attempts",
    )
    assert stats["attempts"] == 4 and stats["delivered"] == 0
    assert len(recorder.received("evo-down")) == 4


def test_evolink_retries_after_a_timeout(sim: RunningSimulator, recorder: Recorder) -> None:
    sim.configure(callback_timeout=0.3)
    recorder.stall["evo-slow"] = 2.0
    task = sim.create_task("evolink", callback_url=recorder.hook_url("evo-slow"))
    stats = wait_for(
        lambda: (s := sim.task("evolink", task["id"])["callbacks"])["delivered"] == 1 and s,
        10,
        "delivery after a timeout",
    )
    assert stats["failed"] == 1 and "Timeout" in stats["log"][0]["error"]


def test_drop_switch(sim: RunningSimulator, recorder: Recorder) -> None:
    sim.set_faults(provider="crun", drop=1.0)
    dropped = sim.create_task("crun", callback_url=recorder.hook_url("dropped"))
    sim.create_task("kie", callback_url=recorder.hook_url("kept"))
    wait_for(lambda: sim.task("crun", dropped["id"])["callbacks"]["dropped"] == 1, 10, "a drop")
    wait_for(lambda: recorder.received("kept"), 10, "the other provider's callback")
    assert recorder.received("dropped") == []
    assert sim.task("crun", dropped["id"])["callbacks"]["attempts"] == 0


def test_duplicate_switch(sim: RunningSimulator, recorder: Recorder) -> None:
    sim.set_faults(duplicate=1.0, copies=3)
    task = sim.create_task("evolink", callback_url=recorder.hook_url("dup"))
    received = recorder.wait_count("dup", 3)
    assert {r["body"] for r in received} == {received[0]["body"]}
    assert received[0]["json"]["id"] == task["id"]
    wait_for(lambda: sim.task("evolink", task["id"])["callbacks"]["delivered"] == 3, 10, "counts")


def test_late_switch_still_delivers(sim: RunningSimulator, recorder: Recorder) -> None:
    sim.set_faults(late=1.0, late_delay=0.2)
    task = sim.create_task("crun", callback_url=recorder.hook_url("late"))
    [received] = wait_for(lambda: recorder.received("late"), 10, "the late callback")
    assert received["json"]["task_id"] == task["id"]


def test_reset_cancels_pending_callbacks(sim: RunningSimulator, recorder: Recorder) -> None:
    sim.create_task("crun", delay=3600, callback_url=recorder.hook_url("cancelled"))
    sim.reset()
    assert sim.control("GET", "stats") == {"tasks": 0, "providers": {}}


# --- status-query faults ---------------------------------------------------------------------
@pytest.mark.parametrize("provider", PROVIDERS)
def test_rate_limit_with_retry_after(
    sim: RunningSimulator, http: httpx.Client, provider: str
) -> None:
    sim.configure(retry_after=7)
    task = sim.create_task(provider)
    sim.set_faults(provider=provider, rate_limit=1.0)
    reply = WIRES[provider].status(http, sim.base_url(provider), task["id"])
    assert reply.status_code == 429 and reply.headers["retry-after"] == "7"
    sim.set_faults(provider=provider, rate_limit=0.0)
    assert WIRES[provider].status(http, sim.base_url(provider), task["id"]).status_code == 200
    log = sim.task(provider, task["id"])["queries"]["log"]
    assert [q["status"] for q in log] == [429, 200]


def test_storm_and_server_errors(sim: RunningSimulator, http: httpx.Client) -> None:
    task = sim.create_task("toapis")
    wire, base = WIRES["toapis"], sim.base_url("toapis")
    sim.set_faults(storm_seconds=3600)
    assert wire.status(http, base, task["id"]).status_code == 429
    assert sim.control("GET", "faults")["effective"]["kie"]["storm_seconds_left"] > 0
    sim.set_faults(storm_seconds=0, server_error=1.0)
    reply = wire.status(http, base, task["id"])
    assert reply.status_code in (500, 502, 503) and reply.json()["error"]["message"]
    sim.control("DELETE", "faults")
    assert wire.status(http, base, task["id"]).status_code == 200


def test_cli_style_start_faults(http: httpx.Client) -> None:
    with run_simulator(
        "127.0.0.1",
        free_port(),
        delay=0,
        rate_limit=1.0,
        provider_faults={"kie": {"rate_limit": 0}},
    ) as sim:
        evo = sim.create_task("evolink")
        assert WIRES["evolink"].status(http, sim.base_url("evolink"), evo["id"]).status_code == 429
        kie = sim.create_task("kie")
        assert WIRES["kie"].status(http, sim.base_url("kie"), kie["id"]).status_code == 200


# --- apimart batch and query counting --------------------------------------------------------
def test_apimart_batch(sim: RunningSimulator, http: httpx.Client) -> None:
    done = [sim.create_task("apimart")["id"] for _ in range(2)]
    waiting = sim.create_task("apimart", delay=3600)["id"]
    reply = http.post(
        sim.base_url("apimart") + "/v1/tasks/batch",
        json={"task_ids": [*done, waiting, "task_unknown"]},
        headers=bearer("k"),
    )
    assert reply.status_code == 200
    body = reply.json()
    assert body["code"] == 200
    states = {obj["id"]: _apimart_object(obj)[0] for obj in body["data"]}
    assert states == {done[0]: "succeeded", done[1]: "succeeded", waiting: "pending"}
    for task_id in [*done, waiting]:
        log = sim.task("apimart", task_id)["queries"]["log"]
        assert len(log) == 1 and log[0]["batch"] is True
    assert sim.task("apimart", "task_unknown")["queries"]["count"] == 1

    sim.set_faults(provider="apimart", rate_limit=1.0)
    reply = http.post(
        sim.base_url("apimart") + "/v1/tasks/batch", json={"task_ids": done}, headers=bearer("k")
    )
    assert reply.status_code == 429 and "retry-after" in reply.headers
    assert sim.task("apimart", done[0])["queries"]["count"] == 2


def test_query_counting_is_exact_under_concurrency(
    sim: RunningSimulator, http: httpx.Client
) -> None:
    tasks = {p: sim.create_task(p, delay=3600)["id"] for p in PROVIDERS}

    def ask(provider: str) -> int:
        return WIRES[provider].status(http, sim.base_url(provider), tasks[provider]).status_code

    jobs = [p for p in PROVIDERS for _ in range(25)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        assert set(pool.map(ask, jobs)) == {200}
    for provider, task_id in tasks.items():
        info = sim.task(provider, task_id)
        assert info["queries"]["count"] == 25
        times = [q["at"] for q in info["queries"]["log"]]
        assert times == sorted(times)
    totals = sim.control("GET", "stats")["providers"]
    assert all(totals[p]["status_queries"] == 25 for p in PROVIDERS)


# --- control API and CLI ---------------------------------------------------------------------
def test_control_api_errors(sim: RunningSimulator, http: httpx.Client) -> None:
    control = f"{sim.url}/_sim"
    assert http.post(f"{control}/tasks", json={"provider": "nope"}).status_code == 400
    assert http.post(f"{control}/tasks", json={"provider": "kie", "colour": 1}).status_code == 400
    assert http.post(f"{control}/tasks", json={"provider": "kie", "id": "x"}).status_code == 201
    assert http.post(f"{control}/tasks", json={"provider": "kie", "id": "x"}).status_code == 409
    assert http.post(f"{control}/faults", json={"drop": 2}).status_code == 400
    assert http.post(f"{control}/faults", json={"flood": 1}).status_code == 400
    assert http.post(f"{control}/config", json={"secret": "x"}).status_code == 400
    assert http.post(f"{control}/tasks/kie/none/expire").status_code == 404
    no_callbacks = {"provider": "toapis", "callback_url": "http://127.0.0.1:1/"}
    assert http.post(f"{control}/tasks", json=no_callbacks).status_code == 400
    info = http.get(control).json()
    assert info["env"]["AFTERIMAGE_KIE_BASE_URL"] == sim.base_url("kie")


def test_create_body_knobs_are_checked(sim: RunningSimulator, http: httpx.Client) -> None:
    wire = WIRES["evolink"]
    reply = http.post(
        sim.base_url("evolink") + wire.create_path,
        json={"model": "gpt-image-2", "prompt": "x", "format": "gif"},
        headers=bearer("k"),
    )
    assert reply.status_code == 422 and "format" in reply.json()["error"]["message"]
    reply = http.post(sim.base_url("evolink") + wire.create_path, content=b"{", headers=bearer("k"))
    assert reply.status_code == 400


def test_simulate_command_prints_ready_to_paste_exports() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "afterimage.simulator", "--port", str(port), "--delay", "0",
         "--key", "kie=kie's key"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not (line := proc.stdout.readline()).startswith("# control API"):
            lines.append(line)
        reply = wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/_sim"), 10, "the simulator")
        assert reply.json()["providers"]["crun"] == f"http://127.0.0.1:{port}/crun"
    finally:
        proc.terminate()
        proc.wait(10)
    assert all(line.startswith(("export ", "#")) for line in lines)
    shell = subprocess.run(["sh", "-c", "".join(lines) + "env"], env={}, capture_output=True,
                           text=True, check=True)
    pasted = dict(line.split("=", 1) for line in shell.stdout.splitlines() if "=" in line)
    assert pasted["AFTERIMAGE_DOWNLOAD_ALLOW_CIDRS"] == "127.0.0.0/8"
    assert pasted["AFTERIMAGE_FAL_JWKS_URL"] == f"http://127.0.0.1:{port}/fal/.well-known/jwks.json"
    for p in NAMES:
        assert pasted[f"AFTERIMAGE_{p.upper()}_BASE_URL"] == f"http://127.0.0.1:{port}/{p}"
        assert pasted[f"AFTERIMAGE_{p.upper()}_API_KEY"] == ("kie's key" if p == "kie"
                                                              else "sim-key")
    settings = Settings.from_env(pasted)  # afterimage reads them as meant
    assert set(settings.api_keys) == set(NAMES)
    assert settings.keys_urls["fal"] == pasted["AFTERIMAGE_FAL_JWKS_URL"]
    assert [str(n) for n in settings.download_allow_cidrs] == ["127.0.0.0/8"]


def test_simulate_command_rejects_bad_options() -> None:
    runner = CliRunner()
    assert runner.invoke(simulate, ["--drop", "2"]).exit_code == 2
    assert runner.invoke(simulate, ["--key", "nobody=x"]).exit_code == 2
    assert runner.invoke(simulate, ["--fault", "kie:flood=1"]).exit_code == 2
