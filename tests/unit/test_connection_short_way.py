"""
The steady state's short way through the WebSocket layer (the speed-up of
ocppgw.connection_fast) agrees with Autobahn's.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from autobahn.websocket.xormasker import create_xor_masker
from hypothesis import given, settings
from hypothesis import strategies as st

from ocppgw.connection_fast import ShortWayProtocol, unmask
from tests.unit.test_connection import open_connection


def client_frame(opcode: int, payload: bytes, mask: bytes, fin: bool = True) -> bytes:
    """A masked client frame (RFC 6455 §5.2, §5.3), with the minimal length encoding."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n <= 125:
        head += bytes([0x80 | n])
    elif n <= 0xFFFF:
        head += b"\xfe" + struct.pack("!H", n)
    else:
        head += b"\xff" + struct.pack("!Q", n)
    return head + mask + create_xor_masker(mask, n).process(payload) if n else head + mask


def feed(proto: Any, data: bytes, cuts: list[int]) -> tuple[int, ...]:
    """
    Feed ``data`` to ``proto`` in pieces cut at ``cuts``; its incoming
    traffic counts after.
    """
    last = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        proto.dataReceived(data[last:cut])
        last = max(last, cut)
    stats = proto.trafficStats
    return (
        stats.incomingOctetsWireLevel,
        stats.incomingOctetsWebSocketLevel,
        stats.incomingOctetsAppLevel,
        stats.incomingWebSocketFrames,
        stats.incomingWebSocketMessages,
    )


def run(data: bytes, cuts: list[int], short_way: bool) -> tuple[object, ...]:
    """
    Feed ``data`` in pieces cut at ``cuts``: what the session got, what was
    sent, the state, and the incoming traffic counts.
    """
    proto, session = open_connection(ShortWayProtocol)
    proto._short_way = short_way
    counts = feed(proto, data, cuts)
    return session.events, bytes(proto.transport.value()), proto.state, counts


#: A frame's opcode, payload and FIN bit, of the kinds the short way must tell apart.
FRAME = st.one_of(
    st.tuples(st.just(1), st.text(max_size=200).map(str.encode), st.just(True)),  # text
    st.tuples(st.just(1), st.binary(max_size=140), st.booleans()),  # often not UTF-8; fragments
    st.tuples(st.just(0), st.text(max_size=20).map(str.encode), st.booleans()),  # continuation
    st.tuples(st.just(9), st.binary(max_size=20), st.just(True)),  # ping
    st.tuples(st.just(2), st.binary(max_size=10), st.just(True)),  # binary: closed with 1003
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    frames=st.lists(st.tuples(FRAME, st.binary(min_size=4, max_size=4)), max_size=6),
    cuts=st.lists(st.integers(0, 2000), max_size=5),
)
def test_short_way_agrees_with_autobahn(frames: list[Any], cuts: list[int]) -> None:
    """Any stream of frames, cut anywhere: same messages, same bytes sent, same state."""
    data = b"".join(client_frame(op, body, mask, fin) for (op, body, fin), mask in frames)
    assert run(data, cuts, True) == run(data, cuts, False)


@settings(max_examples=200, deadline=None, database=None)
@given(payload=st.binary(max_size=300), mask=st.binary(min_size=4, max_size=4))
def test_unmask_agrees_with_autobahn(payload: bytes, mask: bytes) -> None:
    """unmask is RFC 6455 §5.3's XOR, as Autobahn's masker computes it."""
    assert unmask(payload, mask) == create_xor_masker(mask, len(payload)).process(payload)


@settings(max_examples=100, deadline=None, database=None)
@given(text=st.text(max_size=300) | st.just("x" * 70_000))
def test_send_frame_agrees_with_autobahn(text: str) -> None:
    """A frame to the charge point has the bytes Autobahn's sendMessage would write."""
    sent = []
    for short_way in (True, False):
        proto, _ = open_connection(ShortWayProtocol)
        proto.maxMessagePayloadSize = 0  # lets a 70,000-byte frame through both ways
        proto._options_at_open()
        proto._short_way = short_way
        proto.send_frame(text)
        sent.append(bytes(proto.transport.value()))
    assert sent[0] == sent[1]


def test_invalid_utf8_still_fails_with_1007() -> None:
    """A text frame that is not UTF-8 is left to Autobahn, which closes with 1007 (§8.1)."""
    events, sent, _, _ = run(client_frame(1, b"ok\xff", os.urandom(4)), [], True)
    assert events == ["closing"]
    assert sent[:1] == b"\x88" and sent[2:4] == b"\x03\xef"  # close frame, code 1007


def test_oversized_frame_still_fails_with_1009() -> None:
    """A text frame over the limit is left to Autobahn, which closes with 1009."""
    proto, session = open_connection()
    proto.maxFramePayloadSize = 100
    proto._options_at_open()
    proto.dataReceived(client_frame(1, b"x" * 101, b"abcd"))
    assert session.events == ["closing"]
    sent = bytes(proto.transport.value())
    assert sent[:1] == b"\x88" and sent[2:4] == b"\x03\xf1"  # close frame, code 1009
