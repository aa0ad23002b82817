"""The MQTT client's read path: large reads, every whole packet handled in one turn."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ocppgw.mqtt.client import _Client


def publish(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 QoS 0 PUBLISH packet (MQTT 3.1.1 §3.3)."""
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    length = len(body)
    encoded = b""
    while True:
        byte, length = length % 128, length // 128
        encoded += bytes([byte | (128 if length else 0)])
        if not length:
            break
    return b"\x30" + encoded + body


class CountingSocket:
    """A real socket that counts its ``recv`` calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.recvs = 0

    def recv(self, size: int) -> bytes:
        self.recvs += 1
        return self.sock.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


@pytest.fixture
def wired() -> Iterator[tuple[_Client, CountingSocket, socket.socket, list[Any]]]:
    """A paho client whose socket is one end of a socketpair; the test writes the other."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = _Client(CallbackAPIVersion.VERSION2, client_id="t", protocol=paho.MQTTv311)
    events: list[Any] = []
    client.on_message = lambda c, u, m: events.append((m.topic, bytes(m.payload)))
    client.on_disconnect = lambda c, u, f, r, p: events.append("disconnected")
    counting = CountingSocket(ours)
    client._sock = counting
    client._state = paho._ConnectionState.MQTT_CS_CONNECTED
    yield client, counting, theirs, events
    theirs.close()
    ours.close()


def test_every_packet_of_one_read_is_handled(wired: Any) -> None:
    """Fifty PUBLISHes that arrived together are handled in one call, with one or two recv."""
    client, counting, theirs, events = wired
    theirs.sendall(b"".join(publish(f"t/{i}", b"x" * i) for i in range(50)))
    client.read_available()
    assert events == [(f"t/{i}", b"x" * i) for i in range(50)]
    assert counting.recvs <= 2


def test_packet_split_across_reads(wired: Any) -> None:
    """A packet cut inside its remaining-length bytes is handled once the rest arrives."""
    client, _, theirs, events = wired
    packet = publish("big", b"y" * 300)  # two remaining-length bytes
    theirs.sendall(publish("a", b"1") + packet[:2])
    client.read_available()
    assert events == [("a", b"1")]
    theirs.sendall(packet[2:])
    client.read_available()
    assert events == [("a", b"1"), ("big", b"y" * 300)]


def test_packets_before_eof_are_handled(wired: Any) -> None:
    """Packets that arrived before the broker closed are handled, then the loss is reported."""
    client, _, theirs, events = wired
    theirs.sendall(publish("last", b"z"))
    theirs.shutdown(socket.SHUT_WR)
    # The socket stays readable at EOF, so the reactor calls again until it is seen.
    for _ in range(2):
        client.read_available()
    assert events == [("last", b"z"), "disconnected"]


def test_close_forgets_buffered_bytes(wired: Any) -> None:
    """A half-read packet does not survive the socket: a reconnect starts clean."""
    client, _, theirs, _ = wired
    theirs.sendall(publish("p", b"q" * 10)[:5])
    client.read_available()
    client._sock_close()
    assert client._rbuf == b""
    assert client._rpos == 0
