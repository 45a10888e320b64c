"""/ops in a real headless Chromium: sign in, see a failure, press Replay, watch it archived."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.stack import TOKEN, Stack, running_stack
from tests.support import MotoServer, wait_for

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "test-artifacts" / "ops.png"


@pytest.fixture()
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "chromium is missing: scripts/bootstrap --test installs it"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def stack(redis_url: str, s3_server: MotoServer, s3_bucket: str, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(redis_url, s3_server.url, s3_bucket, tmp_path,
                       extra_env={"AFTERIMAGE_ARCHIVE_RETRIES": "0"}) as s:
        yield s


def images_loaded(page: Page) -> bool:
    return bool(page.evaluate(
        "() => document.images.length > 0 && "
        "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"))


def test_the_replay_button_ends_a_failed_task_archived(stack: Stack, browser: Browser) -> None:
    done = [stack.sim.create_task(p, callback_url=stack.callback_url(p), images=n)
            for p, n in (("evolink", 2), ("kie", 1))]
    for made, provider in zip(done, ("evolink", "kie"), strict=True):
        stack.wait_state(provider, made["id"], "archived")
    stack.sim.set_faults("evolink", truncate=1.0)
    broken, left = (stack.sim.create_task("evolink", callback_url=stack.callback_url("evolink"))
                    for _ in range(2))
    for made in (broken, left):
        stack.wait_state("evolink", made["id"], "archive_failed")
    stack.sim.set_faults("evolink", truncate=0.0)

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    base = stack.settings.public_url
    page.goto(f"{base}/ops")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    row = page.locator(f'#failures tr[data-task="evolink/{broken["id"]}"]')
    assert "download_interrupted" in row.inner_text()
    assert page.locator("#counts tfoot [data-state=archived]").inner_text() == "2"
    wait_for(lambda: images_loaded(page), 10, "the thumbnails")  # 3 images from S3

    row.get_by_role("button", name="Replay").click()
    assert "replay queued" in page.locator(".notice").inner_text()
    stack.wait_state("evolink", broken["id"], "archived")
    page.goto(f"{base}/ops")
    assert page.locator(f'#failures tr[data-task="evolink/{broken["id"]}"]').count() == 0
    assert page.locator(f'#failures tr[data-task="evolink/{left["id"]}"]').count() == 1
    assert page.locator("#deadlines tbody tr").count() == 1  # the one still failed
    assert page.locator(f'#archives li[data-task="evolink/{broken["id"]}"] img').count() == 1
    wait_for(lambda: images_loaded(page), 10, "the thumbnails")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    key = f"archive/evolink/{broken['id']}/0.png"
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    thumb = httpx.get(f"{base}/ops/objects/{key}", cookies=cookies)
    assert thumb.content == stack.objects(key)[key]
    assert thumb.headers["content-type"] == "image/png"
    assert thumb.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in thumb.headers["content-security-policy"]
    assert httpx.get(f"{base}/ops/objects/{key}").status_code == 401
