# -*- test-case-name: tests.unit.session.test_exactly_once -*-
"""
Exactly one answer per CALL (issue #18), on a task.Clock: answers and
transaction messages past the flood limit, QoS 1 redeliveries of a backend
CALL, a backend CALL older than awaiting_timeout, and a CALLRESULTERROR in
the grace period.
"""

from __future__ import annotations

from ocppgw.ocpp.envelope import Envelope
from ocppgw.ocpp.messages import Call, CallError, CallResult, CallResultError
from ocppgw.ocpp.validation import Validator
from ocppgw.ocpp.versions import OCPP16, OCPP21, OCPP201
from ocppgw.session import flood
from ocppgw.session.rules import Phase, Session, SessionOptions
from tests.clocks import ClockTestCase, end_session
from tests.fakes import FakeConnection, FakeRouter

RESET = Call("d0", "Reset", {"type": "Soft"})


class Base(ClockTestCase):
    version = OCPP16
    options: dict[str, object] = {}

    def setUp(self) -> None:
        super().setUp()
        self.clock.advance(1_700_000_000)
        self.router = FakeRouter()
        self.opened: list[Session] = []
        # Each session ends as the gateway ends one; then no timer may be left.
        self.addCleanup(lambda: [end_session(s) for s in self.opened])
        self.session, self.connection = self.open()

    def open(self) -> tuple[Session, FakeConnection]:
        connection = FakeConnection()
        options = SessionOptions(**{"downstream_timeout": 30.0, **self.options})  # type: ignore[arg-type]
        session = Session("CP1", self.version, connection, self.router, self.clock, options)
        connection.session = session
        self.opened.append(session)
        return session, connection

    def backend(self, *messages: Call | CallResult | CallError | CallResultError) -> None:
        for message in messages:
            self.session.envelope_received(Envelope(message))

    def published(self) -> list[tuple[str, str, str | None]]:
        """(UniqueId, CALLRESULT or error code, Action) of what the backend got."""
        out = []
        for e in self.router.envelopes:
            m = e.message
            code = m.error_code if isinstance(m, CallError) else type(m).__name__
            out.append((m.unique_id, code, m.action))
        return out

    def sent_ids(self) -> list[str]:
        return [f[1] for f in self.connection.sent()]


class AnswersPastTheLimitTests(Base):
    options = {"max_message_rate": 1, "max_message_burst": 1}

    def empty_bucket(self) -> None:
        self.session.frame_received('[2,"m0","Heartbeat",{}]')
        self.session.frame_received('[2,"m1","Heartbeat",{}]')  # refused: the bucket is empty
        self.assertEqual(self.session.message_rate.refused, 1)

    def test_answer_to_call_in_flight_is_never_refused(self) -> None:
        """An answer to the gateway's CALL in flight is published even with the bucket empty."""
        self.backend(RESET)
        self.empty_bucket()
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.assertIn(("d0", "CallResult", "Reset"), self.published())
        self.assertEqual(self.session.message_rate.refused, 1)

    def test_error_to_call_in_flight_is_never_refused(self) -> None:
        """A CALLERROR to the CALL in flight is published even with the bucket empty."""
        self.backend(RESET)
        self.empty_bucket()
        self.session.frame_received('[4,"d0","NotSupported","",{}]')
        self.assertIn(("d0", "NotSupported", "Reset"), self.published())

    def test_late_answer_is_never_refused(self) -> None:
        """An answer after its Timeout is still published, marked late, with the bucket empty."""
        self.backend(RESET)
        self.clock.advance(30)
        self.empty_bucket()
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        late = self.router.envelopes[-1]
        self.assertEqual((late.message.unique_id, late.late), ("d0", True))

    def test_answer_matching_nothing_is_still_refused(self) -> None:
        """An answer that matches no CALL of the gateway stays under the limit."""
        self.empty_bucket()
        before = len(self.router.envelopes)
        self.session.frame_received('[3,"zz",{}]')
        self.assertEqual(len(self.router.envelopes), before)
        self.assertEqual(self.session.message_rate.refused, 2)

    def test_answer_sends_the_next_queued_call(self) -> None:
        """The answer past the limit ends the CALL in flight: the next queued CALL goes out."""
        self.backend(RESET, Call("d1", "Reset", {"type": "Hard"}))
        self.empty_bucket()
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.assertEqual(self.sent_ids()[-1], "d1")


