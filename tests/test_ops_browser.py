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


SCREENSHOT_OVERVIEW = SCREENSHOT.with_name("ops-overview.png")


def bars(page: Page, series: str) -> int:
    """The tasks the chart's bars of `series` stand for."""
    return int(page.evaluate(
        "s => Array.from(document.querySelectorAll(`#chart rect[data-series=${s}]`))"
        ".reduce((n, r) => n + Number(r.dataset.count), 0)", series))


def rows(page: Page) -> set[str]:
    return set(page.locator("#tasks tbody tr").evaluate_all(
        "trs => trs.map(tr => tr.dataset.task)"))


def test_an_operator_finds_a_task_filters_the_table_and_reads_the_chart(
        stack: Stack, browser: Browser) -> None:
    archived = [(p, stack.sim.create_task(p, callback_url=stack.callback_url(p))["id"])
                for p in ("evolink", "evolink", "kie")]
    for provider, task_id in archived:
        stack.wait_state(provider, task_id, "archived")
    given = stack.api.get("/v1/providers/bfl/callback-url").json()
    stack.sim.set_faults("bfl", late=1.0, late_delay=2.0)  # the webhook comes after the link died
    expired = stack.sim.create_task("bfl", callback_url=given["callback_url"], link_ttl=0.5,
                                    webhook_secret=given["webhook_secret"])["id"]
    stack.wait_state("bfl", expired, "expired", timeout=30)
    stack.sim.set_faults("bfl", late=0.0, truncate=1.0)
    broken = stack.sim.create_task("bfl", callback_url=given["callback_url"],
                                   webhook_secret=given["webhook_secret"])["id"]
    stack.wait_state("bfl", broken, "archive_failed")  # its links die in 10 minutes

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    base = stack.settings.public_url
    page.goto(f"{base}/ops")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")

    # the chart: a bar for each ending in the current 10 minutes, and the link dying soon
    assert page.locator("#chart svg.chart").is_visible()
    assert (bars(page, "archived"), bars(page, "failed"), bars(page, "expired")) == (3, 1, 1)
    assert bars(page, "dying") == 1
    assert page.locator("#chart [data-total=archived]").inner_text() == "3"
    assert page.locator("#chart [data-total=dying]").inner_text() == "1"
    # the heartbeats: every loop has a row; the receiver's dispatcher beats
    beats = page.locator("#heartbeats tbody tr")
    assert beats.count() >= 7 and beats.first.is_visible()
    page.goto(f"{base}/ops")
    assert "ago" in page.locator("#heartbeats tr[data-component=dispatcher]").inner_text()

    # the table, then narrowed by provider, then by provider and state
    everyone = {f"{p}/{t}" for p, t in archived} | {f"bfl/{expired}", f"bfl/{broken}"}
    assert rows(page) == everyone
    page.select_option("#tasks select[name=provider]", "kie")
    page.locator("#tasks").get_by_role("button", name="Filter").click()
    assert "provider=kie" in page.url
    assert rows(page) == {f"kie/{archived[2][1]}"}
    page.select_option("#tasks select[name=provider]", "bfl")
    page.locator("#tasks").get_by_role("button", name="Filter").click()
    assert rows(page) == {f"bfl/{expired}", f"bfl/{broken}"}
    page.select_option("#tasks select[name=state]", "archive_failed")
    page.locator("#tasks").get_by_role("button", name="Filter").click()
    assert rows(page) == {f"bfl/{broken}"}
    page.goto(f"{base}/ops?provider=nope")
    assert "unknown provider" in page.locator("#tasks .error").inner_text()
    assert rows(page) == everyone

    # find: the failed task's detail, and a task nobody knows
    page.select_option("#find select[name=find_provider]", "bfl")
    page.fill("#find input[name=find_id]", broken)
    page.locator("#find").get_by_role("button", name="Find").click()
    found = page.locator(f'#find .found[data-task="bfl/{broken}"]')
    assert found.locator("[data-field=state]").inner_text() == "archive_failed"
    assert "download_interrupted" in found.inner_text()
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_OVERVIEW), full_page=True)
    page.fill("#find input[name=find_id]", "no-such-task")
    page.locator("#find").get_by_role("button", name="Find").click()
    assert "not found" in page.locator("#find .error").inner_text()
    assert page.locator("#find .found").count() == 0
    # a row's id opens its detail
    page.locator(f'#tasks tr[data-task="kie/{archived[2][1]}"] a').click()
    assert page.locator(f'#find .found[data-task="kie/{archived[2][1]}"]').is_visible()
