"""Mirrors: copies of the charge point's CALLs, their answers tapped (ocppgw.forward.mirror)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred

from ocppgw.forward.mirror import MAX_HELD, Mirror, Mirrors
from ocppgw.forward.tap import Tap
from ocppgw.forward.turns import Turns
from ocppgw.forward.verdicts import Verdicts
from ocppgw.router.topics import TopicTemplate
from tests.clocks import ClockTestCase
from tests.fakes import FakeConnection, FakeMQTT
from tests.unit.forward.test_relay import FakeUpstream


class MirrorTests(ClockTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.mqtt = FakeMQTT()
        tap = Tap(self.mqtt, 1, TopicTemplate.parse("tap/${cid}"), "json", "gw", self.clock)
        self.connection = FakeConnection()
        self.turns = Turns(self.connection, self.clock, 30)
        self.addCleanup(self.turns.stop)
        self.mirrors = Mirrors("CP1", "ocpp1.6", tap, self.turns, lambda: Verdicts("ocpp1.6", None))
        self.opening: list[Deferred[Any]] = []

        def opener() -> Deferred[Any]:
            self.opening.append(Deferred())
            return self.opening[-1]

        self.mirror = Mirror.made(
            0, "m:80", "ocpp1.6", self.clock, opener, ("Reset",), self.mirrors
        )
        self.mirrors.add(self.mirror)
        self.addCleanup(self.mirrors.stop, 1001)

    def open(self) -> Any:
        self.clock.advance(0)
        upstream = FakeUpstream()
        self.opening[-1].callback(upstream)
        return upstream

    def tapped(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for _, payload, _, _ in self.mqtt.published]

    def test_calls_before_the_connection_opens_are_held_and_sent_in_order(self) -> None:
        """Copies of CALLs (not answers) wait for the mirror's connection, then go in order."""
        self.mirrors.copy('[2,"1","Heartbeat",{}]')
        self.mirrors.copy('[3,"c1",{}]')
        self.mirrors.copy('[2,"2","Heartbeat",{}]')
        upstream = self.open()
        self.assertEqual(upstream.sent, ['[2,"1","Heartbeat",{}]', '[2,"2","Heartbeat",{}]'])
        self.assertEqual(self.mirror.state, "open")

    def test_what_is_held_is_bounded(self) -> None:
        """Past MAX_HELD, the oldest copies are dropped and counted."""
        for i in range(MAX_HELD + 5):
            self.mirrors.copy(f'[2,"{i}","Heartbeat",{{}}]')
        upstream = self.open()
        self.assertEqual(len(upstream.sent), MAX_HELD)
        self.assertEqual(json.loads(upstream.sent[0])[1], "5")
        self.assertEqual(self.mirror.dropped, 5)

    def test_its_answers_go_only_to_the_tap(self) -> None:
        """The mirror's answer is tapped as Mirror, with its peer, and named by the CALL."""
        upstream = self.open()
        self.mirrors.copy('[2,"1","Heartbeat",{}]')
        upstream.receiver.upstream_frame('[3,"1",{"currentTime":"2026-01-01T00:00:00Z"}]')
        self.assertEqual(self.connection.frames, [])
        (envelope,) = self.tapped()
        self.assertEqual(
            (envelope["Direction"], envelope["Peer"], envelope["Action"]),
            ("Mirror", "m:80", "Heartbeat"),
        )

    def test_a_call_not_listed_is_refused(self) -> None:
        """An Action mirror_calls does not list: NotSupported to the mirror, nothing sent on."""
        upstream = self.open()
        upstream.receiver.upstream_frame('[2,"x","ChangeAvailability",{}]')
        self.assertEqual(self.connection.frames, [])
        self.assertEqual(json.loads(upstream.sent[0])[:3], [4, "x", "NotSupported"])

    def test_a_listed_call_takes_its_turn_and_its_answer_goes_back(self) -> None:
        """A Reset of the mirror's goes to the charge point; its answer to that mirror only."""
        upstream = self.open()
        upstream.receiver.upstream_frame('[2,"r","Reset",{"type":"Soft"}]')
        self.assertEqual(self.connection.frames, ['[2,"r","Reset",{"type":"Soft"}]'])
        who = self.turns.answer_of('[3,"r",{"status":"Accepted"}]')
        assert who is not None
        self.assertTrue(self.mirrors.answered(who, '[3,"r",{"status":"Accepted"}]'))
        self.assertEqual(upstream.sent, ['[3,"r",{"status":"Accepted"}]'])

    def test_a_lost_connection_is_opened_again(self) -> None:
        """The mirror closes: after 1 s a new connection; what came meanwhile is held."""
        upstream = self.open()
        upstream.receiver.upstream_closed(1006, None)
        self.assertEqual(self.mirror.state, "connecting")
        self.mirrors.copy('[2,"1","Heartbeat",{}]')
        self.clock.advance(1)
        again = FakeUpstream()
        self.opening[-1].callback(again)
        self.assertEqual(again.sent, ['[2,"1","Heartbeat",{}]'])
