"""
The MQTT client against a broker's socket: connecting without blocking the
reactor, publishing, resending, reconnecting, stopping.  Most run on both
paths (paho's public API, ocppgw.mqtt.driver, and the speed-up); those about
the public driver's thread and reads run on it alone (the speed-up's are in
tests/unit/mqtt/speedup/).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from paho.mqtt.enums import MQTTErrorCode
from twisted.logger import formatEvent, globalLogPublisher

from ocppgw.mqtt.driver import Driver
from tests.clocks import Clocks
from tests.unit.mqtt.reactors import (
    DRIVERS,
    ThreadedReactor,
    accept,
    connack,
    make_client,
    online,
    packets,
    pump,
    read_packet,
    stop,
)


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """The log lines emitted during the test."""
    lines: list[str] = []

    def observer(event: Any) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def _held(reactor: ThreadedReactor, client: Any) -> threading.Event:
    """Hold the public driver's reconnect() in its thread until the returned event is set."""
    release = threading.Event()
    driver = client._driver
    real = driver.paho.reconnect

    def reconnect() -> Any:
        assert threading.get_ident() != reactor.thread, "reconnect() on the reactor thread"
        release.wait(10)
        return real()

    driver.paho.reconnect = reconnect
    return release


# --- the public driver's connect ---


def test_the_connect_runs_in_a_thread_and_its_callbacks_on_the_reactor(
    listener: socket.socket,
    clocks: Clocks,
) -> None:
    """
    paho's blocking reconnect() runs in the reactor's thread pool; the socket
    it opens is watched, and CONNECT written, by the reactor thread once it
    returned (the reactor fails the test if it is used from that thread).
    """
    reactor, client = make_client(clocks, "public", listener.getsockname()[1])
    release = _held(reactor, client)
    client.start()
    assert reactor.running_threads() == 1
    assert not reactor.readers and not reactor.writers
    assert not client._driver._misc.running  # loop_misc paused meanwhile
    release.set()
    reactor.settle()
    assert reactor.pool.ran_in and reactor.pool.ran_in[0] != reactor.thread
    assert [r.sock for r in reactor.readers] == [client._driver.paho.socket()]
    assert client._driver._misc.running
    accepted = accept(listener, reactor)
    client.stop()
    accepted.close()


def test_publishes_made_while_connecting_wait_and_go_after_the_connack(
    listener: socket.socket,
    clocks: Clocks,
) -> None:
    """
    While reconnect() runs in its thread, the reactor thread does not touch
    paho: a publish waits in the client's window, and goes once connected.
    """
    reactor, client = make_client(clocks, "public", listener.getsockname()[1])
    release = _held(reactor, client)
    touched: list[int] = []
    real = client._driver.paho.publish

    def publish(*args: Any, **kwargs: Any) -> Any:
        touched.append(threading.get_ident())
        return real(*args, **kwargs)

    client._driver.paho.publish = publish
    client.start()
    done: list[object] = []
    client.publish("up/1", b"during", qos=1).addBoth(done.append)
    assert touched == [] and client.buffered() == 1
    release.set()
    accepted = accept(listener, reactor)
    connack(accepted, reactor)
    (sent,) = packets(accepted)
    assert sent[0] == 0x32 and sent.endswith(b"during")
    accepted.sendall(b"\x40\x02" + sent[8:10])  # PUBACK (topic "up/1": id after 2 + 4 bytes)
    pump(reactor)
    assert done == [None] and set(touched) == {reactor.thread}
    stop(client, reactor)
    accepted.close()


def test_a_refused_broker_is_retried_every_reconnect_min(
    closed_port: int, logged: list[str], clocks: Clocks
) -> None:
    """Refused connects are logged as refused and retried every reconnect_min, without backoff."""
    reactor, client = make_client(clocks, "public", closed_port, "reconnect_min = 0.5\n")
    client.start()
    for _ in range(4):
        reactor.settle()
        retry = client._retry_call
        assert retry is not None and retry.getTime() - reactor.seconds() == 0.5
        reactor.advance(0.5)
    reactor.settle()
    client.stop()
    refusals = [line for line in logged if "unreachable" in line or "refused" in line]
    assert len(refusals) == 5 and all("refused" in line for line in refusals), refusals
    assert not reactor.readers and not reactor.writers


