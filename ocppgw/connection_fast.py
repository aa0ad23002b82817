# -*- test-case-name: tests.unit.test_connection_short_way,tests.unit.test_speedups -*-
"""
Speed-up ``autobahn_frames``: the steady state's shorter way through the
WebSocket layer, on Autobahn's private frame state.

A whole, unfragmented, masked text frame in Autobahn's buffer is unmasked,
checked as UTF-8 and handed to the session in one step, and a text frame to
the charge point is framed and written in one; Autobahn's generic frame
machine, its per-frame debug helpers (``hltype``/``hlval`` are evaluated for
a debug line even with debug logging off) and its per-frame objects cost
more than the rest of the WebSocket layer.  Where permessage-deflate
compresses each message on its own both ways (RFC 7692 §7.1.1, as the
listener asks), whole compressed text frames take the same short way,
through the extension's own methods as Autobahn calls them.  Every other
frame (control frames, fragments, context takeover, a frame over the size
limits or not inflatable, invalid UTF-8, a frame not yet complete) and every
state but OPEN still goes to Autobahn, which enforces RFC 6455 and RFC 7692
and fails the connection as it always did: nothing is taken from its buffer
until the whole frame was read.

It reads and writes Autobahn's private state: the receive buffer ``data``,
``current_frame``, ``inside_message``, ``send_queue``,
``_perMessageCompress`` (whose zlib objects it drops between messages where
no context takeover allows), ``trafficStats``, and calls ``_dataReceived``,
``_connectionMade`` and ``_cancelAutoPingTimeoutCall``.  Where Autobahn is
not a version it was checked against, or lacks one of them,
:func:`protocol` gives the public :class:`~ocppgw.connection.OCPPServerProtocol`.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflate

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


#: The first octet of a whole text frame: FIN and the text opcode (RFC 6455
#: §5.2); with RSV1, compressed (RFC 7692 §6).
TEXT, DEFLATED_TEXT = 0x81, 0xC1


def whole_text_frame(
    data: bytes, masked: bool, limits: tuple[int, int, int], first: int = TEXT
) -> tuple[int, int]:
    """
    ``(start, end)`` of the payload of a whole, unfragmented text frame at
    the head of ``data`` (after the masking key when ``masked``: client to
    server, RFC 6455 §5.3), or ``(0, 0)`` for anything else: a first octet
    other than ``first`` (FIN, the RSV bits and text, §5.2), masked other
    than ``masked`` says (§5.1), a 64-bit or non-minimal length, empty, not
    all here yet, or over Autobahn's frame or message limit (``limits``:
    Autobahn fails it with 1009).
    """
    head = 6 if masked else 2
    if len(data) < head + 1 or data[0] != first:
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


def count_in(protocol: Any, length: int, inflated: int | None = None) -> None:
    """
    Autobahn's traffic counts of one whole text frame of ``length`` in
    (``inflated`` once inflated, if it was compressed), and its ping timer's
    restart.
    """
    stats = protocol.trafficStats
    stats.incomingOctetsWebSocketLevel += length
    stats.incomingOctetsAppLevel += length if inflated is None else inflated
    stats.incomingWebSocketFrames += 1
    stats.incomingWebSocketMessages += 1
    if protocol.autoPingTimeoutCall and protocol.autoPingRestartOnAnyTraffic:
        protocol._cancelAutoPingTimeoutCall()


def count_out(protocol: Any, length: int, wire: int, deflated: int | None = None) -> None:
    """
    Autobahn's traffic counts of one text frame of ``length`` out
    (``deflated`` once compressed, if it was), ``wire`` bytes written.
    """
    stats = protocol.trafficStats
    stats.outgoingWebSocketMessages += 1
    stats.outgoingWebSocketFrames += 1
    stats.outgoingOctetsAppLevel += length
    stats.outgoingOctetsWebSocketLevel += length if deflated is None else deflated
    stats.outgoingOctetsWireLevel += wire


def text_frame_header(n: int, first: int = TEXT) -> bytes:
    """
    RFC 6455 §5.2: ``first`` (FIN, text opcode; RSV1 too when compressed),
    unmasked (server to client, §5.1), minimal length.
    """
    if n <= 125:
        return bytes((first, n))
    if n <= 0xFFFF:
        return bytes((first, 0x7E)) + n.to_bytes(2, "big")
    return bytes((first, 0x7F)) + n.to_bytes(8, "big")


def each_message_alone(deflate: Any) -> bool:
    """
    Whether a negotiated permessage-deflate compresses each message on its own
    both ways (``server_no_context_takeover`` and ``client_no_context_takeover``,
    RFC 7692 §7.1.1), through an extension whose inflating takes a bound
    (``max_output_len``): then its compressed frames may take the short way.
    """
    return (
        isinstance(deflate, PerMessageDeflate)
        and bool(getattr(deflate, "server_no_context_takeover", False))
        and bool(getattr(deflate, "client_no_context_takeover", False))
        and BOUNDED_INFLATE
    )


def _takes_bound() -> bool:
    try:
        parameters = inspect.signature(PerMessageDeflate.decompress_message_data).parameters
    except (TypeError, ValueError):
        return False
    return "max_output_len" in parameters


#: Autobahn's extension inflates within a bound given per call (26.11.1 does,
#: 25.9.1 not): else compressed frames all go to Autobahn.
BOUNDED_INFLATE = _takes_bound()


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
    #: The permessage-deflate extension whose compressed frames take the short
    #: way (set at open, where each message is compressed on its own); None:
    #: none is negotiated, or its frames go to Autobahn.
    _deflate: Any = None
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

    def _open_short(self, masking: bool, deflate_short: bool = False) -> None:
        """
        At open: the short ways are taken when nothing Autobahn does per frame
        is asked for (compression, unless ``deflate_short``; frame and octet
        logs, timings) and the masking is what RFC 6455 §5.1 says
        (``masking``); its limits copied.
        """
        options: Any = self
        compress = options._perMessageCompress
        self._short_way = (
            (compress is None or deflate_short)
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
        self._deflate = compress if self._short_way else None

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
        Handle a whole text frame at the head of the buffer (compressed, where
        :attr:`_deflate` is set), or return ``None`` (nothing consumed) for
        Autobahn to read whatever it is afresh (and fail it: too large, not
        inflatable, not UTF-8).
        """
        proto: Any = self
        data = proto.data
        if proto.inside_message:
            return None  # a fragment follows (RFC 6455 §5.4)
        deflated = self._deflate is not None and data[:1] == b"\xc1"
        first = DEFLATED_TEXT if deflated else TEXT
        start, end = whole_text_frame(data, self._masked, self._limits, first)
        if not end:
            return None
        payload = data[start:end]
        if self._masked:
            payload = unmask(payload, data[start - 4 : start])
        try:
            message = self._inflate(payload) if deflated else payload
            text = message.decode("utf-8")
        except (RuntimeError, ValueError, zlib.error):
            # Invalid UTF-8 (1007, §8.1); from the extension PayloadExceededError
            # (1009) and PayloadCorruptError (1007).
            return None
        proto.data = data[end:]
        count_in(proto, end - start, len(message))
        self._deliver(text)
        return len(proto.data) > 0

    def _inflate(self, payload: bytes) -> bytes:
        """A compressed message inflated as Autobahn inflates it, within the message limit."""
        deflate = self._deflate
        max_message = self._limits[1]
        deflate.start_decompress_message()
        inflated: bytes = deflate.decompress_message_data(
            payload, max_output_len=max_message or None
        )
        deflate.end_decompress_message()
        if 0 < max_message < len(inflated):
            raise ValueError("over the message limit")  # Autobahn fails it with 1009
        return inflated

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
        self._open_short(
            not options.maskServerFrames and bool(options.applyMask),
            each_message_alone(options._perMessageCompress),
        )

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
        payload, deflate = data, self._deflate
        if deflate is not None:  # as Autobahn's sendMessage compresses it
            deflate.start_compress_message()
            payload = deflate.compress_message_data(data) + deflate.end_compress_message()
        n = len(payload)
        if not self._writes_short(n):
            self.sendMessage(data, isBinary=False)  # compressed afresh, if at all
        else:
            # Autobahn's sendMessage -> sendFrame -> sendData, in one write.
            raw = text_frame_header(n, TEXT if deflate is None else DEFLATED_TEXT) + payload
            self.transport.write(raw)  # type: ignore[union-attr]
            count_out(self, len(data), len(raw), n)
        if self._perMessageCompress is not None:
            self._release_deflate()
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
