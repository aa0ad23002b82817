# -*- test-case-name: tests.unit.session.test_session,tests.unit.session.test_lifecycle -*-
"""
One charge point's OCPP-J session: the rules, and no I/O.

The session receives text frames from its connection and envelopes from the
router, and decides what goes where:

- frames from the charge point: :mod:`ocppgw.session.charge_point`;
- messages from the backend: :mod:`ocppgw.session.backend`;
- what both share (the exchanges in flight, the queue): :mod:`ocppgw.session.exchanges`;
- open, closing, in its grace period, replaced, moved, expired:
  :mod:`ocppgw.session.lifecycle`.

Time comes from an injected ``IReactorTime``; the connection and the router
are reached through :mod:`ocppgw.interfaces`.
"""

from __future__ import annotations

from functools import cached_property

from zope.interface import implementer

from ocppgw.interfaces import IChargePointSession
from ocppgw.ocpp.envelope import Envelope, GatewayError
from ocppgw.session.backend import FromBackend
from ocppgw.session.charge_point import FromChargePoint
from ocppgw.session.exchanges import SessionOptions, Validate, Violation, cancel
from ocppgw.session.lifecycle import Core, Lifecycle, LifecycleMachine, Phase

__all__ = ["Phase", "Session", "SessionOptions", "Validate", "Violation"]


@implementer(IChargePointSession)
class Session(FromChargePoint, FromBackend):
    """The OCPP-J rules for one charge point, from its connection to its expiry."""

    @cached_property
    def _lifecycle(self) -> Lifecycle:
        """Open at first; see :mod:`ocppgw.session.lifecycle` for the rest."""
        return LifecycleMachine(Core(self, self._clock, self._options.offline_ttl))

    # --- inputs ---

    def envelope_received(self, envelope: Envelope) -> None:
        """A message from the backend for this charge point."""
        self._lifecycle.from_backend(envelope)

    def closing(self) -> None:
        """The connection stopped being open (IChargePointSession)."""
        self._lifecycle.closing()

    def connection_lost(self, replaced: bool = False) -> None:
        """
        The WebSocket closed (``replaced``: for a newer connection).  The
        backend CALL in flight has failed (the charge point may or may not
        have acted on it); queued CALLs wait ``offline_ttl`` for :meth:`adopt`
        by a reconnection, then are answered Offline.
        """
        if replaced:
            self._lifecycle.replaced()
        else:
            self._lifecycle.connection_lost()

    def adopt(self, old: Session) -> None:
        """Take over from an earlier connection of the identity, and the CALLs queued for it."""
        old._lifecycle.replaced()
        if old.version != self.version:
            # CALLs checked against another version's schemas are not this
            # connection's to send: the version belongs to the connection.
            old.fail_queue(
                GatewayError.REPLACED,
                f"charge point reconnected speaking {self.version}, not {old.version}; not sent",
            )
        self._queue.extend(old._queue)
        old._queue.clear()
        # Their answers are this session's to publish now (the same identity's journal).
        if old._journaled:
            self._journaled = (self._journaled or set()) | old._journaled
            old._journaled = None
        # What the old connection answered is answered: a copy of it is no new CALL.
        self._recent.adopt(old._recent)
        while len(self._queue) > self._options.max_queue:
            call = self._queue.pop().message
            self.gateway_error(
                call.unique_id,
                GatewayError.QUEUE_FULL,
                "queue full after reconnection",
                getattr(call, "action", None),
            )
        self._send_next()

    def moved(self) -> None:
        """Another gateway instance holds the identity now: let go of it here."""
        self._lifecycle.moved()

    def expire(self) -> None:
        """The charge point did not come back: fail every queued CALL."""
        self._lifecycle.expired()

    def shutdown(self, why: str) -> None:
        """
        The gateway stops: the backend CALL in flight and the queued ones are
        answered Shutdown (a later answer is still published, marked Late);
        the charge point's CALLs keep waiting for the backend's answers.
        """
        call = self._in_flight
        if call is not None:
            self._finish_in_flight()
            self._remember_late(call.unique_id, call.action)
            self.gateway_error(call.unique_id, GatewayError.SHUTDOWN, why, call.action)
        self.fail_queue(GatewayError.SHUTDOWN, why)

    def awaiting_backend(self) -> int:
        """How many of the charge point's CALLs wait for the backend's answer."""
        return len(self._upstream_pending)

    @property
    def phase(self) -> Phase:
        """Where the session is in its lifecycle."""
        return self._lifecycle.phase()

    @property
    def connected(self) -> bool:
        """Whether the charge point's connection exists (open or closing)."""
        return self.phase in (Phase.OPEN, Phase.CLOSING)

    # --- what the lifecycle's outputs do (ocppgw.session.lifecycle.Rules) ---

    def unlink(self) -> None:
        """Send the connection nothing more."""
        self._link = None

    def close(self, code: int, reason: str) -> None:
        """Close the connection."""
        self.connection.close(code, reason)

    def abandon(self, code: GatewayError, why: str) -> None:
        """The exchanges in flight fail: the backend's CALL with ``code``."""
        for pending in self._upstream_pending.values():
            cancel(pending.timer)
        self._upstream_pending.clear()
        self._stop_call_timer()
        call = self._in_flight
        if call is not None:
            self._finish_in_flight()
            self.gateway_error(call.unique_id, code, why, call.action)

    def release(self) -> None:
        """Tell the router this session is over."""
        self._router.release(self)
