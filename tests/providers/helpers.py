"""Shared bits of the provider adapter tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from afterimage.errors import AdapterError, ProviderApiError
from afterimage.models import ProviderResult

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
T0 = 1_777_636_800  # 2026-05-01T12:00:00Z in unix seconds; NOW is T0 + 0


def js(value: Any) -> bytes:
    """A JSON body."""
    return json.dumps(value).encode()


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def assert_adapter_error(call: Callable[[], object], provider: str, field: str) -> AdapterError:
    """`call` raises AdapterError naming `provider` and (a path containing) `field`."""
    with pytest.raises(AdapterError) as info:
        call()
    err = info.value
    assert err.provider == provider
    assert field in err.field, f"{err.field!r} does not name {field!r}"
    assert provider in str(err) and field in str(err)
    return err


def check(result: ProviderResult, provider: str, task_id: str = "t", **expected: Any) -> None:
    """`result` is about `task_id` at `provider` and has the `expected` attribute values."""
    assert (result.provider, result.task_id) == (provider, task_id)
    for key, value in expected.items():
        assert getattr(result, key) == value, f"{key}: {getattr(result, key)!r} != {value!r}"


def assert_api_error(
    call: Callable[[], object],
    kind: type[ProviderApiError],
    *,
    provider: str,
    provider_code: str | None = None,
    retry_after: float | None = None,
) -> ProviderApiError:
    """`call` raises exactly `kind` for `provider`, with the given code and Retry-After."""
    with pytest.raises(ProviderApiError) as info:
        call()
    err = info.value
    assert type(err) is kind, f"{type(err).__name__} is not {kind.__name__}: {err}"
    assert err.provider == provider
    if provider_code is not None:
        assert err.provider_code == provider_code
    assert err.retry_after == retry_after
    return err


def kie_data(**over: Any) -> dict[str, Any]:
    """kie's query/callback `data` object for task "t"."""
    data: dict[str, Any] = {
        "taskId": "t",
        "model": "gpt-image-2-text-to-image",
        "state": "success",
        "param": json.dumps({"model": "gpt-image-2-text-to-image", "input": {"prompt": "cat"}}),
        "resultJson": json.dumps({"resultUrls": ["https://tempfile.kie.ai/t/0.png"]}),
        "failCode": "",
        "failMsg": "",
        "costTime": 41000,
        "completeTime": (T0 - 60) * 1000,
        "createTime": (T0 - 101) * 1000,
        "updateTime": (T0 - 60) * 1000,
    }
    return data | over


def crun_data(**over: Any) -> dict[str, Any]:
    """crun's query `data` object (and bare callback body) for task "t"."""
    data: dict[str, Any] = {
        "task_id": "t",
        "provider": "openai",
        "model_version": "openai/gpt-image-2-stable",
        "status": "success",
        "param": {"prompt": "cat"},
        "create_at": T0 - 100,
        "complete_at": T0 - 60,
        "duration_s": 40,
        "result": {"code": 200, "message": "ok", "media_urls": ["https://cdn.crun.ai/t/0.png"]},
        "source": "api",
    }
    return data | over


def apimart_task(**over: Any) -> dict[str, Any]:
    """apimart's query object for task "t"."""
    data: dict[str, Any] = {
        "id": "t",
        "status": "completed",
        "progress": 100,
        "result": {
            "images": [{"url": ["https://upload.apimart.ai/t/0.png"], "expires_at": T0 + 3600}]
        },
        "created": T0 - 100,
        "completed": T0 - 60,
        "estimated_time": 60,
        "actual_time": 40,
    }
    return data | over


def evolink_task(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "created": T0 - 100,
        "id": "t",
        "model": "gpt-image-2",
        "object": "image.generation.task",
        "progress": 100,
        "status": "completed",
        "task_info": {"can_cancel": False},
        "type": "image",
        "usage": {"credits_reserved": 1},
        "results": ["https://files.evolink.ai/t/0.png"],
    }
    return data | over


def toapis_task(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "t",
        "object": "generation.task",
        "model": "gpt-image-2",
        "status": "completed",
        "progress": 100,
        "created_at": T0 - 100,
        "completed_at": T0 - 60,
        "url": "https://files.toapis.com/t.png",
        "expires_at": "2026-05-02T10:00:00Z",
        "result": {},
        "error": None,
    }
    return data | over


def xingchao_task(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "t",
        "object": "image.generation",
        "created": T0 - 100,
        "model": "gpt-image-2",
        "status": "completed",
        "image_url": "https://img.aizfw.cn/t.png",
        "error": None,
    }
    return data | over


