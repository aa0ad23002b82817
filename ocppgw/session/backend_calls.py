# -*- test-case-name: tests.unit.session.test_session,tests.unit.session.test_exactly_once -*-
"""
The backend's CALLs to one charge point: the queue, the one in flight, and
what became of those answered lately.

- one CALL in flight (OCPP-J 1.6 §4.1.1, 2.0.1 Part 4 §4.1.1): the others
  wait in a bounded FIFO queue (at most ``max_queue``: QueueFull beyond); one
  the backend sent longer than ``downstream_timeout`` ago is answered
  Expired instead of sent, and one the charge point's registration forbids
  (:meth:`~ocppgw.session.registration.Registration.backend_refusal`)
  NotAccepted;
- the charge point has ``downstream_timeout`` seconds to answer the one in
  flight (then Timeout); an answer after that is still published, marked
  late (the last :data:`LATE_MEMORY` timed-out CALLs are remembered);
- MQTT QoS 1 is at least once: a CALL whose UniqueId is queued, in flight or
  was answered within ``downstream_timeout`` (:meth:`BackendCalls.known`,
  :mod:`ocppgw.session.recent`), with the same Action and payload, is a copy
  (a broker's redelivery, a backend's retry): it is neither sent nor
  answered again.  Another CALL under such a UniqueId is refused Invalid;
- with a journal (``[gateway] journal``), each queued CALL is kept there
  until its answer is published, so that a killed process's next run
  answers it.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocppgw.ocpp.envelope import Envelope, GatewayError
from ocppgw.ocpp.messages import Call, CallError, CallResult, FrameError, MessageType
from ocppgw.ocpp.versions import has_21_types
from ocppgw.session.checks import downstream_refusal, upstream_violation
from ocppgw.session.options import ACTION, SessionOptions
from ocppgw.session.outbox import Outbox
from ocppgw.session.recent import Known, RecentCalls
from ocppgw.session.registration import Registration
from ocppgw.session.timers import Pending, cancel

_log = Logger()

#: How many timed-out backend CALL ids are remembered, so that a late answer
#: can still be published, marked late.
LATE_MEMORY = 32


class BackendCalls:
    """The backend's CALLs to one charge point, from the queue to their one answer."""

    __slots__ = (
        "_clock",
        "_journaled",
        "_late",
        "_options",
        "_out",
        "_registration",
        "in_flight",
        "queue",
        "recent",
    )

    def __init__(
        self,
        outbox: Outbox,
        clock: IReactorTime,
        options: SessionOptions,
        registration: Registration,
    ) -> None:
        self._out = outbox
        self._registration = registration
        self._clock = clock
        self._options = options
        #: The CALL the charge point has not answered yet.
        self.in_flight: Pending | None = None
        #: CALLs waiting behind it (at most ``max_queue``, 100 by default: a
        #: list, which costs 56 bytes per idle charge point where a deque costs 624).
        self.queue: list[Envelope] = []
        #: CALLs answered lately (oldest first), to know a QoS 1 copy.
        self.recent = RecentCalls(clock, options.downstream_timeout)
        #: Timed-out CALLs (UniqueId to Action), so a late answer is marked.
        self._late: OrderedDict[str, str] = OrderedDict()
        #: CALLs in the journal whose answer is not published yet (made with
        #: the first: most charge points never have one).
        self._journaled: set[str] | None = None

    # --- from the backend ---

    def offer(self, envelope: Envelope, call: Call) -> None:
        """A CALL from the backend: queued, or answered why not (a copy: nothing)."""
        known = self.known(call.unique_id)
        if known is not None:
            if self._is_copy(call, known):
                return  # its one answer is on its way, or was published
            self._out.gateway_error(
                call.unique_id,
                GatewayError.INVALID,
                "another CALL with this UniqueId is queued, in flight, or was answered "
                f"within the last {self._options.downstream_timeout:g} s",
                call.action,
            )
            return
        if not ACTION.fullmatch(call.action):
            self.refuse(call, GatewayError.INVALID, "Action is not an OCPP action name")
            return
        why = downstream_refusal(
            self._options.validate_downstream, self._out.version, call.action, True, call.payload
        )
        if why is not None:
            self.refuse(call, GatewayError.INVALID, why)
            return
        if len(self.queue) >= self._options.max_queue:
            why = f"{self._options.max_queue} CALLs are already waiting for this charge point"
            self.refuse(call, GatewayError.QUEUE_FULL, why)
            return
        self.queue.append(envelope)
        if self._options.journal is not None:
            self._journal(call)
        self.send_next()

    def held(self, call: Call, code: GatewayError, why: str) -> None:
        """A CALL the session's state does not let out: answered ``code``, once."""
        known = self.known(call.unique_id)
        if known is None:
            self.refuse(call, code, why)  # a copy of it then gets nothing
        elif not self._is_copy(call, known):
            # Another CALL under a known id: answered, but not remembered.
            self._out.gateway_error(call.unique_id, code, why, call.action)
        # else its one answer is on its way (a Timeout at the latest), or was published

    def refuse(self, call: Call, code: GatewayError, why: str) -> None:
        """Answer a CALL that is not sent; a copy of it gets nothing (:meth:`known`)."""
        self.recent.add(call.unique_id, call.action, call.payload)
        self._out.gateway_error(call.unique_id, code, why, call.action)

    def known(self, unique_id: str) -> Known | None:
        """
        The Action and payload of the CALL ``unique_id`` if it is queued, in
        flight, or was answered in the last ``downstream_timeout`` seconds;
        else None.
        """
        pending = self.in_flight
        if pending is not None and pending.unique_id == unique_id:
            return pending.action, pending.payload
        for envelope in self.queue:
            call = envelope.message
            if call.unique_id == unique_id:
                assert isinstance(call, Call)
                return call.action, call.payload
        return self.recent.get(unique_id)

    def _is_copy(self, call: Call, known: Known) -> bool:
        """
        Whether ``call`` is a copy of the CALL ``known`` (:meth:`known` of
        its UniqueId): a QoS 1 redelivery or a backend's retry, with the same
        Action and payload.  A copy is neither sent nor answered again.
        """
        if known != (call.action, call.payload):
            return False
        _log.debug(
            "{cid}: copy of CALL {id} ({action}) dropped",
            cid=self._out.identity,
            id=call.unique_id,
            action=call.action,
        )
        return True

    # --- to the charge point, and its answer ---

    def send_next(self) -> None:
        """
        Send the first queued CALL, if none is in flight and the link is
        open; one the backend sent (``Timestamp``) longer than
        ``downstream_timeout`` ago is answered Expired instead.
        """
        timeout = self._options.downstream_timeout
        while self.in_flight is None and self.queue and self._out.link is not None:
            envelope = self.queue.pop(0)
            call = envelope.message
            assert isinstance(call, Call)
            if envelope.sent is not None and self._clock.seconds() - envelope.sent > timeout:
                age = self._clock.seconds() - envelope.sent
                why = f"not sent: the backend sent it {age:.0f} s ago, over {timeout:g} s"
                self.refuse(call, GatewayError.EXPIRED, why)
                continue
            refused = self._registration.backend_refusal()
            if refused is not None:
                self.refuse(call, GatewayError.NOT_ACCEPTED, refused)
                continue
            timer = self._clock.callLater(timeout, self._timed_out, call.unique_id)
            self.in_flight = Pending(call.unique_id, call.action, timer, call.payload)
            if self._journaled is not None and call.unique_id in self._journaled:
                self._options.journal.sent(self._out.identity, call.unique_id)  # type: ignore[union-attr]
            self._out.send(call)
            return

    def answered(self, answer: CallResult | CallError, text: str) -> None:
        """
        The charge point's answer ``text``: published with its CALL's Action
        (marked late after a Timeout; an invalid CALLRESULT is the backend's
        Validation error instead), and the next CALL goes out.
        """
        pending = self.in_flight
        late = False
        if pending is not None and pending.unique_id == answer.unique_id:
            action: str | None = pending.action
            if isinstance(answer, CallResult) and self._invalid_result(answer, pending, text):
                return
            self._finish()
        elif answer.unique_id in self._late:
            action = self._late.pop(answer.unique_id)
            late = True
        else:
            action = None
            _log.warn(
                "{cid}: answer {id} matches no pending CALL",
                cid=self._out.identity,
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
        self._out.publish(self._out.envelope(tagged, frame=text, late=late))
        self.send_next()

    def _invalid_result(self, answer: CallResult, pending: Pending, text: str) -> bool:
        """Report a CALLRESULT that fails validation; True if it did."""
        violation = upstream_violation(
            self._options.validate_upstream, self._out, pending.action, False, answer.payload, text
        )
        if violation is None:
            return False
        self._finish()
        self._out.gateway_error(
            answer.unique_id,
            GatewayError.VALIDATION,
            f"charge point's answer is invalid: {violation.description}",
            pending.action,
            {"Payload": answer.payload},
        )
        if has_21_types(self._out.version):
            # OCPP 2.1 Part 4 §4.2.4: tell the charge point its CALLRESULT was bad.
            self._out.send_error(
                answer.unique_id, violation.kind, violation.description, result=True
            )
        self.send_next()
        return True

    def bad_answer(self, error: FrameError) -> None:
        """A malformed CALLRESULT/CALLERROR: the CALL it answers failed (Invalid)."""
        pending = self.in_flight
        if pending is not None and pending.unique_id == error.unique_id:
            self._finish()
            self._out.gateway_error(
                error.unique_id,
                GatewayError.INVALID,
                f"charge point sent an invalid answer: {error.description}",
                pending.action,
            )
            self.send_next()
        if has_21_types(self._out.version) and error.message_type == MessageType.CALLRESULT:
            # OCPP 2.1 Part 4 §4.2.4: tell the charge point its CALLRESULT was bad.
            self._out.send_error(error.unique_id, error.kind, error.description, result=True)

    def answers(self, unique_id: str) -> bool:
        """Whether ``unique_id`` is the CALL in flight, or a late one."""
        pending = self.in_flight
        return (pending is not None and pending.unique_id == unique_id) or unique_id in self._late

    def _timed_out(self, unique_id: str) -> None:
        """The charge point did not answer in time: Timeout envelope, then the next CALL."""
        pending = self.in_flight
        if pending is None or pending.unique_id != unique_id:
            return
        pending.timer = None
        self.in_flight = None
        self.recent.add(unique_id, pending.action, pending.payload)
        self._remember_late(unique_id, pending.action)
        self._out.gateway_error(
            unique_id,
            GatewayError.TIMEOUT,
            f"charge point did not answer within {self._options.downstream_timeout:g} s",
            pending.action,
        )
        self.send_next()

    def _remember_late(self, unique_id: str, action: str) -> None:
        """A CALL already answered for: its answer, if it comes, is marked Late."""
        self._late[unique_id] = action
        while len(self._late) > LATE_MEMORY:
            self._late.popitem(last=False)

    def _finish(self) -> Pending | None:
        """The CALL in flight is answered (by the charge point or the gateway); it."""
        pending = self.in_flight
        if pending is not None:
            cancel(pending.timer)
            self.in_flight = None
            self.recent.add(pending.unique_id, pending.action, pending.payload)
        return pending

    # --- when the connection ends ---

    def abandon(self, code: GatewayError, why: str) -> None:
        """The CALL in flight fails with ``code`` (its answer can no longer come)."""
        call = self._finish()
        if call is not None:
            self._out.gateway_error(call.unique_id, code, why, call.action)

    def shutdown(self, why: str) -> None:
        """The gateway stops: every CALL is answered Shutdown; a later answer is marked late."""
        call = self._finish()
        if call is not None:
            self._remember_late(call.unique_id, call.action)
            self._out.gateway_error(call.unique_id, GatewayError.SHUTDOWN, why, call.action)
        self.fail_queue(GatewayError.SHUTDOWN, why)

    def fail_queue(self, code: GatewayError, why: str) -> None:
        """Answer every queued CALL with an error envelope of ``code``."""
        while self.queue:
            call = self.queue.pop(0).message
            assert isinstance(call, Call)
            self.refuse(call, code, why)

    def adopt(self, older: BackendCalls) -> None:
        """Take the queue of an earlier connection of the charge point, and what it answered."""
        self.queue.extend(older.queue)
        older.queue.clear()
        # Their answers are this connection's to publish now (the same identity's journal).
        if older._journaled:
            if self._journaled is None:
                self._watch_journal()
            self._journaled = (self._journaled or set()) | older._journaled
            older._journaled = None
        # What the old connection answered is answered: a copy of it is no new CALL.
        self.recent.adopt(older.recent)
        while len(self.queue) > self._options.max_queue:
            call = self.queue.pop().message
            self._out.gateway_error(
                call.unique_id,
                GatewayError.QUEUE_FULL,
                "queue full after reconnection",
                getattr(call, "action", None),
            )
        self.send_next()

    # --- the journal ---

    def _journal(self, call: Call) -> None:
        """Keep ``call`` in the journal until its answer is published."""
        assert self._options.journal is not None
        self._options.journal.queued(
            self._out.identity, self._out.version, call.unique_id, call.action
        )
        if self._journaled is None:
            self._journaled = set()
            self._watch_journal()
        self._journaled.add(call.unique_id)

    def _watch_journal(self) -> None:
        self._out.watch = self._published

    def _published(self, envelope: Envelope, d: Deferred[None]) -> None:
        if self._journaled:
            uid = envelope.message.unique_id
            if uid in self._journaled and isinstance(envelope.message, CallResult | CallError):
                d.addCallback(self._journal_answered, uid)

    def _journal_answered(self, result: None, unique_id: str) -> None:
        """The answer to a journaled CALL is published: the journal lets it go."""
        if self._journaled is not None and unique_id in self._journaled:
            self._journaled.discard(unique_id)
            assert self._options.journal is not None
            self._options.journal.answered(self._out.identity, unique_id)
