"""on_csms_down = hold: reconnecting upstream with backoff (ocppgw.forward.hold, .relay)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred

from ocppgw.forward.hold import Reconnect, held_off
from ocppgw.forward.relay import Link, Relay
from ocppgw.forward.turns import Turns
from ocppgw.forward.verdicts import Verdicts
from tests.clocks import ClockTestCase
from tests.fakes import FakeConnection
from tests.unit.forward.test_relay import FakeUpstream


class ReconnectTests(ClockTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.attempts: list[Deferred[Any]] = []
        self.linked: list[Any] = []

        def reopen() -> Deferred[Any]:
            self.attempts.append(Deferred())
            return self.attempts[-1]

        self.reconnect = Reconnect(self.clock, reopen, self.linked.append)

    def test_the_wait_doubles_up_to_thirty_seconds(self) -> None:
        """1 s, then 2, 4, 8, 16, 30, 30 between failed attempts."""
        self.reconnect.start()
        waits = []
        for _ in range(7):
            before = len(self.attempts)
            waited = 0.0
            while len(self.attempts) == before:
                self.clock.advance(0.5)
                waited += 0.5
            waits.append(waited)
            self.attempts[-1].errback(ConnectionError("refused"))
        self.assertEqual(waits, [1, 2, 4, 8, 16, 30, 30])
        self.reconnect.stop()

    def test_a_success_hands_the_link_over_and_resets_the_wait(self) -> None:
        """The link goes to ``linked``; the next loss waits 1 s again."""
        self.reconnect.start()
        self.clock.advance(1)
        self.attempts[-1].errback(ConnectionError("refused"))
        self.clock.advance(2)
        self.attempts[-1].callback("link")
        self.assertEqual(self.linked, ["link"])
        self.reconnect.start()
        self.clock.advance(1)
        self.assertEqual(len(self.attempts), 3)
        self.attempts[-1].errback(ConnectionError("refused"))
        self.reconnect.stop()

    def test_stopped_it_abandons_what_opens_late(self) -> None:
        """The charge point left during an attempt: what opens is closed, not handed over."""
        upstream: Any = FakeUpstream()
        link = Link(upstream, "ocpp1.6", self.clock, 0)
        self.reconnect.start()
        self.clock.advance(1)
        self.reconnect.stop()
        self.attempts[-1].callback(link)
        self.assertEqual(self.linked, [])
        self.assertEqual(upstream.closed[0], 1001)


class HoldingRelayTests(ClockTestCase):
    def test_the_charge_point_is_kept_answered_and_relayed_again(self) -> None:
        """Away: CALLs get InternalError; back: frames go to the new connection."""
        first: Any = FakeUpstream()
        second: Any = FakeUpstream()
        opened: Deferred[Any] = Deferred()
        link = Link(first, "ocpp1.6", self.clock, 10)
        link.reopen = lambda: opened
        connection = FakeConnection()
        turns = Turns(connection, self.clock, 30)
        relay = Relay(
            "CP1", "ocpp1.6", connection, link, None, "cs:80", Verdicts("ocpp1.6", None), turns,
            clock=self.clock,
        )
        connection.session = relay
        relay.upstream_closed(1006, None)
        self.assertIsNone(connection.closed)
        shown = relay.state()["central_system"]
        self.assertEqual(shown, {"peer": "cs:80", "state": "reconnecting"})
        relay.frame_received('[2,"h1","Heartbeat",{}]')
        self.assertEqual(connection.sent(), [json.loads(held_off("ocpp1.6", "h1")[0])])
        self.assertEqual(connection.sent()[0][2], "InternalError")
        self.clock.advance(1)
        opened.callback(Link(second, "ocpp1.6", self.clock, 10))
        relay.frame_received('[2,"h2","Heartbeat",{}]')
        self.assertEqual(second.sent, ['[2,"h2","Heartbeat",{}]'])
        self.assertEqual(first.sent, [])
        connection.peer_closes()
        self.assertEqual(second.closed, (1001, "charge point disconnected"))
