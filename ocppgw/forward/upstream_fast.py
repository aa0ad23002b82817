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
from ocppgw.connection_fast import ShortWayFrames, count_out, unmask
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


# (ignore: Autobahn's own two base classes disagree on peer's type; seen
# by mypy only where a class has two bases.)
class ShortWayUpstream(ShortWayFrames, UpstreamProtocol):  # type: ignore[misc]
    """:class:`~ocppgw.forward.upstream.UpstreamProtocol` with the short ways."""

    _FACTORY_OPTIONS = tuple(WebSocketClientProtocol.CONFIG_ATTRS)
    CONFIG_ATTRS: Any = ()
    #: From the central system, frames are not masked (RFC 6455 §5.1).
    _masked = False

    def onOpen(self) -> None:
        # Frames out masked (§5.3).
        options: Any = self
        self._open_short(bool(options.maskClientFrames))
        super().onOpen()

    def _deliver(self, text: str) -> None:
        self.receiver.upstream_frame(text)

    def send_frame(self, text: str) -> bool:
        if self.state != self.STATE_OPEN:
            return False
        data = text.encode("utf-8")
        n = len(data)
        if not self._writes_short(n):
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
