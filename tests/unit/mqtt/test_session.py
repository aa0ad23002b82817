"""
The broker keeps the gateway's MQTT session across restarts (#18, paths 8
and 14); on both paths (paho's public API, and the speed-up).
"""

from __future__ import annotations

import socket

import pytest

from tests.clocks import Clocks
from tests.unit.mqtt.reactors import (
    DRIVERS,
    ThreadedReactor,
    accept,
    connack,
    make_client,
    pump,
    stop,
)

pytestmark = pytest.mark.parametrize("kind", DRIVERS)


def _first_connect(clocks: Clocks, listener: socket.socket, extra: str, kind: str) -> bytes:
    """The CONNECT packet a new MQTTClient sends first, as the broker receives it."""
    reactor, client = make_client(clocks, kind, listener.getsockname()[1], extra)
    client.start()
    pump(reactor)  # the connect (its watch, or its thread), then paho's socket
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


def test_the_first_connect_resumes_the_session_mqtt5(
    listener: socket.socket, kind: str, clocks: Clocks
) -> None:
    """MQTT 5: the first connect asks for the kept session (clean start 0), with its expiry."""
    level, flags, properties = _flags_and_properties(
        _first_connect(clocks, listener, "session_expiry = 300\n", kind)
    )
    assert level == 5
    assert not flags & 0x02, "clean start set on the first connect"
    assert b"\x11" + (300).to_bytes(4, "big") in properties


def test_the_first_connect_resumes_the_session_mqtt311(
    listener: socket.socket, kind: str, clocks: Clocks
) -> None:
    """MQTT 3.1.1: the gateway connects with clean session 0, so the broker keeps its session."""
    connect = _first_connect(clocks, listener, "protocol = 3.1.1\n", kind)
    level, flags, _ = _flags_and_properties(connect)
    assert level == 4
    assert not flags & 0x02, "clean session set"


def test_no_session_expiry_starts_clean(listener: socket.socket, kind: str, clocks: Clocks) -> None:
    """session_expiry = 0 keeps no session: every connect starts clean (the catch-all's)."""
    connect = _first_connect(clocks, listener, "session_expiry = 0\n", kind)
    _, flags, _ = _flags_and_properties(connect)
    assert flags & 0x02


def _accept_and_connack(listener: socket.socket, reactor: ThreadedReactor) -> socket.socket:
    """Accept the client's connection, read its CONNECT, and say "session present"."""
    accepted = accept(listener, reactor)
    connack(accepted, reactor)  # MQTT 5 CONNACK: session present, success
    return accepted


def test_a_filter_dropped_while_disconnected_is_unsubscribed_on_resume(
    listener: socket.socket, kind: str, clocks: Clocks
) -> None:
    """A filter unsubscribed while the broker was away is unsubscribed from the resumed session."""
    reactor, client = make_client(clocks, kind, listener.getsockname()[1], "reconnect_min = 1\n")
    client.subscribe("ocpp/cs/CP1/+/+", 1)
    client.start()
    first = _accept_and_connack(listener, reactor)
    assert client.connected
    assert b"ocpp/cs/CP1/+/+" in first.recv(4096)  # the SUBSCRIBE
    first.close()
    pump(reactor)
    assert not client.connected
    client.unsubscribe("ocpp/cs/CP1/+/+")
    reactor.advance(1.0)
    second = _accept_and_connack(listener, reactor)
    try:
        sent = second.recv(4096)
        assert sent[0] == 0xA2 and b"ocpp/cs/CP1/+/+" in sent, sent  # UNSUBSCRIBE
    finally:
        second.close()
        stop(client, reactor)


def test_a_filter_only_the_resumed_session_has_can_be_unsubscribed(
    listener: socket.socket, kind: str, clocks: Clocks
) -> None:
    """unsubscribe() of a filter this process never subscribed (a previous run's) still sends it."""
    reactor, client = make_client(clocks, kind, listener.getsockname()[1])
    client.start()
    accepted = _accept_and_connack(listener, reactor)
    try:
        client.unsubscribe("ocpp/cs/OLD/+/+")
        pump(reactor)
        sent = accepted.recv(4096)
        assert sent[0] == 0xA2 and b"ocpp/cs/OLD/+/+" in sent, sent
    finally:
        accepted.close()
        stop(client, reactor)


def test_stop_sends_its_disconnect_after_a_backlog(
    listener: socket.socket, kind: str, clocks: Clocks
) -> None:
    """
    stop() with more queued than the socket takes at once: the DISCONNECT
    still reaches the broker, after the backlog (else the broker publishes
    the gateway's last will on top of its goodbye), and stop() fires then.
    """
    reactor, client = make_client(clocks, kind, listener.getsockname()[1])
    client.start()
    accepted = _accept_and_connack(listener, reactor)
    try:
        chunk = b"x" * 65536
        published = [client.publish("ocpp/backlog", chunk, 0) for _ in range(256)]
        # 16 MiB: more than loopback's socket buffers hold at once.
        pump(reactor)
        stopped = client.stop()
        received = bytearray()
        fired: list[object] = []
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
            pump(reactor)
            reactor.advance(0)
        assert fired, "stop() did not fire once the DISCONNECT was written"
        assert len(received) > 256 * 65536, "the backlog was not sent"
        assert bytes(received[-2:]) == b"\xe0\x00", bytes(received[-8:])
        done: list[object] = []
        for d in published:
            d.addBoth(done.append)
        assert done == [None] * 256, "a QoS 0 message written before the DISCONNECT failed"
    finally:
        accepted.close()
        client.stop()
