# -*- test-case-name: tests.unit.forward.test_upstream -*-
"""
The central system's side of one charge point: an Autobahn WebSocket client
(its public protocol API: ``onConnect``, ``onOpen``, ``onMessage``,
``onClose``, ``sendMessage``, ``sendCloseFrame``, ``dropConnection``) over a
Twisted endpoint, TLS verified by Twisted's ``optionsForClientTLS`` (the
certificate chain to ``tls_ca`` or the system's CAs, and the URL's host
name; never off).

:func:`open_upstream` opens it during the charge point's HTTP upgrade and
tells how it went: the open connection, with the subprotocol the central
system chose (RFC 6455 §4.1: one of those offered, or none); or a
``ConnectionDeny`` with the status the charge point gets: the central
system's own refusal (a 4xx or 5xx status line), 502 when it cannot be
reached or its certificate does not verify, 503 when it does not complete
the upgrade within ``connect_timeout``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionResponse
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger()

#: RFC 6455 §5.5: a close reason is at most 123 bytes.
MAX_REASON = 123

#: The status a charge point gets when the central system cannot be reached,
#: or its certificate does not verify (RFC 9110 §15.6.3: 502 Bad Gateway) ...
UNREACHABLE = 502
#: ... and when it does not answer in time (§15.6.4: 503 Service Unavailable).
TOO_SLOW = 503


class Receiver:
    """What an open upstream connection tells (:class:`~ocppgw.forward.relay.Link`)."""

    def upstream_frame(self, text: str) -> None:
        """A text frame from the central system."""

    def upstream_closed(self, code: int | None, reason: str | None) -> None:
        """The central system's connection is gone."""


class UpstreamProtocol(WebSocketClientProtocol):
    """One charge point's connection to the central system."""

    factory: UpstreamFactory

    def __init__(self) -> None:
        super().__init__()
        #: The subprotocol the central system chose; None: none.
        self.chosen: str | None = None
        #: Where frames and the close go once open.
        self.receiver: Receiver = Receiver()
        self.lost_reason: Failure | None = None

    def onConnect(self, response: ConnectionResponse) -> None:
        self.chosen = response.protocol or None

    def onOpen(self) -> None:
        self.factory.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            # OCPP-J frames are text (1.6 §4.1.1): RFC 6455 §7.4.1, 1003.
            self.close(1003, "OCPP-J frames must be text frames")
            return
        self.receiver.upstream_frame(payload.decode("utf-8"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost_reason = reason
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.closed(self):
            self.receiver.upstream_closed(code, reason)

    def send_frame(self, text: str) -> bool:
        """Send ``text``; False when the connection is no longer open."""
        if self.state != self.STATE_OPEN:
            return False
        self.sendMessage(text.encode("utf-8"), isBinary=False)  # type: ignore[no-untyped-call]
        return True

    def close(self, code: int, reason: str) -> None:
        """Close with any RFC 6455 code (Autobahn's sendClose allows only 1000, 3000-4999)."""
        if self.state == self.STATE_OPEN:
            data = reason.encode("utf-8")[:MAX_REASON].decode("utf-8", "ignore").encode("utf-8")
            self.sendCloseFrame(code, data, isReply=False)
        elif self.state != self.STATE_CLOSED:
            self.dropConnection(abort=True)

    def status(self) -> tuple[int, str]:
        """The status and reason for the charge point of a handshake that failed."""
        line: str | None = getattr(self, "http_status_line", None)
        if line:
            words = line.split(None, 2)
            code = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
            if 400 <= code <= 599:
                return code, words[2] if len(words) > 2 else ""
            return UNREACHABLE, f"central system answered {line[:80]!r}"
        reason = self.lost_reason
        if reason is not None and type(reason.value).__module__.startswith("OpenSSL"):
            return UNREACHABLE, f"central system's TLS failed: {str(reason.value)[:120]}"
        return UNREACHABLE, "central system closed the connection during the handshake"


class UpstreamFactory(WebSocketClientFactory):
    """The client factory of one connection: it makes one protocol, and says how it went."""

    protocol = UpstreamProtocol  # type: ignore[assignment]

    def __init__(
        self,
        url: str,
        protocols: list[str],
        headers: dict[str, str],
        protocol: type[UpstreamProtocol] = UpstreamProtocol,
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            url, protocols=protocols, headers=headers, useragent="ocppgw"
        )
        self.protocol = protocol
        self.done: Deferred[UpstreamProtocol] = Deferred()
        #: The protocol made for the connection, once the TCP connection is made.
        self.made: UpstreamProtocol | None = None
        self.was_opened = False

    def buildProtocol(self, addr: Any) -> Any:
        made: Any = super().buildProtocol(addr)
        self.made = made
        return made

    def opened(self, protocol: UpstreamProtocol) -> None:
        if not self.done.called:
            self.was_opened = True
            self.done.callback(protocol)
        else:  # too late: the charge point was answered 503
            protocol.close(1001, "gateway gave up waiting")

    def closed(self, protocol: UpstreamProtocol) -> bool:
        """Its connection is gone: True when it never opened (nothing to tell its receiver)."""
        if not self.done.called:
            code, reason = protocol.status()
            self.done.errback(ConnectionDeny(code, reason))
            return True
        return not self.was_opened


def client_tls(host: str, ca: str | None, cert: str | None, key: str | None) -> Any:
    """Client TLS options: verified against ``ca`` (else the system's CAs) and ``host``."""
    trust: Any = None
    if ca is not None:
        with open(ca, "rb") as f:
            pem = f.read()
        marker = b"-----BEGIN CERTIFICATE-----"
        blocks = [marker + block for block in pem.split(marker)[1:]]
        if not blocks:
            raise ValueError(f"no PEM certificate in {ca}")
        trust = ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(b) for b in blocks])
    client = None
    if cert is not None and key is not None:
        with open(cert, "rb") as f, open(key, "rb") as g:
            client = ssl.PrivateCertificate.loadPEM(f.read() + b"\n" + g.read())
    return ssl.optionsForClientTLS(host, trustRoot=trust, clientCertificate=client)


