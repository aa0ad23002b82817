"""The router: topics and codecs between sessions and a recording MQTT fake."""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from ocppgw.config import parse
from ocppgw.interfaces import IMQTTClient, IRouter
from ocppgw.ocpp.envelope import Envelope
from ocppgw.ocpp.messages import Call
from ocppgw.router.offline import OFFLINE_WAIT
from ocppgw.router.routing import PER_CHARGE_POINT, Router
from ocppgw.session.rules import Session
from tests.clocks import ClockTestCase, end_router
from tests.fakes import FakeConnection, FakeMQTT

BASE = "[listener:ws]\nendpoint = tcp:8080\n[gateway]\nid = gw1\n"


CLOCK = Clock()
#: The routers the running test made, with their clocks (ended and checked in its cleanup).
MADE: list[tuple[Router, Clock]] = []


def setup(extra: str = "") -> tuple[Router, FakeMQTT, Session, FakeConnection]:
    global CLOCK
    CLOCK = Clock()
    CLOCK.advance(1_700_000_000)
    mqtt = FakeMQTT()
    router = Router(parse(BASE + extra), mqtt, CLOCK)
    MADE.append((router, CLOCK))
    connection = FakeConnection()
    session = Session("CP1", "ocpp1.6", connection, router, CLOCK)
    router.directory.add(session, "tcp4:192.0.2.1:5555")
    return router, mqtt, session, connection


class SetupTestCase(ClockTestCase):
    """Tests on :func:`setup`'s routers: each stops as the gateway stops, leaving no timer."""

    def setUp(self) -> None:
        super().setUp()
        MADE.clear()
        self.addCleanup(self._ended)

    def _ended(self) -> None:
        for router, clock in MADE:
            end_router(router)
            self.clocks.add(clock)


