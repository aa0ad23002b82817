"""
A memory reactor with the thread pool and ``callFromThread`` of a real one,
the MQTT drivers to run a test with, and a broker's side of a socket.

Like a real reactor, :class:`ThreadedReactor` runs pool work in another
thread, and what that thread hands back with ``callFromThread`` waits until
the reactor thread gets to it (:meth:`ThreadedReactor.settle`); like a real
reactor, it is not thread-safe: watching a descriptor or scheduling a call
from another thread fails the test.
"""

from __future__ import annotations

import functools
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from ocppgw.config import parse
from ocppgw.mqtt.client import MQTTClient
from ocppgw.mqtt.driver import Driver
from ocppgw.mqtt.speedup import fits
from tests.clocks import Clocks

#: A test that runs on both paths: paho's public API, and the speed-up (where it fits here).
DRIVERS = [
    pytest.param("public", id="public"),
    pytest.param(
        "speedup",
        id="speedup",
        marks=pytest.mark.skipif(not fits(), reason="paho lacks what the speed-up uses"),
    ),
]


def driver_class(kind: str) -> type[Driver]:
    """The driver for ``kind`` (``public`` or ``speedup``)."""
    if kind == "public":
        return Driver
    from ocppgw.mqtt.speedup.driver import FastDriver

    return FastDriver


class _Pool:
    """The reactor's thread pool: each piece of work in a thread of its own."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        #: The idents of the threads the work ran in.
        self.ran_in: list[int] = []

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, Any], None], func: Callable[..., Any], *a: Any, **kw: Any
    ) -> None:
        def work() -> None:
            self.ran_in.append(threading.get_ident())
            try:
                result = func(*a, **kw)
            except BaseException:
                onResult(False, Failure())
            else:
                onResult(True, result)

        thread = threading.Thread(target=work, daemon=True)
        self.threads.append(thread)
        thread.start()


def _reactor_thread_only(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method``, failing the test when called from another thread than the reactor's."""

    @functools.wraps(method)
    def checked(self: ThreadedReactor, *a: Any, **kw: Any) -> Any:
        assert threading.get_ident() == self.thread, f"{method.__name__} from another thread"
        return method(self, *a, **kw)

    return checked


class ThreadedReactor(MemoryReactorClock):
    """MemoryReactorClock with a thread pool and ``callFromThread``."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = _Pool()
        self._from_threads: queue.SimpleQueue[tuple[Callable[..., Any], Any, Any]] = (
            queue.SimpleQueue()
        )
        self.thread = threading.get_ident()

    def getThreadPool(self) -> _Pool:
        return self.pool

    def callFromThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        self._from_threads.put((f, a, kw))

    addReader = _reactor_thread_only(MemoryReactorClock.addReader)
    addWriter = _reactor_thread_only(MemoryReactorClock.addWriter)
    removeReader = _reactor_thread_only(MemoryReactorClock.removeReader)
    removeWriter = _reactor_thread_only(MemoryReactorClock.removeWriter)
    callLater = _reactor_thread_only(MemoryReactorClock.callLater)

    def running_threads(self) -> int:
        return sum(t.is_alive() for t in self.pool.threads)

    def settle(self, timeout: float = 10.0) -> None:
        """Let the pool's threads finish, then run what they handed back and what is due now."""
        for thread in self.pool.threads:
            thread.join(timeout)
        while True:
            try:
                f, a, kw = self._from_threads.get_nowait()
            except queue.Empty:
                break
            f(*a, **kw)
        self.advance(0)


def pump(reactor: ThreadedReactor, rounds: int = 3) -> None:
    """A few reactor turns: threads settled, then writers written and readers read."""
    for _ in range(rounds):
        reactor.settle()
        for writer in list(reactor.writers):
            writer.doWrite()
        for reader in list(reactor.readers):
            reader.doRead()
    reactor.settle()


def make_client(
    clocks: Clocks, kind: str, port: int, extra: str = "", will: tuple[str, bytes] | None = None
) -> tuple[ThreadedReactor, MQTTClient]:
    """
    An MQTTClient for a broker on 127.0.0.1:``port``, on the ``kind`` driver,
    on a reactor of its own that ``clocks`` checks after the test.
    """
    config = parse(
        f"[listener:ws]\nendpoint = tcp:0\n[mqtt]\nbroker = mqtt://127.0.0.1:{port}\n{extra}"
    )
    reactor = clocks.add(ThreadedReactor())
    return reactor, MQTTClient(config.mqtt, reactor, will=will, driver=driver_class(kind))


def stop(client: MQTTClient, reactor: ThreadedReactor) -> None:
    """Stop ``client`` as the gateway does: the reactor turns until its stop() is done."""
    done = client.stop()
    pump(reactor)
    assert done.called, "the client's stop() is not done after the reactor turned"


def accept(listener: socket.socket, reactor: ThreadedReactor) -> socket.socket:
    """The broker's end of the client's connection, its CONNECT read."""
    pump(reactor)
    accepted, _ = listener.accept()
    accepted.settimeout(2)
    packet = read_packet(accepted)
    assert packet[0] == 0x10, packet
    return accepted


def online(
    client: MQTTClient, reactor: ThreadedReactor, listener: socket.socket, properties: bytes = b""
) -> socket.socket:
    """Start ``client``: the broker's end of its connection, CONNECT read and CONNACK sent."""
    client.start()
    accepted = accept(listener, reactor)
    connack(accepted, reactor, properties)
    return accepted


def connack(accepted: socket.socket, reactor: ThreadedReactor, properties: bytes = b"") -> None:
    """The broker says "session present, accepted" (MQTT 5 with ``properties``)."""
    body = b"\x01\x00" + (bytes((len(properties),)) + properties if properties else b"\x00")
    accepted.sendall(bytes((0x20, len(body))) + body)
    pump(reactor)


def connack311(accepted: socket.socket, reactor: ThreadedReactor) -> None:
    """An MQTT 3.1.1 CONNACK: session present, accepted."""
    accepted.sendall(b"\x20\x02\x01\x00")
    pump(reactor)


def read_packet(sock: socket.socket) -> bytes:
    """One whole MQTT packet from ``sock``."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError(data)
            data += chunk
        return data

    head = exactly(1)
    size, shift, length = 0, 0, b""
    while True:
        byte = exactly(1)
        length += byte
        size |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    return head + length + exactly(size)


def packets(sock: socket.socket, timeout: float = 0.2) -> list[bytes]:
    """Every packet that arrives on ``sock`` until it is quiet for ``timeout``."""
    out = []
    sock.settimeout(timeout)
    try:
        while True:
            out.append(read_packet(sock))
    except (TimeoutError, EOFError):
        return out
    finally:
        sock.settimeout(2)
