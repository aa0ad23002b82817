"""The relay of one charge point, its link and its tap (ocppgw.forward.relay, .tap)."""

from __future__ import annotations

import json
from typing import Any

from ocppgw.forward.relay import Link, Relay, forwardable
from ocppgw.forward.tap import Tap
from ocppgw.forward.turns import Turns
from ocppgw.forward.upstream import Receiver
from ocppgw.forward.verdicts import Verdicts
from ocppgw.ocpp.messages import Call
from ocppgw.ocpp.validation import Validator
from ocppgw.router.topics import TopicTemplate
from tests.clocks import ClockTestCase
from tests.fakes import FakeConnection, FakeMQTT

PEER = "csms.example.com:443"
VALIDATE = Validator().validate


class FakeUpstream:
    """The central system's connection as the relay uses it: sends, closes, a receiver."""

    # Autobahn's states, as the admin view reads them.
    STATE_CLOSED, STATE_CLOSING, STATE_OPEN = 0, 2, 3
    state = STATE_OPEN

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.receiver: Receiver = Receiver()

    def send_frame(self, text: str) -> bool:
        self.sent.append(text)
        return self.closed is None

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class RelayTests(ClockTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.mqtt = FakeMQTT()
        template = TopicTemplate.parse("ocpp/tap/${cid}")
        self.tap = Tap(self.mqtt, 1, template, "json", "gw", self.clock)
        self.upstream = FakeUpstream()
        self.connection = FakeConnection()

    def relay(self, link: Link | None = None, enforce: bool = False) -> Relay:
        up: Any = self.upstream
        link = link or Link(up, "ocpp1.6", self.clock, 10)
        verdicts = Verdicts("ocpp1.6", VALIDATE if enforce else None)
        turns = Turns(self.connection, self.clock, 30)
        relay = Relay(
            "CP1", "ocpp1.6", self.connection, link, self.tap, PEER, verdicts, turns,
            enforce=enforce,
        )
        self.connection.session = relay
        return relay

    def tapped(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for _, payload, _, _ in self.mqtt.published]

    def test_frames_are_relayed_unchanged_both_ways_and_tapped_in_order(self) -> None:
        """Each frame goes on as it came (spacing and all), then the tap gets it, in order."""
        relay = self.relay()
        call = '[2, "1", "Heartbeat", {} ]'
        relay.frame_received(call)
        relay.upstream_frame('[3,"1",{"currentTime":"2026-01-01T00:00:00Z"}]')
        relay.upstream_frame('[2,"c1","Reset",{"type":"Soft"}]')
        relay.frame_received('[3,"c1",{"status":"Accepted"}]')
        self.assertEqual(self.upstream.sent, [call, '[3,"c1",{"status":"Accepted"}]'])
        self.assertEqual(
            self.connection.frames,
            ['[3,"1",{"currentTime":"2026-01-01T00:00:00Z"}]', '[2,"c1","Reset",{"type":"Soft"}]'],
        )
        envelopes = self.tapped()
        self.assertEqual(
            [(e["Direction"], e["UniqueId"], e["Action"]) for e in envelopes],
            [
                ("ChargePoint", "1", "Heartbeat"),
                ("CSMS", "1", "Heartbeat"),
                ("CSMS", "c1", "Reset"),
                ("ChargePoint", "c1", "Reset"),
            ],
        )
        self.assertEqual({e["Peer"] for e in envelopes}, {PEER})
        self.assertEqual({e["Verdict"] for e in envelopes}, {"accepted"})
        self.assertEqual({t for t, _, _, _ in self.mqtt.published}, {"ocpp/tap/CP1"})
        relay.closing()

    def test_an_unreadable_frame_is_relayed_and_tapped_with_its_refusal(self) -> None:
        """observe: a frame that is no OCPP-J goes on; the tap holds it with the refusal."""
        relay = self.relay()
        relay.frame_received("[2,")
        self.assertEqual(self.upstream.sent, ["[2,"])
        (envelope,) = self.tapped()
        self.assertEqual(envelope["UniqueId"], "-1")
        self.assertEqual(envelope["ErrorDetails"], {"Frame": "[2,"})
        self.assertEqual(envelope["Verdict"]["ErrorCode"], "FormationViolation")  # 1.6
        relay.closing()

    def test_the_tap_failing_never_holds_the_relay(self) -> None:
        """The MQTT buffer full: the frame is relayed anyway and the lost publish counted."""
        relay = self.relay()
        self.mqtt.failing = True
        relay.frame_received('[2,"1","Heartbeat",{}]')
        self.assertEqual(self.upstream.sent, ['[2,"1","Heartbeat",{}]'])
        self.assertEqual(self.tap.lost, 1)
        relay.closing()

    def test_enforce_answers_a_refused_call_and_relays_nothing(self) -> None:
        """enforce: the charge point's invalid CALL gets the CALLERROR; the tap has its verdict."""
        relay = self.relay(enforce=True)
        relay.frame_received('[2,"a1","Authorize",{}]')
        self.assertEqual(self.upstream.sent, [])
        (error,) = self.connection.sent()
        self.assertEqual(error[:2], [4, "a1"])
        (envelope,) = self.tapped()
        self.assertEqual(envelope["Verdict"]["ErrorCode"], error[2])
        relay.closing()

    def test_enforce_replaces_a_refused_answer_towards_the_caller(self) -> None:
        """enforce: the central system's invalid answer is a CALLERROR to the charge point."""
        relay = self.relay(enforce=True)
        relay.frame_received('[2,"h1","Heartbeat",{}]')
        relay.upstream_frame('[3,"h1",{}]')
        (error,) = self.connection.sent()
        self.assertEqual(error[:2], [4, "h1"])
        relay.upstream_frame('[2,"r1","Reset",{"type":"Soft"}]')
        relay.frame_received('[3,"r1",{"status":"Maybe"}]')
        self.assertEqual(self.upstream.sent[-1][:8], '[4,"r1",')
        self.assertIsNone(relay.turns.in_flight)  # the refused answer ended the turn
        relay.closing()

    def test_the_central_system_leaving_closes_the_charge_point_with_1012(self) -> None:
        """on_csms_down = close: 1012, and the upstream is not closed again."""
        relay = self.relay()
        relay.upstream_closed(1006, None)
        assert self.connection.closed is not None
        self.assertEqual(self.connection.closed[0], 1012)
        self.assertIsNone(self.upstream.closed)

    def test_the_charge_point_leaving_closes_the_central_systems_connection(self) -> None:
        """The charge point's connection leaves open: the upstream is closed (1001 by default)."""
        self.relay()
        self.connection.peer_closes()
        self.assertEqual(self.upstream.closed, (1001, "charge point disconnected"))

    def test_close_codes_a_close_frame_may_carry_are_forwarded(self) -> None:
        """1000, 1001 and 3000-4999 go on as they are; others (1006, 1012, none) are 1001."""
        kept = (1000, 1001, 3000, 4999)
        self.assertEqual([forwardable(c) for c in kept], list(kept))
        self.assertEqual([forwardable(c) for c in (None, 1006, 1012, 2999)], [1001] * 4)


class LinkTests(ClockTestCase):
    def test_what_comes_before_the_relay_is_held_and_relayed_first(self) -> None:
        """The central system's frames and close before the charge point's upgrade completes."""
        upstream: Any = FakeUpstream()
        link = Link(upstream, "ocpp1.6", self.clock, 10)
        link.upstream_frame('[2,"a","Reset",{"type":"Soft"}]')
        link.upstream_closed(1000, "bye")
        connection = FakeConnection()
        turns = Turns(connection, self.clock, 30)
        verdicts = Verdicts("ocpp1.6", None)
        relay = Relay("CP1", "ocpp1.6", connection, link, None, PEER, verdicts, turns)
        self.assertEqual(connection.frames, ['[2,"a","Reset",{"type":"Soft"}]'])
        assert connection.closed is not None
        self.assertEqual(connection.closed[0], 1012)
        relay.closing()  # the connection's close_session

    def test_a_link_nobody_takes_is_closed(self) -> None:
        """A charge point gone during its upgrade: the upstream is closed after the wait."""
        upstream: Any = FakeUpstream()
        Link(upstream, "ocpp1.6", self.clock, 10)
        self.clock.advance(9.9)
        self.assertIsNone(upstream.closed)
        self.clock.advance(0.1)
        self.assertEqual(upstream.closed[0], 1001)


class TapTopicTests(ClockTestCase):
    def test_a_template_with_message_fields_is_rendered_per_frame(self) -> None:
        """tap_topic with ${action} and ${id}: each frame's own topic (values escaped)."""
        mqtt = FakeMQTT()
        template = TopicTemplate.parse("tap/${cid}/${action}/${id}")
        tap = Tap(mqtt, 1, template, "raw", "gw", self.clock)
        tap.frame("CP/1", "ocpp1.6", '[2,"a","Heartbeat",{}]', "ChargePoint", PEER,
                  Call("a", "Heartbeat", {}), "accepted")
        tap.frame("CP/1", "ocpp1.6", '[2,"b","Authorize",{}]', "ChargePoint", PEER,
                  Call("b", "Authorize", {}), "accepted")
        self.assertEqual(
            [(t, p) for t, p, _, _ in mqtt.published],
            [
                ("tap/CP%2F1/Heartbeat/a", b'[2,"a","Heartbeat",{}]'),
                ("tap/CP%2F1/Authorize/b", b'[2,"b","Authorize",{}]'),
            ],
        )

    def test_protobuf_tap_carries_direction_peer_and_verdict(self) -> None:
        """tap_codec = protobuf: the usual wrapper, with Direction, Peer and Verdict in
        its fields 16-18 (a refusal's Verdict as JSON text)."""
        from ocppgw.wire.protobuf.generated import message_pb2

        mqtt = FakeMQTT()
        tap = Tap(mqtt, 1, TopicTemplate.parse("tap/${cid}"), "protobuf", "gw", self.clock)
        tap.frame("CP1", "ocpp1.6", '[2,"a","Heartbeat",{}]', "ChargePoint", PEER,
                  Call("a", "Heartbeat", {}), "accepted")
        refusal = {"ErrorCode": "FormationViolation", "ErrorDescription": "bad"}
        tap.frame("CP1", "ocpp1.6", '[2,"b","Heartbeat",{"x":1}]', "CSMS", PEER,
                  Call("b", "Heartbeat", {"x": 1}), refusal)
        first, second = (message_pb2.Message.FromString(p) for _, p, _, _ in mqtt.published)
        self.assertEqual(
            (first.UniqueId, first.Action, first.Direction, first.Peer, first.Verdict),
            ("a", "Heartbeat", "ChargePoint", PEER, "accepted"),
        )
        self.assertEqual((second.Direction, json.loads(second.Verdict)), ("CSMS", refusal))