class PriorityAllowanceTests(Base):
    options = {"max_message_rate": 1, "max_message_burst": 2}

    def flood(self) -> None:
        for n in range(3):
            self.session.frame_received(
                f'[2,"m{n}","MeterValues",{{"connectorId":1,"meterValue":[]}}]'
            )
            self.session.envelope_received(Envelope(CallResult(f"m{n}", {})))

    def test_stop_transaction_past_the_limit_is_published(self) -> None:
        """With MeterValues flooding, StopTransaction still goes to the backend."""
        self.flood()
        stop = '[2,"s1","StopTransaction",{"transactionId":1,"meterStop":5,"timestamp":"t"}]'
        self.session.frame_received(stop)
        self.assertIn(("s1", "Call", "StopTransaction"), self.published())

    def test_security_event_past_the_limit_is_published_in_16(self) -> None:
        """1.6 (security whitepaper) SecurityEventNotification and
        SignedFirmwareStatusNotification have the transaction allowance."""
        self.flood()
        self.session.frame_received(
            '[2,"e1","SecurityEventNotification",{"type":"x","timestamp":"t"}]'
        )
        self.session.envelope_received(Envelope(CallResult("e1", {})))
        self.session.frame_received('[2,"e2","SignedFirmwareStatusNotification",{"status":"Idle"}]')
        calls = [p for p in self.published() if p[1] == "Call"]
        self.assertEqual([c[0] for c in calls][-2:], ["e1", "e2"])

    def test_other_calls_past_the_limit_still_refused(self) -> None:
        """MeterValues past the limit is answered GenericError and not published."""
        self.flood()
        ids = [p[0] for p in self.published() if p[1] == "Call"]
        self.assertEqual(ids, ["m0", "m1"])
        self.assertEqual(self.connection.sent()[-1][1:3], ["m2", "GenericError"])

    def test_priority_allowance_is_a_larger_bucket_of_its_own(self) -> None:
        """Past the limit, PRIORITY_FACTOR x max_message_burst transaction messages pass
        at once, then PRIORITY_FACTOR x max_message_rate per second."""
        self.flood()
        burst = flood.PRIORITY_FACTOR * 2
        for n in range(burst + 1):
            self.session.frame_received(
                f'[2,"s{n}","StopTransaction",{{"transactionId":{n},"meterStop":5,"timestamp":"t"}}]'
            )
            self.session.envelope_received(Envelope(CallResult(f"s{n}", {})))
        stops = [p[0] for p in self.published() if p[2] == "StopTransaction" and p[1] == "Call"]
        self.assertEqual(len(stops), burst)
        self.assertEqual(self.connection.sent()[-1][1:3], [f"s{burst}", "GenericError"])
        self.clock.advance(1 / flood.PRIORITY_FACTOR)
        self.session.frame_received(
            '[2,"late","StopTransaction",{"transactionId":9,"meterStop":5,"timestamp":"t"}]'
        )
        self.assertEqual(self.published()[-1], ("late", "Call", "StopTransaction"))


class PriorityAllowance2xTests(Base):
    version = OCPP201
    options = {"max_message_rate": 1, "max_message_burst": 1}

    def transaction_event(self, n: int, event_type: str) -> None:
        self.session.frame_received(
            f'[2,"t{n}","TransactionEvent",{{"eventType":"{event_type}","timestamp":"t",'
            f'"triggerReason":"Authorized","seqNo":{n},"transactionInfo":{{"transactionId":"x"}}}}]'
        )
        self.session.envelope_received(Envelope(CallResult(f"t{n}", {})))

    def test_transaction_event_ended_past_the_limit_is_published(self) -> None:
        """2.x: TransactionEvent Ended passes past the limit; Updated does not."""
        self.transaction_event(0, "Updated")
        self.transaction_event(1, "Updated")
        self.transaction_event(2, "Ended")
        calls = [p[0] for p in self.published() if p[1] == "Call"]
        self.assertEqual(calls, ["t0", "t2"])

    def test_security_event_past_the_limit_is_published(self) -> None:
        """2.x: SecurityEventNotification passes past the limit."""
        self.transaction_event(0, "Updated")
        self.session.frame_received(
            '[2,"e1","SecurityEventNotification",{"type":"x","timestamp":"t"}]'
        )
        self.assertEqual(self.published()[-1], ("e1", "Call", "SecurityEventNotification"))