class RouterTests(SetupTestCase):
    def test_interfaces(self) -> None:
        """Router provides IRouter; the fake provides IMQTTClient."""
        router, mqtt, _, _ = setup()
        self.assertTrue(verifyObject(IRouter, router))
        self.assertTrue(verifyObject(IMQTTClient, mqtt))

    def test_subscribes_per_charge_point(self) -> None:
        """Attaching subscribes the downstream topic; it goes offline_ttl after detach."""
        router, mqtt, session, _ = setup()
        base = {"ocpp/presence/+": 1, "ocpp/gateway/+": 1, "$share/ocppgw/ocpp/cs/+/+/+": 1}
        self.assertEqual(mqtt.subscriptions, {**base, "ocpp/cs/CP1/+/+": 1})
        router.directory.close(session)
        CLOCK.advance(59)
        self.assertIn("ocpp/cs/CP1/+/+", mqtt.subscriptions)
        CLOCK.advance(1)
        self.assertEqual(mqtt.subscriptions, base)

    def test_presence(self) -> None:
        """Connect and disconnect publish retained presence with gateway and version."""
        router, mqtt, session, _ = setup()
        router.directory.close(session)
        (t1, online), (t2, offline) = mqtt.retained()
        self.assertEqual((t1, t2), ("ocpp/presence/CP1", "ocpp/presence/CP1"))
        self.assertEqual(online, {"ChargePointId": "CP1", "Online": True, "Gateway": "gw1",
                                  "Protocol": "ocpp1.6", "Since": "2023-11-14T22:13:20.000Z",
                                  "RemoteAddress": "tcp4:192.0.2.1:5555",
                                  "Connection": online["Connection"], "Registration": None,
                                  "Run": online["Run"], "Seq": 1})
        self.assertTrue(online["Connection"].startswith("gw1/"))
        self.assertEqual((offline["Online"], offline["Gateway"]), (False, "gw1"))

    def test_presence_carries_registration(self) -> None:
        """The backend's BootNotification answer (Pending, then Accepted) publishes the
        presence again with its Registration; the same status again publishes nothing."""
        router, mqtt, session, _ = setup()
        for uid, status in [("b1", "Pending"), ("b2", "Pending"), ("b3", "Accepted")]:
            session.frame_received(f'[2,"{uid}","BootNotification",{{}}]')
            mqtt.deliver("ocpp/cs/CP1/Reply/BootNotification", {
                "MessageTypeId": 3, "UniqueId": uid,
                "Payload": {"status": status, "currentTime": "t", "interval": 5}})
        presences = [body for _, body in mqtt.retained()]
        self.assertEqual([(p["Online"], p["Registration"]) for p in presences],
                         [(True, None), (True, "Pending"), (True, "Accepted")])
        self.assertEqual({p["Connection"] for p in presences}, {presences[0]["Connection"]})
        router.directory.close(session)

    def test_held_call_delivered_on_reconnect(self) -> None:
        """A CALL for a charge point within offline_ttl is delivered when it reconnects."""
        router, mqtt, session, _ = setup()
        router.directory.close(session)
        mqtt.deliver("ocpp/cs/CP1/Call/Reset", {"MessageTypeId": 2, "UniqueId": "d1",
                                                "Action": "Reset", "Payload": {"type": "Soft"}})
        self.assertEqual(mqtt.json(), [])
        CLOCK.advance(30)
        connection = FakeConnection()
        new = Session("CP1", "ocpp1.6", connection, router, CLOCK)
        router.directory.add(new)
        self.assertEqual(connection.sent(), [[2, "d1", "Reset", {"type": "Soft"}]])
        new.frame_received('[3,"d1",{"status":"Accepted"}]')
        CLOCK.advance(60)
        self.assertEqual([(t, e["MessageTypeId"]) for t, e in mqtt.json()],
                         [("ocpp/cp/Reply/CP1", 3)])

    def test_newer_connection_elsewhere_wins(self) -> None:
        """Another instance's presence delivered after our own echo closes ours; clocks unread."""
        router, mqtt, _, connection = setup()
        other = {"ChargePointId": "CP1", "Online": True, "Gateway": "gw2",
                 # A clock far ahead: never compared with ours.
                 "Since": "2099-01-01T00:00:00.000Z"}
        # Delivered before the echo of our own presence: ours is the newer.
        mqtt.deliver("ocpp/presence/CP1", other)
        self.assertIsNone(connection.closed)
        (topic, ours), = mqtt.retained()
        mqtt.deliver(topic, ours)  # the broker echoes our presence
        mqtt.deliver("ocpp/presence/CP1", dict(other, Since="1999-01-01T00:00:00.000Z"))
        self.assertEqual(connection.closed, (1000, "replaced"))
        # Let go at once: no offline presence over the other's online one, no
        # subscription, nothing held here for a reconnection.
        self.assertEqual([b["Online"] for _, b in mqtt.retained()], [True])
        self.assertNotIn("ocpp/cs/CP1/+/+", mqtt.subscriptions)
        self.assertIsNone(router.directory.get("CP1"))

    def test_stale_own_presence_cleared(self) -> None:
        """A retained 'online' of this gateway for an identity it lacks is set offline."""
        _router, mqtt, _, _ = setup()
        mqtt.deliver("ocpp/presence/CP9", {"ChargePointId": "CP9", "Online": True,
                                           "Gateway": "gw1", "Since": "x"})
        topic, body = mqtt.retained()[-1]
        self.assertEqual((topic, body["Online"]), ("ocpp/presence/CP9", False))

    def test_earlier_runs_subscription_dropped(self) -> None:
        """After the first reading only this gateway's presence drops a left subscription."""
        router, mqtt, _, _ = setup()
        router.announce()  # the first reading ends with the echo of the gateway presence
        ((gateway, echo),) = [(t, p) for t, p, _, _ in mqtt.published if "gateway/" in t]
        mqtt.deliver(gateway, echo)
        mqtt.deliver("ocpp/presence/CP9", {"ChargePointId": "CP9", "Online": False,
                                           "Gateway": "gw1", "Protocol": "ocpp1.6"})
        mqtt.deliver("ocpp/presence/CP8", {"ChargePointId": "CP8", "Online": False,
                                           "Gateway": "gw2", "Protocol": "ocpp1.6"})
        mqtt.deliver("ocpp/presence/CP1", {"ChargePointId": "CP1", "Online": False,
                                           "Gateway": "gw1", "Protocol": "ocpp1.6"})
        self.assertEqual(mqtt.unsubscribed, ["ocpp/cs/CP9/+/+"])
        self.assertIsNotNone(router.directory.get("CP1"))

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
        published = [p for p in mqtt.published if not p[3]]
        self.assertEqual(published[0][:2], ("hb/CP1", b'[2,"1","Heartbeat",{}]'))
        self.assertEqual(published[1][0], "ocpp/cp/CP1/Authorize")

    def test_topic_names_follow_every_placeholder(self) -> None:
        """
        Remembered topic names still follow the identity, the version, the
        Action and the type of each message, ${id} gives every message its own
        topic, and past TOPIC_NAMES the names are still right.
        """
        from ocppgw.ocpp.messages import CallResult
        from ocppgw.router import topics

        router, mqtt, _, _ = setup(
            "[upstream]\ntopic = up/${version}/${cid}/${action}/${type}\n"
            "[upstream:Authorize]\ntopic = auth/${cid}/${id}\n"
        )
        self.patch(topics, "TOPIC_NAMES", 3)
        sent = [
            ("CP1", "ocpp1.6", Call("1", "Heartbeat", {})),
            ("CP2", "ocpp1.6", Call("2", "Heartbeat", {})),
            ("CP1", "ocpp2.0.1", Call("3", "Heartbeat", {})),
            ("CP1", "ocpp1.6", Call("4", "StatusNotification", {})),
            ("CP1", "ocpp1.6", Call("5", "Authorize", {})),
            ("CP1", "ocpp1.6", Call("6", "Authorize", {})),
            ("CP1", "ocpp1.6", Call("7", "Heartbeat", {})),
            ("CP1", "ocpp1.6", CallResult("8", {}, "Heartbeat")),
        ]
        del mqtt.published[:]
        for cid, version, message in sent:
            router.publish(Envelope(message, version=version, charge_point=cid))
        self.assertEqual(
            [topic for topic, _, _, _ in mqtt.published],
            [
                "up/ocpp1.6/CP1/Heartbeat/2",
                "up/ocpp1.6/CP2/Heartbeat/2",
                "up/ocpp2.0.1/CP1/Heartbeat/2",
                "up/ocpp1.6/CP1/StatusNotification/2",
                "auth/CP1/5",
                "auth/CP1/6",
                "up/ocpp1.6/CP1/Heartbeat/2",
                "ocpp/cp/Reply/CP1",
            ],
        )

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
        """After offline_ttl, a message for the identity gets an Offline error envelope."""
        router, mqtt, session, _ = setup()
        router.directory.close(session)
        CLOCK.advance(60)
        mqtt.deliver("ocpp/cs/CP1/Call/Reset",
                     {"MessageTypeId": 2, "UniqueId": "d1", "Action": "Reset", "Payload": {}})
        CLOCK.advance(OFFLINE_WAIT)
        env = mqtt.json()[-1][1]
        self.assertEqual((env["ErrorCode"], env["UniqueId"], env["Action"]),
                         ("Offline", "d1", "Reset"))

    def test_replacement_keeps_subscription(self) -> None:
        """A second connection for an identity closes the first ("replaced")."""
        router, mqtt, old, old_connection = setup()
        new = Session("CP1", "ocpp2.0.1", FakeConnection(), router, CLOCK)
        router.directory.add(new)
        self.assertEqual(old_connection.closed, (1000, "replaced"))
        self.assertFalse(old.connected)
        router.directory.close(old)
        CLOCK.advance(120)
        self.assertIn("ocpp/cs/CP1/+/+", mqtt.subscriptions)
        self.assertIs(router.directory.get("CP1"), new)


