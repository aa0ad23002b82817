# -*- test-case-name: tests.unit.session.test_session,tests.unit.session.test_session_rules -*-
"""
The charge point's CALLs waiting for the backend's answers, and their timers.

- a CALL is published for the backend and waits for its answer, at most
  ``upstream_timeout`` seconds (then InternalError to the charge point, and
  Timeout to the backend); one at a time when strict (OCPP-J 1.6 §4.1.1,
  2.0.1 Part 4 §4.1.1), each id once;
- an invalid CALL gets a CALLERROR (2.0.1 Part 4 §4.1.7); with
  ``[local] heartbeat`` a Heartbeat is answered here, with
  ``[local] status_notification`` a StatusNotification (its result is empty:
  1.6 StatusNotification.conf, 2.0.1 and 2.1 StatusNotificationResponse have
  no required field), both still published, marked answered;
- the backend's answer goes to the charge point only if its CALL waits for
  it (Unmatched otherwise, but an exact copy of one of the last answers
  sent is dropped: a QoS 1 redelivery, or the catch-all's republished
  copy); with validation on, an invalid CALLRESULT is
  refused (Invalid) and the CALL stays pending for a valid answer;
- a CALL whose publish fails is answered InternalError at once;
- with ``[gateway] enforce_registration``, a charge point whose
  BootNotification the backend answered Pending or Rejected may send only
  what that version allows (:mod:`ocppgw.session.registration`: OCPP 1.6
  §4.2 and §4.2.1, 2.0.1 and 2.1 B02.FR.09 and B03.FR.07); the others get
  SecurityError, unpublished.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw.ocpp.envelope import Envelope, GatewayError
from ocppgw.ocpp.messages import Call, CallError, CallResult, JSONObject
from ocppgw.ocpp.timestamps import rfc3339
from ocppgw.ocpp.versions import ErrorKind, has_21_types
from ocppgw.session.checks import downstream_refusal, upstream_violation
from ocppgw.session.options import SessionOptions
from ocppgw.session.outbox import Outbox
from ocppgw.session.registration import Registration
from ocppgw.session.timers import Pending, SharedTimer, Timer, cancel

_log = Logger()

#: How many answered 2.1 CALLs are remembered, for the Action of a CALLRESULTERROR.
ANSWERED_MEMORY = 32
#: How many of the backend's answers sent last are remembered, so that a copy
#: of one (a QoS 1 redelivery, or the catch-all's copy republished when the
#: charge point's presence came after the answer: ocppgw.router.offline) is
#: dropped, not answered Unmatched.
SENT_MEMORY = 4


class ChargePointCalls:
    """One charge point's CALLs to the backend, from their publish to their one answer."""

    __slots__ = (
        "_answered",
        "_clock",
        "_options",
        "_out",
        "_sent",
        "_timer",
        "pending",
        "registration",
    )

    def __init__(self, outbox: Outbox, clock: IReactorTime, options: SessionOptions) -> None:
        self._out = outbox
        self._clock = clock
        self._options = options
        #: CALLs waiting for the backend, by UniqueId.
        self.pending: dict[str, Pending] = {}
        #: The timeout of the CALL waited on when it is the only one (made with the first).
        self._timer: SharedTimer | None = None
        #: 2.1: CALLs answered with a CALLRESULT (UniqueId to Action), so a
        #: CALLRESULTERROR for that result carries its Action (2.1 Part 4 §4.2.4).
        self._answered: OrderedDict[str, str] = OrderedDict()
        #: The backend's answers sent last (at most SENT_MEMORY; made with the first).
        self._sent: list[CallResult | CallError] | None = None
        #: The backend's BootNotification answer, and what it allows.
        self.registration = Registration(outbox.version, options.enforce_registration)

    # --- from the charge point ---

    def call(self, call: Call, text: str) -> None:
        """The charge point's CALL ``text`` (its Action already checked): published, or refused."""
        out = self._out
        if call.unique_id in self.pending:
            out.send_error(
                call.unique_id,
                ErrorKind.PROTOCOL,
                "a CALL with this MessageId is already being processed",
            )
            return
        if self.pending and self._options.strict:
            # OCPP-J 1.6 §4.1.1, 2.0.1 Part 4 §4.1.1: one CALL at a time.
            out.send_error(
                call.unique_id,
                ErrorKind.PROTOCOL if out.version == "ocpp1.6" else ErrorKind.RPC_FRAMEWORK,
                "a previous CALL is still waiting for its answer",
            )
            return
        refused = self.registration.refusal(call.action)
        if refused is not None:
            out.send_error(call.unique_id, ErrorKind.SECURITY, refused)
            return
        violation = upstream_violation(
            self._options.validate_upstream, out, call.action, True, call.payload, text
        )
        if violation is not None:
            # OCPP 2.0.1 Part 4 §4.1.7: an invalid message gets a CALLERROR.
            out.send_error(call.unique_id, violation.kind, violation.description)
            return
        local = self._local_result(call.action)
        if local is not None:
            out.send(CallResult(call.unique_id, local))
            out.publish(out.envelope(call, frame=text, answered=True))
            return
        timeout = self._options.upstream_timeout
        timer: Timer
        if self.pending:
            # Another CALL waits too (strict = false): a timer of its own.
            timer = self._clock.callLater(timeout, self._timed_out, call.unique_id)
        else:
            timer = self._timer or self._shared_timer()
            timer.start(timeout, call.unique_id)
        self.pending[call.unique_id] = Pending(call.unique_id, call.action, timer)
        envelope = out.envelope(call, frame=text)
        out.to_router(envelope).addErrback(self._not_published, envelope)

    def _local_result(self, action: str) -> JSONObject | None:
        """The result the gateway gives ``action`` itself ([local]), or None: the backend's."""
        if action == "Heartbeat" and self._options.local_heartbeat:
            return {"currentTime": rfc3339(self._clock.seconds())}
        if action == "StatusNotification" and self._options.local_status_notification:
            return {}
        return None

    def _shared_timer(self) -> SharedTimer:
        self._timer = SharedTimer(self._clock, self._timed_out)
        return self._timer

    def _not_published(self, failure: Failure, envelope: Envelope) -> None:
        """The CALL never reached the backend: the charge point hears so now."""
        self._out.not_published(failure, envelope)
        pending = self.pending.pop(envelope.message.unique_id, None)
        if pending is not None:
            cancel(pending.timer)
            self._out.send_error(
                pending.unique_id, ErrorKind.INTERNAL, "gateway could not reach the backend"
            )

    def _timed_out(self, unique_id: str) -> None:
        pending = self.pending.pop(unique_id, None)
        if pending is None:
            return
        pending.timer = None
        told = self._out.send_error(unique_id, ErrorKind.INTERNAL, "backend did not answer")
        self._out.gateway_error(
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

    def result_action(self, unique_id: str) -> str | None:
        """2.1: the Action of the CALL answered by the CALLRESULT ``unique_id`` (once)."""
        return self._answered.pop(unique_id, None)

    # --- from the backend ---

    def answer(self, answer: CallResult | CallError) -> None:
        """The backend's answer: sent if its CALL waits for it, else Unmatched."""
        pending = self.pending.get(answer.unique_id)
        if pending is not None and isinstance(answer, CallResult):
            why = downstream_refusal(
                self._options.validate_downstream,
                self._out.version,
                pending.action,
                False,
                answer.payload,
            )
            if why is not None:
                self._out.gateway_error(answer.unique_id, GatewayError.INVALID, why, pending.action)
                return  # the charge point's CALL stays pending for a valid answer
        if pending is None:
            if self._sent is not None and answer in self._sent:
                # A copy of an answer sent: it was answered once, and that is all.
                _log.debug(
                    "{cid}: copy of answer {id} dropped",
                    cid=self._out.identity,
                    id=answer.unique_id,
                )
                return
            # Nothing to answer: never send the charge point an unmatched answer.
            self._out.unmatched(answer.unique_id, answer.action)
            return
        del self.pending[answer.unique_id]
        cancel(pending.timer)
        if pending.action == "BootNotification" and isinstance(answer, CallResult):
            if self.registration.answered(answer.payload):
                self._out.registered(answer.payload["status"])
        if isinstance(answer, CallResult) and has_21_types(self._out.version):
            self._answered[answer.unique_id] = pending.action
            while len(self._answered) > ANSWERED_MEMORY:
                self._answered.popitem(last=False)
        self._out.send(answer)
        if self._sent is None:
            self._sent = []
        self._sent.append(answer)
        if len(self._sent) > SENT_MEMORY:
            del self._sent[0]

    def refuse(self, answer: CallResult | CallError, code: GatewayError, why: str) -> None:
        """The backend's answer cannot be sent: its CALL ends, answered ``code`` to the backend."""
        pending = self.pending.pop(answer.unique_id, None)
        if pending is None:
            self._out.unmatched(answer.unique_id, answer.action)
            return
        cancel(pending.timer)
        if self._out.link is None:
            # The connection is not open: no CALL of it is timed again.
            self._stop_timer()
        self._out.gateway_error(answer.unique_id, code, why, pending.action)

    # --- when the connection ends ---

    def abandon(self) -> None:
        """Every CALL stops waiting: its answer can no longer be sent."""
        for pending in self.pending.values():
            cancel(pending.timer)
        self.pending.clear()
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()

    def action_of(self, unique_id: str) -> str | None:
        """The Action of the waiting CALL ``unique_id``."""
        pending = self.pending.get(unique_id)
        return None if pending is None else pending.action
