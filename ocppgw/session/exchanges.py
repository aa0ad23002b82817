# -*- test-case-name: tests.unit.session.test_session,tests.unit.session.test_lifecycle -*-
"""
What a session keeps between frames: the exchanges in flight both ways, the
queue of backend CALLs, and the helpers both directions share.

- one CALL in flight per direction (OCPP-J 1.6 §4.1.1, 2.0.1 Part 4 §4.1.1):
  backend CALLs wait in a bounded FIFO queue behind the one in flight;
- a backend CALL is known while it is queued, in flight, and for
  ``downstream_timeout`` seconds after it was answered (:meth:`Exchanges._known`,
  :mod:`ocppgw.session.recent`): MQTT delivers at least once, so the same
  CALL again there is a copy;
- frames go to the connection only while it is open: ``_link`` is the
  connection until the lifecycle (:mod:`ocppgw.session.lifecycle`) lets go
  of it, and a frame meant for a connection that is gone is not sent.

The rules for each direction are :mod:`ocppgw.session.charge_point` and
:mod:`ocppgw.session.backend`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw.interfaces import (
    NO_EVENTS,
    CallJournal,
    IChargePointConnection,
    IGatewayEvents,
    IRouter,
)
from ocppgw.ocpp.envelope import ORIGIN_GATEWAY, DecodeContext, Envelope, GatewayError
from ocppgw.ocpp.messages import (
    Call,
    CallError,
    CallResult,
    CallResultError,
    Message,
    encode_frame,
)
from ocppgw.ocpp.timestamps import rfc3339
from ocppgw.ocpp.versions import ErrorKind, error_code
from ocppgw.session.flood import DEFAULT_BURST, DEFAULT_RATE
from ocppgw.session.owed import Owed
from ocppgw.session.recent import Known, RecentCalls
from ocppgw.session.timers import SharedTimer

_log = Logger()

#: An Action becomes part of a topic; OCPP actions are plain identifiers.
ACTION = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")

#: How many timed-out downstream CALL ids are remembered, so that a late
#: answer can still be published, marked late (and, in backend.py, how many
#: answered 2.1 CALLs, for the Action of a CALLRESULTERROR).
LATE_MEMORY = 32


class Violation(Protocol):
    """What a validator reports (see :mod:`ocppgw.ocpp.validation`)."""

    @property
    def kind(self) -> ErrorKind: ...

    @property
    def description(self) -> str: ...


#: ``validate(version, action, is_request, payload)``: None when valid.
Validate = Callable[[str, str, bool, dict[str, Any]], Violation | None]


@dataclass(frozen=True)
class SessionOptions:
    #: Seconds the backend has to answer a charge point's CALL.
    upstream_timeout: float = 30.0
    #: Seconds the charge point has to answer a backend's CALL.
    downstream_timeout: float = 30.0
    #: Downstream CALLs that may wait behind the one in flight.
    max_queue: int = 100
    #: Seconds queued backend CALLs wait for a reconnection ([dnstream] offline_ttl).
    offline_ttl: float = 60.0
    #: Refuse a second upstream CALL while one is pending (OCPP-J 2.x: SHALL NOT).
    strict: bool = True
    #: Answer Heartbeat locally (and still publish it).
    local_heartbeat: bool = False
    #: Schema validation of the charge point's messages, if any.
    validate_upstream: Validate | None = None
    #: Schema validation of the backend's messages, if any.
    validate_downstream: Validate | None = None
    #: Messages per second the charge point may send (0: no limit), and the
    #: burst beyond it ([listener:NAME] max_message_rate, max_message_burst).
    max_message_rate: int = DEFAULT_RATE
    max_message_burst: int = DEFAULT_BURST
    #: Told every message in and out, parsed once here (the admin counters).
    events: IGatewayEvents = NO_EVENTS
    #: Told of each backend CALL queued, sent and answered; None: not kept.
    journal: CallJournal | None = None


class Timer(Protocol):
    """What a pending exchange's timer offers: a DelayedCall or a :class:`SharedTimer`."""

    def active(self) -> bool: ...

    def cancel(self) -> None: ...


@dataclass
class Pending:
    """A CALL waiting for its answer, and the timer that gives up on it."""

    unique_id: str
    action: str
    timer: Timer | None
    #: A backend CALL's payload, to tell a copy of it from another CALL.
    payload: dict[str, Any] | None = None


def cancel(timer: Timer | None) -> None:
    """Cancel ``timer`` unless it already ran or was cancelled."""
    if timer is not None and timer.active():
        timer.cancel()