class RedeliveryTests(Base):
    def test_copy_while_queued_is_dropped_silently(self) -> None:
        """A plain copy of a queued CALL: not queued again, no envelope; the CALL goes out once."""
        self.backend(Call("d9", "Reset", {"type": "Hard"}), RESET, RESET)
        self.assertEqual(self.session.queued(), 1)
        self.assertEqual(self.published(), [])
        self.session.frame_received('[3,"d9",{"status":"Accepted"}]')
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.assertEqual(self.sent_ids(), ["d9", "d0"])
        self.assertEqual(
            self.published(), [("d9", "CallResult", "Reset"), ("d0", "CallResult", "Reset")]
        )

    def test_copy_while_in_flight_is_dropped_silently(self) -> None:
        """A copy of the CALL in flight: not sent again, no envelope; the answer comes once."""
        self.backend(RESET, RESET)
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.assertEqual(self.sent_ids(), ["d0"])
        self.assertEqual(self.published(), [("d0", "CallResult", "Reset")])

    def test_copy_after_the_answer_is_dropped_silently(self) -> None:
        """A copy within awaiting_timeout of the answer is not sent to the charge point again."""
        self.backend(RESET)
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.clock.advance(29)
        self.backend(RESET)
        self.assertEqual(self.sent_ids(), ["d0"])
        self.assertEqual(self.published(), [("d0", "CallResult", "Reset")])

    def test_copy_after_the_timeout_is_dropped_silently(self) -> None:
        """A copy after the CALL's Timeout envelope is not sent again and not answered again."""
        self.backend(RESET)
        self.clock.advance(30)
        self.backend(RESET)
        self.assertEqual(self.sent_ids(), ["d0"])
        self.assertEqual(self.published(), [("d0", "Timeout", "Reset")])

    def test_copy_after_a_disconnect_is_dropped_silently(self) -> None:
        """A copy of a CALL answered Disconnected waits for nothing and gets nothing."""
        self.backend(RESET)
        self.session.connection_lost()
        self.backend(RESET)
        self.assertEqual(self.session.queued(), 0)
        self.assertEqual(self.published(), [("d0", "Disconnected", "Reset")])
        self.session.expire()

    def test_copy_while_closing_is_dropped_silently(self) -> None:
        """A copy of the CALL in flight while the connection closes gets no Disconnected:
        its one answer is the Timeout (or the charge point's answer) still to come."""
        self.backend(RESET)
        self.connection.peer_closes()
        self.backend(RESET, Call("d1", "Reset", {"type": "Soft"}))
        self.assertEqual(self.published(), [("d1", "Disconnected", "Reset")])
        self.clock.advance(30)
        self.assertEqual(self.published()[-1], ("d0", "Timeout", "Reset"))

    def test_same_id_after_the_window_is_a_new_call(self) -> None:
        """After awaiting_timeout the UniqueId is forgotten: the CALL is sent again."""
        self.backend(RESET)
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.clock.advance(30.5)
        self.backend(RESET)
        self.assertEqual(self.sent_ids(), ["d0", "d0"])

    def test_different_call_reusing_an_id_is_invalid(self) -> None:
        """Another Action or payload under a queued, in-flight or recent UniqueId: Invalid."""
        self.backend(RESET, Call("d1", "Reset", {"type": "Soft"}))
        self.backend(Call("d0", "Reset", {"type": "Hard"}))  # in flight
        self.backend(Call("d1", "UnlockConnector", {"connectorId": 1}))  # queued
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.backend(Call("d0", "ClearCache", {}))  # answered just now
        codes = [(i, c) for i, c, _ in self.published() if c != "CallResult"]
        self.assertEqual(codes, [("d0", "Invalid"), ("d1", "Invalid"), ("d0", "Invalid")])
        self.assertEqual(self.sent_ids(), ["d0", "d1"])

    def test_recent_ids_are_forgotten_without_a_timer(self) -> None:
        """The memory of answered ids is pruned on the clock, with no DelayedCall of its own."""
        for n in range(5):
            self.backend(Call(f"d{n}", "Reset", {"type": "Soft"}))
            self.session.frame_received(f'[3,"d{n}",{{"status":"Accepted"}}]')
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(31)
        self.backend(Call("n", "Reset", {"type": "Soft"}))
        self.session.frame_received('[3,"n",{"status":"Accepted"}]')
        self.assertEqual(list(self.session._backend.recent), ["n"])

    def test_reconnection_adopts_the_recent_ids(self) -> None:
        """A new connection on this instance knows the old one's answered CALLs."""
        self.backend(RESET)
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.session.connection_lost()
        new, connection = self.open()
        new.adopt(self.session)
        new.envelope_received(Envelope(RESET))
        self.assertEqual(connection.frames, [])
        self.assertEqual(self.published(), [("d0", "CallResult", "Reset")])
        self.assertIs(self.session.phase, Phase.REPLACED)


