# -*- test-case-name: tests.unit.session.test_session,tests.unit.session.test_lifecycle -*-
"""
The rules for messages from the backend.

- a CALL joins the FIFO queue (at most ``max_queue`` wait: QueueFull beyond)
  and goes out when none is in flight (OCPP-J 1.6 §4.1.1, 2.0.1 Part 4
  §4.1.1);
- MQTT QoS 1 is at least once: a CALL whose UniqueId is queued, in flight or
  was answered within ``downstream_timeout`` (``[dnstream] awaiting_timeout``),
  with the same Action and payload, is a copy (a broker's redelivery, a
  backend's retry): it is neither sent again nor answered again.  Another
  CALL under such a UniqueId is refused as Invalid;
- an answer goes to the charge point only if its CALL is waiting for it
  (Unmatched otherwise), and a CALLRESULTERROR (2.1) is passed on (Unmatched
  when the charge point is gone, in its grace period);
- with validation on, an invalid CALL, SEND or CALLRESULT is never sent:
  the backend gets Invalid, and the charge point's CALL stays pending for a
  valid answer;
- what cannot be sent because of the connection's state is answered by
  :meth:`FromBackend.refuse`, on the lifecycle's word
  (:mod:`ocppgw.session.lifecycle`).
"""

from __future__ import annotations

from twisted.logger import Logger

from ocppgw.ocpp.envelope import Envelope, GatewayError
from ocppgw.ocpp.messages import Call, CallError, CallResult, Send
from ocppgw.ocpp.versions import has_21_types
from ocppgw.session.exchanges import ACTION, LATE_MEMORY, Exchanges, cancel
from ocppgw.session.recent import Known

_log = Logger()


class FromBackend(Exchanges):
    """What the session does with each message the backend sends its charge point."""

    def _check_downstream(self, message: Call | Send | CallResult, action: str) -> bool:
        """True when the backend's message is valid; else report it."""
        validate = self._options.validate_downstream
        if validate is None:
            return True
        request = not isinstance(message, CallResult)
        violation = validate(self.version, action, request, message.payload)
        if violation is None:
            return True
        why = f"not sent to the charge point: {violation.description}"
        if isinstance(message, Call):
            self.refuse_call(message, GatewayError.INVALID, why)
        else:
            self.gateway_error(message.unique_id, GatewayError.INVALID, why, action)
        return False

    def deliver(self, envelope: Envelope) -> None:
        """Send, queue or answer a backend message, by the OCPP-J rules."""
        message = envelope.message
        if isinstance(message, Call):
            self._downstream_call(envelope, message)
        elif isinstance(message, Send):
            if not self._check_downstream(message, message.action):
                return
            if not self._send(message):
                self.gateway_error(
                    message.unique_id,
                    GatewayError.OFFLINE,
                    "charge point is not connected",
                    message.action,
                )
        elif isinstance(message, CallResult | CallError):
            self._downstream_answer(message)
        elif not self._send(message):
            # CALLRESULTERROR about the charge point's CALLRESULT: passed on,
            # or, with the charge point gone (the grace period), answered as
            # a CALLRESULT for it would be: nothing waits for it there.
            self._unmatched(message.unique_id, message.action)

    def refuse(self, envelope: Envelope, code: GatewayError, why: str) -> None:
        """Answer a backend message that will not be sent with an error envelope."""
        message = envelope.message
        if isinstance(message, Call):
            known = self._known(message.unique_id)
            if known is None:
                self.refuse_call(message, code, why)  # a copy of it then gets nothing
            elif not self._is_copy(message, known):
                # Another CALL under a known id: answered, but not remembered.
                self.gateway_error(message.unique_id, code, why, message.action)
            # else its one answer is on its way (a Timeout at the latest), or was published
            return
        action = getattr(message, "action", None)
        if isinstance(message, CallResult | CallError):
            pending = self._upstream_pending.pop(message.unique_id, None)
            if pending is None:
                self._unmatched(message.unique_id, action)
                return
            cancel(pending.timer)
            if self._link is None:
                # The connection is not open: no CALL of it is timed again.
                self._stop_call_timer()
            action = pending.action
        self.gateway_error(message.unique_id, code, why, action)

    def _downstream_call(self, envelope: Envelope, call: Call) -> None:
        known = self._known(call.unique_id)
        if known is not None:
            if self._is_copy(call, known):
                return  # its one answer is on its way, or was published
            self.gateway_error(
                call.unique_id,
                GatewayError.INVALID,
                "another CALL with this UniqueId is queued, in flight, or was answered "
                f"within the last {self._options.downstream_timeout:g} s",
                call.action,
            )
            return
        if not ACTION.fullmatch(call.action):
            self.refuse_call(call, GatewayError.INVALID, "Action is not an OCPP action name")
            return
        if not self._check_downstream(call, call.action):
            return
        if len(self._queue) >= self._options.max_queue:
            why = f"{self._options.max_queue} CALLs are already waiting for this charge point"
            self.refuse_call(call, GatewayError.QUEUE_FULL, why)
            return
        self._queue.append(envelope)
        journal = self._options.journal
        if journal is not None:
            # Kept until its answer is published: a killed process's next run answers it.
            journal.queued(self.identity, self.version, call.unique_id, call.action)
            if self._journaled is None:
                self._journaled = set()
            self._journaled.add(call.unique_id)
        self._send_next()

    def _is_copy(self, call: Call, known: Known | None) -> bool:
        """
        Whether ``call`` is a copy of the CALL ``known`` (:meth:`_known` of
        its UniqueId), queued, in flight or answered lately: a QoS 1
        redelivery or a backend's retry, with the same Action and payload.
        A copy is neither sent nor answered again.
        """
        if known != (call.action, call.payload):
            return False
        _log.debug(
            "{cid}: copy of CALL {id} ({action}) dropped",
            cid=self.identity,
            id=call.unique_id,
            action=call.action,
        )
        return True

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
            self._unmatched(answer.unique_id, answer.action)
            return
        cancel(pending.timer)
        if isinstance(answer, CallResult) and has_21_types(self.version):
            self._answered[answer.unique_id] = pending.action
            while len(self._answered) > LATE_MEMORY:
                self._answered.popitem(last=False)
        self._send(answer)
