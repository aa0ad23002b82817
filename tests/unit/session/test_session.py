# -*- test-case-name: tests.unit.session.test_session -*-
"""The session's OCPP-J rules, on a task.Clock with recording fakes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from ocppgw.interfaces import IChargePointConnection, IRouter
from ocppgw.ocpp.envelope import Envelope
from ocppgw.ocpp.messages import Call, CallError, CallResult, CallResultError, Send
from ocppgw.ocpp.timestamps import rfc3339
from ocppgw.ocpp.versions import OCPP16, OCPP21, OCPP201
from ocppgw.session.rules import Session, SessionOptions
from tests.clocks import SessionsTestCase, made
from tests.fakes import FakeConnection, FakeRouter


def make(version: str = OCPP16, **options: object) -> tuple[Session, FakeConnection,
                                                            FakeRouter, Clock]:
    connection, router, clock = FakeConnection(), FakeRouter(), Clock()
    clock.advance(1_700_000_000)
    session = Session("CP1", version, connection, router, clock,
                      SessionOptions(**options))  # type: ignore[arg-type]
    return made(session, clock), connection, router, clock


class FakesTests(SessionsTestCase):
    def test_fakes_provide_interfaces(self) -> None:
        """The fakes implement the interfaces the session relies on."""
        self.assertTrue(verifyObject(IChargePointConnection, FakeConnection()))
        self.assertTrue(verifyObject(IRouter, FakeRouter()))


class UpstreamTests(SessionsTestCase):
    def test_call_published_with_metadata(self) -> None:
        """A charge point CALL is published with version, identity, time and frame."""
        session, _, router, _ = make()
        text = '[2,"1","Heartbeat",{}]'
        session.frame_received(text)
        (env,) = router.envelopes
        self.assertEqual(env.message, Call("1", "Heartbeat", {}))
        self.assertEqual((env.version, env.charge_point, env.frame), (OCPP16, "CP1", text))
        self.assertEqual(env.timestamp, "2023-11-14T22:13:20.000Z")

    def test_backend_answer_reaches_charge_point(self) -> None:
        """The backend's CALLRESULT for the pending CALL is sent as an OCPP-J frame."""
        session, connection, _, _ = make()
        session.frame_received('[2,"1","Heartbeat",{}]')
        session.envelope_received(Envelope(CallResult("1", {"currentTime": "t"})))
        self.assertEqual(connection.sent(), [[3, "1", {"currentTime": "t"}]])

    def test_backend_error_keeps_details(self) -> None:
        """A backend CALLERROR reaches the charge point with its ErrorDetails."""
        session, connection, _, _ = make()
        session.frame_received('[2,"1","Heartbeat",{}]')
        session.envelope_received(Envelope(CallError("1", "NotSupported", "no", {"k": 1})))
        self.assertEqual(connection.sent(), [[4, "1", "NotSupported", "no", {"k": 1}]])

    def test_unmatched_backend_answer_not_sent(self) -> None:
        """An answer that matches no pending CALL goes back to the backend, not the CP."""
        session, connection, router, _ = make()
        session.envelope_received(Envelope(CallResult("nope", {})))
        self.assertEqual(connection.frames, [])
        (env,) = router.envelopes
        assert isinstance(env.message, CallError)
        self.assertEqual((env.message.error_code, env.origin), ("Unmatched", "gateway"))

    def test_upstream_timeout(self) -> None:
        """No backend answer in time: InternalError to the CP, Timeout to the backend."""
        session, connection, router, clock = make(upstream_timeout=30)
        session.frame_received('[2,"1","Authorize",{"idTag":"x"}]')
        clock.advance(29.9)
        self.assertEqual(connection.frames, [])
        clock.advance(0.2)
        self.assertEqual(connection.sent(), [[4, "1", "InternalError", "backend did not answer",
                                              {}]])
        timeout = router.envelopes[-1].message
        assert isinstance(timeout, CallError)
        self.assertEqual((timeout.error_code, timeout.action, timeout.unique_id),
                         ("Timeout", "Authorize", "1"))
        # The answer that comes after the timeout is not sent to the charge point.
        session.envelope_received(Envelope(CallResult("1", {})))
        self.assertEqual(len(connection.frames), 1)

    def test_each_call_times_out_its_own_timeout_after_it(self) -> None:
        """
        CALLs one after another share one reused timer: an answered CALL never
        times out, and the next times out exactly upstream_timeout after it.
        """
        session, connection, router, clock = make(upstream_timeout=30)
        session.frame_received('[2,"1","Heartbeat",{}]')
        clock.advance(10)
        session.envelope_received(Envelope(CallResult("1", {"currentTime": "t"})))
        clock.advance(10)
        session.frame_received('[2,"2","Authorize",{"idTag":"x"}]')
        clock.advance(29.9)  # past the first CALL's time (t = 30): nothing
        self.assertEqual(connection.sent(), [[3, "1", {"currentTime": "t"}]])
        clock.advance(0.2)
        self.assertEqual(
            connection.sent()[-1], [4, "2", "InternalError", "backend did not answer", {}]
        )
        timeouts = [e.message for e in router.envelopes if isinstance(e.message, CallError)]
        self.assertEqual([(m.unique_id, m.error_code) for m in timeouts], [("2", "Timeout")])
        clock.advance(100)  # nothing more, ever
        self.assertEqual(len(connection.frames), 2)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_concurrent_calls_time_out_on_their_own_when_not_strict(self) -> None:
        """With strict = false, a second CALL waiting beside the first has its own timer."""
        session, connection, _, clock = make(upstream_timeout=30, strict=False)
        session.frame_received('[2,"1","Heartbeat",{}]')
        clock.advance(5)
        session.frame_received('[2,"2","Heartbeat",{}]')
        clock.advance(25.1)
        self.assertEqual([f[1] for f in connection.sent()], ["1"])
        clock.advance(5)
        self.assertEqual([f[1] for f in connection.sent()], ["1", "2"])

    def test_closed_connection_leaves_no_timer(self) -> None:
        """Once the connection is gone, the CALL it waited on leaves no timer behind."""
        session, _, _, clock = make(upstream_timeout=30)
        session.frame_received('[2,"1","Heartbeat",{}]')
        session.connection_lost()
        self.assertEqual(
            [c for c in clock.getDelayedCalls() if "SharedTimer" in repr(c)], []
        )

    def test_second_call_refused_when_strict(self) -> None:
        """A second CALL while one is pending gets a CALLERROR and is not published."""
        session, connection, router, _ = make(OCPP201)
        session.frame_received('[2,"1","Heartbeat",{}]')
        session.frame_received('[2,"2","Heartbeat",{}]')
        self.assertEqual(len(router.envelopes), 1)
        (frame,) = connection.sent()
        self.assertEqual(frame[:3], [4, "2", "RpcFrameworkError"])

    def test_second_call_allowed_when_not_strict(self) -> None:
        """strict = false lets overlapping CALLs through, each answered by id."""
        session, connection, router, _ = make(strict=False)
        session.frame_received('[2,"1","Heartbeat",{}]')
        session.frame_received('[2,"2","Heartbeat",{}]')
        self.assertEqual(len(router.envelopes), 2)
        session.envelope_received(Envelope(CallResult("2", {})))
        session.envelope_received(Envelope(CallResult("1", {})))
        self.assertEqual([f[1] for f in connection.sent()], ["2", "1"])

    def test_publish_failure_answers_charge_point(self) -> None:
        """A CALL that cannot be published is answered with InternalError at once."""
        session, connection, router, _ = make()
        router.failing = True
        session.frame_received('[2,"1","Heartbeat",{}]')
        (frame,) = connection.sent()
        self.assertEqual(frame[:3], [4, "1", "InternalError"])

    def test_send_whose_publish_fails_is_reported_once_there_is_room(self) -> None:
        """A SEND that cannot be published: a NotPublished envelope follows once it can be."""
        session, _, router, clock = make(OCPP21)
        router.failing = True
        session.frame_received(
            '[6,"s1","NotifyPeriodicEventStream",'
            '{"id":1,"pending":0,"basetime":"2026-01-01T00:00:00Z","data":[]}]'
        )
        clock.advance(1)
        self.assertEqual(len(router.envelopes), 2)  # the SEND, one retry of the report
        router.failing = False
        clock.advance(1)
        report = router.envelopes[-1]
        self.assertIsInstance(report.message, CallError)
        self.assertEqual(
            (report.message.unique_id, report.message.error_code, report.origin),
            ("s1", "NotPublished", "gateway"),
        )
        clock.advance(10)
        self.assertEqual(len(router.envelopes), 3)

    def test_unsafe_action(self) -> None:
        """An Action that is not an identifier gets NotImplemented, nothing published."""
        session, connection, router, _ = make()
        session.frame_received('[2,"1","a/#",{}]')
        self.assertEqual(router.envelopes, [])
        self.assertEqual(connection.sent()[0][:3], [4, "1", "NotImplemented"])

    def test_send_is_published_not_answered(self) -> None:
        """A 2.1 SEND is published and never answered."""
        session, connection, router, _ = make(OCPP21)
        session.frame_received('[6,"1","NotifyPeriodicEventStream",{}]')
        self.assertEqual(router.envelopes[0].message, Send("1", "NotifyPeriodicEventStream",
                                                             {}))
        self.assertEqual(connection.frames, [])


