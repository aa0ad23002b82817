"""
Every envelope keeps docs/topics.md's promises in every codec: gateway-made
envelopes carry Timestamp, and a 2.1 CALLRESULTERROR from a charge point
carries the Action of its exchange.
"""

from __future__ import annotations

import json

from ocppgw.config import parse
from ocppgw.router.routing import Router
from ocppgw.session.rules import Session
from ocppgw.wire.protobuf.plan import generated_module
from tests.clocks import ClockTestCase, end_router
from tests.fakes import FakeConnection, FakeMQTT

NOW = "2023-11-14T22:13:20.000Z"


def setup(
    test: ClockTestCase, codec: str, version: str = "ocpp2.1"
) -> tuple[FakeMQTT, Session, FakeConnection]:
    """A charge point on a router of its own (and clock), which stops after ``test``."""
    clock = test.new_clock()
    clock.advance(1_700_000_000)
    ini = "[listener:ws]\nendpoint = tcp:8080\n[gateway]\nid = gw1\n"
    ini += f"[upstream]\ncodec = {codec}\n[dnstream]\ncodec = json\n"
    mqtt = FakeMQTT()
    router = Router(parse(ini), mqtt, clock)
    test.addCleanup(end_router, router)
    connection = FakeConnection()
    session = Session("CP1", version, connection, router, clock)
    router.directory.add(session, "tcp4:192.0.2.1:5555")
    return mqtt, session, connection


def error_envelopes(mqtt: FakeMQTT, codec: str) -> list[dict[str, object]]:
    """The envelopes on the error topic, as field dicts in either codec."""
    out = []
    for topic, payload, *_ in mqtt.published:
        if topic != "ocpp/cp/Error/CP1":
            continue
        if codec == "json":
            out.append(json.loads(payload))
        else:
            wire = generated_module("message_pb2").Message.FromString(payload)
            out.append({fd.name: value for fd, value in wire.ListFields()})
    return out


class EnvelopePromiseTests(ClockTestCase):
    def test_invalid_for_garbage_has_timestamp(self) -> None:
        """An Invalid envelope for garbage downstream carries Timestamp, in json and protobuf."""
        for codec in ("json", "protobuf"):
            mqtt, _, _ = setup(self, codec)
            mqtt.deliver("ocpp/cs/CP1/Call/Reset", b"\xff garbage")
            (env,) = error_envelopes(mqtt, codec)
            self.assertEqual((env["Origin"], env["Timestamp"]), ("gateway", NOW), codec)

    def test_callresulterror_carries_action(self) -> None:
        """A 2.1 CALLRESULTERROR for the backend's CALLRESULT carries the CALL's Action."""
        for codec in ("json", "protobuf"):
            mqtt, session, connection = setup(self, codec)
            session.frame_received('[2,"c1","Heartbeat",{}]')
            mqtt.deliver(
                "ocpp/cs/CP1/Reply/Heartbeat",
                {"MessageTypeId": 3, "UniqueId": "c1", "Payload": {"currentTime": NOW}},
            )
            self.assertEqual(len(connection.frames), 1)
            session.frame_received('[5,"c1","FormatViolation","bad time",{}]')
            (env,) = error_envelopes(mqtt, codec)
            self.assertEqual((env["UniqueId"], env["Action"]), ("c1", "Heartbeat"), codec)
            self.assertEqual(env["Timestamp"], NOW)

    def test_raw_carries_the_frame_only(self) -> None:
        """raw: a gateway error is an OCPP-J CALLERROR frame with its code; a CP's is its bytes."""
        mqtt, session, _ = setup(self, "raw")
        mqtt.deliver("ocpp/cs/CP1/Call/Reset", b"\xff garbage")
        session.frame_received('[2,"c1","Heartbeat",{}]')
        mqtt.deliver(
            "ocpp/cs/CP1/Reply/Heartbeat",
            {"MessageTypeId": 3, "UniqueId": "c1", "Payload": {"currentTime": NOW}},
        )
        sent = '[5, "c1", "FormatViolation", "bad time", {}]'
        session.frame_received(sent)
        invalid, cp_error = (p for t, p, *_ in mqtt.published if t == "ocpp/cp/Error/CP1")
        frame = json.loads(invalid)
        # docs/topics.md, "The raw codec": no Timestamp, Origin or Action; the code says who.
        self.assertEqual(frame[:3], [4, "-1", "Invalid"])
        self.assertIn("ocpp/cs/CP1/Call/Reset", frame[3])
        self.assertEqual((len(frame), frame[4]), (5, {}))
        self.assertEqual(cp_error, sent.encode())
