"""/ops over real HTTP: who gets in, what a cross-site form cannot do, and escaping."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
import redis

from afterimage.ledger import Ledger, move_args
from afterimage.models import TaskState
from receiver import create_app
from tests.receiver.test_callbacks import settings_for
from tests.support import ServerThread

TOKEN = "api-token"
EVIL_ID = '"><script>alert(1)<\\script><img\tsrc=x\tonerror=alert(2)>'
EVIL_MESSAGE = "<b>bold</b> & <img src=x onerror=alert(3)> ?sig=1"


@pytest.fixture()
def base(redis_url: str) -> Iterator[str]:
    with ServerThread(create_app(settings_for(redis_url), check_storage=False)) as server:
        yield server.url


def failed(redis_url: str, task_id: str, message: str = "links went away") -> None:
    """A task that ended archive_failed, written through the ledger's own transition."""
    ledger = Ledger(redis.Redis.from_url(redis_url))
    err = json.dumps({"code": "download_interrupted", "message": message})
    assert ledger.move(move_args("evolink", task_id, TaskState.ARCHIVE_FAILED, allowed="none",
                                 fields={"err": err})).ok


def signed_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base)
    r = client.post("/ops/login", data={"token": TOKEN})
    assert r.status_code == 303
    return client


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found
    return found.group(1)


def section(page: str, name: str) -> str:
    """The HTML of one `<section id=name>` of the page."""
    return page.split(f'<section id="{name}">', 1)[1].split("</section>", 1)[0]


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_without_the_token_a_browser_gets_only_the_login_form(base: str) -> None:
    for r in (httpx.get(f"{base}/ops", headers=BROWSER),
              httpx.get(f"{base}/ops?token=wrong", headers=BROWSER),
              httpx.get(f"{base}/ops", headers=BROWSER, cookies={"afterimage_ops": "forged"})):
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("text/html")
        assert 'action="/ops/login"' in r.text
        assert "Tasks by state" not in r.text
    wrong = httpx.post(f"{base}/ops/login", data={"token": "wrong"}, headers=BROWSER)
    assert wrong.status_code == 401 and 'action="/ops/login"' in wrong.text
    assert httpx.get(f"{base}/ops/objects/a/b.png").status_code == 401
    refused = httpx.post(f"{base}/ops/replay", data={"provider": "evolink", "task_id": "x"})
    assert refused.status_code == 401


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/plain",
                                    "text/html;q=0, application/json"])
def test_without_the_token_every_other_client_gets_the_json_error(
    base: str, accept: str | None
) -> None:
    headers = {"Accept": accept} if accept else {}
    with httpx.Client(headers=headers) as client:
        if accept is None:
            del client.headers["accept"]
        replies = [client.get(f"{base}/ops"), client.get(f"{base}/ops?token=wrong"),
                   client.post(f"{base}/ops/login", data={"token": "wrong"}),
                   client.get(f"{base}/ops/objects/a/b.png"),
                   client.post(f"{base}/ops/replay", data={"provider": "evolink", "task_id": "x"})]
    for r in replies:
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "unauthorized" and r.json()["error"]["message"]