def open_upstream(
    reactor: Any,
    url: str,
    protocols: list[str],
    headers: dict[str, str],
    timeout: float,
    tls: Callable[[str], Any] | None = None,
    protocol: type[UpstreamProtocol] = UpstreamProtocol,
) -> Deferred[UpstreamProtocol]:
    """
    The open WebSocket to ``url`` offering ``protocols``, or a failure with
    the ``ConnectionDeny`` for the charge point (the module's docstring).
    ``tls``: the client TLS options of a host, for wss://; ``protocol``:
    the class of the connection (:mod:`~ocppgw.forward.upstream_fast`).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    factory = UpstreamFactory(url, protocols, headers, protocol)
    # connect_timeout is this module's timer; Autobahn's own comes after it.
    factory.setProtocolOptions(  # type: ignore[no-untyped-call]
        openHandshakeTimeout=timeout + 1, closeHandshakeTimeout=5
    )
    factory.noisy = False  # no "Starting factory" line per charge point
    endpoint: Any = HostnameEndpoint(reactor, host, port, timeout=max(1, int(timeout)))
    if secure and tls is not None:
        endpoint = wrapClientTLS(tls(host), endpoint)
    clock: IReactorTime = reactor
    done = factory.done
    connecting = endpoint.connect(factory)

    def unreachable(failure: Failure) -> None:
        if not done.called:
            why = failure.getErrorMessage()[:120]
            done.errback(ConnectionDeny(UNREACHABLE, f"central system unreachable: {why}"))

    def expire() -> None:
        if done.called:
            return
        done.errback(
            ConnectionDeny(TOO_SLOW, f"central system did not answer within {timeout:g} s")
        )
        if factory.made is not None:
            factory.made.dropConnection(abort=True)
        else:
            connecting.cancel()

    connecting.addErrback(unreachable)
    timer = clock.callLater(timeout, expire)

    def stop_timer(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        return result

    return done.addBoth(stop_timer)
