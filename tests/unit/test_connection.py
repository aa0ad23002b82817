# -*- test-case-name: tests.unit.test_connection -*-
"""The Autobahn protocol after the upgrade: frames in, frames out, closing told once."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from ocppgw.config import ListenerConfig
from ocppgw.connection import OCPPServerProtocol
from ocppgw.interfaces import IChargePointSession
from ocppgw.listener.factory import OCPPServerFactory


@implementer(IChargePointSession)
class RecordingSession:
    def __init__(self) -> None:
        self.events: list[str] = []

    def frame_received(self, text: str) -> None:
        self.events.append(text)

    def closing(self) -> None:
        self.events.append("closing")


class _Transport(StringTransport):
    def unregisterProducer(self) -> None:
        self.producer = None


def open_connection(
    protocol: type[OCPPServerProtocol] | None = None,
    extensions: str | None = None,
) -> tuple[OCPPServerProtocol, RecordingSession]:
    """
    A connection through the upgrade, with a recording session: of the
    listener's protocol class (the speed-up's where it fits), or ``protocol``;
    offering ``extensions`` (``Sec-WebSocket-Extensions``), if given.
    """
    session = RecordingSession()
    listener = ListenerConfig("t", "tcp:0", "/ocpp", 0, None, 65536, 10.0)
    factory = OCPPServerFactory(
        listener, ("ocpp1.6",), None, lambda *a: session, lambda s: None, ping_interval=0
    )
    if protocol is not None:
        factory.protocol = protocol
    proto: Any = factory.buildProtocol(("127.0.0.1", 5555))
    proto.makeConnection(_Transport())
    request = (
        "GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: ocpp1.6\r\n"
        + (f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else "")
        + "\r\n"
    )
    proto.dataReceived(request.encode())
    assert proto.state == proto.STATE_OPEN
    proto.transport.clear()
    return proto, session


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients mask, RFC 6455 §5.3), with a zero mask."""
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


class ConnectionTests(SynchronousTestCase):
    def test_text_frame_reaches_session(self) -> None:
        """A text frame is handed to the session."""
        proto, session = open_connection()
        proto.dataReceived(masked(1, b'[2,"1","Heartbeat",{}]'))
        self.assertEqual(session.events, ['[2,"1","Heartbeat",{}]'])

    def test_close_tells_session_then_sends_nothing(self) -> None:
        """close() tells the session closing(), and send_frame sends nothing after it."""
        proto, session = open_connection()
        proto.close(1000, "bye")
        self.assertEqual(session.events, ["closing"])
        sent = proto.transport.value()
        proto.send_frame('[3,"1",{}]')
        self.assertEqual(proto.transport.value(), sent)

    def test_peer_close_tells_session(self) -> None:
        """The peer's close frame tells the session closing() once."""
        proto, session = open_connection()
        proto.dataReceived(masked(8, struct.pack("!H", 1000)))
        self.assertEqual(session.events, ["closing"])
        proto.send_frame('[3,"1",{}]')  # dropped, never raised
        self.assertNotIn(b"[3", proto.transport.value())

    def test_protocol_violation_tells_session(self) -> None:
        """A frame Autobahn fails the connection for (too big) tells the session closing()."""
        proto, session = open_connection()
        proto.dataReceived(bytes([0x81, 0xFF]) + struct.pack("!Q", 70000) + b"\0" * 4)
        self.assertEqual(session.events, ["closing"])


def _close_reason(proto: OCPPServerProtocol) -> bytes:
    """The reason of the one close frame the server sent (unmasked, RFC 6455 §5.5.1)."""
    frame = proto.transport.value()
    assert frame[0] == 0x88, frame
    length = frame[1] & 0x7F
    assert length <= 125, length
    return frame[4 : 2 + length]


class CloseReasonTests(SynchronousTestCase):
    def test_reason_cut_on_a_character_boundary(self) -> None:
        """A long reason is cut to at most 123 bytes of valid UTF-8, at every cut position."""
        for width in ("é", "€", "😀"):  # 2, 3 and 4 bytes
            for prefix in range(4):
                reason = "a" * prefix + width * 80
                proto, _ = open_connection()
                proto.close(1001, reason)
                sent = _close_reason(proto)
                self.assertLessEqual(len(sent), 123)
                text = sent.decode("utf-8")  # raises if cut inside a character
                self.assertTrue(reason.startswith(text))
                self.assertGreater(len(sent), 123 - len(width.encode("utf-8")))

    @settings(max_examples=200, deadline=None)
    @given(st.text(min_size=0, max_size=200))
    def test_any_reason_is_valid_utf8_within_123_bytes(self, reason: str) -> None:
        """Any reason (surrogates aside) is sent as its longest prefix of at most 123 bytes."""
        reason = reason.encode("utf-8", "replace").decode("utf-8")
        proto, _ = open_connection()
        proto.close(1000, reason)
        sent = _close_reason(proto)
        text = sent.decode("utf-8")
        self.assertTrue(reason.startswith(text))
        rest = reason[len(text) :]
        if rest:
            self.assertGreater(len(sent) + len(rest[0].encode("utf-8")), 123)
