# -*- test-case-name: tests.unit.test_connection_short_way,tests.unit.test_speedups -*-
"""
Speed-up ``autobahn_frames``: the steady state's shorter way through the
WebSocket layer, on Autobahn's private frame state.

A whole, unfragmented, masked text frame in Autobahn's buffer is unmasked,
checked as UTF-8 and handed to the session in one step, and a text frame to
the charge point is framed and written in one; Autobahn's generic frame
machine, its per-frame debug helpers (``hltype``/``hlval`` are evaluated for
a debug line even with debug logging off) and its per-frame objects cost
more than the rest of the WebSocket layer.  Every other frame (control
frames, fragments, compression, a frame over the size limit, invalid UTF-8,
a frame not yet complete) and every state but OPEN still goes to Autobahn,
which enforces RFC 6455 and fails the connection as it always did.

It reads and writes Autobahn's private state: the receive buffer ``data``,
``current_frame``, ``inside_message``, ``send_queue``,
``_perMessageCompress`` (whose zlib objects it drops between messages where
no context takeover allows), ``trafficStats``, and calls ``_dataReceived``,
``_connectionMade`` and ``_cancelAutoPingTimeoutCall``.  Where Autobahn is
not a version it was checked against, or lacks one of them,
:func:`protocol` gives the public :class:`~ocppgw.connection.OCPPServerProtocol`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketServerProtocol

from ocppgw import speedups
from ocppgw.connection import OCPPServerProtocol

#: The Autobahn versions whose frame state this was checked against.
TESTED = ">=24.4,<27"

#: Methods of Autobahn's protocol this relies on (the rest are instance state,
#: checked by a connection through the upgrade in the unit tests).
_METHODS = ("_dataReceived", "_connectionMade", "_cancelAutoPingTimeoutCall", "processData")


def unmask(payload: bytes, mask: bytes) -> bytes:
    """RFC 6455 §5.3: octet i of the payload XOR octet i mod 4 of the masking key."""
    n = len(payload)
    key = (mask * ((n + 3) // 4))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def whole_text_frame(data: bytes, masked: bool, limits: tuple[int, int, int]) -> tuple[int, int]:
    """
    ``(start, end)`` of the payload of a whole, unfragmented text frame at
    the head of ``data`` (after the masking key when ``masked``: client to
    server, RFC 6455 §5.3), or ``(0, 0)`` for anything else: not FIN + RSV 0
    + text (§5.2), masked other than ``masked`` says (§5.1), a 64-bit or
    non-minimal length, empty, not all here yet, or over Autobahn's frame or
    message limit (``limits``: Autobahn fails it with 1009).
    """
    head = 6 if masked else 2
    if len(data) < head + 1 or data[0] != 0x81:
        return 0, 0
    length = data[1] ^ 0x80 if masked else data[1]
    if length > 126:
        return 0, 0
    start = head
    if length == 126:
        length, start = int.from_bytes(data[2:4], "big"), head + 2
        if length < 126:
            return 0, 0
    end = start + length
    max_frame, max_message, _ = limits
    if length == 0 or len(data) < end or 0 < max_frame < length or 0 < max_message < length:
        return 0, 0
    return start, end


def count_in(protocol: Any, length: int) -> None:
    """Autobahn's traffic counts of one whole text frame in, and its ping timer's restart."""
    stats = protocol.trafficStats
    stats.incomingOctetsWebSocketLevel += length
    stats.incomingOctetsAppLevel += length
    stats.incomingWebSocketFrames += 1
    stats.incomingWebSocketMessages += 1
    if protocol.autoPingTimeoutCall and protocol.autoPingRestartOnAnyTraffic:
        protocol._cancelAutoPingTimeoutCall()


def count_out(protocol: Any, length: int, wire: int) -> None:
    """Autobahn's traffic counts of one text frame of ``length`` out, ``wire`` bytes written."""
    stats = protocol.trafficStats
    stats.outgoingWebSocketMessages += 1
    stats.outgoingWebSocketFrames += 1
    stats.outgoingOctetsAppLevel += length
    stats.outgoingOctetsWebSocketLevel += length
    stats.outgoingOctetsWireLevel += wire


def text_frame_header(n: int) -> bytes:
    """RFC 6455 §5.2: FIN, text opcode, unmasked (server to client, §5.1), minimal length."""
    if n <= 125:
        return bytes((0x81, n))
    if n <= 0xFFFF:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


