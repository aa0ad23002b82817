# -*- test-case-name: tests.unit.forward.test_upstream_fast,tests.unit.test_speedups -*-
"""
Speed-up ``autobahn_client_frames``: the relay's shorter way through
Autobahn's client side, the central system's connection in forward mode, on
Autobahn's private frame state (as ``autobahn_frames`` does for the charge
points' side, :mod:`ocppgw.connection_fast`).

Open and on the short way, a whole, unfragmented, unmasked text frame from
the central system is checked as UTF-8 and handed to the relay in one step,
and a text frame to it is masked (a fresh key per frame, drawn as Autobahn
draws it) and written in one; Autobahn's generic frame machine and its
per-frame debug helpers cost about as much as the rest of the relay.  Every
other frame (control frames, fragments, compression, a masked frame, which
a client must fail, RFC 6455 §5.1; a frame over the size limit, invalid
UTF-8, a frame not yet complete) and every state but OPEN still goes to
Autobahn, which enforces RFC 6455 as it always did.

It reads and writes Autobahn's private state (the receive buffer ``data``,
``current_frame``, ``inside_message``, ``send_queue``,
``_perMessageCompress``, ``trafficStats``), calls ``_connectionMade`` and
``_cancelAutoPingTimeoutCall``, and copies the factory's options itself (for
the same debug line's sake).  Where Autobahn is not a version it was checked
against, or lacks one of them, :func:`protocol` gives the public
:class:`~ocppgw.forward.upstream.UpstreamProtocol`.
"""

from __future__ import annotations

import random
from typing import Any

from autobahn.twisted.websocket import WebSocketClientProtocol

from ocppgw import speedups
from ocppgw.connection_fast import count_in, count_out, unmask, whole_text_frame
from ocppgw.forward.upstream import UpstreamProtocol

#: The Autobahn versions whose frame state this was checked against.
TESTED = ">=24.4,<27"

_METHODS = ("_connectionMade", "_cancelAutoPingTimeoutCall", "processData", "dataReceived")


def masked_text_frame(data: bytes, mask: bytes) -> bytes:
    """RFC 6455 §5.2: FIN, text opcode, masked with ``mask`` (client to server, §5.3)."""
    n = len(data)
    if n <= 125:
        header = bytes((0x81, 0x80 | n))
    elif n <= 0xFFFF:
        header = b"\x81\xfe" + n.to_bytes(2, "big")
    else:
        header = b"\x81\xff" + n.to_bytes(8, "big")
    return header + mask + unmask(data, mask)


class ShortWayUpstream(UpstreamProtocol):
    """:class:`~ocppgw.forward.upstream.UpstreamProtocol` with the short ways."""

    #: Autobahn pretty-prints the options it copies from the factory, for a
    #: debug line, whether or not debug logging is on; they are copied here.
    _FACTORY_OPTIONS = tuple(WebSocketClientProtocol.CONFIG_ATTRS)
    CONFIG_ATTRS: Any = ()

    #: The short ways are taken (set at open, from Autobahn's options then).
    _short_way = False
    #: Autobahn's payload limits and auto-fragment size (0: none), copied at open.
    _limits = (0, 0, 0)

    def _connectionMade(self) -> None:
        factory = self.factory
        for name in self._FACTORY_OPTIONS:
            if name not in self.__dict__:
                setattr(self, name, getattr(factory, name))
        super()._connectionMade()  # type: ignore[no-untyped-call]

    def onOpen(self) -> None:
        options: Any = self
        self._short_way = (
            self._perMessageCompress is None
            and not options.logFrames
            and not options.logOctets
            and not options.trackedTimings
            and bool(options.maskClientFrames)
        )
        self._limits = (
            options.maxFramePayloadSize,
            options.maxMessagePayloadSize,
            options.autoFragmentSize,
        )
        super().onOpen()

    def dataReceived(self, data: bytes) -> None:
        if self._short_way and self.state == self.STATE_OPEN:
            self.trafficStats.incomingOctetsWireLevel += len(data)
            self.data += data
            while self.processData() and self.state != self.STATE_CLOSED:
                pass
            return
        super().dataReceived(data)

    def processData(self) -> bool:
        if self._short_way and self.current_frame is None and self.state == self.STATE_OPEN:
            done = self._plain_text_frame()
            if done is not None:
                return done
        more: bool = super().processData()
        return more

    def _plain_text_frame(self) -> bool | None:
        """
        Handle a whole text frame at the head of the buffer, or return
        ``None`` (nothing consumed) for Autobahn to handle whatever it is.
        """
        data = self.data
        if self.inside_message:
            return None  # a fragment follows (RFC 6455 §5.4)
        start, end = whole_text_frame(data, False, self._limits)
        if not end:
            return None
        try:
            text = data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            return None  # Autobahn fails it with 1007 (§8.1)
        self.data = data[end:]
        count_in(self, end - start)
        self.receiver.upstream_frame(text)
        return len(self.data) > 0

    def send_frame(self, text: str) -> bool:
        if self.state != self.STATE_OPEN:
            return False
        data = text.encode("utf-8")
        n = len(data)
        _, max_message, fragment = self._limits
        if (
            not self._short_way
            or self.send_queue
            or 0 < fragment < n
            or 0 < max_message < n  # Autobahn raises PayloadExceededError
        ):
            self.sendMessage(data, isBinary=False)  # type: ignore[no-untyped-call]
            return True
        # Autobahn's sendMessage -> sendFrame -> sendData, in one write; the
        # key drawn as Autobahn's sendFrame draws it (its issue 758).
        raw = masked_text_frame(data, random.getrandbits(32).to_bytes(4, "big"))
        self.transport.write(raw)  # type: ignore[union-attr]
        count_out(self, n, len(raw))
        return True


def _shape() -> bool:
    return all(callable(getattr(WebSocketClientProtocol, m, None)) for m in _METHODS) and all(
        isinstance(getattr(WebSocketClientProtocol, a, None), list | tuple)
        for a in ("CONFIG_ATTRS",)
    )


def protocol() -> type[UpstreamProtocol]:
    """The class of the central system's connections: with the short ways where they fit."""
    if speedups.check("autobahn_client_frames", "autobahn", TESTED, _shape):
        return ShortWayUpstream
    return UpstreamProtocol