def test_a_black_hole_never_blocks_the_reactor(
    black_hole: int, logged: list[str], clocks: Clocks
) -> None:
    """start() returns at once; the connect times out in its thread; a retry is scheduled."""
    reactor, client = make_client(clocks, "public", black_hole, "reconnect_min = 1\n")
    client._driver.paho.connect_timeout = 0.5
    began = time.monotonic()
    client.start()
    assert time.monotonic() - began < 0.3 and reactor.running_threads() == 1
    reactor.settle()
    assert any("unreachable" in line for line in logged), logged
    assert client._retry_call is not None and client._retry_call.active()
    client.stop()
    assert not reactor.writers and not reactor.readers


def test_stopping_while_connecting_closes_the_socket_when_the_thread_returns(
    listener: socket.socket,
    clocks: Clocks,
) -> None:
    """stop() during reconnect() leaves paho alone; the socket it opened is closed after."""
    reactor, client = make_client(clocks, "public", listener.getsockname()[1])
    release = _held(reactor, client)
    client.start()
    client.stop()
    release.set()
    reactor.settle()
    assert not reactor.readers and not reactor.writers
    accepted, _ = listener.accept()
    accepted.settimeout(2)
    assert accepted.recv(4096) == b""  # closed before CONNECT was written
    accepted.close()
    assert client._retry_call is None and not client.connected


class _TLSLike:
    """
    A socket the kernel has nothing more for, whose TLS layer holds ``held``
    more decrypted reads.
    """

    def __init__(self, held: int, sock: socket.socket) -> None:
        self.held = held
        self._sock = sock

    def pending(self) -> int:
        return self.held

    def fileno(self) -> int:
        return self._sock.fileno()


def test_reading_goes_on_while_tls_holds_decrypted_bytes(
    listener: socket.socket, clocks: Clocks
) -> None:
    """After loop_read, a TLS socket's pending() bytes are read in the same turn."""
    _, client = make_client(clocks, "public", listener.getsockname()[1])
    driver: Driver = client._driver
    quiet, other = socket.socketpair()
    sock = _TLSLike(3, quiet)
    reads: list[int] = []

    class Paho:
        def socket(self) -> Any:
            return sock

        def loop_read(self) -> MQTTErrorCode:
            reads.append(sock.held)
            sock.held = max(0, sock.held - 1)
            return MQTTErrorCode.MQTT_ERR_SUCCESS

    driver.paho = Paho()  # type: ignore[assignment]
    driver.read()
    assert reads == [3, 2, 1] and sock.held == 0  # the first read was the kernel's signal
    quiet.close()
    other.close()


def test_every_packet_that_arrived_is_handled_in_one_turn(
    listener: socket.socket, clocks: Clocks
) -> None:
    """paho's loop_read handles a packet or a few; the driver reads on while the socket has more."""
    reactor, client = make_client(clocks, "public", listener.getsockname()[1])
    received: list[str] = []
    client.set_message_handler(lambda t, p, i: received.append(t))
    accepted = online(client, reactor, listener)
    body = b"\x00\x03t/%d\x00x"  # MQTT 5 QoS 0 PUBLISH: topic, no properties, payload
    accepted.sendall(b"".join(b"\x30\x07" + body % (n % 10) for n in range(200)))
    time.sleep(0.1)
    (reader,) = reactor.readers
    reader.doRead()
    assert len(received) == 200
    stop(client, reactor)
    accepted.close()


# --- on both paths ---


