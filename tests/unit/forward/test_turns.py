"""One CALL in flight towards the charge point, whoever sent it (ocppgw.forward.turns)."""

from __future__ import annotations

from ocppgw.forward.turns import BACKEND, CENTRAL, Turns, head
from tests.clocks import ClockTestCase
from tests.fakes import FakeConnection


class TurnsTests(ClockTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.connection = FakeConnection()
        self.turns = Turns(self.connection, self.clock, 30)
        self.sent: list[tuple[str, str]] = []
        self.turns.on_sent = lambda text, who, at: self.sent.append((who, text))
        self.addCleanup(self.turns.stop)

    def test_a_backend_call_waits_for_the_central_systems_call_in_flight(self) -> None:
        """The backend's CALL goes once the charge point answered the central system's."""
        self.turns.from_central('[2,"x","Reset",{"type":"Soft"}]')
        self.turns.send_frame('[2,"x","GetConfiguration",{}]')
        self.assertEqual(self.connection.frames, ['[2,"x","Reset",{"type":"Soft"}]'])
        self.assertEqual(self.turns.answer_of('[3,"x",{"status":"Accepted"}]'), CENTRAL)
        self.assertEqual(len(self.connection.frames), 1)  # the answer is relayed first
        self.turns.resume()
        self.assertEqual(self.connection.frames[-1], '[2,"x","GetConfiguration",{}]')
        self.assertEqual(self.turns.answer_of('[3,"x",{}]'), BACKEND)
        self.assertIsNone(self.turns.in_flight)
        self.assertEqual([who for who, _ in self.sent], [CENTRAL, BACKEND])

    def test_a_central_call_waits_for_the_backends(self) -> None:
        """The central system's CALL waits behind the backend's in flight; its answers do not."""
        self.turns.send_frame('[2,"b1","TriggerMessage",{"requestedMessage":"Heartbeat"}]')
        self.turns.from_central('[2,"c1","Reset",{"type":"Soft"}]')
        self.turns.from_central('[3,"cp1",{"currentTime":"2026-01-01T00:00:00Z"}]')
        self.assertEqual(len(self.connection.frames), 2)
        answer = '[3,"cp1",{"currentTime":"2026-01-01T00:00:00Z"}]'
        self.assertEqual(self.connection.frames[1], answer)
        self.assertEqual(self.turns.answer_of('[3,"b1",{"status":"Accepted"}]'), BACKEND)
        self.turns.resume()
        self.assertEqual(self.connection.frames[2], '[2,"c1","Reset",{"type":"Soft"}]')

    def test_an_answer_to_no_call_in_flight_is_nobodys(self) -> None:
        """Another id, or a CALL from the charge point: not an answer to the CALL in flight."""
        self.turns.send_frame('[2,"b1","Reset",{"type":"Soft"}]')
        self.assertIsNone(self.turns.answer_of('[3,"other",{}]'))
        self.assertIsNone(self.turns.answer_of('[2,"b1","Heartbeat",{}]'))
        self.assertEqual(self.turns.in_flight, (BACKEND, "b1"))

    def test_an_unanswered_call_gives_up_its_turn_after_the_timeout(self) -> None:
        """The charge point never answers: after awaiting_timeout the next CALL goes."""
        self.turns.from_central('[2,"c1","Reset",{"type":"Soft"}]')
        self.turns.send_frame('[2,"b1","Reset",{"type":"Hard"}]')
        self.clock.advance(29.9)
        self.assertEqual(len(self.connection.frames), 1)
        self.clock.advance(0.1)
        self.assertEqual(self.connection.frames[-1], '[2,"b1","Reset",{"type":"Hard"}]')

    def test_the_backends_next_call_ends_its_last(self) -> None:
        """The session sends a CALL only when its last is done: that one leaves the flight."""
        self.turns.send_frame('[2,"b1","Reset",{"type":"Soft"}]')
        self.turns.send_frame('[2,"b2","Reset",{"type":"Soft"}]')
        self.assertEqual(self.turns.in_flight, (BACKEND, "b2"))
        self.assertEqual(len(self.connection.frames), 2)

    def test_head(self) -> None:
        """The type and id are read from the frame's start, spaces allowed; else None."""
        self.assertEqual(head(' [ 3 , "a-1" , {}]'), (3, "a-1"))
        self.assertIsNone(head('{"x": 1}'))
        self.assertIsNone(head('[7,"a"]'))
