"""
The speed-up paho_internals, its QoS 1 publish window
(ocppgw.mqtt.speedup.window): packets of its own, packet ids from paho's
counter, the in-flight limit, waiting, resending marked DUP, PUBACKs.  Run
only where the speed-up fits; what it shares with the public window is
tested on both in tests/unit/mqtt/test_window.py.
"""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from ocppgw.mqtt.speedup import fits
from ocppgw.mqtt.speedup.driver import FastDriver, PahoClient
from ocppgw.mqtt.speedup.window import PublishWindow, _length
from tests.clocks import Clocks
from tests.unit.mqtt.test_window import interrupted

pytestmark = pytest.mark.skipif(not fits(), reason="paho lacks what the speed-up uses")


class Wire:
    """paho's write queue as the window sees it: each packet queued, in order."""

    def __init__(self) -> None:
        self.packets: list[tuple[int, bytes, int, int]] = []
        self.mid = 0

    def queue(self, command: int, packet: bytes, mid: int, qos: int) -> None:
        self.packets.append((command, packet, mid, qos))

    def next_mid(self) -> int:
        self.mid = self.mid % 65535 + 1
        return self.mid

    def payloads(self) -> list[bytes]:
        """The payload of each queued packet, in order."""
        return [payload for _, payload, _, _, _ in self.decoded()]

    def mid_of(self, n: int) -> int:
        """The packet id of the ``n``-th queued packet."""
        return self.packets[n][2]

    def decoded(self, v5: bool = False) -> list[tuple[str, bytes, int, bool, bool]]:
        """(topic, payload, mid, dup, retain) of each queued packet, as paho's decoder reads it."""
        out = []
        for command, packet, mid, qos in self.packets:
            assert packet[0] == command and qos == 1
            body = packet[2:] if packet[1] < 128 else packet[3:]
            m = _decode(command, body, v5)
            assert m.mid == mid
            out.append((m.topic, m.payload, m.mid, bool(command & 0x08), m.retain))
        return out


