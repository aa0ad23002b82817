# -*- test-case-name: tests.unit.session.test_session,tests.unit.session.test_session_rules -*-
"""
The rules for frames from the charge point: each is parsed once and goes to
the side it belongs to.

- a CALL to the charge point's CALLs (:mod:`ocppgw.session.charge_point_calls`),
  once its Action is a usable name (NotImplemented otherwise);
- an answer to the backend's CALLs (:mod:`ocppgw.session.backend_calls`),
  which match it to the one in flight; one that matches nothing is still
  published;
- a bad frame is answered in the error codes of the charge point's version:
  a CALL (or what cannot be told from one) with a CALLERROR, "-1" when the id
  is unreadable (2.0.1 Part 4 §4.2.3); a type the version lacks with
  MessageTypeNotSupported (§4.4); a bad CALLRESULT with CALLRESULTERROR
  from 2.1 on (2.1 Part 4 §4.2.4);
- a SEND, never answered (2.1 Part 4 §4.2.5), is published, or, invalid,
  only reported;
- beyond the message rate (:mod:`ocppgw.session.flood`) a frame is refused.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocppgw.interfaces import CLOSE_POLICY
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
from ocppgw.ocpp.versions import ErrorKind
from ocppgw.session.backend_calls import BackendCalls
from ocppgw.session.charge_point_calls import ChargePointCalls
from ocppgw.session.checks import upstream_violation
from ocppgw.session.flood import FLOOD_FACTOR, FLOOD_SECONDS, MessageRate, is_priority
from ocppgw.session.options import ACTION, SessionOptions
from ocppgw.session.outbox import Outbox

_log = Logger()

#: The types that answer a CALL of the gateway.
_ANSWERS = (MessageType.CALLRESULT, MessageType.CALLERROR)


class FromChargePoint:
    """What the session does with each frame its charge point sends."""

    __slots__ = ("_backend", "_calls", "_options", "_out", "rate")

    def __init__(
        self,
        outbox: Outbox,
        calls: ChargePointCalls,
        backend: BackendCalls,
        clock: IReactorTime,
        options: SessionOptions,
    ) -> None:
        self._out = outbox
        self._calls = calls
        self._backend = backend
        self._options = options
        #: What this charge point may send (a token bucket on the reactor clock).
        self.rate = MessageRate(clock, options.max_message_rate, options.max_message_burst)

    def frame_received(self, text: str) -> None:
        """One text frame arrived from the charge point."""
        if not self.rate.admit() and not self._over_rate(text):
            return
        out = self._out
        events = self._options.events
        try:
            message = parse_frame(text, out.version)
        except FrameError as e:
            events.message(out.identity, True, None)
            self._frame_error(e, text)
            return
        events.message(out.identity, True, message)
        if isinstance(message, Call):
            if ACTION.fullmatch(message.action):
                self._calls.call(message, text)
            else:
                out.send_error(
                    message.unique_id,
                    ErrorKind.NOT_IMPLEMENTED,
                    f"unknown action {message.action[:64]!r}",
                )
        elif isinstance(message, Send):
            self._send(message, text)
        elif isinstance(message, CallResult | CallError):
            self._backend.answered(message, text)
        else:
            # CALLRESULTERROR: the charge point could not process our CALLRESULT
            # (2.1 Part 4 §4.2.4); it carries the Action of that exchange.
            action = self._calls.result_action(message.unique_id)
            out.publish(out.envelope(replace(message, action=action), frame=text))

    def _over_rate(self, text: str) -> bool:
        """
        A frame beyond the charge point's rate: refused, never published;
        True when it goes on after all (read again as any frame): an answer
        to the gateway's CALL in flight or a late one, or a transaction or
        security message within its own allowance (:mod:`ocppgw.session.flood`).
        """
        rate = self.rate
        out = self._out
        message: Message | None
        try:
            message = parse_frame(text, out.version)
        except FrameError as e:
            message = None
            if e.message_type in _ANSWERS and self._backend.answers(e.unique_id):
                rate.answer()
                return True  # a malformed answer: the CALL in flight ends Invalid
        else:
            if isinstance(message, CallResult | CallError) and self._backend.answers(
                message.unique_id
            ):
                rate.answer()
                return True
        if rate.flooding():
            _log.warn(
                "{cid}: above {n}x max_message_rate for {s} s; closing (1008)",
                cid=out.identity,
                n=FLOOD_FACTOR,
                s=FLOOD_SECONDS,
            )
            out.connection.close(CLOSE_POLICY, "message rate far over the limit")
            return False
        if (
            isinstance(message, Call)
            and is_priority(out.version, message.action, message.payload)
            and rate.admit_priority()
        ):
            return True
        if rate.refused == 1 or rate.refused % 1000 == 0:
            _log.warn(
                "{cid}: {n} frame(s) refused so far: {why}",
                cid=out.identity,
                n=rate.refused,
                why=rate.describe(),
            )
        self._options.events.message(out.identity, True, message)
        if isinstance(message, Call):
            # Answered, so the charge point knows; the description names the limit.
            out.send_error(message.unique_id, ErrorKind.GENERIC, rate.describe())
        return False  # dropped (a CALL answered), and counted

    def _frame_error(self, error: FrameError, text: str) -> None:
        _log.warn(
            "{cid}: bad frame ({why}): {frame!r}",
            cid=self._out.identity,
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
            self._backend.bad_answer(error)
            return
        # A CALL (or something that cannot be told apart from one): answer it
        # with a CALLERROR (2.0.1 Part 4 §4.2.3), "-1" when the id is unreadable.
        self._out.send_error(error.unique_id, error.kind, error.description)

    def _send(self, send: Send, text: str) -> None:
        out = self._out
        if not ACTION.fullmatch(send.action):
            _log.warn("{cid}: SEND with unusable action dropped", cid=out.identity)
            out.publish_invalid(text)
            return
        # A SEND is never answered (2.1 Part 4 §4.2.5), so an invalid one can
        # only be reported on the invalid topic.
        validate = self._options.validate_upstream
        if upstream_violation(validate, out, send.action, True, send.payload, text) is None:
            out.publish(out.envelope(send, frame=text))