class BadFrameTests(SessionsTestCase):
    def test_unreadable_2x(self) -> None:
        """2.x: invalid JSON gets RpcFrameworkError with id "-1" (Part 4 §4.2.3)."""
        session, connection, router, _ = make(OCPP201)
        session.frame_received("not json")
        self.assertEqual(connection.sent()[0][:3], [4, "-1", "RpcFrameworkError"])
        self.assertEqual(router.envelopes, [])

    def test_unreadable_16(self) -> None:
        """1.6: invalid JSON gets FormationViolation with id "-1"."""
        session, connection, _, _ = make(OCPP16)
        session.frame_received("[2,")
        self.assertEqual(connection.sent()[0][:3], [4, "-1", "FormationViolation"])

    def test_unknown_type_201(self) -> None:
        """2.0.1: an unknown MessageTypeId gets MessageTypeNotSupported (§4.4)."""
        session, connection, _, _ = make(OCPP201)
        session.frame_received('[7,"5",{}]')
        self.assertEqual(connection.sent()[0][:3], [4, "5", "MessageTypeNotSupported"])

    def test_21_type_on_201_gets_callerror(self) -> None:
        """2.0.1: a CALLRESULTERROR (5), which 2.0.1 lacks, gets MessageTypeNotSupported."""
        session, connection, _, _ = make(OCPP201)
        session.frame_received('[5,"m5","GenericError","x",{}]')
        self.assertEqual(connection.sent()[0][:3], [4, "m5", "MessageTypeNotSupported"])

    def test_bad_answer_fails_pending_call(self) -> None:
        """A malformed CALLRESULT for the pending downstream CALL is reported as Invalid."""
        session, connection, router, _ = make(OCPP21)
        session.envelope_received(Envelope(Call("d1", "Reset", {"type": "Immediate"})))
        session.frame_received('[3,"d1","not an object"]')
        err = router.envelopes[-1].message
        assert isinstance(err, CallError)
        self.assertEqual((err.error_code, err.action), ("Invalid", "Reset"))
        # 2.1 Part 4 §4.2.4: the charge point hears of it as CALLRESULTERROR.
        self.assertEqual(connection.sent()[-1][:2], [5, "d1"])