def _decode(command: int, body: bytes, v5: bool) -> Any:
    """A PUBLISH decoded by paho's own reader."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5 if v5 else paho.MQTTv311)
    seen: list[Any] = []
    client.on_message = lambda c, u, m: seen.append(m)
    client._in_packet = {"command": command, "packet": bytearray(body)}
    client._handle_publish()
    (m,) = seen
    return m


def window(limit: int = 10, buffer: int = 100, v5: bool = False) -> tuple[PublishWindow, Wire]:
    wire = Wire()
    return PublishWindow(wire.queue, wire.next_mid, limit, buffer, v5), wire


@pytest.mark.parametrize("v5", [False, True])
def test_packets_are_what_paho_reads(v5: bool) -> None:
    """Each queued packet decodes (paho's reader) to its topic, payload, id and retain flag."""
    w, wire = window(v5=v5)
    w.opened()
    w.publish("a/b", b"x" * 200, 1, False)
    w.publish("é/c", b"", 1, True)
    assert wire.decoded(v5) == [
        ("a/b", b"x" * 200, 1, False, False),
        ("é/c", b"", 2, False, True),
    ]


def test_unacknowledged_ones_go_again_first_marked_dup() -> None:
    """After a reconnect, every unacknowledged publish is sent again with DUP, before newer ones."""
    w, wire = window(limit=2)
    interrupted(w)
    del wire.packets[:]
    w.opened()
    assert [(p, dup) for _, p, _, dup, _ in wire.decoded()] == [(b"1", True), (b"2", True)]
    w.acknowledged(wire.packets[0][2])
    w.acknowledged(wire.packets[1][2])
    assert [(p, dup) for _, p, _, dup, _ in wire.decoded()][2:] == [(b"3", False), (b"4", False)]


def test_ids_in_use_are_skipped_when_the_counter_wraps() -> None:
    """A packet id still unacknowledged is not given to another publish."""
    w, wire = window(limit=3)
    w.opened()
    w.publish("t", b"1", 1, False)
    wire.mid = 65535  # the counter comes round to 1, still in flight
    w.publish("t", b"2", 1, False)
    assert [mid for _, _, mid, _ in wire.packets] == [1, 2]


def _client(v5: bool) -> tuple[PahoClient, PublishWindow, socket.socket, socket.socket]:
    """A connected PahoClient on a socketpair, with its window (as MQTTClient wires them)."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    protocol = paho.MQTTv5 if v5 else paho.MQTTv311
    client = PahoClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol)
    client._sock = ours
    client._state = paho._ConnectionState.MQTT_CS_CONNECTED
    w = PublishWindow(client._packet_queue, client._mid_generate, 10, 100, v5)
    client.window = w
    w.opened()
    return client, w, ours, theirs


@pytest.mark.parametrize(
    ("v5", "ack", "split", "expected"),
    [
        (False, b"", False, "ok"),
        (True, b"\x00", False, "ok"),
        (True, b"\x10\x00", False, "ok"),  # 0x10 No matching subscribers: accepted
        (False, b"", True, "ok"),  # arrives in two reads: paho's own read path
        (True, b"\x87\x00", False, "broker refused the message: Not authorized"),
        (True, b"\x97", True, "broker refused the message: Quota exceeded"),
    ],
)
def test_the_brokers_puback_reaches_the_window(
    v5: bool, ack: bytes, split: bool, expected: str
) -> None:
    """A PUBACK read from the socket settles the window's publish, by its reason code."""
    client, w, ours, theirs = _client(v5)
    outcome: list[str] = []
    d = w.publish("up", b"x", 1, False)
    d.addCallbacks(lambda _: outcome.append("ok"), lambda f: outcome.append(str(f.value)))
    client.loop_write()
    sent = theirs.recv(64)
    assert sent[0] == 0x32
    mid = int.from_bytes(sent[6:8], "big")  # after the fixed header and the topic "up"
    packet = bytes((0x40, 2 + len(ack))) + mid.to_bytes(2, "big") + ack
    if split:
        theirs.sendall(packet[:1])
        client.read_available()
        assert outcome == []
        packet = packet[1:]
    theirs.sendall(packet)
    client.read_available()
    assert outcome == [expected] and w.unacknowledged() == 0
    ours.close()
    theirs.close()


_PAHO = paho.Client(CallbackAPIVersion.VERSION2)


@given(st.integers(0, 268435455))
def test_remaining_length_is_the_varint_paho_writes(size: int) -> None:
    """_length encodes every remaining length as paho does (MQTT 3.1.1 §2.2.3)."""
    ours = _length(size)
    theirs = bytearray()
    _PAHO._pack_remaining_length(theirs, size)
    assert ours == bytes(theirs)


def test_the_window_and_paho_share_one_counter_of_packet_ids(clocks: Clocks) -> None:
    """The window's packet ids and paho's (SUBSCRIBE...) come from one counter, wrapping to 1."""
    from ocppgw.config import parse
    from ocppgw.mqtt.client import MQTTClient

    config = parse("[listener:ws]\nendpoint = tcp:0\n[mqtt]\nbroker = mqtt://127.0.0.1:1\n").mqtt
    client = MQTTClient(config, clocks.new(), driver=FastDriver)
    paho_next = client._client._mid_generate
    ours = client._qos1._next_mid  # type: ignore[union-attr]
    assert [paho_next(), ours(), paho_next(), ours()] == [1, 2, 3, 4]
    client._client._last_mid = 65534
    assert [ours(), paho_next(), ours()] == [65535, 1, 2]


def test_a_smaller_receive_maximum_after_a_reconnect_holds_the_rest_back() -> None:
    """
    Reconnected to a broker taking fewer in flight (MQTT 5.0 §3.3.4): only
    that many go again, marked DUP; the rest wait at the head of the queue
    and go, in order, as new packets once PUBACKs free the window.
    """
    w, wire = window(limit=10, v5=True)
    w.opened()
    for n in (b"1", b"2", b"3"):
        w.publish("t", n, 1, False)
    w.closed()
    w.publish("t", b"4", 1, False)
    del wire.packets[:]
    w.opened(receive_maximum=2)
    assert [(p, dup) for _, p, _, dup, _ in wire.decoded(True)] == [(b"1", True), (b"2", True)]
    assert (w.unacknowledged(), w.buffered()) == (4, 2)
    w.acknowledged(wire.packets[0][2])
    w.acknowledged(wire.packets[1][2])
    sent = wire.decoded(True)[2:]
    assert [(p, dup) for _, p, _, dup, _ in sent] == [(b"3", False), (b"4", False)]