def replicate_prediction(**over: Any) -> dict[str, Any]:
    """replicate's prediction "t" (query reply and webhook body)."""
    data: dict[str, Any] = {
        "id": "t",
        "model": "black-forest-labs/flux-schnell",
        "version": "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637",
        "input": {"prompt": "cat"},
        "status": "succeeded",
        "output": ["https://replicate.delivery/xezq/t/out-0.webp"],
        "error": None,
        "logs": "",
        "created_at": "2026-05-01T11:58:20.000Z",
        "started_at": "2026-05-01T11:58:21.000Z",
        "completed_at": "2026-05-01T11:59:00.000Z",
        "urls": {"get": "https://api.replicate.com/v1/predictions/t",
                 "cancel": "https://api.replicate.com/v1/predictions/t/cancel"},
        "metrics": {"predict_time": 2.1},
    }
    return data | over


def fal_output(**over: Any) -> dict[str, Any]:
    """A fal app's output (the result reply and a webhook's payload)."""
    data: dict[str, Any] = {
        "images": [{"url": "https://v3.fal.media/files/t/0.png", "content_type": "image/png",
                    "width": 1024, "height": 1024}],
        "seed": 42,
        "has_nsfw_concepts": [False],
        "prompt": "cat",
    }
    return data | over


def fal_webhook(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "request_id": "t",
        "gateway_request_id": "t",
        "status": "OK",
        "payload": fal_output(),
    }
    return data | over


def bfl_task(**over: Any) -> dict[str, Any]:
    """bfl's get_result reply for task "t"."""
    data: dict[str, Any] = {
        "id": "t",
        "status": "Ready",
        "result": {"sample": "https://delivery-eu1.bfl.ai/results/t/sample.jpeg?se=x&sig=y",
                   "prompt": "cat", "seed": 1, "start_time": T0 - 20, "end_time": T0 - 5,
                   "duration": 15},
        "progress": None,
        "details": None,
    }
    return data | over


# Documented bodies, by provider and kind, all about task "t": the seeds the fuzz test mutates.
SAMPLES: dict[str, dict[str, list[Any]]] = {
    "crun": {
        "callback": [crun_data(), {"code": 200, "message": "success", "data": crun_data()}],
        "status": [{"code": 200, "message": "success", "data": crun_data()}],
        "create": [{"code": 200, "message": "success", "data": {"task_id": "t"}}],
    },
    "kie": {
        "callback": [{"code": 200, "msg": "success", "data": kie_data(creditsConsumed=4)}],
        "status": [{"code": 200, "message": "success", "data": kie_data()}],
        "create": [{"code": 200, "msg": "success", "data": {"taskId": "t"}}],
    },
    "evolink": {
        "callback": [evolink_task()],
        "status": [evolink_task()],
        "create": [evolink_task(status="pending", results=None, progress=0)],
    },
    "apimart": {
        "callback": [],
        "status": [{"code": 200, "data": apimart_task()}],
        "create": [{"code": 200, "data": [{"status": "submitted", "task_id": "t"}]}],
        "batch": [{"code": 200, "data": [apimart_task(), apimart_task(id="u", status="failed")]}],
    },
    "toapis": {
        "callback": [],
        "status": [toapis_task()],
        "create": [toapis_task(status="queued", progress=0, url=None)],
    },
    "xingchao": {
        "callback": [],
        "status": [xingchao_task()],
        "create": [xingchao_task(object="image", status="queued", image_url=None)],
    },
    "replicate": {
        "callback": [replicate_prediction(),
                     replicate_prediction(output="https://replicate.delivery/t/out.png")],
        "status": [replicate_prediction(), replicate_prediction(status="processing", output=None)],
        "create": [replicate_prediction(status="starting", output=None, completed_at=None)],
    },
    "fal": {
        "callback": [fal_webhook(), fal_webhook(payload=None),
                     fal_webhook(payload={"image": {"url": "https://v3.fal.media/t.png"}}),
                     fal_webhook(status="ERROR", payload={"detail": "bad"}, error="bad")],
        "status": [{"status": "COMPLETED", "request_id": "t"},
                   {"status": "IN_QUEUE", "queue_position": 0}],
        "result": [fal_output(), {"image": {"url": "https://v3.fal.media/t.png"}}],
        "create": [{"request_id": "t", "status_url": "https://queue.fal.run/a/b/requests/t/status",
                    "response_url": "https://queue.fal.run/a/b/requests/t",
                    "cancel_url": "https://queue.fal.run/a/b/requests/t/cancel"}],
    },
    "bfl": {
        "callback": [bfl_task(), {"task_id": "t", "status": "Ready",
                                  "result": {"sample": "https://delivery.bfl.ai/t.jpeg"}}],
        "status": [bfl_task(), bfl_task(status="Pending", result=None, progress=0.4),
                   bfl_task(status="Content Moderated", result=None)],
        "create": [{"id": "t", "polling_url": "https://api.eu1.bfl.ai/v1/get_result?id=t"}],
    },
}
