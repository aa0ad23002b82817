"""
The speed-up paho_internals opens the broker's socket on the reactor, never
blocking it (ocppgw.mqtt.speedup.connect), and hands it to paho.  Run only
where the speed-up fits; the public path's connects are in
tests/unit/mqtt/test_driver.py.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from ocppgw.config import parse
from ocppgw.mqtt.client import MQTTClient
from ocppgw.mqtt.speedup import fits
from ocppgw.mqtt.speedup.connect import open_socket
from ocppgw.mqtt.speedup.driver import FastDriver
from tests.clocks import Clocks

pytestmark = pytest.mark.skipif(not fits(), reason="paho lacks what the speed-up uses")


class _ThreadlessReactor(MemoryReactorClock):
    def getThreadPool(self) -> Any:
        raise AssertionError("an IP literal is looked up without a thread")


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
    listener: socket.socket, no_blocking_connect: None, clocks: Clocks
) -> None:
    """The socket connects in the background and is handed over once writable."""
    reactor = clocks.add(_ThreadlessReactor())
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
    black_hole: int, no_blocking_connect: None, clocks: Clocks
) -> None:
    """A connect that hangs fails with TimeoutError after the timeout, its watch removed."""
    reactor = clocks.add(_ThreadlessReactor())
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
    black_hole: int, no_blocking_connect: None, clocks: Clocks
) -> None:
    """MQTTClient.start() returns at once; the attempt times out and a retry is scheduled."""
    config = parse(
        "[listener:ws]\nendpoint = tcp:0\n"
        f"[mqtt]\nbroker = mqtt://127.0.0.1:{black_hole}\nreconnect_min = 1\n"
    )
    reactor = clocks.add(_ThreadlessReactor())
    client = MQTTClient(config.mqtt, reactor, driver=FastDriver)
    client.start()
    assert reactor.writers and not client.connected
    reactor.advance(5.0)
    assert not reactor.writers
    assert client._retry_call is not None and client._retry_call.active()
    client.stop()
    assert not reactor.writers and not reactor.readers


def _report_hangup(reactor: MemoryReactorClock) -> None:
    """What epoll does for a refused non-blocking connect: EPOLLERR|EPOLLHUP, no EPOLLOUT."""
    for watch in list(reactor.writers):
        reactor.removeWriter(watch)
        watch.connectionLost(Failure(ConnectionLost()))


def test_a_refused_connect_fails_at_once_as_refused(closed_port: int, clocks: Clocks) -> None:
    """A refused connect reported as a hang-up fails with ECONNREFUSED at once, not a timeout."""
    reactor = clocks.add(_ThreadlessReactor())
    results: list[Any] = []
    open_socket(reactor, "127.0.0.1", closed_port, 5).addBoth(results.append)
    if not results:
        _report_hangup(reactor)
    (failure,) = results
    assert failure.check(ConnectionRefusedError), failure
    assert not reactor.writers and not reactor.getDelayedCalls()


def test_a_refused_broker_is_retried_every_reconnect_min(closed_port: int, clocks: Clocks) -> None:
    """Refused connects are logged as refused and retried every reconnect_min, without backoff."""
    config = parse(
        "[listener:ws]\nendpoint = tcp:0\n"
        f"[mqtt]\nbroker = mqtt://127.0.0.1:{closed_port}\nreconnect_min = 0.5\n"
    )
    reactor = clocks.add(_ThreadlessReactor())
    logged: list[str] = []
    observer = lambda event: logged.append(formatEvent(event))  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        client = MQTTClient(config.mqtt, reactor, driver=FastDriver)
        client.start()
        for _ in range(4):
            _report_hangup(reactor)
            retry = client._retry_call
            assert retry is not None and retry.getTime() - reactor.seconds() == 0.5
            reactor.advance(0.5)
        client.stop()
    finally:
        globalLogPublisher.removeObserver(observer)
    refusals = [line for line in logged if "unreachable" in line or "refused" in line]
    assert len(refusals) == 4 and all("refused" in line for line in refusals), refusals
    assert not any("timeout" in line.lower() for line in refusals)
    assert not reactor.writers and not reactor.readers