@pytest.mark.parametrize("kind", DRIVERS)
def test_unacknowledged_publishes_go_again_after_a_reconnect(
    listener: socket.socket, kind: str, clocks: Clocks
) -> None:
    """A QoS 1 publish not acknowledged when the connection broke is sent again, DUP, same id."""
    reactor, client = make_client(clocks, kind, listener.getsockname()[1], "reconnect_min = 1\n")
    first = online(client, reactor, listener)
    done: list[object] = []
    client.publish("up/1", b"x", qos=1).addBoth(done.append)
    pump(reactor)
    (sent,) = packets(first)
    assert sent[0] == 0x32
    first.close()
    pump(reactor)
    assert not client.connected and done == [] and client.unacknowledged() == 1
    reactor.advance(1.0)
    second = accept(listener, reactor)
    connack(second, reactor)
    (again,) = packets(second)
    assert again[0] == 0x3A and again[1:] == sent[1:]  # DUP, same packet id, same message
    second.sendall(b"\x40\x02" + again[8:10])
    pump(reactor)
    assert done == [None] and client.unacknowledged() == 0
    stop(client, reactor)
    second.close()


@pytest.mark.parametrize("kind", DRIVERS)
def test_receive_maximum_bounds_what_is_in_flight(
    listener: socket.socket, kind: str, clocks: Clocks
) -> None:
    """A CONNACK's Receive Maximum of 1 (MQTT 5.0 §3.3.4): one PUBLISH at a time."""
    reactor, client = make_client(clocks, kind, listener.getsockname()[1])
    accepted = online(client, reactor, listener, b"\x21\x00\x01")  # Receive Maximum 1
    for n in range(3):
        client.publish("up/1", bytes([n]), qos=1)
    pump(reactor)
    seen: list[bytes] = []
    for _ in range(3):
        (sent,) = packets(accepted)
        seen.append(sent[-1:])
        accepted.sendall(b"\x40\x02" + sent[8:10])
        pump(reactor)
    assert seen == [b"\x00", b"\x01", b"\x02"] and client.unacknowledged() == 0
    stop(client, reactor)
    accepted.close()


@pytest.mark.parametrize("kind", DRIVERS)
def test_a_failure_while_reading_drops_and_reconnects(
    listener: socket.socket, kind: str, clocks: Clocks
) -> None:
    """
    An exception while a packet is handled (here in on_connected) ends the
    connection at once, without DISCONNECT, and the client connects again.
    """
    reactor, client = make_client(clocks, kind, listener.getsockname()[1], "reconnect_min = 1\n")
    calls: list[int] = []

    def on_connected() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")

    client.on_connected = on_connected
    first = online(client, reactor, listener)
    assert not client.connected
    assert first.recv(4096) == b""  # ended, no DISCONNECT packet
    assert client._retry_call is not None
    reactor.advance(1.0)
    second = accept(listener, reactor)
    connack(second, reactor)
    assert client.connected and len(calls) == 2
    stop(client, reactor)
    first.close()
    second.close()


@pytest.mark.parametrize("kind", DRIVERS)
def test_stop_sends_disconnect_and_closes(
    listener: socket.socket, kind: str, clocks: Clocks
) -> None:
    """stop() sends DISCONNECT, closes the socket, and leaves the reactor nothing to watch."""
    reactor, client = make_client(clocks, kind, listener.getsockname()[1])
    accepted = online(client, reactor, listener)
    packets(accepted)
    stop(client, reactor)
    assert read_packet(accepted)[0] == 0xE0
    assert accepted.recv(16) == b""
    assert not reactor.readers and not reactor.writers
    accepted.close()


@pytest.mark.parametrize("kind", DRIVERS)
def test_qos0_is_done_once_written(listener: socket.socket, kind: str, clocks: Clocks) -> None:
    """A QoS 0 publish fires once paho wrote it."""
    reactor, client = make_client(clocks, kind, listener.getsockname()[1])
    accepted = online(client, reactor, listener)
    done: list[object] = []
    client.publish("up/0", b"zero", qos=0).addBoth(done.append)
    pump(reactor)
    (sent,) = packets(accepted)
    assert sent[0] == 0x30 and sent.endswith(b"zero") and done == [None]
    stop(client, reactor)
    accepted.close()


