"""The page's server listens before its app is built (the box's start-up), and gives back what a
request's thread took once the answer is sent."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.web import server as web_server
from gateway.web.server import WebServer


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


@pytest.fixture
def server() -> Iterator[WebServer]:
    s = WebServer(None, "127.0.0.1", 0, streams=2, request_threads=2)
    s.start()
    yield s
    s.stop()


def get(server: WebServer, path: str = "/") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=20) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_request_during_start_up_waits_for_the_app_and_is_answered(server: WebServer) -> None:
    answers: list[tuple[int, bytes]] = []
    asking = threading.Thread(target=lambda: answers.append(get(server)))
    t0 = time.monotonic()
    asking.start()
    time.sleep(0.3)
    assert not answers  # waiting, not refused
    server.set_app(hello)
    asking.join(10)
    assert answers == [(200, b"hello")]
    assert time.monotonic() - t0 >= 0.3


def test_a_start_up_that_never_ends_says_so_with_a_503(server: WebServer, monkeypatch) -> None:
    monkeypatch.setattr(web_server, "APP_WAIT_S", 0.2)
    status, body = get(server)
    assert status == 503
    assert b"starting" in body


def test_what_a_request_took_is_given_back_on_its_own_thread_once_answered(server: WebServer) -> None:
    served_on: list[int] = []
    released_on: list[int] = []

    def streaming(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        served_on.append(threading.get_ident())
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a"
        yield b"b"
        assert not released_on  # not before the body is sent

    server.after_request = lambda: released_on.append(threading.get_ident())
    server.set_app(streaming)
    assert get(server) == (200, b"ab")
    deadline = time.monotonic() + 5
    while not released_on and time.monotonic() < deadline:
        time.sleep(0.01)
    assert released_on == served_on
