"""
The speed-up paho_internals, its read path (ocppgw.mqtt.speedup.reads): large
reads, every whole packet handled in one turn.  These test its use of paho's
private parts, so they run only where the speed-up fits the installed paho.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ocppgw.mqtt.speedup import fits
from ocppgw.mqtt.speedup.driver import PahoClient
from ocppgw.mqtt.speedup.reads import parse_puback, parse_publish

pytestmark = pytest.mark.skipif(not fits(), reason="paho lacks what the speed-up uses")


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
    """
    A real socket that counts its ``recv`` and ``send`` calls; with ``limit``,
    one ``send`` takes that many bytes, and after it the socket is full.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.recvs = 0
        self.sends = 0
        self.limit: int | None = None

    def recv(self, size: int) -> bytes:
        self.recvs += 1
        return self.sock.recv(size)

    def send(self, data: bytes) -> int:
        self.sends += 1
        if self.limit is None:
            return self.sock.send(data)
        if self.limit == 0:
            raise BlockingIOError()
        taken, self.limit = self.sock.send(data[: self.limit]), 0
        return taken

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def connected(sock: Any, protocol: int = paho.MQTTv311) -> PahoClient:
    """A paho client that is connected, as far as it knows, on ``sock``."""
    client = PahoClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol)
    client._sock = sock
    client._state = paho._ConnectionState.MQTT_CS_CONNECTED
    return client


@pytest.fixture
def wired() -> Iterator[tuple[PahoClient, CountingSocket, socket.socket, list[Any]]]:
    """A paho client whose socket is one end of a socketpair; the test writes the other."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    counting = CountingSocket(ours)
    client = connected(counting)
    events: list[Any] = []
    client.on_message = lambda c, u, m: events.append((m.topic, bytes(m.payload)))
    client.on_disconnect = lambda c, u, f, r, p: events.append("disconnected")
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


@settings(max_examples=100, deadline=None, database=None)
@given(
    messages=st.lists(
        st.tuples(
            st.text(alphabet="ab/", min_size=1, max_size=5),
            st.sampled_from([0, 1, 126, 127, 128, 16_383, 16_384]).flatmap(
                lambda n: st.binary(min_size=n, max_size=n + 2)
            ),
        ),
        min_size=1,
        max_size=8,
    ),
    cuts=st.lists(st.integers(0, 200_000), max_size=6),
)
def test_any_cut_of_a_packet_stream_is_read_whole(
    messages: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    """
    However the broker's bytes are cut into reads (inside a length, a body,
    between packets), every packet is handled once, whole, in order: taken
    in one step when it is all there, by paho's own reading when it is not.
    """
    ours, theirs = socket.socketpair()
    try:
        ours.setblocking(False)
        client = connected(ours)
        events: list[Any] = []
        client.on_message = lambda c, u, m: events.append((m.topic, bytes(m.payload)))
        stream = b"".join(publish(topic, payload) for topic, payload in messages)
        points = sorted({c for c in cuts if c < len(stream)} | {len(stream)})
        start = 0
        for point in points:
            theirs.sendall(stream[start:point])
            start = point
            while client._sock is not None:
                before = (len(events), client._rpos, len(client._rbuf))
                client.read_available()
                if (len(events), client._rpos, len(client._rbuf)) == before:
                    break
        assert events == messages
    finally:
        ours.close()
        theirs.close()


def test_reserved_packet_type_is_a_protocol_error(wired: Any) -> None:
    """
    A packet of the reserved type 0, even one whose first byte arrives alone,
    ends the connection as paho ends it; the packets before it are handled.
    """
    client, _, theirs, events = wired
    theirs.sendall(publish("a", b"1") + b"\x00")  # the reserved type's first byte, alone
    client.read_available()
    assert events == [("a", b"1"), "disconnected"]
    assert client._sock is None


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


# --- the PUBLISH fast path ---

# paho refuses U+0000 in a property string (MQTT 5.0 §1.5.4 lets a receiver
# close the connection for it); parse_publish skips the properties it does not
# use without reading them, so the comparison leaves U+0000 out.
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=10
)

_PROPERTY_VALUES = st.fixed_dictionaries(
    {},
    optional={
        "SubscriptionIdentifier": st.lists(st.integers(1, 268_435_455), min_size=1, max_size=3),
        "UserProperty": st.lists(st.tuples(_TEXT, _TEXT), max_size=2),
        "ContentType": _TEXT,
        "ResponseTopic": _TEXT.filter(bool),
        "CorrelationData": st.binary(max_size=10),
        "MessageExpiryInterval": st.integers(0, 2**32 - 1),
        "PayloadFormatIndicator": st.integers(0, 1),
    },
)


def _publish_body(
    topic: str, qos: int, mid: int, payload: bytes, props: dict[str, Any] | None
) -> bytes:
    """A PUBLISH after its fixed header, properties packed by paho itself."""
    body = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    if qos:
        body += mid.to_bytes(2, "big")
    if props is not None:
        properties = Properties(PacketTypes.PUBLISH)
        for name, value in props.items():
            setattr(properties, name, value)
        body += properties.pack()
    return body + payload


@settings(max_examples=300, deadline=None, database=None)
@given(
    topic=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=20),
    qos=st.integers(0, 1),
    mid=st.integers(1, 65535),
    payload=st.binary(max_size=50),
    props=st.none() | _PROPERTY_VALUES,
)
@example(
    topic="ocpp/cs/CP1/Reply/Heartbeat",
    qos=1,
    mid=7,
    payload=b"{}",
    props={"SubscriptionIdentifier": [2]},
)
@example(topic="t", qos=1, mid=7, payload=b"", props={"SubscriptionIdentifier": [127]})
@example(topic="t", qos=0, mid=7, payload=b"x", props={"SubscriptionIdentifier": [128]})
@example(topic="t", qos=1, mid=7, payload=b"x", props={"SubscriptionIdentifier": [1, 2]})
def test_parse_publish_agrees_with_paho(
    topic: str, qos: int, mid: int, payload: bytes, props: dict[str, Any] | None
) -> None:
    """parse_publish reads topic, packet id, payload and subscription ids as paho's decoder does."""
    v5 = props is not None
    command = 0x30 | (qos << 1)
    body = _publish_body(topic, qos, mid, payload, props)
    ours = parse_publish(command, body, v5)
    theirs = _packet.decode_publish(command, body, paho.MQTTv5 if v5 else paho.MQTTv311)
    ids = getattr(theirs.properties, "SubscriptionIdentifier", []) if v5 else []
    assert ours == (theirs.topic.decode(), qos, theirs.mid, bytes(theirs.payload), tuple(ids))