@pytest.mark.parametrize("kind", DRIVERS)
@pytest.mark.parametrize("qos", [0, 1])
def test_a_message_reaches_the_handler_with_its_subscription_identifiers(
    listener: socket.socket, kind: str, qos: int, clocks: Clocks
) -> None:
    """A PUBLISH from the broker reaches the handler with its subscription ids; QoS 1 is acked."""
    reactor, client = make_client(clocks, kind, listener.getsockname()[1])
    received: list[tuple[str, bytes, tuple[int, ...]]] = []
    client.set_message_handler(lambda t, p, i: received.append((t, p, i)))
    client.subscribe("down/+", 1, identifier=300)
    accepted = online(client, reactor, listener)
    (subscribe,) = packets(accepted)
    assert subscribe[0] == 0x82 and b"\x0b\xac\x02" in subscribe  # identifier 300, a varint
    topic = b"down/a"
    mid = b"\x00\x09" if qos else b""
    body = len(topic).to_bytes(2, "big") + topic + mid + b"\x03\x0b\xac\x02" + b"hello"
    accepted.sendall(bytes((0x30 | qos << 1, len(body))) + body)
    pump(reactor)
    assert received == [("down/a", b"hello", (300,))]
    if qos:
        assert packets(accepted) == [b"\x40\x02\x00\x09"]  # its PUBACK
    stop(client, reactor)
    accepted.close()


def test_the_public_path_touches_no_private_name_of_paho(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch, clocks: Clocks
) -> None:
    """
    With OCPPGW_SPEEDUPS=off the client is built on the public driver, and a
    whole run (connect, subscribe, publish at each QoS, a message in, a
    reconnect, stop) reads or sets no private name of paho's Client from
    outside paho.
    """
    import sys

    import paho.mqtt.client as paho

    from ocppgw import speedups
    from ocppgw.config import parse
    from ocppgw.mqtt.client import MQTTClient

    monkeypatch.setenv("OCPPGW_SPEEDUPS", "off")
    monkeypatch.setattr(speedups, "_checked", {})
    touched: list[tuple[str, str]] = []

    def outside(client: Any, name: str) -> None:
        # Only plain paho clients: a speed-up client another test left may be
        # collected meanwhile, running its own (private) __del__.
        caller = sys._getframe(2).f_code.co_filename
        if (
            type(client) is paho.Client
            and name.startswith("_")
            and not name.startswith("__")
            and "/paho/" not in caller
        ):
            touched.append((name, caller))

    def getattribute(self: Any, name: str) -> Any:
        outside(self, name)
        return object.__getattribute__(self, name)

    def setattr_(self: Any, name: str, value: Any) -> None:
        outside(self, name)
        object.__setattr__(self, name, value)

    monkeypatch.setattr(paho.Client, "__getattribute__", getattribute)
    monkeypatch.setattr(paho.Client, "__setattr__", setattr_)
    port = listener.getsockname()[1]
    config = parse(
        f"[listener:ws]\nendpoint = tcp:0\n[mqtt]\nbroker = mqtt://127.0.0.1:{port}\n"
        "reconnect_min = 1\n"
    )
    reactor = clocks.add(ThreadedReactor())
    client = MQTTClient(config.mqtt, reactor, will=("will/t", b"gone"))
    assert type(client._driver) is Driver and type(client._driver.paho) is paho.Client
    client.set_message_handler(lambda t, p, i: None)
    client.subscribe("down/+", 1, identifier=3)
    first = online(client, reactor, listener)
    for qos in (0, 1, 2):
        client.publish("up/x", b"p", qos=qos)
    pump(reactor)
    body = b"\x00\x06down/a\x00\x05\x02\x0b\x03hi"
    first.sendall(bytes((0x32, len(body))) + body)
    pump(reactor)
    first.close()
    pump(reactor)
    reactor.advance(1.0)
    second = accept(listener, reactor)
    connack(second, reactor)
    client.buffered(), client.unacknowledged()
    stop(client, reactor)
    second.close()
    assert touched == []


def test_started_again_while_the_connect_of_before_runs(
    listener: socket.socket, clocks: Clocks
) -> None:
    """stop() then start() during reconnect(): one connect, whose socket the client keeps."""
    reactor, client = make_client(clocks, "public", listener.getsockname()[1])
    release = _held(reactor, client)
    client.start()
    client.stop()
    client.start()
    assert reactor.running_threads() == 1 and len(reactor.pool.threads) == 1
    release.set()
    accepted = accept(listener, reactor)
    connack(accepted, reactor)
    assert client.connected
    stop(client, reactor)
    accepted.close()
