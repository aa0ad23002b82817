"""The message rate of one charge point: token bucket, refusals, flood close (task.Clock)."""

from __future__ import annotations

from ocppgw.ocpp.versions import OCPP16
from ocppgw.session.flood import MessageRate
from ocppgw.session.rules import Session, SessionOptions
from tests.clocks import ClockTestCase, end_session
from tests.fakes import FakeConnection, FakeRouter


class BucketTests(ClockTestCase):
    def test_burst_then_rate(self) -> None:
        """burst frames at once, then rate per second; what is beyond is counted."""
        clock = self.clock
        bucket = MessageRate(clock, rate=2, burst=3)
        self.assertEqual([bucket.admit() for _ in range(4)], [True, True, True, False])
        clock.advance(0.5)
        self.assertEqual([bucket.admit() for _ in range(2)], [True, False])
        self.assertEqual(bucket.refused, 2)

    def test_zero_rate_is_no_limit(self) -> None:
        """max_message_rate = 0 admits everything."""
        bucket = MessageRate(self.clock, rate=0, burst=1)
        self.assertTrue(all(bucket.admit() for _ in range(1000)))


class SessionRateTests(ClockTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.router = FakeRouter()
        self.connection = FakeConnection()
        options = SessionOptions(local_heartbeat=True, max_message_rate=1, max_message_burst=2)
        self.session = Session("CP1", OCPP16, self.connection, self.router, self.clock, options)
        self.connection.session = self.session
        self.addCleanup(end_session, self.session)

    def test_call_beyond_limit_gets_generic_error_and_is_not_published(self) -> None:
        """A CALL beyond the bucket: CALLERROR GenericError naming the limit; not published."""
        for n in range(3):
            self.session.frame_received(f'[2,"h{n}","Heartbeat",{{}}]')
        frames = self.connection.sent()
        self.assertEqual([f[0] for f in frames], [3, 3, 4])
        self.assertEqual(frames[2][1:3], ["h2", "GenericError"])
        self.assertIn("max_message_rate = 1/s", frames[2][3])
        self.assertEqual([e.message.unique_id for e in self.router.envelopes], ["h0", "h1"])

    def test_other_frames_beyond_limit_dropped_and_counted(self) -> None:
        """A CALLRESULT or garbage beyond the bucket is dropped without an answer, and counted."""
        self.session.frame_received('[2,"h0","Heartbeat",{}]')
        self.session.frame_received('[2,"h1","Heartbeat",{}]')
        sent = len(self.connection.sent())
        self.session.frame_received('[3,"x",{}]')
        self.session.frame_received("not json")
        self.assertEqual(len(self.connection.sent()), sent)
        self.assertEqual(self.session.message_rate.refused, 2)

    def test_flood_for_ten_seconds_closes_1008(self) -> None:
        """Above ten times the rate every second for 10 s: closed with 1008, not before."""
        for second in range(11):
            for _ in range(20):
                self.session.frame_received('[3,"x",{}]')
                self.clock.advance(0.01)
            if second < 10:
                self.assertIsNone(self.connection.closed, f"closed after {second} s")
            self.clock.advance(1 - 0.2)
        self.assertEqual(self.connection.closed[0], 1008)