class ExpiredTests(Base):
    """Path 8: a backend CALL sent (its ``Timestamp``) longer than awaiting_timeout ago."""

    def sent(self, call: Call, age: float) -> None:
        self.session.envelope_received(Envelope(call, sent=self.clock.seconds() - age))

    def test_old_call_is_answered_expired_and_not_sent(self) -> None:
        """A CALL sent 31 s ago (timeout 30 s): one Expired envelope, nothing sent."""
        self.sent(RESET, 31)
        self.assertEqual(self.sent_ids(), [])
        self.assertEqual(self.published(), [("d0", "Expired", "Reset")])
        self.assertEqual(self.router.envelopes[0].origin, "gateway")

    def test_recent_call_is_sent(self) -> None:
        """A CALL sent 29 s ago goes to the charge point; one without a Timestamp too."""
        self.sent(RESET, 29)
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.backend(Call("d1", "Reset", {"type": "Hard"}))
        self.assertEqual(self.sent_ids(), ["d0", "d1"])
        self.assertEqual(self.published(), [("d0", "CallResult", "Reset")])

    def test_call_expiring_in_the_queue_is_answered_expired(self) -> None:
        """A queued CALL that grew older than the timeout behind the one in flight is
        answered Expired when its turn comes, and the next one is sent."""
        self.backend(RESET)
        self.sent(Call("d1", "Reset", {"type": "Hard"}), 20)
        self.backend(Call("d2", "ClearCache", {}))
        self.clock.advance(15)
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.assertEqual(self.sent_ids(), ["d0", "d2"])
        self.assertEqual(
            self.published(), [("d0", "CallResult", "Reset"), ("d1", "Expired", "Reset")]
        )

    def test_copy_of_an_expired_call_gets_no_second_answer(self) -> None:
        """A redelivered copy of a CALL answered Expired is neither sent nor answered again."""
        self.sent(RESET, 40)
        self.sent(RESET, 41)
        self.backend(RESET)
        self.assertEqual(self.sent_ids(), [])
        self.assertEqual(self.published(), [("d0", "Expired", "Reset")])


