"""The QoS 1 publish window: packet ids, the in-flight limit, waiting, resending, PUBACKs."""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from ocppgw.mqtt.driver import PahoClient
from ocppgw.mqtt.window import PublishError, PublishWindow, _length


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
    w.publish(b"a/b", b"x" * 200, False)
    w.publish("é/c".encode(), b"", True)
    assert wire.decoded(v5) == [
        ("a/b", b"x" * 200, 1, False, False),
        ("é/c", b"", 2, False, True),
    ]


def test_nothing_is_sent_before_a_connection() -> None:
    """Publishes made before the CONNACK wait, counted as buffered, and go out on it."""
    w, wire = window()
    w.publish(b"t", b"1", False)
    w.publish(b"t", b"2", False)
    assert wire.packets == [] and (w.buffered(), w.unacknowledged()) == (2, 2)
    w.opened()
    assert [p for _, p, _, _, _ in wire.decoded()] == [b"1", b"2"]
    assert (w.buffered(), w.unacknowledged()) == (0, 2)


def test_the_window_holds_back_the_rest_until_a_puback() -> None:
    """With a limit of 2, the third publish waits until a PUBACK, then goes, in order."""
    w, wire = window(limit=2)
    w.opened()
    done: list[int] = []
    for n in range(3):
        w.publish(b"t", bytes([n]), False).addCallback(lambda _, n=n: done.append(n))
    assert len(wire.packets) == 2 and w.buffered() == 1
    w.acknowledged(wire.packets[1][2])
    assert done == [1]
    assert [p for _, p, _, _, _ in wire.decoded()] == [b"\x00", b"\x01", b"\x02"]


def test_receive_maximum_narrows_the_window() -> None:
    """The broker's Receive Maximum (MQTT 5.0 §3.3.4) caps the in-flight publishes."""
    w, wire = window(limit=10, v5=True)
    w.opened(receive_maximum=1)
    w.publish(b"t", b"1", False)
    w.publish(b"t", b"2", False)
    assert len(wire.packets) == 1


def test_unacknowledged_ones_go_again_first_marked_dup() -> None:
    """After a reconnect, every unacknowledged publish is sent again with DUP, before newer ones."""
    w, wire = window(limit=2)
    w.opened()
    for n in (b"1", b"2", b"3"):
        w.publish(b"t", n, False)
    w.closed()
    w.publish(b"t", b"4", False)
    assert w.buffered() == 4
    del wire.packets[:]
    w.opened()
    assert [(p, dup) for _, p, _, dup, _ in wire.decoded()] == [(b"1", True), (b"2", True)]
    w.acknowledged(wire.packets[0][2])
    w.acknowledged(wire.packets[1][2])
    assert [(p, dup) for _, p, _, dup, _ in wire.decoded()][2:] == [(b"3", False), (b"4", False)]


def test_a_full_buffer_refuses_with_a_clear_error() -> None:
    """max_buffer messages waiting (sent or not): the next publish is refused, naming the limit."""
    w, _ = window(limit=1, buffer=2)
    w.opened()
    w.publish(b"t", b"1", False)
    w.publish(b"t", b"2", False)
    with pytest.raises(PublishError, match=r"MQTT buffer full \(2 messages"):
        w.publish(b"t", b"3", False)


def test_a_refusal_fails_the_publish_and_stopping_fails_the_rest() -> None:
    """A refusing PUBACK fails its publish with the reason; fail_all fails sent and waiting ones."""
    w, wire = window(limit=1)
    w.opened()
    errors: list[str] = []
    for _ in range(3):
        w.publish(b"t", b"x", False).addErrback(lambda f: errors.append(str(f.value)))
    w.acknowledged(wire.packets[0][2], "Not authorized")
    w.fail_all("stopped")
    assert errors == ["broker refused the message: Not authorized", "stopped", "stopped"]
    assert w.unacknowledged() == 0


def test_ids_in_use_are_skipped_when_the_counter_wraps() -> None:
    """A packet id still unacknowledged is not given to another publish."""
    w, wire = window(limit=3)
    w.opened()
    w.publish(b"t", b"1", False)
    wire.mid = 65535  # the counter comes round to 1, still in flight
    w.publish(b"t", b"2", False)
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
    d = w.publish(b"up", b"x", False)
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


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("", "Invalid topic"),
        ("a/+/b", "wildcards"),
        ("a/#", "wildcards"),
        ("x" * 65536, "too long"),
    ],
)
def test_publish_refuses_a_topic_paho_would(topic: str, why: str) -> None:
    """MQTTClient.publish at QoS 1 refuses what paho's publish refuses, with its words."""
    from twisted.internet.task import Clock

    from ocppgw.config import parse
    from ocppgw.mqtt.client import MQTTClient

    config = parse("[listener:ws]\nendpoint = tcp:0\n[mqtt]\nbroker = mqtt://127.0.0.1:1\n").mqtt
    client = MQTTClient(config, Clock())
    with pytest.raises(ValueError, match=why):
        client.publish(topic, b"x", qos=1)
    with pytest.raises(ValueError, match=why):
        paho.Client(CallbackAPIVersion.VERSION2).publish(topic, b"x", qos=1)
    assert client.unacknowledged() == 0


def test_the_window_and_paho_share_one_counter_of_packet_ids() -> None:
    """The window's packet ids and paho's (SUBSCRIBE...) come from one counter, wrapping to 1."""
    from twisted.internet.task import Clock

    from ocppgw.config import parse
    from ocppgw.mqtt.client import MQTTClient

    config = parse("[listener:ws]\nendpoint = tcp:0\n[mqtt]\nbroker = mqtt://127.0.0.1:1\n").mqtt
    client = MQTTClient(config, Clock())
    paho_next = client._client._mid_generate
    ours = client._window._next_mid
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
        w.publish(b"t", n, False)
    w.closed()
    w.publish(b"t", b"4", False)
    del wire.packets[:]
    w.opened(receive_maximum=2)
    assert [(p, dup) for _, p, _, dup, _ in wire.decoded(True)] == [(b"1", True), (b"2", True)]
    assert (w.unacknowledged(), w.buffered()) == (4, 2)
    w.acknowledged(wire.packets[0][2])
    w.acknowledged(wire.packets[1][2])
    sent = wire.decoded(True)[2:]
    assert [(p, dup) for _, p, _, dup, _ in sent] == [(b"3", False), (b"4", False)]


def test_publish_refuses_a_packet_over_the_largest_remaining_length() -> None:
    """A payload that fits alone but not with its topic is refused before it is queued."""
    from twisted.internet.task import Clock

    from ocppgw.config import parse
    from ocppgw.mqtt.client import MQTTClient

    class Huge(bytes):
        def __len__(self) -> int:
            return 268435455 - 3  # fits alone (§2.2.3), not with topic and packet id

    config = parse("[listener:ws]\nendpoint = tcp:0\n[mqtt]\nbroker = mqtt://127.0.0.1:1\n").mqtt
    client = MQTTClient(config, Clock())
    with pytest.raises(ValueError, match="Packet too large"):
        client.publish("t/x", Huge(), qos=1)
    assert client.unacknowledged() == 0
