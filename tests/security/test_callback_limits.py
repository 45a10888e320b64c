"""Callers that lie about their body, never finish it, or knock without the right token.

Every request goes over a raw socket to the real receiver (uvicorn) with a real Redis, so what
is tested is what a hostile client on the network can do.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from afterimage import keys
from afterimage.tokens import callback_token
from receiver import create_app
from tests.receiver.test_callbacks import SECRET, completed, settings_for
from tests.security.rawhttp import closed_by_peer, connect, head, read_reply
from tests.support import ServerThread, free_port

MiB = 1024 * 1024
PATH = f"/callbacks/evolink/{callback_token(SECRET, 'evolink')}"


@pytest.fixture()
def port(redis_url: str) -> Iterator[int]:
    settings = settings_for(redis_url, callback_read_timeout=1.0)
    with ServerThread(create_app(settings, check_storage=False)) as server:
        yield server.port


def nothing_recorded(redis_url: str) -> bool:
    db = redis.Redis.from_url(redis_url)
    return not db.keys(keys.task("*", "*")) and not db.exists(keys.INBOX)


@pytest.mark.parametrize("declared", [MiB + 1, 10**12])
def test_a_declared_length_over_the_limit_is_refused_before_any_body_is_sent(
    port: int, redis_url: str, declared: int
) -> None:
    with connect(port) as sock:
        sock.sendall(head(PATH, {"Content-Type": "application/json",
                                 "Content-Length": str(declared)}))
        reply = read_reply(sock)
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "body_too_large"
    assert nothing_recorded(redis_url)


def test_bytes_past_the_declared_length_are_never_part_of_the_body(
    port: int, redis_url: str
) -> None:
    body = json.dumps(completed("told-the-truth")).encode()
    extra = b'", "results": ["http://169.254.169.254/"]}' + b"x" * (2 * MiB)
    with connect(port) as sock:
        sender = _send_forever(sock.sendall, iter([
            head(PATH, {"Content-Type": "application/json", "Content-Length": str(len(body))}),
            body, extra]))
        reply = read_reply(sock)
        # The surplus is read as a next request, found to be none, and answered 400 by the
        # HTTP layer; that may overtake the 200 of the first request.
        assert reply.status in (200, 400)
        assert closed_by_peer(sock)
        sender.join(15)
    record = redis.Redis.from_url(redis_url).hgetall(keys.task("evolink", "told-the-truth"))
    if reply.status == 200 or record:
        assert json.loads(record[b"urls"]) == completed()["results"]


def test_a_declared_length_shorter_than_the_json_cuts_it(port: int, redis_url: str) -> None:
    body = json.dumps(completed("cut")).encode()
    with connect(port) as sock:
        sock.sendall(head(PATH, {"Content-Type": "application/json", "Content-Length": "20"})
                     + body)
        reply = read_reply(sock)
        assert reply.status == 400  # from us (not JSON), or for the rest from the HTTP layer
        assert closed_by_peer(sock)
    assert nothing_recorded(redis_url)


def _send_forever(sock_send: object, chunks: Iterator[bytes]) -> threading.Thread:
    def run() -> None:
        try:
            for chunk in chunks:
                sock_send(chunk)  # type: ignore[operator]
        except OSError:
            pass  # the server hung up on us: the point of the test

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_an_endless_chunked_body_is_refused_once_it_passes_the_limit(
    port: int, redis_url: str
) -> None:
    piece = b"x" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = [0]

    def chunks() -> Iterator[bytes]:
        while sent[0] < 64 * MiB:  # far more than the limit; the server must stop us first
            sent[0] += len(piece)
            yield chunk

    with connect(port) as sock:
        sock.sendall(head(PATH, {"Content-Type": "application/json",
                                 "Transfer-Encoding": "chunked"}))
        sender = _send_forever(sock.sendall, chunks())
        reply = read_reply(sock)
        assert reply.status == 413
        assert reply.json()["error"]["code"] == "body_too_large"
        assert closed_by_peer(sock)
        sender.join(15)
    assert not sender.is_alive()
    assert sent[0] < 64 * MiB
    assert nothing_recorded(redis_url)


def test_a_body_that_stops_arriving_is_cut_off_with_408(port: int, redis_url: str) -> None:
    body = json.dumps(completed("stalled")).encode()
    with connect(port) as sock:
        sock.sendall(head(PATH, {"Content-Type": "application/json",
                                 "Content-Length": str(len(body))}) + body[:20])
        reply = read_reply(sock)  # nothing more is ever sent
        assert closed_by_peer(sock)
    assert reply.status == 408
    assert reply.json()["error"]["code"] == "body_timeout"
    assert nothing_recorded(redis_url)


def test_a_body_dripping_in_byte_by_byte_is_cut_off_with_408(port: int, redis_url: str) -> None:
    body = json.dumps(completed("dripping")).encode()

    def drip() -> Iterator[bytes]:
        for i in range(len(body)):
            time.sleep(0.1)
            yield body[i:i + 1]

    with connect(port) as sock:
        sock.sendall(head(PATH, {"Content-Type": "application/json",
                                 "Content-Length": str(len(body))}))
        sender = _send_forever(sock.sendall, drip())
        reply = read_reply(sock)
        assert reply.status == 408
        assert closed_by_peer(sock)
        sender.join(30)
    assert not sender.is_alive()
    assert nothing_recorded(redis_url)


def test_a_client_that_leaves_mid_body_records_nothing_and_harms_no_one(
    port: int, redis_url: str
) -> None:
    body = json.dumps(completed("left")).encode()
    with connect(port) as sock:
        sock.sendall(head(PATH, {"Content-Type": "application/json",
                                 "Content-Length": str(len(body))}) + body[:40])
    with connect(port) as sock:  # the next caller is served as usual
        good = json.dumps(completed("stayed")).encode()
        sock.sendall(head(PATH, {"Content-Type": "application/json",
                                 "Content-Length": str(len(good))}) + good)
        assert read_reply(sock).status == 200
    db = redis.Redis.from_url(redis_url)
    assert db.exists(keys.task("evolink", "stayed"))
    assert not db.exists(keys.task("evolink", "left"))


@pytest.mark.parametrize(
    ("path", "status"),
    [("/callbacks/evolink/wrong-token", 401), ("/callbacks/nosuch/anything", 404)],
)
def test_the_token_is_checked_before_the_body_is_waited_for(
    port: int, redis_url: str, path: str, status: int
) -> None:
    with connect(port) as sock:  # a large body is announced and never sent
        sock.sendall(head(path, {"Content-Type": "application/json",
                                 "Content-Length": str(MiB)}))
        reply = read_reply(sock)
        assert closed_by_peer(sock)
    assert reply.status == status  # not 408: the body was never waited for
    assert nothing_recorded(redis_url)


def test_unknown_provider_and_bad_token_are_answered_without_redis() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens here
    app = create_app(settings_for(dead), check_storage=False)
    body = json.dumps(completed()).encode()
    with ServerThread(app) as server:
        for path, status in [("/callbacks/nosuch/x", 404), ("/callbacks/evolink/x", 401),
                             (f"/callbacks/kie/{callback_token(SECRET, 'evolink')}", 401),
                             (PATH, 503)]:  # the right token does need Redis
            with connect(server.port) as sock:
                sock.sendall(head(path, {"Content-Type": "application/json",
                                         "Content-Length": str(len(body))}) + body)
                reply = read_reply(sock)
            assert reply.status == status, path
            assert reply.json()["error"]["message"]