class Exchanges:
    """One charge point's exchanges in flight, and how to answer for them."""

    #: The backend did not answer the charge point's CALL in time: the
    #: charge point's side (:class:`~ocppgw.session.charge_point.FromChargePoint`)
    #: says what that means; :attr:`_call_timer` calls it.
    _upstream_timeout: Callable[[str], None]

    def __init__(
        self,
        identity: str,
        version: str,
        connection: IChargePointConnection,
        router: IRouter,
        clock: IReactorTime,
        options: SessionOptions | None = None,
    ) -> None:
        self.identity = identity
        self.version = version
        self.connection = connection
        self._router = router
        self._clock = clock
        self._options = options or SessionOptions()
        #: Where frames go; None once the connection stopped being open.
        self._link: IChargePointConnection | None = connection
        #: Charge point CALLs waiting for the backend, by UniqueId.
        self._upstream_pending: dict[str, Pending] = {}
        #: The backend CALL the charge point has not answered yet.
        self._in_flight: Pending | None = None
        #: Backend CALLs waiting behind it (at most ``max_queue``, 100 by default:
        #: a list, which costs 56 bytes per idle charge point where a deque costs 624).
        self._queue: list[Envelope] = []
        #: Backend CALLs answered lately (oldest first), to know a QoS 1 copy.
        self._recent = RecentCalls(clock, self._options.downstream_timeout)
        #: Timed-out backend CALLs (UniqueId to Action), so a late answer is marked.
        self._late: OrderedDict[str, str] = OrderedDict()
        #: 2.1: upstream CALLs answered with a CALLRESULT (UniqueId to Action), so a
        #: CALLRESULTERROR for that result carries its Action (2.1 Part 4 §4.2.4).
        self._answered: OrderedDict[str, str] = OrderedDict()
        #: Backend CALLs in the journal whose answer is not published yet (made
        #: with the first: most charge points never have one).
        self._journaled: set[str] | None = None
        #: Error envelopes whose publish failed, published again later.
        self._owed = Owed(clock, self._to_router, identity)

    def owed(self) -> int:
        """Error envelopes whose publish failed, waiting to be published again."""
        return len(self._owed)

    @cached_property
    def _call_timer(self) -> SharedTimer:
        """The timeout of the CALL the charge point waits on, when it is the only one."""
        return SharedTimer(self._clock, self._upstream_timeout)

    def _stop_call_timer(self) -> None:
        if "_call_timer" in self.__dict__:
            self._call_timer.stop()

    def _envelope(self, message: Message, frame: str | None = None, **kw: object) -> Envelope:
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

    def _publish(self, envelope: Envelope) -> None:
        self._to_router(envelope).addErrback(self._publish_failed, envelope)

    def _to_router(self, envelope: Envelope) -> Deferred[None]:
        d = self._router.publish(envelope)
        if self._journaled:
            uid = envelope.message.unique_id
            if uid in self._journaled and isinstance(envelope.message, CallResult | CallError):
                d.addCallback(self._journal_answered, uid)
        return d

    def _journal_answered(self, result: None, unique_id: str) -> None:
        """The answer to a journaled backend CALL is published: the journal lets it go."""
        if self._journaled is not None and unique_id in self._journaled:
            self._journaled.discard(unique_id)
            assert self._options.journal is not None
            self._options.journal.answered(self.identity, unique_id)

    def _publish_failed(self, failure: Failure, envelope: Envelope) -> None:
        message = envelope.message
        reason = failure.getErrorMessage()
        _log.warn(
            "{cid}: could not publish {type} {id}: {reason}",
            cid=self.identity,
            type=message.message_type.name,
            id=message.unique_id,
            reason=reason,
        )
        if isinstance(message, Call) and envelope.origin != ORIGIN_GATEWAY:
            pending = self._upstream_pending.pop(message.unique_id, None)
            if pending is not None:
                cancel(pending.timer)
                self._send_error(
                    message.unique_id, ErrorKind.INTERNAL, "gateway could not reach the backend"
                )
            return
        if envelope.origin == ORIGIN_GATEWAY:
            self._owed.owe(envelope)
            return
        # An answer, or a SEND (never answered, 2.1 Part 4 §4.2.5): the backend
        # is told what it will not get, as soon as the buffer has room.
        self._owed.owe(
            self._envelope(
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

    def _send(self, message: Message) -> bool:
        """Send ``message`` to the charge point; False when its connection is not open."""
        if self._link is None:
            return False
        self._link.send_frame(encode_frame(message))
        self._options.events.message(self.identity, False, message)
        return True

    def _send_error(
        self, unique_id: str, kind: ErrorKind, description: str, *, result: bool = False
    ) -> bool:
        code = error_code(self.version, kind)
        cls = CallResultError if result else CallError
        return self._send(cls(unique_id, code, description))

    def gateway_error(
        self,
        unique_id: str,
        code: GatewayError,
        description: str,
        action: str | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        """Publish an error envelope that the gateway made itself."""
        self._publish(
            self._envelope(
                CallError(unique_id, code.value, description, details or {}, action),
                origin=ORIGIN_GATEWAY,
            )
        )

    def _unmatched(self, unique_id: str, action: str | None) -> None:
        """A backend answer for no waiting CALL: never sent to the charge point."""
        self.gateway_error(
            unique_id,
            GatewayError.UNMATCHED,
            "no CALL of the charge point is waiting for this answer "
            "(already answered, timed out, or never sent)",
            action,
        )

    def _send_next(self) -> None:
        """
        Send the first queued backend CALL, if none is in flight and the link
        is open; one the backend sent (``Timestamp``) longer than
        ``downstream_timeout`` ago is answered Expired instead.
        """
        timeout = self._options.downstream_timeout
        while self._in_flight is None and self._queue and self._link is not None:
            envelope = self._queue.pop(0)
            call = envelope.message
            assert isinstance(call, Call)
            if envelope.sent is not None and self._clock.seconds() - envelope.sent > timeout:
                age = self._clock.seconds() - envelope.sent
                why = f"not sent: the backend sent it {age:.0f} s ago, over {timeout:g} s"
                self.refuse_call(call, GatewayError.EXPIRED, why)
                continue
            timer = self._clock.callLater(timeout, self._downstream_timeout, call.unique_id)
            self._in_flight = Pending(call.unique_id, call.action, timer, call.payload)
            if self._journaled is not None and call.unique_id in self._journaled:
                self._options.journal.sent(self.identity, call.unique_id)  # type: ignore[union-attr]
            self._send(call)
            return

    def refuse_call(self, call: Call, code: GatewayError, why: str) -> None:
        """Answer a backend CALL that is not sent; a copy of it gets nothing (:meth:`_known`)."""
        self._recent.add(call.unique_id, call.action, call.payload)
        self.gateway_error(call.unique_id, code, why, call.action)

    def _downstream_timeout(self, unique_id: str) -> None:
        """The charge point did not answer in time: Timeout envelope, then the next CALL."""
        pending = self._in_flight
        if pending is None or pending.unique_id != unique_id:
            return
        pending.timer = None
        self._in_flight = None
        self._recent.add(unique_id, pending.action, pending.payload)
        self._remember_late(unique_id, pending.action)
        self.gateway_error(
            unique_id,
            GatewayError.TIMEOUT,
            f"charge point did not answer within {self._options.downstream_timeout:g} s",
            pending.action,
        )
        self._send_next()

    def _remember_late(self, unique_id: str, action: str) -> None:
        """A CALL already answered for: its answer, if it comes, is marked Late."""
        self._late[unique_id] = action
        while len(self._late) > LATE_MEMORY:
            self._late.popitem(last=False)

    def _finish_in_flight(self) -> None:
        """The CALL in flight is answered (by the charge point or the gateway)."""
        pending = self._in_flight
        if pending is not None:
            cancel(pending.timer)
            self._in_flight = None
            self._recent.add(pending.unique_id, pending.action, pending.payload)

    def _known(self, unique_id: str) -> Known | None:
        """
        The Action and payload of the backend CALL ``unique_id`` if it is
        queued, in flight, or was answered in the last ``downstream_timeout``
        seconds; else None.
        """
        pending = self._in_flight
        if pending is not None and pending.unique_id == unique_id:
            return pending.action, pending.payload
        for envelope in self._queue:
            call = envelope.message
            if call.unique_id == unique_id:
                assert isinstance(call, Call)
                return call.action, call.payload
        return self._recent.get(unique_id)

    @cached_property
    def decode_context(self) -> DecodeContext:
        """What a codec needs to decode a downstream message for this session (made once)."""
        return DecodeContext(self.version, self.action_of)

    def action_of(self, unique_id: str) -> str | None:
        """The Action of the exchange with id ``unique_id`` (for typed codecs)."""
        pending = self._upstream_pending.get(unique_id)
        if pending is not None:
            return pending.action
        if self._in_flight is not None and self._in_flight.unique_id == unique_id:
            return self._in_flight.action
        return None

    def queued(self) -> int:
        """How many backend CALLs wait for this charge point."""
        return len(self._queue)

    def fail_queue(self, code: GatewayError, why: str) -> None:
        """Answer every queued CALL with an error envelope of ``code``."""
        while self._queue:
            call = self._queue.pop(0).message
            assert isinstance(call, Call)
            self.refuse_call(call, code, why)