class RefusedCopyTests(Base):
    """A copy of a CALL the gateway refused gets no second error envelope (docs/topics.md)."""

    options = {"max_queue": 1}

    def test_copy_of_a_call_refused_queue_full_gets_nothing(self) -> None:
        """QueueFull once; its copy, even when the queue has room again, is neither
        queued nor answered."""
        self.backend(RESET, Call("d1", "Reset", {"type": "Hard"}), Call("d2", "ClearCache", {}))
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.backend(Call("d2", "ClearCache", {}))
        self.assertEqual(self.session.queued(), 0)
        self.assertEqual(self.sent_ids(), ["d0", "d1"])
        self.assertEqual([(i, c) for i, c, _ in self.published()],
                         [("d2", "QueueFull"), ("d0", "CallResult")])

    def test_copy_of_a_call_with_a_bad_action_gets_nothing(self) -> None:
        """Invalid (not an action name) once; its copy nothing."""
        bad = Call("d3", "Re set", {})
        self.backend(bad, bad)
        self.assertEqual([(i, c) for i, c, _ in self.published()], [("d3", "Invalid")])

    def test_copy_of_a_call_refused_while_closing_gets_nothing(self) -> None:
        """Disconnected (the connection is closing) once; its copy nothing; another
        CALL under that id is still answered."""
        self.connection.peer_closes()
        self.backend(RESET, RESET, Call("d0", "ClearCache", {}))
        self.assertEqual([(i, c) for i, c, _ in self.published()],
                         [("d0", "Disconnected"), ("d0", "Disconnected")])
        self.assertEqual(self.published()[1][2], "ClearCache")


class RefusedInvalidCopyTests(Base):
    options = {"validate_downstream": Validator().validate}

    def test_copy_of_an_invalid_call_gets_nothing(self) -> None:
        """A CALL refused Invalid by validation: its copy gets no second Invalid."""
        bad = Call("d4", "Reset", {"type": "Sideways"})
        self.backend(bad, bad)
        self.assertEqual([(i, c) for i, c, _ in self.published()], [("d4", "Invalid")])
        self.assertEqual(self.sent_ids(), [])