class ShortWayFrames:
    """
    The short way in, for either side of a WebSocket: mixed in before an
    Autobahn protocol, whose state it reads.  Open, on the short way, a whole
    text frame (masked as ``_masked`` says) is read, checked as UTF-8 and
    handed to :meth:`_deliver` in one step; anything else goes to Autobahn.
    """

    #: Where a whole text frame read the short way goes: each side's class
    #: defines it (the session's, the relay's).
    _deliver: Callable[[str], None]
    #: Frames in are masked (client to server) or not (RFC 6455 §5.1).
    _masked = True
    #: The short ways are taken (set at open, from Autobahn's options then).
    _short_way = False
    #: Autobahn's payload limits and auto-fragment size (0: none), copied at open.
    _limits = (0, 0, 0)
    #: Autobahn copies these options from the factory in ``_connectionMade``
    #: and pretty-prints them for a debug line whether or not debug logging
    #: is on: about 1 ms a connection, a third of a handshake in a reconnect
    #: storm.  We copy them ourselves and leave Autobahn nothing to print
    #: (each class sets its protocol's list here and an empty CONFIG_ATTRS).
    _FACTORY_OPTIONS: tuple[str, ...] = ()

    def _connectionMade(self) -> None:
        proto: Any = self
        factory = proto.factory
        for name in self._FACTORY_OPTIONS:
            if name not in proto.__dict__:
                setattr(proto, name, getattr(factory, name))
        super()._connectionMade()  # type: ignore[misc]

    def _open_short(self, masking: bool) -> None:
        """
        At open: the short ways are taken when nothing Autobahn does per frame
        is asked for (compression, frame and octet logs, timings) and the
        masking is what RFC 6455 §5.1 says (``masking``); its limits copied.
        """
        options: Any = self
        self._short_way = (
            options._perMessageCompress is None
            and not options.logFrames
            and not options.logOctets
            and not options.trackedTimings
            and masking
        )
        self._limits = (
            options.maxFramePayloadSize,
            options.maxMessagePayloadSize,
            options.autoFragmentSize,
        )

    def dataReceived(self, data: bytes) -> None:
        # Autobahn's Twisted adapter builds a debug line's arguments (hltype,
        # hlval) for every read, debug logging on or off.  Open, on the short
        # way (no octet logging): what its _dataReceived and consumeData do
        # then, without their calls; otherwise its own.
        proto: Any = self
        if self._short_way and proto.state == proto.STATE_OPEN:
            proto.trafficStats.incomingOctetsWireLevel += len(data)
            proto.data += data
            while self.processData() and proto.state != proto.STATE_CLOSED:
                pass
            return
        super().dataReceived(data)  # type: ignore[misc]

    def processData(self) -> bool:
        proto: Any = self
        if self._short_way and proto.current_frame is None and proto.state == proto.STATE_OPEN:
            done = self._plain_text_frame()
            if done is not None:
                return done
        more: bool = super().processData()  # type: ignore[misc]
        return more

    def _plain_text_frame(self) -> bool | None:
        """
        Handle a whole text frame at the head of the buffer, or return
        ``None`` (nothing consumed) for Autobahn to handle whatever it is.
        """
        proto: Any = self
        data = proto.data
        if proto.inside_message:
            return None  # a fragment follows (RFC 6455 §5.4)
        start, end = whole_text_frame(data, self._masked, self._limits)
        if not end:
            return None
        payload = data[start:end]
        if self._masked:
            payload = unmask(payload, data[start - 4 : start])
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return None  # Autobahn fails it with 1007 (§8.1)
        proto.data = data[end:]
        count_in(proto, end - start)
        self._deliver(text)
        return len(proto.data) > 0

    def _writes_short(self, n: int) -> bool:
        """Whether a text frame of ``n`` bytes may be written in one step, not by Autobahn."""
        proto: Any = self
        _, max_message, fragment = self._limits
        return (
            self._short_way
            and not proto.send_queue  # after what Autobahn still holds
            and not 0 < fragment < n  # Autobahn fragments it
            and not 0 < max_message < n  # Autobahn raises PayloadExceededError
        )


# (ignore: Autobahn's own two base classes disagree on peer's type; seen
# by mypy only where a class has two bases.)
class ShortWayProtocol(ShortWayFrames, OCPPServerProtocol):  # type: ignore[misc]
    """:class:`~ocppgw.connection.OCPPServerProtocol` with the short ways."""

    _FACTORY_OPTIONS = tuple(WebSocketServerProtocol.CONFIG_ATTRS)
    CONFIG_ATTRS: list[str] = []

    def _options_at_open(self) -> None:
        # Frames out unmasked, frames in masked and unmasked here (RFC 6455 §5.1).
        options: Any = self
        self._open_short(not options.maskServerFrames and bool(options.applyMask))

    def processData(self) -> bool:
        more = super().processData()
        if self._perMessageCompress is not None and not self.inside_message:
            self._release_deflate()
        return more

    def _release_deflate(self) -> None:
        """
        Between messages, drop the zlib objects that no context takeover
        lets go (RFC 7692 §7.1.1): Autobahn keeps them from one message to the
        next, and creates them afresh when the next one starts.  About 17 KiB
        per idle compressing charge point with the listener's defaults.
        """
        deflate: Any = self._perMessageCompress
        if getattr(deflate, "server_no_context_takeover", False):
            if getattr(deflate, "_compressor", None) is not None:
                deflate._compressor = None
        if not self.inside_message and getattr(deflate, "client_no_context_takeover", False):
            if getattr(deflate, "_decompressor", None) is not None:
                deflate._decompressor = None

    def _deliver(self, text: str) -> None:
        self._text_received(text)

    def send_frame(self, text: str) -> None:
        if self.state != self.STATE_OPEN:
            super().send_frame(text)  # dropped, and logged, there
            return
        data = text.encode("utf-8")
        n = len(data)
        if not self._writes_short(n):
            self.sendMessage(data, isBinary=False)
            if self._perMessageCompress is not None:
                self._release_deflate()
        else:
            # Autobahn's sendMessage -> sendFrame -> sendData, in one write.
            raw = text_frame_header(n) + data
            self.transport.write(raw)  # type: ignore[union-attr]
            count_out(self, n, len(raw))
        self.factory.events.frame(self.identity or "", False, text)


def _shape() -> bool:
    return all(callable(getattr(WebSocketServerProtocol, m, None)) for m in _METHODS) and all(
        isinstance(getattr(WebSocketServerProtocol, a, None), list) for a in ("CONFIG_ATTRS",)
    )


def protocol() -> type[OCPPServerProtocol]:
    """The protocol class a listener builds: with the short ways where they fit."""
    if speedups.check("autobahn_frames", "autobahn", TESTED, _shape):
        return ShortWayProtocol
    return OCPPServerProtocol
