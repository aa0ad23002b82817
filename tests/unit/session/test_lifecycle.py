# -*- test-case-name: tests.unit.session.test_lifecycle -*-
"""The session's lifecycle, one test per transition, on a task.Clock."""

from __future__ import annotations

from ocppgw.ocpp.envelope import Envelope
from ocppgw.ocpp.messages import Call, CallError, CallResult, CallResultError, Send
from ocppgw.ocpp.versions import OCPP16, OCPP21
from ocppgw.session.rules import Phase, Session, SessionOptions
from tests.clocks import ClockTestCase, end_session
from tests.fakes import FakeConnection, FakeRouter

RESET = Call("d0", "Reset", {"type": "Soft"})


class Lifecycle(ClockTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.router = FakeRouter()
        self.opened: list[Session] = []
        # Each session ends as the gateway ends one; then no timer may be left.
        self.addCleanup(lambda: [end_session(s) for s in self.opened])
        self.session, self.connection = self.open()

    def open(self, version: str = OCPP16) -> tuple[Session, FakeConnection]:
        connection = FakeConnection()
        options = SessionOptions(upstream_timeout=30, downstream_timeout=30, offline_ttl=60)
        session = Session("CP1", version, connection, self.router, self.clock, options)
        connection.session = session
        self.opened.append(session)
        return session, connection

    def backend(self, *messages: Call | CallResult | CallError | CallResultError | Send) -> None:
        for message in messages:
            self.session.envelope_received(Envelope(message))

    def errors(self) -> list[tuple[str, str]]:
        return [
            (e.message.unique_id, e.message.error_code)
            for e in self.router.envelopes
            if isinstance(e.message, CallError) and e.origin == "gateway"
        ]

    def assertNothingSent(self, connection: FakeConnection | None = None) -> None:
        connection = connection or self.connection
        self.assertEqual((connection.frames, connection.refused), ([], []))

    def closing(self) -> None:
        """The charge point's close frame arrives."""
        self.connection.peer_closes()
        self.assertIs(self.session.phase, Phase.CLOSING)

    def grace(self) -> None:
        self.session.connection_lost()
        self.assertIs(self.session.phase, Phase.GRACE)


class OpenTests(Lifecycle):
    def test_starts_open(self) -> None:
        """A new session is open and connected, and sends what the backend sends."""
        self.assertIs(self.session.phase, Phase.OPEN)
        self.assertTrue(self.session.connected)
        self.backend(RESET)
        self.assertEqual([f[1] for f in self.connection.sent()], ["d0"])

    def test_close_frame_means_closing(self) -> None:
        """A close frame (either side) moves open to closing; the socket still counts."""
        self.connection.close(1000, "bye")
        self.assertIs(self.session.phase, Phase.CLOSING)
        self.assertTrue(self.session.connected)

    def test_connection_lost_starts_grace(self) -> None:
        """Lost while open: the CALL in flight fails Disconnected, grace starts."""
        self.backend(RESET, Call("d1", "Reset", {"type": "Soft"}))
        self.grace()
        self.assertEqual(self.errors(), [("d0", "Disconnected")])
        self.assertEqual(self.session.queued(), 1)
        self.assertFalse(self.session.connected)

    def test_replaced(self) -> None:
        """A newer connection here closes the old one "replaced"; its CALL fails Replaced."""
        self.backend(RESET)
        new, _ = self.open()
        new.adopt(self.session)
        self.assertIs(self.session.phase, Phase.REPLACED)
        self.assertEqual(self.connection.closed, (1000, "replaced"))
        self.assertEqual(self.errors(), [("d0", "Replaced")])

    def test_moved_to_another_instance(self) -> None:
        """Moved elsewhere: closed, in flight and queued answered Replaced, released."""
        self.backend(RESET, Call("d1", "Reset", {"type": "Soft"}))
        self.session.moved()
        self.assertIs(self.session.phase, Phase.MOVED)
        self.assertEqual(self.connection.closed, (1000, "replaced"))
        self.assertEqual(self.errors(), [("d0", "Replaced"), ("d1", "Replaced")])
        self.assertEqual(self.router.released, [self.session])

    def test_expire_ignored(self) -> None:
        """expire() on an open session does nothing."""
        self.backend(RESET, Call("d1", "Reset", {"type": "Soft"}))
        self.session.expire()
        self.assertIs(self.session.phase, Phase.OPEN)
        self.assertEqual((self.errors(), self.session.queued()), ([], 1))


class ClosingTests(Lifecycle):
    def test_backend_call_answered_disconnected(self) -> None:
        """A backend CALL while closing: Disconnected envelope, nothing sent."""
        self.closing()
        self.backend(RESET)
        self.assertEqual(self.errors(), [("d0", "Disconnected")])
        self.assertNothingSent()

    def test_backend_answer_answered_disconnected(self) -> None:
        """A backend answer while closing: Disconnected for its CALL, nothing sent."""
        self.session.frame_received('[2,"u1","Heartbeat",{}]')
        self.closing()
        self.backend(CallResult("u1", {"currentTime": "t"}))
        self.assertEqual(self.errors(), [("u1", "Disconnected")])
        self.assertEqual(self.router.envelopes[-1].message.action, "Heartbeat")  # type: ignore[union-attr]
        self.assertNothingSent()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_send_and_callresulterror_answered_disconnected(self) -> None:
        """A 2.1 SEND or CALLRESULTERROR while closing: Disconnected, nothing sent."""
        self.session, self.connection = self.open(OCPP21)
        self.closing()
        self.backend(Send("s1", "NotifyPeriodicEventStream", {}))
        self.backend(CallResultError("r1", "FormatViolation", "bad", {}))
        self.assertEqual(self.errors(), [("s1", "Disconnected"), ("r1", "Disconnected")])
        self.assertNothingSent()

    def test_downstream_timeout_still_published(self) -> None:
        """The CALL in flight times out while closing: Timeout; the queue is not touched."""
        self.backend(RESET, Call("d1", "Reset", {"type": "Soft"}))
        self.closing()
        self.clock.advance(30)
        self.assertEqual(self.errors(), [("d0", "Timeout")])
        self.assertEqual(self.session.queued(), 1)
        self.assertEqual(self.connection.refused, [])

    def test_upstream_timeout_still_published(self) -> None:
        """A charge point CALL times out while closing: Timeout envelope, no CALLERROR sent."""
        self.session.frame_received('[2,"u1","Heartbeat",{}]')
        self.closing()
        self.clock.advance(30)
        self.assertEqual(self.errors(), [("u1", "Timeout")])
        self.assertIn("closing", self.router.envelopes[-1].message.error_description)  # type: ignore[union-attr]
        self.assertNothingSent()

    def test_bad_frame_while_closing_not_answered(self) -> None:
        """A bad frame arriving while closing gets no CALLERROR (nothing is sent)."""
        self.closing()
        self.session.frame_received("[2,")
        self.assertNothingSent()

    def test_closing_again_ignored(self) -> None:
        """A second closing() changes nothing."""
        self.closing()
        self.session.closing()
        self.assertIs(self.session.phase, Phase.CLOSING)

    def test_connection_lost_starts_grace(self) -> None:
        """Lost after closing: in flight Disconnected, queue held for the grace period."""
        self.backend(RESET, Call("d1", "Reset", {"type": "Soft"}))
        self.closing()
        self.grace()
        self.assertEqual(self.errors(), [("d0", "Disconnected")])
        self.assertEqual(self.session.queued(), 1)

    def test_replaced(self) -> None:
        """Replaced while closing: the queue moves to the new session and is sent there."""
        self.backend(RESET, Call("d1", "Reset", {"type": "Soft"}))
        self.closing()
        new, connection = self.open()
        new.adopt(self.session)
        self.assertIs(self.session.phase, Phase.REPLACED)
        self.assertEqual(self.errors(), [("d0", "Replaced")])
        self.assertEqual([f[1] for f in connection.sent()], ["d1"])

    def test_moved(self) -> None:
        """Moved while closing: in flight and queued answered Replaced, nothing sent."""
        self.backend(RESET, Call("d1", "Reset", {"type": "Soft"}))
        self.closing()
        self.session.moved()
        self.assertIs(self.session.phase, Phase.MOVED)
        self.assertEqual(self.errors(), [("d0", "Replaced"), ("d1", "Replaced")])
        self.assertEqual(self.connection.refused, [])
        self.assertEqual(self.router.released, [self.session])

    def test_expire_ignored(self) -> None:
        """expire() while closing does nothing."""
        self.closing()
        self.session.expire()
        self.assertIs(self.session.phase, Phase.CLOSING)


class GraceTests(Lifecycle):
    def test_call_held_and_send_offline(self) -> None:
        """In the grace period a CALL is held; a SEND is answered Offline."""
        self.session, self.connection = self.open(OCPP21)
        self.grace()
        self.backend(RESET, Send("s1", "NotifyPeriodicEventStream", {}))
        self.assertEqual(self.session.queued(), 1)
        self.assertEqual(self.errors(), [("s1", "Offline")])
        self.assertNothingSent()

    def test_expiry_answers_offline(self) -> None:
        """Grace runs out on the clock: queued CALLs get Offline, the router forgets it."""
        self.grace()
        self.backend(RESET)
        self.clock.advance(59.9)
        self.assertEqual(self.errors(), [])
        self.clock.advance(0.1)
        self.assertIs(self.session.phase, Phase.EXPIRED)
        self.assertEqual(self.errors(), [("d0", "Offline")])
        self.assertEqual(self.router.released, [self.session])

    def test_reconnect_adopts_queue(self) -> None:
        """The identity reconnects here: the new session takes the queue; no expiry."""
        self.grace()
        self.backend(RESET)
        new, connection = self.open()
        new.adopt(self.session)
        self.assertIs(self.session.phase, Phase.REPLACED)
        self.assertEqual([f[1] for f in connection.sent()], ["d0"])
        self.clock.advance(30)  # the CALL times out on the new session ...
        self.assertEqual(self.errors(), [("d0", "Timeout")])
        self.clock.advance(60)  # ... and the old grace period never ends
        self.assertEqual(self.router.released, [])

    def test_moved_while_gone_lets_go_at_once(self) -> None:
        """Moved elsewhere while gone here: held CALLs Replaced at once, released, no timer."""
        self.grace()
        self.backend(RESET)
        self.session.moved()
        self.assertIs(self.session.phase, Phase.MOVED)
        self.assertEqual(self.errors(), [("d0", "Replaced")])
        self.assertEqual(self.router.released, [self.session])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(60)
        self.assertEqual(self.errors(), [("d0", "Replaced")])

    def test_closing_and_lost_again_ignored(self) -> None:
        """closing() or connection_lost() in the grace period changes nothing."""
        self.grace()
        self.session.closing()
        self.session.connection_lost()
        self.assertIs(self.session.phase, Phase.GRACE)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_expire_cancels_timer(self) -> None:
        """expire() before the timer: Offline at once, and the timer is cancelled."""
        self.grace()
        self.backend(RESET)
        self.session.expire()
        self.assertEqual(self.errors(), [("d0", "Offline")])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FinalTests(Lifecycle):
    def test_replaced_refuses(self) -> None:
        """A replaced session answers a late backend CALL Replaced; it ignores the rest."""
        new, _ = self.open()
        new.adopt(self.session)
        for event in (self.session.closing, self.session.connection_lost,
                      self.session.moved, self.session.expire):
            event()
        self.assertIs(self.session.phase, Phase.REPLACED)
        self.backend(RESET)
        self.assertEqual(self.errors(), [("d0", "Replaced")])

    def test_moved_refuses(self) -> None:
        """A moved session answers a late backend CALL Replaced."""
        self.session.moved()
        self.session.connection_lost()
        self.assertIs(self.session.phase, Phase.MOVED)
        self.backend(RESET)
        self.assertEqual(self.errors(), [("d0", "Replaced")])

    def test_expired_refuses(self) -> None:
        """An expired session answers a late backend CALL Offline."""
        self.grace()
        self.clock.advance(60)
        new, _ = self.open()
        new.adopt(self.session)
        self.assertIs(self.session.phase, Phase.EXPIRED)
        self.backend(RESET)
        self.assertEqual(self.errors(), [("d0", "Offline")])


class ShutdownTests(Lifecycle):
    def test_shutdown_answers_backend_calls_and_keeps_upstream(self) -> None:
        """shutdown(): in-flight and queued backend CALLs get Shutdown; upstream CALLs wait on."""
        self.backend(RESET, Call("d1", "Reset", {"type": "Hard"}))
        self.session.frame_received('[2,"u1","Heartbeat",{}]')
        self.session.shutdown("stopping")
        self.assertEqual(self.errors(), [("d0", "Shutdown"), ("d1", "Shutdown")])
        self.assertEqual(self.session.awaiting_backend(), 1)
        self.assertIs(self.session.phase, Phase.OPEN)
        # The charge point's late answer is published, marked Late, not Unmatched.
        self.session.frame_received('[3,"d0",{"status":"Accepted"}]')
        late = self.router.envelopes[-1]
        self.assertIsInstance(late.message, CallResult)
        self.assertTrue(late.late)
