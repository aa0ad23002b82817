# -*- test-case-name: tests.unit.session.test_session,tests.unit.session.test_session_rules -*-
"""
The rules for frames from the charge point.

- a CALL is published for the backend and waits for its answer, at most
  ``upstream_timeout`` seconds (then InternalError to the charge point, and
  Timeout to the backend); one at a time when strict (OCPP-J 1.6 §4.1.1,
  2.0.1 Part 4 §4.1.1);
- an answer is matched to the backend's CALL in flight, so the backend learns
  its Action; one that matches nothing is still published;
- a bad frame is answered in the error codes of the charge point's version:
  a CALL (or what cannot be told from one) with a CALLERROR, "-1" when the id
  is unreadable (2.0.1 Part 4 §4.2.3); a type the version lacks with
  MessageTypeNotSupported (§4.4); a bad CALLRESULT with CALLRESULTERROR
  from 2.1 on (2.1 Part 4 §4.2.4);
- an invalid message gets a CALLERROR (2.0.1 Part 4 §4.1.7), and a SEND,
  never answered (2.1 Part 4 §4.2.5), is only reported.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import Any

from twisted.logger import Logger

from ocppgw.interfaces import CLOSE_POLICY
from ocppgw.ocpp.envelope import GatewayError
from ocppgw.ocpp.messages import (
    Call,
    CallError,
    CallResult,
    FrameError,
    Message,
    MessageType,
    Send,
    parse_frame,
)
from ocppgw.ocpp.timestamps import rfc3339
from ocppgw.ocpp.versions import ErrorKind, has_21_types
from ocppgw.session.exchanges import (
    ACTION,
    Exchanges,
    Pending,
    Timer,
    Violation,
)
from ocppgw.session.flood import FLOOD_FACTOR, FLOOD_SECONDS, MessageRate, is_priority

_log = Logger()

#: The types that answer a CALL of the gateway.
_ANSWERS = (MessageType.CALLRESULT, MessageType.CALLERROR)


class FromChargePoint(Exchanges):
    """What the session does with each frame its charge point sends."""

    @cached_property
    def message_rate(self) -> MessageRate:
        """What this charge point may send (a token bucket on the reactor clock)."""
        options = self._options
        return MessageRate(self._clock, options.max_message_rate, options.max_message_burst)

    def frame_received(self, text: str) -> None:
        """One text frame arrived from the charge point."""
        rate = self.message_rate
        if not rate.admit() and not self._over_rate(text):
            return
        try:
            message = parse_frame(text, self.version)
        except FrameError as e:
            self._options.events.message(self.identity, True, None)
            self._frame_error(e, text)
            return
        self._options.events.message(self.identity, True, message)
        if isinstance(message, Call):
            self._upstream_call(message, text)
        elif isinstance(message, Send):
            self._upstream_send(message, text)
        elif isinstance(message, CallResult | CallError):
            self._upstream_answer(message, text)
        else:
            # CALLRESULTERROR: the charge point could not process our CALLRESULT
            # (2.1 Part 4 §4.2.4); it carries the Action of that exchange.
            action = self._answered.pop(message.unique_id, None)
            self._publish(self._envelope(replace(message, action=action), frame=text))

    def _over_rate(self, text: str) -> bool:
        """
        A frame beyond the charge point's rate: refused, never published;
        True when it goes on after all (read again as any frame): an answer
        to the gateway's CALL in flight or a late one, or a transaction or
        security message within its own allowance (:mod:`ocppgw.session.flood`).
        """
        rate = self.message_rate
        message: Message | None
        try:
            message = parse_frame(text, self.version)
        except FrameError as e:
            message = None
            if e.message_type in _ANSWERS and self._answers_gateway(e.unique_id):
                rate.answer()
                return True  # a malformed answer: the CALL in flight ends Invalid
        else:
            if isinstance(message, CallResult | CallError) and self._answers_gateway(
                message.unique_id
            ):
                rate.answer()
                return True
        if rate.flooding():
            _log.warn(
                "{cid}: above {n}x max_message_rate for {s} s; closing (1008)",
                cid=self.identity,
                n=FLOOD_FACTOR,
                s=FLOOD_SECONDS,
            )
            self.connection.close(CLOSE_POLICY, "message rate far over the limit")
            return False
        if (
            isinstance(message, Call)
            and is_priority(self.version, message.action, message.payload)
            and rate.admit_priority()
        ):
            return True
        if rate.refused == 1 or rate.refused % 1000 == 0:
            _log.warn(
                "{cid}: {n} frame(s) refused so far: {why}",
                cid=self.identity,
                n=rate.refused,
                why=rate.describe(),
            )
        self._options.events.message(self.identity, True, message)
        if isinstance(message, Call):
            # Answered, so the charge point knows; the description names the limit.
            self._send_error(message.unique_id, ErrorKind.GENERIC, rate.describe())
        return False  # dropped (a CALL answered), and counted

    def _answers_gateway(self, unique_id: str) -> bool:
        """Whether ``unique_id`` is the gateway's CALL in flight, or a late one."""
        pending = self._in_flight
        return (pending is not None and pending.unique_id == unique_id) or unique_id in self._late

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
        if not ACTION.fullmatch(call.action):
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
        timeout = self._options.upstream_timeout
        timer: Timer
        if self._upstream_pending:
            # Another CALL waits too (strict = false): a timer of its own.
            timer = self._clock.callLater(timeout, self._upstream_timeout, call.unique_id)
        else:
            timer = self._call_timer
            timer.start(timeout, call.unique_id)
        self._upstream_pending[call.unique_id] = Pending(call.unique_id, call.action, timer)
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
            self._router.publish_invalid(self.identity, self.version, text)
        return violation

    def _upstream_send(self, send: Send, text: str) -> None:
        if not ACTION.fullmatch(send.action):
            _log.warn("{cid}: SEND with unusable action dropped", cid=self.identity)
            self._router.publish_invalid(self.identity, self.version, text)
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
        told = self._send_error(unique_id, ErrorKind.INTERNAL, "backend did not answer")
        self.gateway_error(
            unique_id,
            GatewayError.TIMEOUT,
            f"no answer within {self._options.upstream_timeout:g} s; "
            + (
                "the charge point got InternalError"
                if told
                else "the charge point's connection is closing"
            ),
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

    def _invalid_result(self, answer: CallResult, pending: Pending, text: str) -> bool:
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
