"""
The relay's short way through Autobahn's client side (the speed-up of
ocppgw.forward.upstream_fast) agrees with Autobahn's own.
"""

from __future__ import annotations

import base64
import hashlib
import random
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport

from ocppgw import speedups
from ocppgw.forward.upstream import Receiver, UpstreamFactory
from ocppgw.forward.upstream_fast import ShortWayUpstream, masked_text_frame, protocol
from tests.unit.test_connection_short_way import FRAME, feed

#: RFC 6455 §1.3: the GUID of the accept key.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _Transport(StringTransport):
    """StringTransport, which Autobahn may tell to stop producing when nothing produces."""

    def unregisterProducer(self) -> None:
        self.producer = None


class Recording(Receiver):
    """What the relay would be told."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def upstream_frame(self, text: str) -> None:
        self.events.append(text)

    def upstream_closed(self, code: int | None, reason: str | None) -> None:
        self.events.append(("closed", code))


def open_upstream_connection(short_way: bool) -> tuple[Any, Recording]:
    """A client connection through the central system's 101, with a recording receiver."""
    factory = UpstreamFactory("ws://cs.example/ocpp/CP1", ["ocpp1.6"], {}, ShortWayUpstream)
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)  # type: ignore[no-untyped-call]
    proto: Any = factory.buildProtocol(("127.0.0.1", 9000))
    transport = _Transport()
    proto.makeConnection(transport)
    request = transport.value().decode()
    key = next(
        line.split(":", 1)[1].strip()
        for line in request.split("\r\n")
        if line.lower().startswith("sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    transport.clear()
    proto.dataReceived(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
        ).encode()
    )
    assert proto.state == proto.STATE_OPEN
    assert proto._short_way  # what the listener's options give
    proto._short_way = short_way
    receiver = Recording()
    proto.receiver = receiver
    return proto, receiver


def server_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"") -> bytes:
    """A server frame (unmasked, RFC 6455 §5.1, unless ``mask``), minimal length encoding."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask else 0
    if n <= 125:
        head += bytes([bit | n])
    elif n <= 0xFFFF:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask:
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def run(data: bytes, cuts: list[int], short_way: bool) -> tuple[object, ...]:
    """
    Feed ``data`` in pieces cut at ``cuts``: what the relay was told, what
    was sent (masks drawn from a seeded generator), the state, and the
    incoming traffic counts.
    """
    proto, receiver = open_upstream_connection(short_way)
    proto.transport.clear()
    random.seed(7)
    counts = feed(proto, data, cuts)
    sent = proto.transport.value()
    return receiver.events, sent, proto.transport.disconnecting, proto.state, counts


@settings(max_examples=300, deadline=None, database=None)
@given(
    frames=st.lists(st.tuples(FRAME, st.booleans()), max_size=6),
    cuts=st.lists(st.integers(0, 2000), max_size=5),
)
def test_short_way_agrees_with_autobahn(frames: list[Any], cuts: list[int]) -> None:
    """Any stream of server frames (some masked), cut anywhere: same frames, bytes sent, state."""
    data = b"".join(
        server_frame(op, body, fin, b"abcd" if masked else b"")
        for (op, body, fin), masked in frames
    )
    assert run(data, cuts, True) == run(data, cuts, False)


@settings(max_examples=100, deadline=None, database=None)
@given(text=st.text(max_size=300) | st.just("x" * 70_000))
def test_send_frame_agrees_with_autobahn(text: str) -> None:
    """A frame to the central system has the bytes (and mask) Autobahn's sendMessage writes."""
    sent = []
    for short_way in (True, False):
        proto, _ = open_upstream_connection(short_way)
        proto._limits = (0, 0, 0)
        proto.transport.clear()
        random.seed(11)
        assert proto.send_frame(text)
        sent.append(proto.transport.value())
    assert sent[0] == sent[1]


def test_masked_text_frame_is_rfc_6455() -> None:
    """Mask bit set, the key after the length, the payload XOR the key (RFC 6455 §5.2, §5.3)."""
    frame = masked_text_frame(b"hello", b"\x01\x02\x03\x04")
    assert frame == b"\x81\x85\x01\x02\x03\x04" + bytes(
        b ^ k for b, k in zip(b"hello", b"\x01\x02\x03\x04\x01", strict=True)
    )


def test_a_masked_frame_from_the_central_system_still_fails_the_connection() -> None:
    """RFC 6455 §5.1: the client fails the connection on a masked frame; nothing is relayed."""
    proto, receiver = open_upstream_connection(True)
    proto.dataReceived(server_frame(1, b'[2,"1","Reset",{}]', mask=b"abcd"))
    assert receiver.events == []
    assert proto.transport.disconnecting
    assert proto.state == proto.STATE_CLOSED


def test_protocol_is_the_short_way_unless_turned_off(monkeypatch: Any) -> None:
    """OCPPGW_SPEEDUPS=-autobahn_client_frames (or off) gives the public UpstreamProtocol."""
    # Verdicts of this test's own, the others' kept (a check is made once).
    monkeypatch.setattr(speedups, "_checked", {})
    assert (protocol() is ShortWayUpstream) == speedups.wanted()
    speedups.forget()
    monkeypatch.setenv("OCPPGW_SPEEDUPS", "-autobahn_client_frames")
    assert protocol() is not ShortWayUpstream
