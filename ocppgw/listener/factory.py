# -*- test-case-name: tests.unit.listener.test_handshake -*-
"""
The charge point endpoint of one ``[listener:NAME]``: the Autobahn factory,
and the decisions of the HTTP upgrade.

Everything that can refuse a charge point happens in the upgrade, before the
101 response and before anything is published:

- first admission control (:mod:`ocppgw.listener.throttle`): a connection
  over the listener's ``max_handshake_rate`` gets no WebSocket protocol, only
  a 503 with ``Retry-After`` to its request;
- the identity is the percent-decoded path segment after the listener's
  ``path`` (OCPP-J 1.6 §3.1.1, 2.0.1 Part 4 §3.1.1; the rules are in
  :mod:`ocppgw.ocpp.identity`): an unusable one gets 400, another path 404;
- the subprotocol is the first of the client's offers that the gateway speaks;
  no offer: 400 unless the listener has a ``default_version``; offers but
  none matching: the handshake completes without a subprotocol and the
  connection is closed at once (OCPP-J 1.6 §3.2, 2.0.1 Part 4 §3.2);
- then who may connect (:mod:`ocppgw.listener.admission`): TLS for profiles 2
  and 3, failed-login limits (429), HTTP Basic for profiles 1 and 2 (401), the
  client certificate for profile 3 (403), no downgrade (403); behind trusted
  proxies (:mod:`ocppgw.listener.proxy`) the forwarded address is the remote
  address; with ``[auth] http_url`` the operator's service is asked
  (:mod:`ocppgw.listener.httpauth`), and the 101 waits for its answer (never
  blocking the reactor: Autobahn takes a Deferred from ``onConnect``), whose
  ``versions`` may narrow the subprotocols this charge point may speak.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerFactory
from cryptography import x509
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw.connection import OCPPServerProtocol
from ocppgw.connection_fast import protocol as connection_protocol
from ocppgw.interfaces import NO_EVENTS, IGatewayEvents
from ocppgw.listener import Refused
from ocppgw.listener.admission import Gatekeeper
from ocppgw.listener.compression import deflate_accept
from ocppgw.listener.credentials import Credentials
from ocppgw.listener.proxy import Source
from ocppgw.listener.throttle import HandshakeRate
from ocppgw.listener.tls import handshake_failed, peer_of
from ocppgw.ocpp.identity import IdentityError, identity_from_segment

if TYPE_CHECKING:
    # The stages read the typed configuration they are handed; config/ is above them.
    from ocppgw.config import ListenerConfig

#: Forward mode's upgrade (ocppgw.forward.forwarder.Forwarder.connect): the
#: identity, the offers the gateway speaks and the Authorization header.
Forward = Callable[[str, list[str], str | None], Deferred[Any]]

_log = Logger()


def identity_from_uri(uri: str, base: str) -> str:
    """
    The charge point identity in the request URI ``uri`` under path ``base``.

    :raises Refused: 404 for another path, 400 for an unusable identity.
    """
    path = uri.split("?", 1)[0].split("#", 1)[0]
    prefix = base.rstrip("/") + "/"
    if not path.startswith(prefix):
        raise Refused(404, f"no OCPP endpoint at {path[:100]!r}; connect to {prefix}IDENTITY")
    try:
        return identity_from_segment(path[len(prefix) :])
    except IdentityError as e:
        raise Refused(400, str(e)) from None


def choose_version(
    offered: list[str], supported: tuple[str, ...], default: str | None
) -> str | None:
    """
    The subprotocol to speak: the first of the client's offers that is
    supported (2.1 Part 4 §3.1.2: the client lists them by preference).

    None when the client offered some but none matches: the caller completes
    the handshake without a subprotocol and closes.

    :raises Refused: 400 when none was offered and there is no default.
    """
    # An empty header value offers nothing (RFC 6455 §4.1: 1#token).
    offered = [p for p in offered if p]
    if not offered:
        if default is not None:
            return default
        raise Refused(
            400,
            "no Sec-WebSocket-Protocol offered; offer one of " + ", ".join(supported),
        )
    for protocol in offered:
        if protocol in supported:
            return protocol
    return None


@dataclass(frozen=True)
class Admitted:
    """A handshake the listener accepts."""

    identity: str
    #: The OCPP version to speak; None: offers, but none supported (close at once).
    version: str | None
    #: The subprotocol to echo in the 101 response, if any.
    subprotocol: str | None
    #: Forward mode: the central system's open connection (ocppgw.forward.relay.Link).
    link: Any = None


class OCPPServerFactory(WebSocketServerFactory):
    """The charge point endpoint of one ``[listener:NAME]``."""

    events: IGatewayEvents = NO_EVENTS

    #: With the steady state's short ways where Autobahn fits (ocppgw.connection_fast).
    protocol = connection_protocol()  # type: ignore[assignment]

    def __init__(
        self,
        listener: ListenerConfig,
        versions: tuple[str, ...],
        credentials: Credentials | None,
        open_session: Callable[[str, str, OCPPServerProtocol], Any],
        close_session: Callable[[Any], None],
        ping_interval: float = 60.0,
        pong_timeout: float = 30.0,
        gatekeeper: Gatekeeper | None = None,
        over_tls: bool = False,
        forward: Forward | None = None,
        throttle: HandshakeRate | None = None,
    ) -> None:
        super().__init__(protocols=list(versions), server="ocppgw")
        self.listener = listener
        self.ocpp_versions = versions
        self.credentials = credentials
        self.gatekeeper = gatekeeper or Gatekeeper(listener, credentials)
        #: The listener wraps its connections in TLS itself (ocppgw.listener.tls).
        self.over_tls = over_tls
        #: Admission control (max_handshake_rate); None: every handshake is looked at.
        self.throttle = throttle
        self.open_session = open_session
        self.close_session = close_session
        #: Forward mode: opens the central system's connection once admitted.
        self.forward = forward
        self.setProtocolOptions(
            maxFramePayloadSize=listener.max_frame_size,
            maxMessagePayloadSize=listener.max_frame_size,
            openHandshakeTimeout=listener.handshake_timeout,
            closeHandshakeTimeout=5,
            # Protocol violations (a frame over max_frame_size, bad UTF-8) are
            # answered with a close frame naming the code (1009, 1007), not a
            # bare TCP reset; the close handshake is bounded by the timeout above.
            failByDrop=False,
            autoPingInterval=ping_interval,
            autoPingTimeout=pong_timeout,
            # permessage-deflate (RFC 7692; required of a CSMS by 2.0.1 Part 4
            # §3.3) within the listener's memory bounds, or declined.
            perMessageCompressionAccept=deflate_accept(listener),
            # The identity lives in the path; accept any Host/Origin.
            allowedOrigins=["*"],
        )

    def buildProtocol(self, addr: IAddress | None) -> Any:
        """
        A new connection's protocol: the charge point's, or over the admission
        rate the 503 of :class:`~ocppgw.listener.throttle.Busy`.
        """
        back = self.refused()
        if back is not None:
            assert self.throttle is not None
            return self.throttle.busy(back, self.listener.handshake_timeout)
        return self.admitted(addr)

    def refused(self) -> float | None:
        """
        Take an admission token for a new connection: None when there was one
        (or there is no admission control), else the seconds from now when
        the refused charge point is to come back (counted, and logged at most
        now and then).
        """
        if self.throttle is None:
            return None
        back = self.throttle.admit()
        if back is not None:
            name = self.listener.name
            self.events.throttled(name)
            # One format: the log's rate limit holds a storm to a few lines a minute.
            _log.warn(
                "[listener:{name}] connections over max_handshake_rate answered 503 "
                "with Retry-After",
                name=name,
            )
        return back

    @property
    def head_timeout(self) -> float:
        """Seconds a refused connection has to send its request head (``handshake_timeout``)."""
        return self.listener.handshake_timeout

    def admitted(self, addr: IAddress | None) -> Any:
        """The charge point's protocol for a connection that has its token."""
        return super().buildProtocol(addr)

    def source(self, peer_host: str, headers: Mapping[str, str]) -> Source:
        """Where a handshake comes from (trusted proxies honoured)."""
        return self.gatekeeper.source(peer_host, headers)

    def tls_failed(self, connection: OCPPServerProtocol, reason: Failure) -> None:
        """The TLS handshake of ``connection`` failed with ``reason``."""
        handshake_failed(
            self.events, self.listener.name, peer_of(connection), reason, connection.transport
        )

    def negotiate(
        self,
        source: Source,
        uri: str,
        protocols: list[str],
        headers: Mapping[str, str],
        certificate: x509.Certificate | None,
    ) -> Admitted | Deferred[Admitted]:
        """
        Decide a handshake: who it is, which version, whether it may connect
        (a Deferred while the HTTP authentication service is asked).

        :raises Refused: with the HTTP status and reason to answer (or the
            Deferred fails with it).
        """
        listener = self.listener
        identity = identity_from_uri(uri, listener.path)
        version = choose_version(protocols, self.ocpp_versions, listener.default_version)
        allowed = self.gatekeeper.admit(
            identity,
            source,
            headers.get("authorization"),
            certificate,
            over_tls=self.over_tls,
            offered=protocols,
        )
        if self.forward is not None:
            if isinstance(allowed, Deferred):
                return allowed.addCallback(self._forwarded, identity, version, protocols, headers)
            return self._forwarded(allowed, identity, version, protocols, headers)
        if isinstance(allowed, Deferred):
            return allowed.addCallback(self._admitted, identity, version, protocols)
        return self._admitted(allowed, identity, version, protocols)

    def _forwarded(
        self,
        allowed: tuple[str, ...] | None,
        identity: str,
        version: str | None,
        protocols: list[str],
        headers: Mapping[str, str],
    ) -> Admitted | Deferred[Admitted]:
        """Admitted by the listener's rules: the central system's upgrade decides the rest."""
        admitted = self._admitted(allowed, identity, version, protocols)
        if admitted.version is None or self.forward is None:
            return admitted
        # The charge point's offers the gateway speaks (and the service allowed).
        offers = [
            p for p in protocols if p in self.ocpp_versions and (allowed is None or p in allowed)
        ]
        default = admitted.version

        def linked(link: Any) -> Admitted:
            spoken = link.version if offers else default
            return Admitted(identity, spoken, link.version, link)

        return self.forward(identity, offers, headers.get("authorization")).addCallback(linked)

    def _admitted(
        self,
        allowed: tuple[str, ...] | None,
        identity: str,
        version: str | None,
        protocols: list[str],
    ) -> Admitted:
        if allowed is not None:
            # The service's "versions": an offer with none of them is answered
            # like one with no supported subprotocol (OCPP-J 1.6 §3.2, 2.0.1
            # Part 4 §3.2): completed without a subprotocol, then closed.
            offered = [p for p in protocols if p]
            if offered:
                supported = self.ocpp_versions
                version = next((p for p in offered if p in supported and p in allowed), None)
            elif version not in allowed:
                version = None
        # A default version (no offer, or an empty header) is spoken but not
        # echoed: RFC 6455 §4.2.2 allows only a subprotocol the client offered.
        return Admitted(identity, version, version if version in protocols else None)
