# -*- test-case-name: tests.unit.session.test_session,tests.unit.session.test_owed -*-
"""
Both ends of one session, as its rules use them: the charge point's
connection while it is open, and the router with the error envelopes owed
to it.

- frames go to the connection only while it is open: :attr:`Outbox.link` is
  the connection until the lifecycle (:mod:`ocppgw.session.lifecycle`) lets
  go of it, and a frame meant for a connection that is gone is not sent;
- an envelope whose publish fails is not lost: an error the gateway made is
  published again (:mod:`ocppgw.session.owed`), and for a charge point's
  answer or SEND the backend is told it will not come (``NotPublished``).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw.interfaces import IChargePointConnection, IGatewayEvents, IRouter
from ocppgw.ocpp.envelope import ORIGIN_GATEWAY, Envelope, GatewayError
from ocppgw.ocpp.messages import Call, CallError, CallResultError, Message, encode_frame
from ocppgw.ocpp.timestamps import rfc3339
from ocppgw.ocpp.versions import ErrorKind, error_code
from ocppgw.session.owed import Owed

_log = Logger()

#: Told of each envelope handed to the router, with the Deferred of its publish.
Watch = Callable[[Envelope, Deferred[None]], None]


class Outbox:
    """Where one session's frames and envelopes go."""

    __slots__ = (
        "_clock",
        "_events",
        "_owed",
        "_router",
        "connection",
        "identity",
        "link",
        "version",
        "watch",
    )

    def __init__(
        self,
        identity: str,
        version: str,
        connection: IChargePointConnection,
        router: IRouter,
        clock: IReactorTime,
        events: IGatewayEvents,
    ) -> None:
        self.identity = identity
        self.version = version
        self.connection = connection
        #: Where frames go; None once the connection stopped being open.
        self.link: IChargePointConnection | None = connection
        self._router = router
        self._clock = clock
        self._events = events
        #: Error envelopes whose publish failed, published again later.
        self._owed = Owed(clock, self.to_router, identity)
        #: Told of every envelope handed to the router; None: nobody
        #: (the backend's CALLs set it when the journal keeps one).
        self.watch: Watch | None = None

    def owed(self) -> int:
        """Error envelopes whose publish failed, waiting to be published again."""
        return len(self._owed)

    # --- the backend's side ---

    def envelope(self, message: Message, frame: str | None = None, **kw: object) -> Envelope:
        """``message`` of this charge point as an envelope, stamped now."""
        timestamp = rfc3339(self._clock.seconds())
        if not kw:  # a charge point's message: the usual case, without a dict of keywords
            return Envelope(message, self.version, self.identity, timestamp, frame=frame)
        return Envelope(
            message,
            version=self.version,
            charge_point=self.identity,
            timestamp=timestamp,
            frame=frame,
            **kw,  # type: ignore[arg-type]
        )

    def to_router(self, envelope: Envelope) -> Deferred[None]:
        """Hand ``envelope`` to the router; fires when it is published."""
        d = self._router.publish(envelope)
        if self.watch is not None:
            self.watch(envelope, d)
        return d

    def publish(self, envelope: Envelope) -> None:
        """Publish ``envelope``; if that fails, what the backend is owed is published later."""
        self.to_router(envelope).addErrback(self._failed, envelope)

    def publish_invalid(self, text: str) -> None:
        """Report the charge point's invalid frame ``text`` on the invalid topic."""
        self._router.publish_invalid(self.identity, self.version, text)

    def registered(self, status: str) -> None:
        """The backend's BootNotification answer changed the registration to ``status``."""
        self._router.registered(self.identity, status)

    def not_published(self, failure: Failure, envelope: Envelope) -> str:
        """Log that ``envelope`` could not be published; the reason."""
        message = envelope.message
        reason = failure.getErrorMessage()
        _log.warn(
            "{cid}: could not publish {type} {id}: {reason}",
            cid=self.identity,
            type=message.message_type.name,
            id=message.unique_id,
            reason=reason,
        )
        return reason

    def _failed(self, failure: Failure, envelope: Envelope) -> None:
        reason = self.not_published(failure, envelope)
        message = envelope.message
        if envelope.origin == ORIGIN_GATEWAY:
            self._owed.owe(envelope)
            return
        if isinstance(message, Call):
            return  # answered here already ([local]): only its copy is lost
        # An answer, or a SEND (never answered, 2.1 Part 4 §4.2.5): the backend
        # is told what it will not get, as soon as the buffer has room.
        self._owed.owe(
            self.envelope(
                CallError(
                    message.unique_id,
                    GatewayError.NOT_PUBLISHED.value,
                    f"the charge point's {message.message_type.name} could not be "
                    f"published ({reason}); it is lost",
                    {},
                    getattr(message, "action", None),
                ),
                origin=ORIGIN_GATEWAY,
            )
        )

    def gateway_error(
        self,
        unique_id: str,
        code: GatewayError,
        description: str,
        action: str | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        """Publish an error envelope that the gateway made itself."""
        self.publish(
            self.envelope(
                CallError(unique_id, code.value, description, details or {}, action),
                origin=ORIGIN_GATEWAY,
            )
        )

    def unmatched(self, unique_id: str, action: str | None) -> None:
        """A backend answer for no waiting CALL: never sent to the charge point."""
        self.gateway_error(
            unique_id,
            GatewayError.UNMATCHED,
            "no CALL of the charge point is waiting for this answer "
            "(already answered, timed out, or never sent)",
            action,
        )

    # --- the charge point's side ---

    def send(self, message: Message) -> bool:
        """Send ``message`` to the charge point; False when its connection is not open."""
        if self.link is None:
            return False
        self.link.send_frame(encode_frame(message))
        self._events.message(self.identity, False, message)
        return True

    def send_error(
        self, unique_id: str, kind: ErrorKind, description: str, *, result: bool = False
    ) -> bool:
        """A CALLERROR (or, ``result``, a 2.1 CALLRESULTERROR) in the charge point's codes."""
        code = error_code(self.version, kind)
        cls = CallResultError if result else CallError
        return self.send(cls(unique_id, code, description))