@pytest.mark.parametrize(
    "command, body, v5",
    [
        (0x34, _publish_body("t", 2, 7, b"x", None), False),  # QoS 2
        (0x32, b"\x00\x00\x00\x07\x03\x23\x00\x01x", True),  # topic alias, empty topic
        (0x30, b"\x00\x02\xff\xfex", False),  # topic not UTF-8
        (0x30, b"\x00\x09ab", False),  # topic longer than the packet
        (0x30, b"\x00\x01t\x05\x01", True),  # properties longer than the packet
    ],
)
def test_parse_publish_leaves_the_rest_to_paho(command: int, body: bytes, v5: bool) -> None:
    """QoS 2, topic aliases, bad UTF-8 and malformed packets are paho's to handle."""
    assert parse_publish(command, body, v5) is None


def test_fast_publish_is_handled_then_acknowledged(wired: Any) -> None:
    """A QoS 1 PUBLISH reaches publish_handler, and its PUBACK follows."""
    client, _, theirs, events = wired
    handled: list[Any] = []
    client.publish_handler = lambda t, p, i: handled.append((t, p, i))
    body = _publish_body("a/b", 1, 513, b"hello", None)
    theirs.sendall(bytes([0x32, len(body)]) + body)
    client.read_available()
    client.loop_write()
    assert handled == [("a/b", b"hello", ())]
    assert events == []  # paho's on_message was not involved
    assert theirs.recv(16) == b"\x40\x02\x02\x01"  # PUBACK of packet id 513
    # The PUBACK bytes are paho's own for every packet id, low and high bytes alike.
    for mid in (1, 255, 256, 65535):
        body = _publish_body("a/b", 1, mid, b"x", None)
        theirs.sendall(bytes([0x32, len(body)]) + body)
        client.read_available()
        client.loop_write()
        assert theirs.recv(16) == struct.pack("!BBH", 0x40, 2, mid), mid


# --- the PUBACK fast path ---


@settings(max_examples=200, deadline=None, database=None)
@given(
    mid=st.integers(1, 65535),
    reason=st.sampled_from([None, 0x00, 0x10, 0x80, 0x87, 0x91, 0x97]),
    reason_string=st.none() | _TEXT,
    v5=st.booleans(),
)
def test_parse_puback_agrees_with_paho(
    mid: int, reason: int | None, reason_string: str | None, v5: bool
) -> None:
    """parse_puback reads the packet id of every plain accepting PUBACK paho reads, no other."""
    body = mid.to_bytes(2, "big")
    if v5 and reason is not None:
        body += bytes([reason])
        if reason_string is not None:
            properties = Properties(PacketTypes.PUBACK)
            properties.ReasonString = reason_string
            body += properties.pack()
    theirs = _packet.decode_puback(0x40, body, paho.MQTTv5 if v5 else paho.MQTTv311)
    plain = theirs.reason.value == 0 and not theirs.properties.json()
    assert parse_puback(body, v5) == (theirs.mid if plain else None)


def _sent(client: PahoClient, theirs: socket.socket) -> int:
    """Publish one QoS 1 message and drain it from the wire; its packet id."""
    info = client.publish("up", b"x", qos=1)
    client.loop_write()
    theirs.recv(64)
    return int(info.mid)


@pytest.mark.parametrize("v5", [False, True])
def test_plain_puback_completes_the_publish(v5: bool) -> None:
    """A plain PUBACK completes its publish with a success reason, as paho's does."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = connected(ours, paho.MQTTv5 if v5 else paho.MQTTv311)
    acks: list[Any] = []
    client.on_publish = lambda c, u, mid, reason, props: acks.append((mid, reason.is_failure))
    mid = _sent(client, theirs)
    theirs.sendall(b"\x40\x02" + mid.to_bytes(2, "big"))
    client.read_available()
    assert acks == [(mid, False)]
    assert mid not in client._out_messages
    ours.close()
    theirs.close()


def test_refusing_puback_is_reported_as_a_failure() -> None:
    """An MQTT 5 PUBACK with a failing reason code still reaches on_publish as a failure."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = connected(ours, paho.MQTTv5)
    acks: list[Any] = []
    client.on_publish = lambda c, u, mid, reason, props: acks.append((mid, reason.value))
    mid = _sent(client, theirs)
    theirs.sendall(b"\x40\x04" + mid.to_bytes(2, "big") + b"\x87\x00")  # Not authorized
    client.read_available()
    assert acks == [(mid, 0x87)]
    ours.close()
    theirs.close()