RESET = {"MessageTypeId": 2, "UniqueId": "d1", "Action": "Reset", "Payload": {"type": "Soft"}}


class CatchAllTests(SetupTestCase):
    def errors(self, mqtt: FakeMQTT) -> list[tuple[str, str]]:
        return [(e["UniqueId"], e["ErrorCode"]) for t, e in mqtt.json() if "ErrorCode" in e]

    def test_never_connected_identity_gets_offline(self) -> None:
        """A CALL for an identity no instance has is answered Offline, once."""
        _router, mqtt, _, _ = setup()
        mqtt.deliver("ocpp/cs/NOBODY/Call/Reset", RESET)
        CLOCK.advance(OFFLINE_WAIT)
        self.assertEqual(self.errors(mqtt), [("d1", "Offline")])
        self.assertEqual(mqtt.json()[-1][0], "ocpp/cp/Error/NOBODY")

    def test_local_charge_point_not_answered_twice(self) -> None:
        """A CALL for a connected CP arriving by both subscriptions is sent once, no error."""
        _router, mqtt, _, connection = setup()
        mqtt.deliver("ocpp/cs/CP1/Call/Reset", RESET)
        self.assertEqual(len(connection.frames), 1)
        self.assertEqual(self.errors(mqtt), [])

    def test_identity_online_elsewhere_left_alone(self) -> None:
        """The catch-all does not answer for an identity another instance holds."""
        _router, mqtt, _, _ = setup()
        mqtt.deliver("ocpp/presence/CP7", {"ChargePointId": "CP7", "Online": True,
                                           "Gateway": "gw2", "Since": "x"})
        mqtt.deliver("ocpp/cs/CP7/Call/Reset", RESET)
        self.assertEqual(self.errors(mqtt), [])

    def test_gone_elsewhere_answered_after_ttl(self) -> None:
        """Gone from another instance: silent within offline_ttl, Offline after it."""
        _router, mqtt, _, _ = setup()
        mqtt.deliver("ocpp/presence/CP7", {"ChargePointId": "CP7", "Online": False,
                                           "Gateway": "gw2", "Since": "x"})
        mqtt.deliver("ocpp/cs/CP7/Call/Reset", RESET)
        self.assertEqual(self.errors(mqtt), [])
        CLOCK.advance(60)
        mqtt.deliver("ocpp/cs/CP7/Call/Reset", RESET)
        CLOCK.advance(OFFLINE_WAIT)
        self.assertEqual(self.errors(mqtt), [("d1", "Offline")])

    def test_off_without_group(self) -> None:
        """offline_group empty: no shared subscription."""
        _router, mqtt, _, _ = setup("[dnstream]\noffline_group =\n")
        self.assertNotIn("$share/ocppgw/ocpp/cs/+/+/+", mqtt.subscriptions)

    def test_moved_during_grace_not_answered_offline(self) -> None:
        """Gone here, online elsewhere: held CALLs Replaced; a late copy is left to the other."""
        router, mqtt, session, _ = setup()
        (topic, ours), = mqtt.retained()
        mqtt.deliver(topic, ours)
        router.directory.close(session)
        mqtt.deliver("ocpp/cs/CP1/Call/Reset", RESET)
        mqtt.deliver("ocpp/presence/CP1", {"ChargePointId": "CP1", "Online": True,
                                           "Gateway": "gw2", "Since": "x"})
        self.assertEqual(self.errors(mqtt), [("d1", "Replaced")])
        # A copy the broker had sent through the per-charge-point subscription.
        assert mqtt.handler is not None
        mqtt.handler("ocpp/cs/CP1/Call/Reset", json.dumps(dict(RESET, UniqueId="d2")).encode(),
                     (PER_CHARGE_POINT,))
        self.assertEqual(self.errors(mqtt), [("d1", "Replaced")])
        self.assertIsNone(router.directory.get("CP1"))

    def test_last_will_makes_charge_points_offline(self) -> None:
        """Another instance's will: its charge points are Offline at once, presence corrected."""
        _router, mqtt, _, _ = setup()
        mqtt.deliver("ocpp/presence/CP7", {"ChargePointId": "CP7", "Online": True,
                                           "Gateway": "gw2", "Since": "x"})
        mqtt.deliver("ocpp/cs/CP7/Call/Reset", RESET)
        self.assertEqual(self.errors(mqtt), [])
        mqtt.deliver("ocpp/gateway/gw2", {"Gateway": "gw2", "Online": False, "Since": "x"})
        topic, body = mqtt.retained()[-1]
        self.assertEqual((topic, body["Online"], body["Gateway"]),
                         ("ocpp/presence/CP7", False, "gw2"))
        mqtt.deliver(topic, body)  # our correction, echoed: still gone
        mqtt.deliver("ocpp/cs/CP7/Call/Reset", RESET)
        CLOCK.advance(OFFLINE_WAIT)
        self.assertEqual(self.errors(mqtt), [("d1", "Offline")])

    def test_prune_forgets_identities_gone_elsewhere(self) -> None:
        """What other instances said of identities gone for offline_ttl is forgotten."""
        router, mqtt, _, _ = setup()
        for n in range(100):
            mqtt.deliver(f"ocpp/presence/X{n}", {"ChargePointId": f"X{n}", "Online": n % 2 == 0,
                                                 "Gateway": "gw2", "Since": "x"})
        CLOCK.advance(60)
        self.assertEqual(router._presence.prune(), 50)
        self.assertEqual(router._presence.prune(), 0)