class RecordingJournal:
    """Records what a session tells its journal, as ocppgw.router.journal.Journal takes it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def queued(self, identity: str, version: str, unique_id: str, action: str) -> None:
        self.events.append(("queued", unique_id))

    def sent(self, identity: str, unique_id: str) -> None:
        self.events.append(("sent", unique_id))

    def answered(self, identity: str, unique_id: str) -> None:
        self.events.append(("answered", unique_id))


class JournalTests(Base):
    """The session tells the journal of each backend CALL it holds, until its answer is out."""

    journal = RecordingJournal()

    def setUp(self) -> None:
        JournalTests.journal = RecordingJournal()
        self.options = {"journal": JournalTests.journal, "max_queue": 1}
        super().setUp()

    def test_queued_sent_answered(self) -> None:
        """A CALL: queued, sent, and answered once the charge point's answer is published;
        the one behind it likewise, once its turn comes."""
        self.backend(RESET, Call("d1", "ClearCache", {}))
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.session.frame_received('[3,"d1",{"status":"Accepted"}]')
        self.assertEqual(
            self.journal.events,
            [("queued", "d0"), ("sent", "d0"), ("queued", "d1"),
             ("answered", "d0"), ("sent", "d1"), ("answered", "d1")],
        )

    def test_answered_only_once_the_broker_has_it(self) -> None:
        """An answer whose publish fails is not answered until the owed envelope is out."""
        self.backend(RESET)
        self.router.failing = True
        self.clock.advance(30)  # Timeout: its publish fails, so it is owed
        self.assertNotIn(("answered", "d0"), self.journal.events)
        self.router.failing = False
        self.clock.advance(1)
        self.assertEqual(self.journal.events[-1], ("answered", "d0"))

    def test_copies_and_refusals_are_not_kept(self) -> None:
        """A copy, a refused CALL (QueueFull) and a late answer add nothing."""
        self.backend(RESET, RESET, Call("d1", "ClearCache", {}), Call("d2", "ClearCache", {}))
        self.clock.advance(30)
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')  # late
        kept = {uid for _, uid in self.journal.events}
        self.assertEqual(kept, {"d0", "d1"})
        self.assertEqual(self.journal.events.count(("answered", "d0")), 1)

    def test_a_reconnection_answers_what_the_old_connection_held(self) -> None:
        """CALLs adopted by a new connection of the charge point are answered there."""
        self.backend(RESET, Call("d1", "ClearCache", {}))
        self.session.connection_lost()  # d0 answered Disconnected; d1 waits
        new, _ = self.open()
        new.adopt(self.session)
        new.frame_received('[3,"d1",{"status":"Accepted"}]')
        answered = [uid for kind, uid in self.journal.events if kind == "answered"]
        self.assertEqual(answered, ["d0", "d1"])


class AnswerCopyTests(Base):
    def test_a_copy_of_an_answer_sent_is_dropped(self) -> None:
        """
        The backend's answer to the charge point's CALL, then a copy of it (a QoS 1
        redelivery, or the catch-all's copy republished once the charge point's
        presence came): the charge point gets it once and the backend no error;
        another answer under the same id is still Unmatched.
        """
        self.session.frame_received('[2,"b1","Heartbeat",{}]')
        answer = CallResult("b1", {"currentTime": "2026-12-07T00:00:00Z"})
        self.backend(answer, CallResult("b1", {"currentTime": "2026-12-07T00:00:00Z"}))
        self.assertEqual([f[:2] for f in self.connection.sent()], [[3, "b1"]])
        self.assertEqual([p for p in self.published() if p[0] == "b1" and p[1] != "Call"], [])
        self.backend(CallResult("b1", {"currentTime": "2026-12-07T00:00:01Z"}))
        self.assertEqual(self.published()[-1][:2], ("b1", "Unmatched"))


class GraceCallResultErrorTests(Base):
    version = OCPP21

    def test_callresulterror_in_grace_is_unmatched(self) -> None:
        """A backend CALLRESULTERROR while the charge point is gone: Unmatched, as a CALLRESULT."""
        self.session.connection_lost()
        self.backend(CallResult("r1", {}), CallResultError("r2", "FormatViolation", "bad", {}))
        self.assertEqual(
            [(i, c) for i, c, _ in self.published()], [("r1", "Unmatched"), ("r2", "Unmatched")]
        )
        self.session.expire()


class LoneSurrogateTests(Base):
    def test_call_with_lone_surrogate_is_a_formation_violation(self) -> None:
        """1.6: a CALL holding an unpaired surrogate gets FormationViolation, nothing published."""
        self.session.frame_received('[2,"u1","DataTransfer",{"vendorId":"\\ud800"}]')
        frame = self.connection.sent()[0]
        self.assertEqual(frame[:3], [4, "u1", "FormationViolation"])
        self.assertEqual(self.router.envelopes, [])


class LoneSurrogate2xTests(Base):
    version = OCPP201

    def test_call_with_lone_surrogate_is_a_format_violation(self) -> None:
        """2.x: a CALL holding an unpaired surrogate gets FormatViolation, nothing published."""
        self.session.frame_received('[2,"u1","DataTransfer",{"vendorId":"\\udfff"}]')
        self.assertEqual(self.connection.sent()[0][:3], [4, "u1", "FormatViolation"])
        self.assertEqual(self.router.envelopes, [])


class RecentCallsTests(ClockTestCase):
    def test_window_and_cap(self) -> None:
        """Answered ids are known for the window, at most RECENT_MEMORY of them, oldest
        dropped first; adopt() puts an older memory before this one."""
        from ocppgw.session.recent import RECENT_MEMORY, RecentCalls

        clock = self.clock
        recent = RecentCalls(clock, 30)
        for n in range(RECENT_MEMORY + 1):
            recent.add(f"d{n}", "Reset", {"n": n})
        self.assertIsNone(recent.get("d0"))
        self.assertEqual(recent.get("d1"), ("Reset", {"n": 1}))
        clock.advance(30)
        self.assertEqual(recent.get("d1"), ("Reset", {"n": 1}))
        clock.advance(0.1)
        self.assertIsNone(recent.get("d1"))
        newer = RecentCalls(clock, 30)
        newer.add("x", "ClearCache", {})
        newer.adopt(recent)
        self.assertEqual(list(newer)[-1], "x")
        self.assertEqual(list(recent), [])
