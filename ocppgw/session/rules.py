"""
One charge point's OCPP-J session: the rules, and no I/O.

The session receives text frames from its connection and envelopes from the
router, and decides what goes where.  It owns:

- correlation: every answer is matched to its CALL, so the backend learns the
  Action of a CALLRESULT, and an answer that matches nothing is reported;
- one CALL in flight per direction (OCPP-J 1.6 §4.1.1, 2.0.1 Part 4 §4.1.1):
  downstream CALLs wait in a bounded FIFO queue; a second upstream CALL while
  one is pending is refused;
- timeouts on both directions, reported on both sides;
- the answers to bad frames, in the error codes of the charge point's version.

Time comes from an injected ``IReactorTime``; the connection and the router
are reached through :mod:`ocppgw.interfaces`.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw.interfaces import IChargePointConnection, IRouter
from ocppgw.ocpp.envelope import ORIGIN_GATEWAY, Envelope, GatewayError
from ocppgw.ocpp.messages import (
    Call,
    CallError,
    CallResult,
    CallResultError,
    FrameError,
    Message,
    MessageType,
    Send,
    encode_frame,
    parse_frame,
)
from ocppgw.ocpp.versions import ErrorKind, error_code, has_21_types

_log = Logger()

#: An Action becomes part of a topic; OCPP actions are plain identifiers.
_ACTION = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")

#: How many timed-out downstream CALL ids are remembered, so that a late
#: answer can still be published, marked late.
_LATE_MEMORY = 32


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
    #: Refuse a second upstream CALL while one is pending (OCPP-J 2.x: SHALL NOT).
    strict: bool = True
    #: Answer Heartbeat locally (and still publish it).
    local_heartbeat: bool = False
    #: Schema validation of the charge point's messages, if any.
    validate_upstream: Validate | None = None
    #: Schema validation of the backend's messages, if any.
    validate_downstream: Validate | None = None


def rfc3339(seconds: float) -> str:
    """``seconds`` since the epoch as an RFC 3339 UTC time with milliseconds."""
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@dataclass
class _Pending:
    unique_id: str
    action: str
    timer: IDelayedCall | None


class Session:
    """The OCPP-J rules for one connected charge point."""

    def __init__(
        self,
        identity: str,
        version: str,
        connection: IChargePointConnection,
        upstream: IRouter,
        clock: IReactorTime,
        options: SessionOptions | None = None,
    ) -> None:
        self.identity = identity
        self.version = version
        self.connection = connection
        self._upstream = upstream
        self._clock = clock
        self._options = options or SessionOptions()
        self.connected = True
        #: Charge point CALLs waiting for the backend, by UniqueId.
        self._upstream_pending: dict[str, _Pending] = {}
        #: The backend CALL the charge point has not answered yet.
        self._in_flight: _Pending | None = None
        #: Backend CALLs waiting behind it.
        self._queue: deque[Envelope] = deque()
        self._late: OrderedDict[str, str] = OrderedDict()

    # --- helpers ---

    def _envelope(self, message: Message, **kw: object) -> Envelope:
        return Envelope(
            message,
            version=self.version,
            charge_point=self.identity,
            timestamp=rfc3339(self._clock.seconds()),
            **kw,  # type: ignore[arg-type]
        )

    def _publish(self, envelope: Envelope) -> None:
        d = self._upstream.publish(envelope)
        d.addErrback(self._publish_failed, envelope)

    def _publish_failed(self, failure: Failure, envelope: Envelope) -> None:
        message = envelope.message
        _log.error(
            "{cid}: could not publish {type} {id}: {reason}",
            cid=self.identity,
            type=message.message_type.name,
            id=message.unique_id,
            reason=failure.getErrorMessage(),
        )
        if isinstance(message, Call):
            pending = self._upstream_pending.pop(message.unique_id, None)
            if pending is not None:
                _cancel(pending.timer)
                self._send_error(
                    message.unique_id, ErrorKind.INTERNAL, "gateway could not reach the backend"
                )

    def _send(self, message: Message) -> None:
        if self.connected:
            self.connection.send_frame(encode_frame(message))

    def _send_error(
        self, unique_id: str, kind: ErrorKind, description: str, *, result: bool = False
    ) -> None:
        code = error_code(self.version, kind)
        cls = CallResultError if result else CallError
        self._send(cls(unique_id, code, description))

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

    # --- from the charge point ---

    def frame_received(self, text: str) -> None:
        """One text frame arrived from the charge point."""
        try:
            message = parse_frame(text, self.version)
        except FrameError as e:
            self._frame_error(e, text)
            return
        if isinstance(message, Call):
            self._upstream_call(message, text)
        elif isinstance(message, Send):
            self._upstream_send(message, text)
        elif isinstance(message, CallResult | CallError):
            self._upstream_answer(message, text)
        else:
            # CALLRESULTERROR: the charge point could not process our CALLRESULT.
            self._publish(self._envelope(message, frame=text))

    def _frame_error(self, error: FrameError, text: str) -> None:
        _log.warn(
            "{cid}: bad frame ({why}): {frame!r}",
            cid=self.identity,
            why=error.description,
            frame=text[:200],
        )
        # An answer type the version has: the backend's CALL failed. A type
        # the version lacks (2.0.1 Part 4 §4.4) is answered like a bad CALL.
        if error.kind is not ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED and error.message_type in (
            MessageType.CALLRESULT,
            MessageType.CALLERROR,
            MessageType.CALLRESULTERROR,
        ):
            self._bad_answer(error)
            return
        # A CALL (or something that cannot be told apart from one): answer it
        # with a CALLERROR (2.0.1 Part 4 §4.2.3), "-1" when the id is unreadable.
        self._send_error(error.unique_id, error.kind, error.description)

    def _bad_answer(self, error: FrameError) -> None:
        """A malformed CALLRESULT/CALLERROR: the backend's CALL failed."""
        pending = self._in_flight
        if pending is not None and pending.unique_id == error.unique_id:
            self._finish_in_flight()
            self.gateway_error(
                error.unique_id,
                GatewayError.INVALID,
                f"charge point sent an invalid answer: {error.description}",
                pending.action,
            )
            self._send_next()
        if has_21_types(self.version) and error.message_type == MessageType.CALLRESULT:
            # OCPP 2.1 Part 4 §4.2.4: tell the charge point its CALLRESULT was bad.
            self._send_error(error.unique_id, error.kind, error.description, result=True)

    def _upstream_call(self, call: Call, text: str) -> None:
        if not _ACTION.fullmatch(call.action):
            self._send_error(
                call.unique_id, ErrorKind.NOT_IMPLEMENTED, f"unknown action {call.action[:64]!r}"
            )
            return
        if call.unique_id in self._upstream_pending:
            self._send_error(
                call.unique_id,
                ErrorKind.PROTOCOL,
                "a CALL with this MessageId is already being processed",
            )
            return
        if self._upstream_pending and self._options.strict:
            # OCPP-J 1.6 §4.1.1, 2.0.1 Part 4 §4.1.1: one CALL at a time.
            self._send_error(
                call.unique_id,
                ErrorKind.PROTOCOL if self.version == "ocpp1.6" else ErrorKind.RPC_FRAMEWORK,
                "a previous CALL is still waiting for its answer",
            )
            return
        violation = self._check_upstream(call.action, True, call.payload, text)
        if violation is not None:
            # OCPP 2.0.1 Part 4 §4.1.7: an invalid message gets a CALLERROR.
            self._send_error(call.unique_id, violation.kind, violation.description)
            return
        if self._options.local_heartbeat and call.action == "Heartbeat":
            now = rfc3339(self._clock.seconds())
            self._send(CallResult(call.unique_id, {"currentTime": now}))
            self._publish(self._envelope(call, frame=text, answered=True))
            return
        timer = self._clock.callLater(
            self._options.upstream_timeout, self._upstream_timeout, call.unique_id
        )
        self._upstream_pending[call.unique_id] = _Pending(call.unique_id, call.action, timer)
        self._publish(self._envelope(call, frame=text))

    def _check_upstream(
        self, action: str, request: bool, payload: dict[str, Any], text: str
    ) -> Violation | None:
        validate = self._options.validate_upstream
        if validate is None:
            return None
        violation = validate(self.version, action, request, payload)
        if violation is not None:
            _log.warn(
                "{cid}: invalid {action}{kind}: {why}",
                cid=self.identity,
                action=action,
                kind="" if request else " response",
                why=violation.description,
            )
            self._upstream.publish_invalid(self.identity, self.version, text)
        return violation

    def _upstream_send(self, send: Send, text: str) -> None:
        if not _ACTION.fullmatch(send.action):
            _log.warn("{cid}: SEND with unusable action dropped", cid=self.identity)
            self._upstream.publish_invalid(self.identity, self.version, text)
            return
        # A SEND is never answered (2.1 Part 4 §4.2.5), so an invalid one can
        # only be reported on the invalid topic.
        if self._check_upstream(send.action, True, send.payload, text) is None:
            self._publish(self._envelope(send, frame=text))

    def _upstream_timeout(self, unique_id: str) -> None:
        pending = self._upstream_pending.pop(unique_id, None)
        if pending is None:
            return
        pending.timer = None
        self._send_error(unique_id, ErrorKind.INTERNAL, "backend did not answer")
        self.gateway_error(
            unique_id,
            GatewayError.TIMEOUT,
            f"no answer within {self._options.upstream_timeout:g} s; "
            "the charge point got InternalError",
            pending.action,
        )

    def _upstream_answer(self, answer: CallResult | CallError, text: str) -> None:
        pending = self._in_flight
        late = False
        if pending is not None and pending.unique_id == answer.unique_id:
            action: str | None = pending.action
            if isinstance(answer, CallResult) and self._invalid_result(answer, pending, text):
                return
            self._finish_in_flight()
        elif answer.unique_id in self._late:
            action = self._late.pop(answer.unique_id)
            late = True
        else:
            action = None
            _log.warn(
                "{cid}: answer {id} matches no pending CALL",
                cid=self.identity,
                id=answer.unique_id,
            )
        if isinstance(answer, CallResult):
            tagged: CallResult | CallError = CallResult(answer.unique_id, answer.payload, action)
        else:
            tagged = CallError(
                answer.unique_id,
                answer.error_code,
                answer.error_description,
                answer.error_details,
                action,
            )
        self._publish(self._envelope(tagged, frame=text, late=late))
        self._send_next()

    def _invalid_result(self, answer: CallResult, pending: _Pending, text: str) -> bool:
        """Report a CALLRESULT that fails validation; True if it did."""
        violation = self._check_upstream(pending.action, False, answer.payload, text)
        if violation is None:
            return False
        self._finish_in_flight()
        self.gateway_error(
            answer.unique_id,
            GatewayError.VALIDATION,
            f"charge point's answer is invalid: {violation.description}",
            pending.action,
            {"Payload": answer.payload},
        )
        if has_21_types(self.version):
            # OCPP 2.1 Part 4 §4.2.4: tell the charge point its CALLRESULT was bad.
            self._send_error(answer.unique_id, violation.kind, violation.description, result=True)
        self._send_next()
        return True

    # --- from the backend ---

    def action_of(self, unique_id: str) -> str | None:
        """The Action of the exchange with id ``unique_id`` (for typed codecs)."""
        pending = self._upstream_pending.get(unique_id)
        if pending is not None:
            return pending.action
        if self._in_flight is not None and self._in_flight.unique_id == unique_id:
            return self._in_flight.action
        return None

    def _check_downstream(self, message: Call | Send | CallResult, action: str) -> bool:
        """True when the backend's message is valid; else report it."""
        validate = self._options.validate_downstream
        if validate is None:
            return True
        request = not isinstance(message, CallResult)
        violation = validate(self.version, action, request, message.payload)
        if violation is None:
            return True
        self.gateway_error(
            message.unique_id,
            GatewayError.INVALID,
            f"not sent to the charge point: {violation.description}",
            action,
        )
        return False

    def envelope_received(self, envelope: Envelope) -> None:
        """A message from the backend for this charge point."""
        message = envelope.message
        if isinstance(message, Call | Send) and not self._check_downstream(message, message.action):
            return
        if isinstance(message, Call):
            self._downstream_call(envelope, message)
        elif isinstance(message, Send):
            if self.connected:
                self._send(message)
            else:
                self.gateway_error(
                    message.unique_id,
                    GatewayError.OFFLINE,
                    "charge point is not connected",
                    message.action,
                )
        elif isinstance(message, CallResult | CallError):
            self._downstream_answer(message)
        else:
            # CALLRESULTERROR about the charge point's CALLRESULT: pass it on.
            self._send(message)

    def _downstream_call(self, envelope: Envelope, call: Call) -> None:
        if not _ACTION.fullmatch(call.action):
            self.gateway_error(
                call.unique_id, GatewayError.INVALID, "Action is not an OCPP action name"
            )
            return
        busy = {e.message.unique_id for e in self._queue}
        if self._in_flight is not None:
            busy.add(self._in_flight.unique_id)
        if call.unique_id in busy:
            self.gateway_error(
                call.unique_id,
                GatewayError.INVALID,
                "a CALL with this UniqueId is already queued or in flight",
                call.action,
            )
            return
        if len(self._queue) >= self._options.max_queue:
            self.gateway_error(
                call.unique_id,
                GatewayError.QUEUE_FULL,
                f"{self._options.max_queue} CALLs are already waiting for this charge point",
                call.action,
            )
            return
        self._queue.append(envelope)
        self._send_next()

    def _send_next(self) -> None:
        if self._in_flight is not None or not self._queue or not self.connected:
            return
        envelope = self._queue.popleft()
        call = envelope.message
        assert isinstance(call, Call)
        timer = self._clock.callLater(
            self._options.downstream_timeout, self._downstream_timeout, call.unique_id
        )
        self._in_flight = _Pending(call.unique_id, call.action, timer)
        self._send(call)

    def _finish_in_flight(self) -> None:
        if self._in_flight is not None:
            _cancel(self._in_flight.timer)
            self._in_flight = None

    def _downstream_timeout(self, unique_id: str) -> None:
        pending = self._in_flight
        if pending is None or pending.unique_id != unique_id:
            return
        pending.timer = None
        self._in_flight = None
        self._late[unique_id] = pending.action
        while len(self._late) > _LATE_MEMORY:
            self._late.popitem(last=False)
        self.gateway_error(
            unique_id,
            GatewayError.TIMEOUT,
            f"charge point did not answer within {self._options.downstream_timeout:g} s",
            pending.action,
        )
        self._send_next()

    def _downstream_answer(self, answer: CallResult | CallError) -> None:
        pending = self._upstream_pending.get(answer.unique_id)
        if (
            pending is not None
            and isinstance(answer, CallResult)
            and not self._check_downstream(answer, pending.action)
        ):
            return  # the charge point's CALL stays pending for a valid answer
        self._upstream_pending.pop(answer.unique_id, None)
        if pending is None:
            # Nothing to answer: never send the charge point an unmatched answer.
            self.gateway_error(
                answer.unique_id,
                GatewayError.UNMATCHED,
                "no CALL of the charge point is waiting for this answer "
                "(already answered, timed out, or never sent)",
                answer.action,
            )
            return
        _cancel(pending.timer)
        self._send(answer)

    # --- lifecycle ---

    def connection_lost(self, replaced: bool = False) -> None:
        """
        The WebSocket closed.  The backend CALL in flight has failed (the
        charge point may or may not have acted on it); queued CALLs are kept
        for :meth:`adopt` by a reconnection, or failed by :meth:`expire`.
        """
        if not self.connected:
            return
        self.connected = False
        for pending in self._upstream_pending.values():
            _cancel(pending.timer)
        self._upstream_pending.clear()
        if self._in_flight is not None:
            pending = self._in_flight
            self._finish_in_flight()
            if replaced:
                code, why = GatewayError.REPLACED, "connection replaced before the answer came"
            else:
                code, why = GatewayError.DISCONNECTED, "charge point disconnected before answering"
            self.gateway_error(pending.unique_id, code, why, pending.action)

    def adopt(self, old: Session) -> None:
        """Take over the CALLs still queued for a previous connection."""
        self._queue.extend(old._queue)
        old._queue.clear()
        while len(self._queue) > self._options.max_queue:
            call = self._queue.pop().message
            self.gateway_error(
                call.unique_id,
                GatewayError.QUEUE_FULL,
                "queue full after reconnection",
                getattr(call, "action", None),
            )
        self._send_next()

    def queued(self) -> int:
        """How many backend CALLs wait for this charge point."""
        return len(self._queue)

    def expire(self) -> None:
        """The charge point did not come back: fail every queued CALL."""
        self.fail_queue(
            GatewayError.OFFLINE, "charge point is offline and did not reconnect in time"
        )

    def fail_queue(self, code: GatewayError, why: str) -> None:
        """Answer every queued CALL with an error envelope of ``code``."""
        while self._queue:
            call = self._queue.popleft().message
            self.gateway_error(call.unique_id, code, why, getattr(call, "action", None))


def _cancel(timer: IDelayedCall | None) -> None:
    if timer is not None and timer.active():
        timer.cancel()
