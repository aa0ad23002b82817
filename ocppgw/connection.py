# -*- test-case-name: tests.unit.listener.test_handshake,tests.unit.test_connection_short_way -*-
"""
One charge point's WebSocket: the Autobahn protocol, and nothing more.

In the HTTP upgrade it hands the request to its listener
(:mod:`ocppgw.listener.factory`), which decides who may connect; after the
upgrade it turns text frames into calls on the session, and the session's
sends and closes into frames (:class:`~ocppgw.interfaces.IChargePointConnection`).
A binary frame is refused with 1003 (OCPP-J frames are text, 1.6 §4.1.1).

Nothing is sent once a close frame went out or came in (RFC 6455 §5.5.1):
every way out of Autobahn's STATE_OPEN passes through ``sendCloseFrame``
(our close, a reply to the peer's close, a protocol violation answered with
1007/1009) or ``dropConnection`` (a ping or close handshake timeout), and
both tell the session ``closing()`` first.

Only Autobahn's public protocol API is used here (``onConnect``,
``onOpen``, ``onMessage``, ``onClose``, ``sendMessage``, and the close
frame's ``sendCloseFrame``/``dropConnection``).  The steady state's shorter
way through Autobahn's private frame state is the optional speed-up of
:mod:`ocppgw.connection_fast`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from cryptography import x509
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ocppgw import loop
from ocppgw.interfaces import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
    IChargePointConnection,
    IChargePointSession,
)

if TYPE_CHECKING:
    from ocppgw.config import ListenerConfig
    from ocppgw.interfaces import IGatewayEvents
    from ocppgw.listener.proxy import Source


class Admission(Protocol):
    """A handshake the listener accepts (:class:`ocppgw.listener.factory.Admitted`)."""

    identity: str
    version: str | None
    subprotocol: str | None


class ListenerSide(Protocol):
    """
    What a connection asks of the factory that built it, the listener's
    :class:`ocppgw.listener.factory.OCPPServerFactory` (named here by its
    shape, so that the listener may import this module and not the reverse).
    """

    events: IGatewayEvents
    listener: ListenerConfig
    over_tls: bool
    open_session: Callable[[str, str, OCPPServerProtocol], IChargePointSession]
    close_session: Callable[[IChargePointSession], None]

    def source(self, peer_host: str, headers: Mapping[str, str]) -> Source: ...

    def tls_failed(self, connection: OCPPServerProtocol, reason: Failure) -> None: ...

    def negotiate(
        self,
        source: Source,
        uri: str,
        protocols: list[str],
        headers: Mapping[str, str],
        certificate: x509.Certificate | None,
    ) -> Admission | Deferred[Admission]: ...


_log = Logger()

#: A Sec-WebSocket-Protocol header line of an HTTP request head.
_SUBPROTOCOL_LINE = re.compile(rb"(?im)^(sec-websocket-protocol[ \t]*:)([^\r\n]*)")


def _without_empty_tokens(match: re.Match[bytes]) -> bytes:
    tokens = [t.strip() for t in match.group(2).split(b",")]
    return match.group(1) + b" " + b", ".join(t for t in tokens if t)


#: RFC 6455 §5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
MAX_CLOSE_REASON = 123


def close_reason(reason: str) -> bytes:
    """
    ``reason`` as a close frame carries it: UTF-8 (RFC 6455 §5.5.1), at most
    :data:`MAX_CLOSE_REASON` bytes, cut before a character that does not fit.
    """
    data = reason.encode("utf-8", "replace")
    if len(data) <= MAX_CLOSE_REASON:
        return data
    # A cut inside a character leaves at most 3 bytes of it: "ignore" drops them.
    return data[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")


@implementer(IChargePointConnection, IHandshakeListener)
class OCPPServerProtocol(WebSocketServerProtocol):
    """One charge point connection."""

    factory: ListenerSide

    def __init__(self) -> None:
        super().__init__()
        self.identity: str | None = None
        self.version: str | None = None
        self.session: IChargePointSession | None = None
        #: Where the handshake came from, once read (trusted proxies honoured).
        self.source: Source | None = None
        #: Forward mode: the central system's open connection (ocppgw.forward).
        self.link: object | None = None

    # --- handshake ---

    #: The request head read so far, until it is whole (then None).
    _head: bytes | None = b""

    #: A request head longer than this goes to Autobahn as it is (it refuses it).
    _MAX_HEAD = 65536

    def dataReceived(self, data: bytes) -> None:
        head = self._head
        if head is None:
            super().dataReceived(data)
            return
        head += data
        end = head.find(b"\r\n\r\n")
        if end < 0 and len(head) <= self._MAX_HEAD:
            self._head = head
            return
        self._head = None
        if end >= 0:
            # RFC 7230 §7: a list may hold empty elements (",ocpp2.0.1", as
            # some firmware sends); they are no tokens, and Autobahn would
            # refuse a second one as a duplicate.
            head = _SUBPROTOCOL_LINE.sub(_without_empty_tokens, head[:end]) + head[end:]
        super().dataReceived(head)

    def failHandshake(
        self, reason: str, code: int = 400, responseHeaders: list[tuple[str, str]] | None = None
    ) -> None:
        headers = list(responseHeaders or []) + list(getattr(self, "_deny_headers", []))
        headers.append(("Content-Length", "0"))
        super().failHandshake(reason, code, headers)

    def onConnect(  # type: ignore[override]  # Autobahn takes a Deferred too
        self, request: ConnectionRequest
    ) -> str | Deferred[str | None] | None:
        try:
            decided = self._negotiate(request)
        except ConnectionDeny as e:
            self._refused(e)
            raise
        if isinstance(decided, Deferred):
            # Autobahn waits for a Deferred from onConnect (its processHandshake
            # takes a future): the HTTP authentication service is being asked.
            return decided.addCallbacks(self._decided, self._deny_failed)
        return self._decided(decided)

    def _deny_failed(self, failure: Failure) -> Failure:
        if isinstance(failure.value, ConnectionDeny):
            self._refused(failure.value)
        return failure

    def _refused(self, e: ConnectionDeny) -> None:
        # The listener's Refused carries the headers that go with its status.
        self._deny_headers = getattr(e, "headers", [])
        proxy = self.source.proxy if self.source is not None else None
        _log.info(
            "refused {peer}{via} {uri}: {code} {reason}",
            peer=self.peer,
            via=f" (via proxy {proxy})" if proxy else "",
            uri=self.http_request_uri[:120],
            code=e.code,
            reason=e.reason,
        )
        self.factory.events.refused(
            self.factory.listener.name,
            self.peer or "",
            self.http_request_uri,
            str(e.code),
            e.reason or "",
        )

    def _negotiate(self, request: ConnectionRequest) -> Admission | Deferred[Admission]:
        factory = self.factory
        transport: Any = self.transport
        peer_host = str(getattr(transport.getPeer(), "host", ""))
        self.source = source = factory.source(peer_host, request.headers)
        if source.proxy is not None:
            # Logs, presence and rate limits use the client's address, not the proxy's.
            self.peer = f"tcp{6 if ':' in source.address else 4}:{source.address}"
        return factory.negotiate(
            source,
            self.http_request_uri,
            list(request.protocols),
            request.headers,
            self._tls_certificate(),
        )

    def _decided(self, admitted: Admission) -> str | None:
        if self._lost:
            # The client went while the service was asked: no session for it.
            raise ConnectionDeny(400, "connection lost during the handshake")
        self.identity = admitted.identity
        self.version = admitted.version
        # Forward mode: the central system's connection, for the relay.
        self.link = getattr(admitted, "link", None)
        return admitted.subprotocol

    def _tls_certificate(self) -> x509.Certificate | None:
        """The client certificate of this connection's TLS handshake, if any."""
        if not self.factory.over_tls:
            return None
        transport: Any = self.transport
        cert = transport.getPeerCertificate()
        return None if cert is None else cert.to_cryptography()

    # --- connection ---

    def _options_at_open(self) -> None:
        """What a subclass reads of Autobahn's options once open (the speed-up)."""

    def onOpen(self) -> None:
        self._options_at_open()
        if self.version is None:
            # OCPP-J 1.6 §3.2: no agreed subprotocol: complete, then close.
            _log.info(
                "{cid}: no supported subprotocol among {offered}; closing",
                cid=self.identity,
                offered=self.websocket_protocols,
            )
            self.close(CLOSE_PROTOCOL_ERROR, "no supported OCPP subprotocol")
            return
        assert self.identity is not None
        self.session = self.factory.open_session(self.identity, self.version, self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is None:
            return
        if isBinary:
            # OCPP-J frames are text (OCPP-J 1.6 §4.1.1); RFC 6455 §7.4.1: 1003.
            self.close(CLOSE_UNSUPPORTED_DATA, "OCPP-J frames must be text frames")
            return
        self._text_received(payload.decode("utf-8"))

    def _text_received(self, text: str) -> None:
        if self.session is None:
            return
        self.factory.events.frame(self.identity or "", True, text)
        self.session.frame_received(text)

    #: Over the listener's TLS: the TLS handshake completed.
    tls_done = False

    def handshakeCompleted(self) -> None:
        """Twisted's TLS completed its handshake (IHandshakeListener)."""
        self.tls_done = True

    #: The TCP connection is gone (a handshake may still wait for its decision).
    _lost = False

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        loop.charge_point_went()
        if self.factory.over_tls and not self.tls_done:
            # Twisted's TLS hands over the handshake's error as the reason.
            self.factory.tls_failed(self, reason)
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        session, self.session = self.session, None
        if session is not None:
            self.factory.events.disconnected(self.identity or "", self.peer or "", code, reason)
            self.factory.close_session(session)

    # --- IChargePointConnection ---

    def send_frame(self, text: str) -> None:
        if self.state != self.STATE_OPEN:
            # The session was told closing(); Autobahn would raise Disconnected.
            _log.debug(
                "{cid}: not open, frame dropped: {frame!r}", cid=self.identity, frame=text[:80]
            )
            return
        self.sendMessage(text.encode("utf-8"), isBinary=False)
        self.factory.events.frame(self.identity or "", False, text)

    # --- leaving STATE_OPEN ---

    def _leaving_open(self) -> None:
        if self.state == self.STATE_OPEN and self.session is not None:
            self.session.closing()

    def sendCloseFrame(
        self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False
    ) -> None:
        self._leaving_open()
        super().sendCloseFrame(code, reasonUtf8, isReply)

    def dropConnection(self, abort: bool = False) -> None:
        self._leaving_open()
        super().dropConnection(abort)

    def close(self, code: int, reason: str) -> None:
        """Close with any RFC 6455 code (Autobahn's sendClose allows only 1000, 3000-4999)."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code, close_reason(reason), isReply=False)
        elif self.state != self.STATE_CLOSED:
            self.dropConnection(abort=True)
