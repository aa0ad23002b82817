# -*- test-case-name: tests.unit.router.test_router,tests.unit.session.test_lifecycle -*-
"""
The sessions of this instance, by identity: the one room where a charge
point connects, reconnects and is let go.

- a connection opens a session (:meth:`Directory.open`): the connect is
  reported, and the identity's earlier session here, if any, is replaced
  (a takeover): the new one adopts the CALLs queued for it
  (:meth:`~ocppgw.session.rules.Session.adopt`); then the router routes
  the identity's downstream messages to it;
- a connection that closes (:meth:`Directory.close`) leaves its session in
  its grace period (``[dnstream] offline_ttl``), still here, still routed;
- a session that is over (expired, or moved to another instance) is
  forgotten (:meth:`Directory.forget`, on the router's word), unless a newer
  session of the identity took its place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorTime

from ocppgw import loop
from ocppgw.interfaces import IChargePointConnection, IRouter
from ocppgw.session.rules import Session, SessionOptions

if TYPE_CHECKING:
    from ocppgw.config.model import ListenerConfig


class Directory:
    """Every session of this instance, connected or in its grace period."""

    def __init__(
        self,
        router: IRouter,
        clock: IReactorTime,
        route: Callable[[Session, str], None],
        went_offline: Callable[[Session], None],
    ) -> None:
        #: What the sessions publish through.
        self._router = router
        self._clock = clock
        #: Told that a session holds its identity here now (and its peer) ...
        self._route = route
        #: ... and that its connection is gone (its grace period begins).
        self._went_offline = went_offline
        #: By identity.  The router's parts read this dict itself (the hot path).
        self.by_identity: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self.by_identity)

    def get(self, identity: str) -> Session | None:
        """The session of ``identity``, connected or in its grace period."""
        return self.by_identity.get(identity)

    def all(self) -> list[Session]:
        """Every session, connected or in its grace period."""
        return list(self.by_identity.values())

    def connected(self) -> list[Session]:
        """Every session whose charge point is connected now (open or closing)."""
        return [s for s in self.by_identity.values() if s.connected]

    def in_grace(self) -> int:
        """How many sessions wait in their grace period for a reconnection."""
        return sum(1 for s in self.by_identity.values() if not s.connected)

    def open(
        self,
        identity: str,
        version: str,
        connection: IChargePointConnection,
        *,
        listener: ListenerConfig,
        options: SessionOptions,
    ) -> Session:
        """The session of a charge point that connected through ``listener``."""
        options = replace(
            options,
            max_message_rate=listener.max_message_rate,
            max_message_burst=listener.max_message_burst,
        )
        session = Session(identity, version, connection, self._router, self._clock, options)
        peer = connection.peer or ""
        # connected() logs the line: identity, version, remote address.
        options.events.connected(identity, version, listener.name, listener.security_profile, peer)
        old = self.by_identity.get(identity)
        if old is not None and old.connected:
            options.events.takeover(identity, across=False)
        self.add(session, peer)
        return session

    def add(self, session: Session, peer: str = "") -> None:
        """
        ``session`` holds its identity here now.  A session the identity
        already has is replaced: its socket is closed (reason "replaced"),
        and the CALLs queued for it move over.
        """
        identity = session.identity
        old = self.by_identity.get(identity)
        self.by_identity[identity] = session
        if old is not None:
            session.adopt(old)
        self._route(session, peer)

    def close(self, session: Session) -> None:
        """
        ``session``'s connection is gone: the CALL in flight failed, queued
        CALLs wait for a reconnection, and, if it is still the identity's
        session, its presence goes offline.
        """
        session.connection_lost()
        if self.by_identity.get(session.identity) is session:
            self._went_offline(session)

    def forget(self, session: object) -> str | None:
        """Forget ``session`` if it is its identity's current one: its identity, else None."""
        identity: str | None = getattr(session, "identity", None)
        if identity is None or self.by_identity.get(identity) is not session:
            return None
        del self.by_identity[identity]
        loop.charge_point_went()
        return identity