class DownstreamTests(SessionsTestCase):
    def test_one_call_in_flight(self) -> None:
        """Backend CALLs go out one at a time, in order, each after the last is answered."""
        session, connection, router, _ = make()
        for i in range(3):
            session.envelope_received(Envelope(Call(f"d{i}", "Reset", {"type": "Soft"})))
        self.assertEqual([f[1] for f in connection.sent()], ["d0"])
        session.frame_received('[3,"d0",{"status":"Accepted"}]')
        self.assertEqual([f[1] for f in connection.sent()], ["d0", "d1"])
        reply = router.envelopes[-1]
        self.assertEqual(reply.message, CallResult("d0", {"status": "Accepted"}, "Reset"))
        session.frame_received('[4,"d1","NotSupported","",{}]')
        self.assertEqual([f[1] for f in connection.sent()], ["d0", "d1", "d2"])
        err = router.envelopes[-1].message
        assert isinstance(err, CallError)
        self.assertEqual((err.error_code, err.action), ("NotSupported", "Reset"))

    def test_decode_context_names_pending_actions(self) -> None:
        """The session's decode context is made once, with its version and the Action of
        each exchange still waiting (its CALL router, and the CALL in flight)."""
        session, _, _, _ = make()
        context = session.decode_context
        self.assertIs(session.decode_context, context)
        self.assertEqual(context.version, OCPP16)
        session.frame_received('[2,"u1","Heartbeat",{}]')
        session.envelope_received(Envelope(Call("d1", "Reset", {"type": "Soft"})))
        self.assertEqual(
            [context.action_of(i) for i in ("u1", "d1", "other")], ["Heartbeat", "Reset", None]
        )

    def test_queue_full(self) -> None:
        """Beyond max_queue waiting CALLs, a QueueFull error envelope answers."""
        session, connection, router, _ = make(max_queue=2)
        for i in range(4):
            session.envelope_received(Envelope(Call(f"d{i}", "Reset", {"type": "Soft"})))
        self.assertEqual(len(connection.frames), 1)
        (err,) = [e.message for e in router.envelopes]
        assert isinstance(err, CallError)
        self.assertEqual((err.unique_id, err.error_code), ("d3", "QueueFull"))

    def test_downstream_timeout_and_late_answer(self) -> None:
        """No answer in time: Timeout envelope, next CALL sent; a late answer is marked."""
        session, connection, router, clock = make(downstream_timeout=30)
        session.envelope_received(Envelope(Call("d0", "Reset", {"type": "Soft"})))
        session.envelope_received(Envelope(Call("d1", "Reset", {"type": "Soft"})))
        clock.advance(30)
        err = router.envelopes[-1].message
        assert isinstance(err, CallError)
        self.assertEqual((err.unique_id, err.error_code), ("d0", "Timeout"))
        self.assertEqual([f[1] for f in connection.sent()], ["d0", "d1"])
        session.frame_received('[3,"d0",{"status":"Accepted"}]')
        late = router.envelopes[-1]
        self.assertTrue(late.late)
        self.assertEqual(late.message, CallResult("d0", {"status": "Accepted"}, "Reset"))

    def test_duplicate_downstream_id(self) -> None:
        """Another CALL under a UniqueId already queued or in flight is refused as Invalid."""
        session, connection, router, _ = make()
        session.envelope_received(Envelope(Call("d0", "Reset", {"type": "Soft"})))
        session.envelope_received(Envelope(Call("d0", "Reset", {"type": "Hard"})))
        self.assertEqual(len(connection.frames), 1)
        err = router.envelopes[-1].message
        assert isinstance(err, CallError)
        self.assertEqual(err.error_code, "Invalid")

    def test_disconnect_fails_in_flight_and_holds_queue(self) -> None:
        """On disconnect the in-flight CALL fails; queued ones wait until expire()."""
        session, _, router, clock = make()
        session.envelope_received(Envelope(Call("d0", "Reset", {"type": "Soft"})))
        session.envelope_received(Envelope(Call("d1", "Reset", {"type": "Soft"})))
        session.connection_lost()

        def codes() -> list[tuple[str, str]]:
            return [(e.message.unique_id, e.message.error_code) for e in router.envelopes
                    if isinstance(e.message, CallError)]

        self.assertEqual(codes(), [("d0", "Disconnected")])
        self.assertEqual(session.queued(), 1)
        # The exchanges' timers are gone; only the grace period's runs.
        self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [clock.seconds() + 60])
        session.expire()
        self.assertEqual(codes(), [("d0", "Disconnected"), ("d1", "Offline")])

    def test_adopt_moves_queue_to_new_connection(self) -> None:
        """A reconnection takes the held CALLs and sends the first at once."""
        old, _, _, _ = make()
        old.connection_lost()
        old.envelope_received(Envelope(Call("d0", "Reset", {"type": "Soft"})))
        new, connection, _, _ = make()
        new.adopt(old)
        self.assertEqual([f[1] for f in connection.sent()], ["d0"])
        self.assertEqual(old.queued(), 0)

    def test_replaced_in_flight_error(self) -> None:
        """A replaced connection's in-flight CALL gets a Replaced error envelope."""
        session, _, router, _ = make()
        session.envelope_received(Envelope(Call("d0", "Reset", {"type": "Soft"})))
        session.connection_lost(replaced=True)
        err = router.envelopes[-1].message
        assert isinstance(err, CallError)
        self.assertEqual((err.unique_id, err.error_code, err.action), ("d0", "Replaced", "Reset"))

    def test_callresulterror_passed_on(self) -> None:
        """A 2.1 CALLRESULTERROR from the backend is sent to the charge point."""
        session, connection, _, _ = make(OCPP21)
        session.envelope_received(Envelope(CallResultError("x", "FormatViolation", "bad", {})))
        self.assertEqual(json.loads(connection.frames[0])[0], 5)


# --- the envelope timestamp: RFC 3339 UTC with milliseconds, formatted once per second ---


@settings(max_examples=2000, deadline=None, database=None)
@given(
    st.floats(min_value=0, max_value=4e9)
    | st.integers(0, 4 * 10**9).map(lambda n: n - 5e-7)
    | st.integers(0, 4 * 10**9).map(lambda n: n + 0.9995)
)
def test_rfc3339_matches_datetime(seconds: float) -> None:
    """The cached timestamp is exactly what datetime.isoformat gives, to the millisecond."""
    expected = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    assert rfc3339(seconds) == expected.replace("+00:00", "Z")


def test_rfc3339_across_seconds() -> None:
    """Consecutive times in and across seconds each get their own second's text."""
    assert rfc3339(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"
    assert rfc3339(1_700_000_001.0) == "2023-11-14T22:13:21.000Z"
    assert rfc3339(1_700_000_000.999) == "2023-11-14T22:13:20.999Z"
