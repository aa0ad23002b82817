# -*- test-case-name: tests.unit.forward.test_forwarder -*-
"""
One ``[forward:NAME]``: the central system its listeners' charge points are
relayed to.  The listener asks :meth:`Forwarder.connect` during a charge
point's HTTP upgrade, after its own rules (security profile, credentials,
identity, rate limits) admitted it; once the charge point's connection is
open, :meth:`Forwarder.open` makes its :class:`~ocppgw.forward.relay.Relay`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw.forward.address import (
    authorization,
    peer_of,
    read_credentials,
    upstream_url,
)
from ocppgw.forward.mirror import Mirror
from ocppgw.forward.relay import Link, Relay
from ocppgw.forward.tap import Tap
from ocppgw.forward.turns import Turns
from ocppgw.forward.upstream import UpstreamProtocol, client_tls, open_upstream
from ocppgw.forward.upstream_fast import protocol as upstream_protocol
from ocppgw.forward.verdicts import Validate, Verdicts
from ocppgw.interfaces import CLOSE_NORMAL, NO_EVENTS, IChargePointConnection, IGatewayEvents

if TYPE_CHECKING:
    from ocppgw.config import ForwardConfig

_log = Logger()

#: MQTT mode's session of a charge point on a connection (the router's directory's open).
OpenSession = Callable[[str, str, IChargePointConnection], Any]


class Forwarder:
    """The central system of one ``[forward:NAME]``, and its tap."""

    def __init__(
        self,
        config: ForwardConfig,
        reactor: Any,
        tap: Tap | None,
        validate: Validate | None = None,
        handshake_timeout: float = 10.0,
        events: IGatewayEvents = NO_EVENTS,
    ) -> None:
        """:raises CredentialsFileError: the credentials file cannot be used."""
        self.config = config
        self._reactor = reactor
        self.tap = tap
        self._validate = validate
        self._events = events
        self._wait = handshake_timeout
        self.credentials = read_credentials(config.credentials) if config.credentials else {}
        self.peer = peer_of(config.url)
        #: The central system's connections' class: with the speed-up where it fits.
        self._protocol = upstream_protocol()
        self._tls = None
        if config.url.startswith("wss:"):
            # Checked now: a bad CA or key file stops the start, not a handshake.
            client_tls("localhost", config.tls_ca, config.tls_cert, config.tls_key)
            self._tls = partial(
                client_tls, ca=config.tls_ca, cert=config.tls_cert, key=config.tls_key
            )

    def reload(self) -> None:
        """
        SIGHUP: the ``auth = credentials`` file read again, for the next
        handshakes.

        :raises CredentialsFileError: it cannot be used; the old one is kept.
        """
        if self.config.credentials:
            self.credentials = read_credentials(self.config.credentials)

    def plain_auth_warning(self) -> str | None:
        """The line to log once at start when credentials go over plain ws://."""
        config = self.config
        if config.url.startswith("ws:") and config.allow_plain_auth and config.auth != "none":
            return (
                f"[forward:{config.name}] allow_plain_auth = true: charge points' credentials "
                f"go to {self.peer} over plain ws://, readable by anyone on the path"
            )
        return None

    def connect(
        self, identity: str, offered: list[str], offered_auth: str | None
    ) -> Deferred[Link]:
        """
        The central system's connection for charge point ``identity``, which
        offered the subprotocols ``offered`` (those the gateway speaks) and
        the Authorization ``offered_auth``; fails with the ``ConnectionDeny``
        the charge point gets (:mod:`~ocppgw.forward.upstream`).
        """
        config = self.config
        url = upstream_url(config.url, identity)
        headers = {}
        auth = authorization(
            config.auth, url, config.allow_plain_auth, identity, offered_auth, self.credentials
        )
        if auth is not None:
            headers["Authorization"] = auth
        d = open_upstream(
            self._reactor, url, offered, headers, config.connect_timeout, self._tls, self._protocol
        )
        linked = d.addCallbacks(self._linked, self._failed, callbackArgs=(offered,))
        if config.on_csms_down == "hold":
            return linked.addCallback(self._reopens, identity, offered_auth)
        return linked

    def _reopens(self, link: Link, identity: str, offered_auth: str | None) -> Link:
        """on_csms_down = hold: the link can be opened again, with the subprotocol spoken."""
        if link.version is not None:
            link.reopen = partial(self.connect, identity, [link.version], offered_auth)
        return link

    def _failed(self, failure: Failure) -> Failure:
        code = getattr(failure.value, "code", None)
        self._events.upstream_failed(str(code) if code is not None else "error")
        _log.info(
            "[forward:{name}] central system refused or unreachable: {why}",
            name=self.config.name,
            why=failure.getErrorMessage(),
        )
        return failure

    def _linked(self, upstream: UpstreamProtocol, offered: list[str]) -> Link:
        chosen = upstream.chosen
        if chosen is not None and chosen not in offered:
            # RFC 6455 §4.1: the client fails a connection whose server chose
            # a subprotocol it did not offer; Autobahn lets it through.
            chosen = None
        if chosen is None and offered:
            # OCPP-J 1.6 §3.2, 2.0.1 Part 4 §3.2: no agreed subprotocol; the
            # charge point's upgrade completes without one, and both close.
            upstream.close(CLOSE_NORMAL, "no agreed OCPP subprotocol")
            return Link(upstream, None, self._reactor, 0)
        return Link(upstream, chosen, self._reactor, self._wait)

    def open(
        self,
        identity: str,
        version: str,
        connection: IChargePointConnection,
        *,
        open_session: OpenSession,
        timeout: float,
    ) -> Relay:
        """
        The relay of a charge point whose connection is open (its link
        taken), with the MQTT backends' session of the identity made by
        ``open_session`` on its turns (``timeout``: a CALL's turn at most).
        """
        link: Link = getattr(connection, "link")  # noqa: B009 (set by the upgrade)
        turns = Turns(connection, self._reactor, timeout)
        backend = open_session(identity, version, turns)
        relay = Relay(
            identity,
            version,
            connection,
            link,
            self.tap,
            self.peer,
            Verdicts(version, self._validate),
            turns,
            backend,
            self._events,
            self._reactor,
            enforce=self.config.validation == "enforce",
        )
        turns.state = relay.state
        config = self.config
        for index, template in enumerate(config.mirrors):
            url = upstream_url(template, identity)
            opener = partial(
                open_upstream,
                self._reactor,
                url,
                [version],
                {},
                config.connect_timeout,
                self._tls,
                self._protocol,
            )
            relay.mirrors.add(
                Mirror.made(
                    index,
                    peer_of(url),
                    version,
                    self._reactor,
                    opener,
                    config.mirror_calls,
                    relay.mirrors,
                )
            )
        return relay

    def close(self, relay: Relay, *, close_session: Callable[[Any], None]) -> None:
        """The charge point's connection is gone: its upstream and backend session learn it."""
        backend = relay.backend
        relay.closing()
        if backend is not None:
            close_session(backend)
