"""The router: topics and codecs between sessions and a recording MQTT fake."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from ocppgw.config import parse
from ocppgw.interfaces import IMQTTClient, IUpstream
from ocppgw.router import Router
from ocppgw.session import Session
from tests.fakes import FakeConnection, FakeMQTT

BASE = "[listener:ws]\nendpoint = tcp:8080\n[gateway]\nid = gw1\n"


def setup(extra: str = "") -> tuple[Router, FakeMQTT, Session, FakeConnection]:
    mqtt = FakeMQTT()
    router = Router(parse(BASE + extra), mqtt)
    connection = FakeConnection()
    session = Session("CP1", "ocpp1.6", connection, router, Clock())
    router.attach(session)
    return router, mqtt, session, connection


class RouterTests(SynchronousTestCase):
    def test_interfaces(self) -> None:
        """Router provides IUpstream; the fake provides IMQTTClient."""
        router, mqtt, _, _ = setup()
        self.assertTrue(verifyObject(IUpstream, router))
        self.assertTrue(verifyObject(IMQTTClient, mqtt))

    def test_subscribes_per_charge_point(self) -> None:
        """Attaching subscribes the identity's downstream topic; detaching drops it."""
        router, mqtt, session, _ = setup()
        self.assertEqual(mqtt.subscriptions, {"ocpp/cs/CP1/+/+": 1})
        router.detach(session)
        self.assertEqual(mqtt.subscriptions, {})

    def test_topics_by_message_type(self) -> None:
        """CALL, CALLRESULT and CALLERROR go to topic, reply_topic and error_topic."""
        _router, mqtt, session, _ = setup()
        session.frame_received('[2,"1","Heartbeat",{}]')
        mqtt.deliver("ocpp/cs/CP1/Call/Reset",
                     {"MessageTypeId": 2, "UniqueId": "d1", "Action": "Reset",
                      "Payload": {"type": "Soft"}})
        session.frame_received('[3,"d1",{"status":"Accepted"}]')
        mqtt.deliver("ocpp/cs/CP1/Call/Reset",
                     {"MessageTypeId": 2, "UniqueId": "d2", "Action": "Reset",
                      "Payload": {"type": "Soft"}})
        session.frame_received('[4,"d2","NotSupported","",{}]')
        topics = [t for t, _ in mqtt.json()]
        self.assertEqual(topics, ["ocpp/cp/CP1/Heartbeat", "ocpp/cp/Reply/CP1",
                                  "ocpp/cp/Error/CP1"])
        reply = mqtt.json()[1][1]
        self.assertEqual(reply["Action"], "Reset")
        self.assertEqual(reply["MessageTypeId"], 3)

    def test_action_override(self) -> None:
        """[upstream:ACTION] sends that action's CALLs to its own topic and codec."""
        _router, mqtt, session, _ = setup("[upstream:Heartbeat]\ntopic = hb/${cid}\ncodec = raw\n")
        session.frame_received('[2,"1","Heartbeat",{}]')
        mqtt.deliver("ocpp/cs/CP1/Reply/Heartbeat",
                     {"MessageTypeId": 3, "UniqueId": "1", "Payload": {"currentTime": "t"}})
        session.frame_received('[2,"2","Authorize",{"idTag":"x"}]')
        self.assertEqual(mqtt.published[0][:2], ("hb/CP1", b'[2,"1","Heartbeat",{}]'))
        self.assertEqual(mqtt.published[1][0], "ocpp/cp/CP1/Authorize")

    def test_invalid_downstream_envelope(self) -> None:
        """A downstream payload that is not a valid envelope gets an Invalid error envelope."""
        _router, mqtt, _, connection = setup()
        mqtt.deliver("ocpp/cs/CP1/Call/Reset", {"MessageTypeId": 2, "UniqueId": "d1"})
        self.assertEqual(connection.frames, [])
        ((topic, env),) = mqtt.json()
        self.assertEqual(topic, "ocpp/cp/Error/CP1")
        self.assertEqual((env["UniqueId"], env["ErrorCode"], env["Origin"]),
                         ("d1", "Invalid", "gateway"))
        self.assertIn("Action", env["ErrorDescription"])

    def test_invalid_error_code_for_version(self) -> None:
        """A downstream CALLERROR with a code the CP's version lacks is refused."""
        _router, mqtt, session, connection = setup()
        session.frame_received('[2,"1","Heartbeat",{}]')
        mqtt.deliver("ocpp/cs/CP1/Reply/Heartbeat",
                     {"MessageTypeId": 4, "UniqueId": "1", "ErrorCode": "FormatViolation"})
        self.assertEqual(connection.frames, [])
        self.assertIn("not an error code of ocpp1.6", mqtt.json()[-1][1]["ErrorDescription"])

    def test_offline_charge_point(self) -> None:
        """A message for an identity without a session gets an Offline error envelope."""
        router, mqtt, session, _ = setup()
        router.detach(session)
        mqtt.deliver("ocpp/cs/CP1/Call/Reset",
                     {"MessageTypeId": 2, "UniqueId": "d1", "Action": "Reset", "Payload": {}})
        env = mqtt.json()[-1][1]
        self.assertEqual((env["ErrorCode"], env["UniqueId"], env["Action"]),
                         ("Offline", "d1", "Reset"))

    def test_replacement_keeps_subscription(self) -> None:
        """A second session for an identity replaces the first without resubscribing."""
        router, mqtt, old, _ = setup()
        new = Session("CP1", "ocpp2.0.1", FakeConnection(), router, Clock())
        self.assertIs(router.attach(new), old)
        router.detach(old)
        self.assertEqual(mqtt.subscriptions, {"ocpp/cs/CP1/+/+": 1})
        self.assertIs(router.session("CP1"), new)
