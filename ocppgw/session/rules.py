# -*- test-case-name: tests.unit.session.test_session,tests.unit.session.test_lifecycle -*-
"""
One charge point's OCPP-J session: the rules, and no I/O.

The session receives text frames from its connection and envelopes from the
router, and is made of parts that each own their state:

- both ends, the connection while open and the router: :mod:`ocppgw.session.outbox`;
- the charge point's CALLs and their timers: :mod:`ocppgw.session.charge_point_calls`;
- the backend's CALLs, queued and in flight: :mod:`ocppgw.session.backend_calls`;
- which frame goes where: :mod:`ocppgw.session.charge_point`, and which
  backend message: :mod:`ocppgw.session.backend`;
- open, closing, in its grace period, replaced, moved, expired:
  :mod:`ocppgw.session.lifecycle`.

Time comes from an injected ``IReactorTime``; the connection and the router
are reached through :mod:`ocppgw.interfaces`.
"""

from __future__ import annotations

from functools import cached_property

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ocppgw.interfaces import IChargePointConnection, IChargePointSession, IRouter
from ocppgw.ocpp.envelope import DecodeContext, Envelope, GatewayError
from ocppgw.session.backend import FromBackend
from ocppgw.session.backend_calls import BackendCalls
from ocppgw.session.charge_point import FromChargePoint
from ocppgw.session.charge_point_calls import ChargePointCalls
from ocppgw.session.flood import MessageRate
from ocppgw.session.lifecycle import Core, Lifecycle, LifecycleMachine, Phase
from ocppgw.session.options import SessionOptions, Validate, Violation
from ocppgw.session.outbox import Outbox

__all__ = ["Phase", "Session", "SessionOptions", "Validate", "Violation"]


@implementer(IChargePointSession)
class Session:
    """The OCPP-J rules for one charge point, from its connection to its expiry."""

    def __init__(
        self,
        identity: str,
        version: str,
        connection: IChargePointConnection,
        router: IRouter,
        clock: IReactorTime,
        options: SessionOptions | None = None,
    ) -> None:
        options = options or SessionOptions()
        self.identity = identity
        self.version = version
        self.connection = connection
        self._router = router
        self._clock = clock
        self._options = options
        out = self._out = Outbox(identity, version, connection, router, clock, options.events)
        calls = self._calls = ChargePointCalls(out, clock, options)
        backend = self._backend = BackendCalls(out, clock, options, calls.registration)
        self._from_charge_point = FromChargePoint(out, calls, backend, clock, options)
        self._from_backend = FromBackend(out, calls, backend, options)

    @cached_property
    def _lifecycle(self) -> Lifecycle:
        """Open at first; see :mod:`ocppgw.session.lifecycle` for the rest."""
        return LifecycleMachine(Core(self, self._clock, self._options.offline_ttl))

    # --- inputs ---

    def frame_received(self, text: str) -> None:
        """One text frame arrived from the charge point."""
        self._from_charge_point.frame_received(text)

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
        self._backend.adopt(old._backend)

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
        self._backend.shutdown(why)

    # --- what the admin API and the router read ---

    @property
    def message_rate(self) -> MessageRate:
        """What this charge point may send (a token bucket on the reactor clock)."""
        return self._from_charge_point.rate

    @property
    def registration(self) -> str | None:
        """The backend's BootNotification answer on this connection (None: none yet)."""
        return self._calls.registration.status

    def awaiting_backend(self) -> int:
        """How many of the charge point's CALLs wait for the backend's answer."""
        return len(self._calls.pending)

    def queued(self) -> int:
        """How many backend CALLs wait for this charge point."""
        return len(self._backend.queue)

    def owed(self) -> int:
        """Error envelopes whose publish failed, waiting to be published again."""
        return self._out.owed()

    @cached_property
    def decode_context(self) -> DecodeContext:
        """What a codec needs to decode a downstream message for this session (made once)."""
        return DecodeContext(self.version, self.action_of)

    def action_of(self, unique_id: str) -> str | None:
        """The Action of the exchange with id ``unique_id`` (for typed codecs)."""
        action = self._calls.action_of(unique_id)
        if action is not None:
            return action
        in_flight = self._backend.in_flight
        if in_flight is not None and in_flight.unique_id == unique_id:
            return in_flight.action
        return None

    @property
    def phase(self) -> Phase:
        """Where the session is in its lifecycle."""
        return self._lifecycle.phase()

    @property
    def connected(self) -> bool:
        """Whether the charge point's connection exists (open or closing)."""
        return self.phase in (Phase.OPEN, Phase.CLOSING)

    # --- what the lifecycle's outputs do (ocppgw.session.lifecycle.Rules) ---

    def deliver(self, envelope: Envelope) -> None:
        """Send, queue or answer a backend message, by the OCPP-J rules."""
        self._from_backend.deliver(envelope)

    def refuse(self, envelope: Envelope, code: GatewayError, why: str) -> None:
        """Answer a backend message that will not be sent with an error envelope."""
        self._from_backend.refuse(envelope, code, why)

    def unlink(self) -> None:
        """Send the connection nothing more."""
        self._out.link = None

    def close(self, code: int, reason: str) -> None:
        """Close the connection."""
        self.connection.close(code, reason)

    def abandon(self, code: GatewayError, why: str) -> None:
        """The exchanges in flight fail: the backend's CALL with ``code``."""
        self._calls.abandon()
        self._backend.abandon(code, why)

    def fail_queue(self, code: GatewayError, why: str) -> None:
        """Answer every queued backend CALL with an error envelope of ``code``."""
        self._backend.fail_queue(code, why)

    def release(self) -> None:
        """Tell the router this session is over."""
        self._router.release(self)