class ShareTests(SetupTestCase):
    def test_one_charge_point_cannot_take_the_whole_buffer(self) -> None:
        """Publishes waiting for the broker are bounded per charge point by its share."""
        from twisted.internet.defer import Deferred

        waiting: list[Deferred[None]] = []

        class SlowMQTT(FakeMQTT):
            def publish(self, topic: str, payload: bytes, qos: int,
                        retain: bool = False) -> Deferred[None]:
                d: Deferred[None] = Deferred()
                waiting.append(d)
                return d

        mqtt = SlowMQTT()
        router = Router(parse(BASE + "[mqtt]\nmax_buffer = 64\n"), mqtt, self.clock)
        self.addCleanup(end_router, router)
        for cid in ("CP1", "CP2"):
            router.directory.add(Session(cid, "ocpp1.6", FakeConnection(), router, self.clock))
        self.assertEqual(router.share(), 32)
        failures = []
        for n in range(40):
            d = router.publish(Envelope(Call(str(n), "Heartbeat", {}), charge_point="CP1"))
            d.addErrback(failures.append)
        self.assertEqual(len(failures), 8)
        self.assertIn("share of the MQTT buffer is full", failures[0].getErrorMessage())
        ok = []
        router.publish(Envelope(Call("x", "Heartbeat", {}), charge_point="CP2")).addCallback(
            ok.append)
        waiting[-1].callback(None)
        self.assertEqual(ok, [None])
        for d in waiting[:-1]:
            d.callback(None)
        router.publish(Envelope(Call("y", "Heartbeat", {}), charge_point="CP1")).addErrback(
            failures.append)
        self.assertEqual(len(failures), 8)

    def test_exception_handling_downstream_message_is_answered(self) -> None:
        """A session that raises on a backend message: the backend gets an Internal envelope."""
        router, mqtt, session, _ = setup()

        def broken(envelope: Envelope) -> None:
            raise RuntimeError("boom")

        session.envelope_received = broken  # type: ignore[method-assign]
        call = {"MessageTypeId": 2, "UniqueId": "x1", "Action": "Reset", "Payload": {}}
        router.message_received("ocpp/cs/CP1/Call/Reset", json.dumps(call).encode())
        errors = [json.loads(p) for t, p, _, _ in mqtt.published if t == "ocpp/cp/Error/CP1"]
        self.assertEqual(len(errors), 1, mqtt.published)
        self.assertEqual((errors[0]["UniqueId"], errors[0]["ErrorCode"]), ("x1", "Internal"))
        self.assertIn("boom", errors[0]["ErrorDescription"])
        self.flushLoggedErrors(RuntimeError)

