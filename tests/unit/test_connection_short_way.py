"""
The steady state's short way through the WebSocket layer (the speed-up of
ocppgw.connection_fast) agrees with Autobahn's.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import pytest
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.xormasker import create_xor_masker
from hypothesis import given, settings
from hypothesis import strategies as st

from ocppgw.connection_fast import BOUNDED_INFLATE, ShortWayProtocol, unmask
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


#: websockets' default offer: answered with no context takeover both ways, windows of 9.
DEFLATE = "permessage-deflate; client_max_window_bits"


def run(
    data: bytes, cuts: list[int], short_way: bool, extensions: str | None = None
) -> tuple[object, ...]:
    """
    Feed ``data`` in pieces cut at ``cuts`` to a connection that offered
    ``extensions``: what the session got, what was sent, the state, and the
    incoming traffic counts.
    """
    proto, session = open_connection(ShortWayProtocol, extensions)
    # Compressed connections take the short way where Autobahn's extension
    # inflates within a bound (26.11.1 does, 25.9.1 not); else they are Autobahn's.
    deflating = extensions is not None and BOUNDED_INFLATE
    assert proto._short_way == (extensions is None or BOUNDED_INFLATE)
    assert (proto._deflate is not None) == deflating
    if not short_way:
        proto._short_way, proto._deflate = False, None
    counts = feed(proto, data, cuts)
    return session.events, bytes(proto.transport.value()), proto.state, counts


def deflated(payload: bytes, bits: int = 9) -> bytes:
    """``payload`` compressed on its own, as a permessage-deflate frame carries it (§7.2.1)."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -bits)
    return (deflate.compress(payload) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]


def client_deflated_frame(opcode: int, payload: bytes, mask: bytes, fin: bool = True) -> bytes:
    """A masked client frame with RSV1 set: its payload compressed (RFC 7692 §6)."""
    frame = client_frame(opcode, payload, mask, fin)
    return bytes([frame[0] | 0x40]) + frame[1:]


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


#: Frames on a connection that negotiated permessage-deflate: compressed and
#: not, whole and fragmented, inflating past the 65,536-byte limit, not
#: inflatable, not UTF-8 once inflated.
DEFLATE_FRAME = st.one_of(
    st.tuples(st.just(True), st.just(1), st.text(max_size=300).map(str.encode).map(deflated)),
    st.tuples(st.just(True), st.just(1), st.binary(max_size=100).map(deflated)),
    st.tuples(st.just(False), st.just(1), st.text(max_size=100).map(str.encode)),
    st.tuples(st.just(False), st.just(9), st.binary(max_size=20)),  # ping
    *(
        # Where Autobahn fails them itself (1007, 1009); 25.9.1's raises zlib.error.
        [
            st.tuples(st.just(True), st.just(1), st.binary(min_size=1, max_size=40)),
            st.tuples(st.just(True), st.just(1), st.just(deflated(b"x" * 70_000))),
        ]
        if BOUNDED_INFLATE
        else []
    ),
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    frames=st.lists(
        st.tuples(DEFLATE_FRAME, st.booleans(), st.binary(min_size=4, max_size=4)), max_size=5
    ),
    cuts=st.lists(st.integers(0, 2000), max_size=5),
)
def test_deflated_short_way_agrees_with_autobahn(frames: list[Any], cuts: list[int]) -> None:
    """
    On a connection compressing each message on its own both ways, any stream
    of compressed and plain frames (some fragmented, some that inflate past
    the limit or not at all), cut anywhere: the same messages, bytes sent,
    state and counts as Autobahn's own path.
    """
    data = b""
    for (compressed, opcode, body), fin, mask in frames:
        fin = fin or opcode == 9
        if compressed:
            data += client_deflated_frame(opcode, body, mask, fin)
        else:
            data += client_frame(opcode, body, mask, fin)
        if not fin:  # a continuation (RFC 6455 §5.4), the message's end
            data += client_frame(0, b"", mask)
    assert run(data, cuts, True, DEFLATE) == run(data, cuts, False, DEFLATE)


def test_deflated_text_frame_reaches_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A compressed text frame is inflated and handed to the session, counted as
    Autobahn does, and the answer compressed, without Autobahn's frame machine.
    """
    monkeypatch.setattr(WebSocketProtocol, "processData", _not_autobahn)
    monkeypatch.setattr(WebSocketProtocol, "sendMessage", _not_autobahn)
    text = '[2,"1","Heartbeat",{}]' * 3
    frame = client_deflated_frame(1, deflated(text.encode()), b"abcd")
    proto, session = open_connection(ShortWayProtocol, DEFLATE)
    if not BOUNDED_INFLATE:  # an Autobahn whose extension inflates without a bound
        assert proto._deflate is None and not proto._short_way
        return
    counts = feed(proto, frame, [])
    wire = len(deflated(text.encode()))
    assert (session.events, counts) == ([text], (len(frame), wire, len(text), 1, 1))
    proto.send_frame(text)
    sent = bytes(proto.transport.value())
    assert sent == bytes((0xC1, wire)) + deflated(text.encode())


def _not_autobahn(*args: object, **kwargs: object) -> None:
    raise AssertionError("Autobahn's own path was taken")


@settings(max_examples=100, deadline=None, database=None)
@given(text=st.text(max_size=300) | st.just("x" * 70_000))
def test_deflated_send_frame_agrees_with_autobahn(text: str) -> None:
    """A compressed frame to the charge point has the bytes and counts of Autobahn's sendMessage."""
    sent = []
    for short_way in (True, False):
        proto, _ = open_connection(ShortWayProtocol, DEFLATE)
        if not short_way:
            proto._short_way, proto._deflate = False, None
        proto.send_frame(text)
        stats = proto.trafficStats
        sent.append(
            (
                bytes(proto.transport.value()),
                stats.outgoingOctetsAppLevel,
                stats.outgoingOctetsWebSocketLevel,
                stats.outgoingOctetsWireLevel,
                stats.outgoingWebSocketFrames,
            )
        )
    assert sent[0] == sent[1]
    assert sent[0][0][:1] == b"\xc1"  # compressed (RSV1), whole


def test_context_takeover_steps_aside() -> None:
    """
    Where a message may refer to an earlier one's context (no
    client_no_context_takeover), compressed frames go to Autobahn: the
    extension is not taken for the short way.
    """
    proto, _ = open_connection(ShortWayProtocol, DEFLATE)
    proto._perMessageCompress.client_no_context_takeover = False
    proto._options_at_open()
    assert proto._deflate is None and not proto._short_way


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
