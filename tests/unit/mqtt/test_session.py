"""The broker keeps the gateway's MQTT session across restarts (#18, paths 8 and 14)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from ocppgw.config import parse
from ocppgw.mqtt.client import MQTTClient


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s


def _first_connect(listener: socket.socket, extra: str) -> bytes:
    """The CONNECT packet a new MQTTClient sends first, as the broker receives it."""
    port = listener.getsockname()[1]
    config = parse(
        f"[listener:ws]\nendpoint = tcp:0\n[mqtt]\nbroker = mqtt://127.0.0.1:{port}\n{extra}"
    )
    reactor: Any = MemoryReactorClock()
    client = MQTTClient(config.mqtt, reactor)
    client.start()
    for _ in range(3):  # the connect's watch, then paho's socket
        for writer in list(reactor.writers):
            writer.doWrite()
    accepted, _ = listener.accept()
    accepted.settimeout(2)
    try:
        return accepted.recv(4096)
    finally:
        accepted.close()
        client.stop()


def _flags_and_properties(packet: bytes) -> tuple[int, int, bytes]:
    """Protocol level, connect flags and (MQTT 5) the raw properties of a CONNECT."""
    assert packet[0] == 0x10
    pos = 1
    while packet[pos] & 0x80:
        pos += 1
    pos += 1
    name = int.from_bytes(packet[pos : pos + 2], "big")
    pos += 2 + name
    level, flags = packet[pos], packet[pos + 1]
    pos += 4  # level, flags, keepalive
    if level != 5:
        return level, flags, b""
    length = packet[pos]  # one byte: the gateway's properties are short
    return level, flags, packet[pos + 1 : pos + 1 + length]


def test_the_first_connect_resumes_the_session_mqtt5(listener: socket.socket) -> None:
    """MQTT 5: the first connect asks for the kept session (clean start 0), with its expiry."""
    level, flags, properties = _flags_and_properties(
        _first_connect(listener, "session_expiry = 300\n")
    )
    assert level == 5
    assert not flags & 0x02, "clean start set on the first connect"
    assert b"\x11" + (300).to_bytes(4, "big") in properties


def test_the_first_connect_resumes_the_session_mqtt311(listener: socket.socket) -> None:
    """MQTT 3.1.1: the gateway connects with clean session 0, so the broker keeps its session."""
    level, flags, _ = _flags_and_properties(_first_connect(listener, "protocol = 3.1.1\n"))
    assert level == 4
    assert not flags & 0x02, "clean session set"


def test_no_session_expiry_starts_clean(listener: socket.socket) -> None:
    """session_expiry = 0 keeps no session: every connect starts clean (the catch-all's)."""
    _, flags, _ = _flags_and_properties(_first_connect(listener, "session_expiry = 0\n"))
    assert flags & 0x02


def _pump(reactor: Any) -> None:
    """Let the client write what it queued and read what arrived (the reactor's turn)."""
    for _ in range(3):
        for writer in list(reactor.writers):
            writer.doWrite()
        for reader in list(reactor.readers):
            reader.doRead()


def _accept_and_connack(listener: socket.socket, reactor: Any) -> socket.socket:
    """Accept the client's connection, read its CONNECT, and say "session present"."""
    _pump(reactor)
    accepted, _ = listener.accept()
    accepted.settimeout(2)
    assert accepted.recv(4096)[0] == 0x10
    accepted.sendall(b"\x20\x03\x01\x00\x00")  # MQTT 5 CONNACK: session present, success
    _pump(reactor)
    return accepted


def _connected(listener: socket.socket) -> tuple[MQTTClient, Any, socket.socket]:
    """A started client, its connection accepted and acknowledged by ``listener``."""
    port = listener.getsockname()[1]
    config = parse(f"[listener:ws]\nendpoint = tcp:0\n[mqtt]\nbroker = mqtt://127.0.0.1:{port}\n")
    reactor: Any = MemoryReactorClock()
    client = MQTTClient(config.mqtt, reactor)
    client.start()
    return client, reactor, _accept_and_connack(listener, reactor)


def test_a_filter_dropped_while_disconnected_is_unsubscribed_on_resume(
    listener: socket.socket,
) -> None:
    """A filter unsubscribed while the broker was away is unsubscribed from the resumed session."""
    port = listener.getsockname()[1]
    config = parse(
        f"[listener:ws]\nendpoint = tcp:0\n[mqtt]\nbroker = mqtt://127.0.0.1:{port}\n"
        "reconnect_min = 1\n"
    )
    reactor: Any = MemoryReactorClock()
    client = MQTTClient(config.mqtt, reactor)
    client.subscribe("ocpp/cs/CP1/+/+", 1)
    client.start()
    first = _accept_and_connack(listener, reactor)
    assert client.connected
    assert b"ocpp/cs/CP1/+/+" in first.recv(4096)  # the SUBSCRIBE
    first.close()
    _pump(reactor)
    assert not client.connected
    client.unsubscribe("ocpp/cs/CP1/+/+")
    reactor.advance(1.0)
    second = _accept_and_connack(listener, reactor)
    try:
        sent = second.recv(4096)
        assert sent[0] == 0xA2 and b"ocpp/cs/CP1/+/+" in sent, sent  # UNSUBSCRIBE
    finally:
        second.close()
        client.stop()


def test_a_filter_only_the_resumed_session_has_can_be_unsubscribed(
    listener: socket.socket,
) -> None:
    """unsubscribe() of a filter this process never subscribed (a previous run's) still sends it."""
    client, reactor, accepted = _connected(listener)
    try:
        client.unsubscribe("ocpp/cs/OLD/+/+")
        _pump(reactor)
        sent = accepted.recv(4096)
        assert sent[0] == 0xA2 and b"ocpp/cs/OLD/+/+" in sent, sent
    finally:
        accepted.close()
        client.stop()


def test_stop_sends_its_disconnect_after_a_backlog(listener: socket.socket) -> None:
    """
    stop() with more queued than the socket takes at once: the DISCONNECT
    still reaches the broker, after the backlog (else the broker publishes
    the gateway's last will on top of its goodbye), and stop() fires then.
    """
    client, reactor, accepted = _connected(listener)
    try:
        chunk = b"x" * 65536
        published = [client.publish("ocpp/backlog", chunk, 0) for _ in range(256)]
        # 16 MiB: more than loopback's socket buffers hold at once.
        _pump(reactor)
        stopped = client.stop()
        received = bytearray()
        fired = []
        stopped.addCallback(fired.append)
        accepted.settimeout(0.2)
        while True:
            try:
                data = accepted.recv(1 << 20)
            except TimeoutError:
                data = None
            if data == b"":
                break
            if data:
                received += data
            _pump(reactor)
            reactor.advance(0)
        assert fired, "stop() did not fire once the DISCONNECT was written"
        assert len(received) > 256 * 65536, "the backlog was not sent"
        assert bytes(received[-2:]) == b"\xe0\x00", bytes(received[-8:])
        done = []
        for d in published:
            d.addBoth(done.append)
        assert done == [None] * 256, "a QoS 0 message written before the DISCONNECT failed"
    finally:
        accepted.close()
        client.stop()
