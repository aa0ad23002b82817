"""The broker's socket is opened without blocking the reactor (ocppgw.mqtt.connect)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from ocppgw.config import parse
from ocppgw.mqtt.client import MQTTClient
from ocppgw.mqtt.connect import open_socket


class _ThreadlessReactor(MemoryReactorClock):
    def getThreadPool(self) -> Any:
        raise AssertionError("an IP literal is looked up without a thread")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose accept queue is full: Linux drops further SYNs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        port = s.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            yield port


@pytest.fixture
def no_blocking_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a blocking connect on the reactor thread")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _fire_writers(reactor: MemoryReactorClock) -> None:
    for watch in list(reactor.writers):
        watch.doWrite()


def test_connects_when_the_reactor_says_writable(
    listener: socket.socket, no_blocking_connect: None
) -> None:
    """The socket connects in the background and is handed over once writable."""
    reactor = _ThreadlessReactor()
    results: list[Any] = []
    open_socket(reactor, "127.0.0.1", listener.getsockname()[1], 5).addBoth(results.append)
    if not results:
        assert reactor.writers, "the connect in progress is not watched"
        _fire_writers(reactor)
    (sock,) = results
    assert isinstance(sock, socket.socket) and not sock.getblocking()
    assert not reactor.writers and not reactor.getDelayedCalls()
    accepted, _ = listener.accept()
    accepted.close()
    sock.close()


def test_a_black_hole_times_out_on_the_reactor_clock(
    black_hole: int, no_blocking_connect: None
) -> None:
    """A connect that hangs fails with TimeoutError after the timeout, its watch removed."""
    reactor = _ThreadlessReactor()
    results: list[Any] = []
    open_socket(reactor, "127.0.0.1", black_hole, 5).addBoth(results.append)
    assert results == [] and reactor.writers
    reactor.advance(4.9)
    assert results == []
    reactor.advance(0.2)
    (failure,) = results
    assert failure.check(TimeoutError), failure
    assert not reactor.writers and not reactor.getDelayedCalls()


def test_the_client_never_blocks_on_a_black_hole(
    black_hole: int, no_blocking_connect: None
) -> None:
    """MQTTClient.start() returns at once; the attempt times out and a retry is scheduled."""
    config = parse(
        "[listener:ws]\nendpoint = tcp:0\n"
        f"[mqtt]\nbroker = mqtt://127.0.0.1:{black_hole}\nreconnect_min = 1\n"
    )
    reactor = _ThreadlessReactor()
    client = MQTTClient(config.mqtt, reactor)
    client.start()
    assert reactor.writers and not client.connected
    reactor.advance(5.0)
    assert not reactor.writers
    assert client._retry_call is not None and client._retry_call.active()
    client.stop()
    assert not reactor.writers and not reactor.readers
