"""
The WebSocket layer: Autobahn, negotiating the handshake and forwarding frames.

Everything that can refuse a charge point happens in the HTTP upgrade, before
the 101 response and before anything is published:

- the identity is the percent-decoded path segment after the listener's
  ``path`` (OCPP-J 1.6 §3.1.1, 2.0.1 Part 4 §3.1.1); empty, holding ``/``,
  ``+``, ``#`` or a control character, or longer than 48 characters: 400;
  another path: 404;
- the subprotocol is the first of the client's offers that the gateway speaks;
  no offer: 400 unless the listener has a ``default_version``; offers but
  none matching: the handshake completes without a subprotocol and the
  connection is closed at once (OCPP-J 1.6 §3.2, 2.0.1 Part 4 §3.2);
- then who may connect (:mod:`ocppgw.listener.admission`): TLS for profiles 2 and 3,
  failed-login limits (429), HTTP Basic for profiles 1 and 2 (401), the
  client certificate for profile 3 (403), no downgrade (403); behind trusted
  proxies (:mod:`ocppgw.listener.proxy`) the forwarded address is the remote address.

After the upgrade, this layer only turns frames into calls on the session.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from autobahn.websocket.types import ConnectionRequest
from cryptography import x509
from twisted.logger import Logger
from zope.interface import implementer

from ocppgw.config import ListenerConfig
from ocppgw.interfaces import IChargePointConnection
from ocppgw.listener import Refused as Refused
from ocppgw.listener.admission import Gatekeeper
from ocppgw.listener.credentials import Credentials
from ocppgw.listener.proxy import Source

_log = Logger()

#: OCPP 2.0.1 Part 4 §3.1.1 and 2.1 Part 4 §3.1.1: at most 48 characters.
MAX_IDENTITY_LENGTH = 48

#: RFC 6455 §7.4.1 close codes used by the gateway.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_TOO_BIG = 1009


def identity_from_uri(uri: str, base: str) -> str:
    """
    The charge point identity in the request URI ``uri`` under path ``base``.

    :raises Refused: 404 for another path, 400 for an unusable identity.
    """
    path = uri.split("?", 1)[0].split("#", 1)[0]
    prefix = base.rstrip("/") + "/"
    if not path.startswith(prefix):
        raise Refused(404, f"no OCPP endpoint at {path[:100]!r}; connect to {prefix}IDENTITY")
    raw = path[len(prefix) :]
    if not raw:
        raise Refused(400, "charge point identity is empty")
    if "/" in raw:
        raise Refused(400, "charge point identity must be one path segment")
    try:
        identity = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "charge point identity is not UTF-8 when percent-decoded") from None
    check_identity(identity)
    return identity


#: Unicode categories refused in an identity: controls, format characters
#: (bidi overrides, zero-width joiners), surrogates, private use, unassigned,
#: line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def check_identity(identity: str) -> None:
    """
    :raises Refused: 400 when ``identity`` cannot be used as one.

    2.x RECOMMENDS the identifierString characters (``a-z A-Z 0-9 * - _ = : +
    | @ .``), but 1.6 names none and deployed identities hold spaces and
    more, so any printable Unicode is accepted except: ``/`` (a topic level),
    ``+`` and ``#`` (MQTT wildcards), the categories above (invisible or
    direction-changing characters that let two identities look the same),
    spaces other than U+0020, and text not in NFC (so a visible name is one
    identity, whether a charger composed its accents or not).
    """
    if not identity:
        raise Refused(400, "charge point identity is empty")
    if len(identity) > MAX_IDENTITY_LENGTH:
        raise Refused(400, f"charge point identity is longer than {MAX_IDENTITY_LENGTH} characters")
    for ch in identity:
        if ch in "/+#":
            raise Refused(400, f"charge point identity must not contain {ch!r}")
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise Refused(400, "charge point identity must not contain control characters")
        category = unicodedata.category(ch)
        if category in _REFUSED_CATEGORIES or (category == "Zs" and ch != " "):
            raise Refused(
                400, f"charge point identity must not contain U+{ord(ch):04X} ({category})"
            )
    if not unicodedata.is_normalized("NFC", identity):
        raise Refused(400, "charge point identity must be in Unicode normalization form NFC")


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


@implementer(IChargePointConnection)
class OCPPServerProtocol(WebSocketServerProtocol):
    """One charge point connection."""

    factory: OCPPServerFactory

    #: Autobahn copies these options from the factory in ``_connectionMade``
    #: and pretty-prints them for a debug line whether or not debug logging
    #: is on: about 1 ms a connection, a third of a handshake in a reconnect
    #: storm.  We copy them ourselves and leave Autobahn nothing to print.
    _FACTORY_OPTIONS = tuple(WebSocketServerProtocol.CONFIG_ATTRS)
    CONFIG_ATTRS: list[str] = []

    def _connectionMade(self) -> None:
        factory = self.factory
        for name in self._FACTORY_OPTIONS:
            if name not in self.__dict__:
                setattr(self, name, getattr(factory, name))
        super()._connectionMade()

    def __init__(self) -> None:
        super().__init__()
        self.identity: str | None = None
        self.version: str | None = None
        self.session: Any = None
        #: Where the handshake came from, once read (trusted proxies honoured).
        self.source: Source | None = None

    # --- handshake ---

    def failHandshake(
        self, reason: str, code: int = 400, responseHeaders: list[tuple[str, str]] | None = None
    ) -> None:
        headers = list(responseHeaders or []) + list(getattr(self, "_deny_headers", []))
        headers.append(("Content-Length", "0"))
        super().failHandshake(reason, code, headers)

    def onConnect(self, request: ConnectionRequest) -> str | None:
        try:
            return self._negotiate(request)
        except Refused as e:
            self._deny_headers = e.headers
            proxy = self.source.proxy if self.source is not None else None
            _log.info(
                "refused {peer}{via} {uri}: {code} {reason}",
                peer=self.peer,
                via=f" (via proxy {proxy})" if proxy else "",
                uri=self.http_request_uri[:120],
                code=e.code,
                reason=e.reason,
            )
            raise

    def _negotiate(self, request: ConnectionRequest) -> str | None:
        listener = self.factory.listener
        gatekeeper = self.factory.gatekeeper
        transport: Any = self.transport
        peer_host = str(getattr(transport.getPeer(), "host", ""))
        self.source = source = gatekeeper.source(peer_host, request.headers)
        if source.proxy is not None:
            # Logs, presence and rate limits use the client's address, not the proxy's.
            self.peer = f"tcp{6 if ':' in source.address else 4}:{source.address}"
        identity = identity_from_uri(self.http_request_uri, listener.path)
        version = choose_version(
            list(request.protocols), self.factory.ocpp_versions, listener.default_version
        )
        gatekeeper.admit(
            identity,
            source,
            request.headers.get("authorization"),
            self._tls_certificate(),
            over_tls=self.factory.over_tls,
        )
        self.identity = identity
        self.version = version
        # A default version (no offer, or an empty header) is spoken but not
        # echoed: RFC 6455 §4.2.2 allows only a subprotocol the client offered.
        return version if version in request.protocols else None

    def _tls_certificate(self) -> x509.Certificate | None:
        """The client certificate of this connection's TLS handshake, if any."""
        if not self.factory.over_tls:
            return None
        transport: Any = self.transport
        cert = transport.getPeerCertificate()
        return None if cert is None else cert.to_cryptography()

    # --- connection ---

    def onOpen(self) -> None:
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
        self.session.frame_received(payload.decode("utf-8"))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        session, self.session = self.session, None
        if session is not None:
            self.factory.close_session(session)

    # --- IChargePointConnection ---

    def send_frame(self, text: str) -> None:
        self.sendMessage(text.encode("utf-8"), isBinary=False)

    def close(self, code: int, reason: str) -> None:
        """Close with any RFC 6455 code (Autobahn's sendClose allows only 1000, 3000-4999)."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code, reason.encode("utf-8")[:123], isReply=False)
        elif self.state != self.STATE_CLOSED:
            self.dropConnection(abort=True)


def _accept_deflate(offers: list[Any]) -> Any:
    """Accept permessage-deflate (RFC 7692; required of a CSMS by 2.0.1 Part 4 §3.3)."""
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


class OCPPServerFactory(WebSocketServerFactory):
    """The charge point endpoint of one ``[listener:NAME]``."""

    protocol = OCPPServerProtocol  # type: ignore[assignment]

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
    ) -> None:
        super().__init__(protocols=list(versions), server="ocppgw")
        self.listener = listener
        self.ocpp_versions = versions
        self.credentials = credentials
        self.gatekeeper = gatekeeper or Gatekeeper(listener, credentials)
        #: The listener wraps its connections in TLS itself (ocppgw.listener.tls).
        self.over_tls = over_tls
        self.open_session = open_session
        self.close_session = close_session
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
            perMessageCompressionAccept=_accept_deflate,
            # The identity lives in the path; accept any Host/Origin.
            allowedOrigins=["*"],
        )