def test_the_token_once_gives_a_strict_httponly_cookie_that_is_not_the_token(base: str) -> None:
    r = httpx.get(f"{base}/ops?token={TOKEN}")
    assert (r.status_code, r.headers["location"]) == (303, "/ops")  # token leaves the URL
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/ops" in cookie
    assert TOKEN not in cookie
    page = httpx.get(f"{base}/ops", cookies=dict(r.cookies))
    assert page.status_code == 200
    assert "Tasks by state" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    bearer = httpx.get(f"{base}/ops", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200


def test_attacker_text_is_escaped(base: str, redis_url: str) -> None:
    failed(redis_url, EVIL_ID, EVIL_MESSAGE)
    page = signed_in(base).get("/ops").text
    assert "<script>alert(1)" not in page
    assert "<img src=x onerror" not in page
    assert "<b>bold</b>" not in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;img src=x onerror=alert(3)&gt;" in page
    assert "&#34;&gt;&lt;script&gt;alert(1)" in page
    client = signed_in(base)
    for query in ({"find_provider": "evolink", "find_id": EVIL_ID},  # found: its detail
                  {"find_provider": "evolink", "find_id": EVIL_ID + "x"},  # not found
                  {"provider": EVIL_ID, "state": EVIL_MESSAGE}):  # unknown filter values
        page = client.get("/ops", params=query).text
        assert "<script>alert(1)" not in page and "<img src=x onerror" not in page
        assert "<b>bold</b>" not in page


def test_find_and_filter_say_what_they_did_not_find(base: str, redis_url: str) -> None:
    failed(redis_url, "t-9")
    client = signed_in(base)
    found = section(client.get("/ops?find_provider=evolink&find_id=t-9").text, "find")
    assert 'data-task="evolink/t-9"' in found and "download_interrupted" in found
    missing = section(client.get("/ops?find_provider=kie&find_id=t-9").text, "find")
    assert "not found: no kie task t-9" in missing and "data-task" not in missing
    bad = section(client.get("/ops?find_provider=nope&find_id=t-9").text, "find")
    assert "nope" in bad and "data-task" not in bad
    table = section(client.get("/ops?provider=kie").text, "tasks")
    assert "No task matches." in table
    table = section(client.get("/ops?provider=evolink&state=archive_failed").text, "tasks")
    assert table.count("<tr data-task=") == 1
    table = section(client.get("/ops?state=bogus").text, "tasks")
    assert "unknown state &#39;bogus&#39;" in table and table.count("<tr data-task=") == 1


def test_a_replay_form_needs_the_csrf_token_and_this_origin(base: str, redis_url: str) -> None:
    failed(redis_url, "t-1")
    client = signed_in(base)
    token = csrf(client.get("/ops").text)
    form = {"provider": "evolink", "task_id": "t-1"}
    assert client.post("/ops/replay", data=form).status_code == 403
    assert client.post("/ops/replay", data={**form, "csrf": "0" * 64}).status_code == 403
    foreign = client.post("/ops/replay", data={**form, "csrf": token},
                          headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    cross = client.post("/ops/replay", data={**form, "csrf": token},
                        headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert 'data-task="evolink/t-1"' in section(client.get("/ops").text, "failures")  # still failed

    done = client.post("/ops/replay", data={**form, "csrf": token},
                       headers={"Origin": base})
    assert done.status_code == 303
    assert done.headers["location"] == "/ops?done=queued&task=evolink+t-1"
    assert "evolink t-1: replay queued" in client.get(done.headers["location"]).text
    db = redis.Redis.from_url(redis_url)
    assert db.hget("ai:t:evolink:t-1", "st") == b"queued"


def test_scripts_replay_with_the_bearer_token_and_no_form_token(base: str, redis_url: str) -> None:
    failed(redis_url, "t-2")
    r = httpx.post(f"{base}/ops/replay", data={"provider": "evolink", "task_id": "t-2"},
                   headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 303
    again = httpx.post(f"{base}/ops/replay", data={"provider": "evolink", "task_id": "t-2"},
                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert again.headers["location"] == "/ops?done=already_queued&task=evolink+t-2"


def test_signing_out_ends_the_session(base: str) -> None:
    client = signed_in(base)
    token = csrf(client.get("/ops").text)
    assert client.post("/ops/logout", data={"csrf": token}).status_code == 303
    assert client.get("/ops", headers=BROWSER).status_code == 401


def test_a_wrong_token_in_the_address_is_said_to_be_wrong(base: str) -> None:
    wrong = httpx.get(f"{base}/ops?token=wrong", headers=BROWSER)
    assert wrong.status_code == 401 and "That is not the API token." in wrong.text
    none = httpx.get(f"{base}/ops", headers=BROWSER)
    assert none.status_code == 401 and "That is not the API token." not in none.text
    api = httpx.get(f"{base}/ops?token=wrong")
    assert api.json()["error"]["message"] == "wrong token"


def test_recent_failures_lists_every_failed_state(base: str, redis_url: str) -> None:
    ledger = Ledger(redis.Redis.from_url(redis_url))
    for state, task_id in ((TaskState.GENERATION_FAILED, "gen-1"), (TaskState.EXPIRED, "exp-1"),
                           (TaskState.ARCHIVE_FAILED, "arch-1")):
        err = json.dumps({"code": f"{state.value}_code", "message": "it failed"})
        assert ledger.move(move_args("evolink", task_id, state, allowed="none",
                                     fields={"err": err})).ok
    page = signed_in(base).get("/ops").text
    assert "Nothing has failed." not in page
    for task_id in ("gen-1", "exp-1", "arch-1"):
        assert f'data-task="evolink/{task_id}"' in page
    rows = dict(re.findall(r'data-task="evolink/([\w-]+)">(.*?)</tr>', page, re.S))
    assert "Replay" not in rows["gen-1"]  # the provider's own failure cannot be replayed
    assert "Replay" in rows["arch-1"] and "Replay" in rows["exp-1"]
