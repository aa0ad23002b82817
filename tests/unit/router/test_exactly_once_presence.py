"""
Issue #18, paths 5, 6, 11, 12, 13 and 16: which instance answers a downstream
CALL across restarts, broker restarts, grace ends and SIGTERM, driven with the
real Router and presence on a task.Clock.

Two routers stand for two instances (or two runs of one).  Each has its main
MQTT connection and, as ``assemble.build`` makes it with MQTT 5, a separate
sessionless connection for the catch-all; the tests hand each connection the
messages in the order a broker would route them.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock

from ocppgw.config import parse
from ocppgw.router.offline import OFFLINE_WAIT
from ocppgw.router.routing import Router
from ocppgw.router.unclaimed import READ_WAIT, TWIN_WAIT
from ocppgw.session.rules import Session
from tests.clocks import ClockTestCase as SharedClockTestCase
from tests.clocks import end_router
from tests.fakes import FakeConnection, FakeMQTT

BASE = "[listener:ws]\nendpoint = tcp:8080\n[gateway]\nid = {gw}\n"
RESET = {"MessageTypeId": 2, "UniqueId": "d1", "Action": "Reset", "Payload": {"type": "Soft"}}
SHARE = "$share/ocppgw/ocpp/cs/+/+/+"


class Instance:
    """One gateway run: its router, main connection and catch-all connection."""

    #: Every instance made by the running test (ended in its cleanup).
    made: list[Instance] = []

    def __init__(self, gw: str, clock: Clock) -> None:
        self.name = gw
        self.clock = clock
        self.mqtt = FakeMQTT()
        self.catch_all = FakeMQTT()
        self.router = Router(parse(BASE.format(gw=gw)), self.mqtt, clock, self.catch_all)
        Instance.made.append(self)

    def end(self) -> None:
        """Stop as the gateway stops: its sessions end, then the router leaves."""
        end_router(self.router)

    def connect(self, cid: str) -> tuple[Session, FakeConnection]:
        connection = FakeConnection()
        session = Session(cid, "ocpp1.6", connection, self.router, self.clock)
        self.router.directory.add(session, "tcp4:192.0.2.1:5555")
        return session, connection

    def up(self) -> Instance:
        """Connected to the broker, and the retained presence read (its own echo)."""
        self.router.announce()
        self.hear(f"ocpp/gateway/{self.name}", self.gateway())
        return self

    def presence(self, cid: str) -> bytes:
        """The last presence this instance published for ``cid`` (as routed)."""
        return [p for t, p, _, r in self.mqtt.published if r and t == f"ocpp/presence/{cid}"][-1]

    def gateway(self) -> bytes:
        return [p for t, p, _, r in self.mqtt.published if r and t.startswith("ocpp/gateway/")][-1]

    def hear(self, topic: str, payload: bytes) -> None:
        """A presence or gateway message, routed to both of its connections."""
        assert self.mqtt.handler is not None and self.catch_all.handler is not None
        self.mqtt.handler(topic, payload, ())
        if topic.startswith("ocpp/gateway/"):
            self.catch_all.handler(topic, payload, ())

    def command(self, cid: str, unique_id: str = "d1") -> None:
        """A backend CALL routed now: per-charge point copy if subscribed, catch-all copy."""
        payload = json.dumps(dict(RESET, UniqueId=unique_id)).encode()
        topic = f"ocpp/cs/{cid}/Call/Reset"
        if f"ocpp/cs/{cid}/+/+" in self.mqtt.subscriptions:
            self.mqtt.deliver(topic, payload, via=f"ocpp/cs/{cid}/+/+")
        assert self.catch_all.handler is not None
        if SHARE in self.catch_all.subscriptions:
            self.catch_all.handler(topic, payload, ())

    def errors(self) -> list[tuple[str, str]]:
        return [(e["UniqueId"], e["ErrorCode"]) for _, e in self.mqtt.json() if "ErrorCode" in e]


def will(gw: str, run: str | None) -> bytes:
    body: dict[str, Any] = {"Gateway": gw, "Online": False, "Since": "x"}
    if run is not None:
        body["Run"] = run
    return json.dumps(body).encode()


class ClockTestCase(SharedClockTestCase):
    """Routers on one task.Clock; each ends as the gateway stops, leaving no timer."""

    def setUp(self) -> None:
        super().setUp()
        self.clock.advance(1_700_000_000)
        Instance.made = []
        self.addCleanup(lambda: [i.end() for i in Instance.made])


class ExactlyOnceTests(ClockTestCase):
    def test_restart_will_spares_newer_run(self) -> None:
        """Path 5: the old run's will after the new run's presence spares its charge points."""
        old, peer = Instance("gw1", self.clock), Instance("gw2", self.clock).up()
        old.connect("CP1")
        peer.hear("ocpp/presence/CP1", old.presence("CP1"))
        new = Instance("gw1", self.clock)  # same [gateway] id, a new process
        new.connect("CP1")
        peer.hear("ocpp/presence/CP1", new.presence("CP1"))
        peer.hear("ocpp/gateway/gw1", will("gw1", old.router._presence.run))
        peer.command("CP1")
        self.assertEqual(peer.errors(), [])
        # No correction over the new run's presence.
        self.assertEqual([t for t, _ in peer.mqtt.retained() if "presence" in t], [])

    def test_restart_will_first_then_presence(self) -> None:
        """Path 5: the will first, then the new run's presence: held by the new run, no Offline."""
        old, peer = Instance("gw1", self.clock), Instance("gw2", self.clock).up()
        old.connect("CP1")
        peer.hear("ocpp/presence/CP1", old.presence("CP1"))
        peer.hear("ocpp/gateway/gw1", will("gw1", old.router._presence.run))
        ((_, correction),) = [(t, p) for t, p, _, r in peer.mqtt.published if r and "presence" in t]
        new = Instance("gw1", self.clock)
        new.connect("CP1")
        peer.hear("ocpp/presence/CP1", new.presence("CP1"))
        # The correction lands after the new run's presence (a clustered broker).
        new.hear("ocpp/presence/CP1", correction)
        peer.hear("ocpp/presence/CP1", correction)
        peer.command("CP1")
        self.assertEqual(peer.errors(), [])
        # The holder says it again, so the retained presence is right.
        self.assertEqual(json.loads(new.presence("CP1"))["Online"], True)
        self.assertEqual(json.loads(new.presence("CP1"))["Seq"], 2)

    def test_broker_restart_correction_after_republish(self) -> None:
        """Path 11: both wills, a correction landing after the republish: no false Offline."""
        gw1, gw2 = Instance("gw1", self.clock), Instance("gw2", self.clock).up()
        gw1.connect("CP1")
        gw2.hear("ocpp/presence/CP1", gw1.presence("CP1"))
        # The broker stops: gw2 hears gw1's will and queues a correction.
        gw2.hear("ocpp/gateway/gw1", will("gw1", gw1.router._presence.run))
        correction = [p for t, p, _, r in gw2.mqtt.published if r][-1]
        # The broker is back: gw1 reconnects and says it is here.
        gw1.router.announce()
        gw2.hear("ocpp/gateway/gw1", gw1.gateway())
        gw2.hear("ocpp/presence/CP1", gw1.presence("CP1"))
        # gw2's queued correction is routed after that.
        gw2.hear("ocpp/presence/CP1", correction)
        gw1.hear("ocpp/presence/CP1", correction)
        gw2.command("CP1")
        self.assertEqual(gw2.errors(), [])
        self.assertTrue(gw2.router._presence.held_elsewhere("CP1"))
        # gw1 re-asserts, and its newer presence is what every peer keeps.
        gw2.hear("ocpp/presence/CP1", gw1.presence("CP1"))
        self.assertTrue(gw2.router._presence.held_elsewhere("CP1"))

    def test_will_still_frees_a_dead_instance(self) -> None:
        """Path 11: a will with no revival after it still makes the catch-all answer Offline."""
        gw1, gw2 = Instance("gw1", self.clock), Instance("gw2", self.clock).up()
        gw1.connect("CP1")
        gw2.hear("ocpp/presence/CP1", gw1.presence("CP1"))
        gw2.hear("ocpp/gateway/gw1", will("gw1", gw1.router._presence.run))
        gw2.command("CP1")
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(gw2.errors(), [("d1", "Offline")])

    def test_grace_end_clears_retained_presence(self) -> None:
        """Path 6: when the grace period ends, the holder publishes an empty retained presence."""
        gw1 = Instance("gw1", self.clock)
        session, _ = gw1.connect("CP1")
        gw1.router.directory.close(session)
        self.clock.advance(60)
        self.assertEqual(gw1.presence("CP1"), b"")

    def test_moved_does_not_clear_retained_presence(self) -> None:
        """Path 6: letting go to another instance leaves its presence on the topic."""
        gw1 = Instance("gw1", self.clock)
        gw1.connect("CP1")
        gw1.hear("ocpp/presence/CP1", gw1.presence("CP1"))
        gw1.hear(
            "ocpp/presence/CP1",
            json.dumps(
                {"ChargePointId": "CP1", "Online": True, "Gateway": "gw2", "Run": "r", "Seq": 1}
            ).encode(),
        )
        self.assertIsNone(gw1.router.directory.get("CP1"))
        self.assertNotIn(b"", [p for _, p, _, r in gw1.mqtt.published if r])

    def test_prune_runs_on_a_timer(self) -> None:
        """Path 6: after the first connect, what others said of long-gone identities is pruned."""
        gw2 = Instance("gw2", self.clock)
        gw2.hear(
            "ocpp/presence/X",
            json.dumps(
                {"ChargePointId": "X", "Online": False, "Gateway": "gw1", "Run": "r", "Seq": 1}
            ).encode(),
        )
        gw2.router.announce()
        self.assertEqual(gw2.router.remembered_elsewhere(), 1)
        self.clock.advance(60)
        self.clock.advance(60)
        self.assertEqual(gw2.router.remembered_elsewhere(), 0)

    def test_cleared_presence_of_held_charge_point_reasserted(self) -> None:
        """Path 6: an empty retained presence over a connected charge point is said again."""
        gw1 = Instance("gw1", self.clock)
        gw1.connect("CP1")
        gw1.hear("ocpp/presence/CP1", b"")
        self.assertTrue(json.loads(gw1.presence("CP1"))["Online"])

    def test_restarting_instance_waits_for_retained_presence(self) -> None:
        """Path 12: a command before the retained presence was read is not answered Offline."""
        gw2 = Instance("gw2", self.clock)
        gw2.router.announce()
        # Replayed from a kept session, before the SUBACKs' retained messages.
        gw2.command("CP1")
        gw2.hear(
            "ocpp/presence/CP1",
            json.dumps(
                {"ChargePointId": "CP1", "Online": True, "Gateway": "gw1", "Run": "r", "Seq": 3}
            ).encode(),
        )
        gw2.hear("ocpp/gateway/gw2", gw2.gateway())  # our own announcement's echo
        self.assertEqual(gw2.errors(), [])

    def test_waiting_for_retained_presence_is_bounded(self) -> None:
        """Path 12: no echo within READ_WAIT: a command for nobody is answered Offline."""
        gw2 = Instance("gw2", self.clock)
        gw2.router.announce()
        gw2.command("NOBODY")
        self.assertEqual(gw2.errors(), [])
        self.clock.advance(READ_WAIT)
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(gw2.errors(), [("d1", "Offline")])

    def test_sigterm_one_answer_per_command(self) -> None:
        """Path 13: Shutdown from the stopping one before its goodbye, Offline from a peer after."""
        gw1, gw2 = Instance("gw1", self.clock), Instance("gw2", self.clock).up()
        session, _ = gw1.connect("CP1")
        gw1.hear("ocpp/gateway/gw2", gw2.gateway())  # gw1 knows gw2 is up
        gw2.hear("ocpp/presence/CP1", gw1.presence("CP1"))
        gw1.router.shutting_down("gateway shutting down; not sent")
        gw1.router.directory.close(session)
        gw2.hear("ocpp/presence/CP1", gw1.presence("CP1"))
        gw1.command("CP1", "before")
        gw2.command("CP1", "before")
        topic, goodbye = gw1.router.goodbye()
        gw1.mqtt.published.append((topic, goodbye, 1, True))
        gw2.hear(topic, goodbye)
        gw1.hear(topic, goodbye)
        self.assertTrue(gw1.router.said_goodbye())
        gw1.command("CP1", "after")
        gw2.command("CP1", "after")
        gw1.router.leave()
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(gw1.errors(), [("before", "Shutdown")])
        self.assertEqual(gw2.errors(), [("after", "Offline")])
        self.assertNotIn("ocpp/cs/CP1/+/+", gw1.mqtt.subscriptions)

    def test_catch_all_copy_before_subscription_taken(self) -> None:
        """Path 16: a command routed before the subscription took comes from the catch-all."""
        gw2 = Instance("gw2", self.clock)
        _, connection = gw2.connect("CP1")
        payload = json.dumps(RESET).encode()
        assert gw2.catch_all.handler is not None
        gw2.catch_all.handler("ocpp/cs/CP1/Call/Reset", payload, ())  # no per-CP copy
        self.assertEqual(connection.sent(), [])
        self.clock.advance(TWIN_WAIT)
        self.assertEqual(connection.sent(), [[2, "d1", "Reset", {"type": "Soft"}]])
        self.assertEqual(gw2.errors(), [])

    def test_catch_all_copy_with_twin_delivered_once(self) -> None:
        """Path 16: the catch-all copy first, then its twin: the command is sent once."""
        gw2 = Instance("gw2", self.clock)
        _, connection = gw2.connect("CP1")
        payload = json.dumps(RESET).encode()
        assert gw2.catch_all.handler is not None
        gw2.catch_all.handler("ocpp/cs/CP1/Call/Reset", payload, ())
        gw2.mqtt.deliver("ocpp/cs/CP1/Call/Reset", payload, via="ocpp/cs/CP1/+/+")
        self.clock.advance(TWIN_WAIT)
        # Proven now: a later catch-all copy is its twin's business.
        gw2.catch_all.handler("ocpp/cs/CP1/Call/Reset", payload, ())
        self.clock.advance(TWIN_WAIT)
        self.assertEqual([f[1] for f in connection.sent()], ["d1"])
        self.assertEqual(gw2.errors(), [])

    def test_sigterm_alone_answers_until_it_leaves(self) -> None:
        """Path 13: no other instance up: Shutdown also after the goodbye; subscriptions kept."""
        gw1 = Instance("gw1", self.clock)
        gw1.connect("CP1")
        gw1.router.shutting_down("gateway shutting down; not sent")
        topic, goodbye = gw1.router.goodbye()
        gw1.hear(topic, goodbye)
        self.assertTrue(gw1.router.said_goodbye())
        gw1.command("CP1", "after")
        gw1.router.leave()
        self.assertEqual(gw1.errors(), [("after", "Shutdown")])
        self.assertIn("ocpp/cs/CP1/+/+", gw1.mqtt.subscriptions)

    def test_catch_all_before_first_connect_waits(self) -> None:
        """Path 12: a catch-all copy before the main connection read presence waits for it."""
        gw2 = Instance("gw2", self.clock)
        gw2.command("CP1")  # the catch-all connection was up first
        gw2.router.announce()
        gw2.hear(
            "ocpp/presence/CP1",
            json.dumps(
                {"ChargePointId": "CP1", "Online": True, "Gateway": "gw1", "Run": "r", "Seq": 1}
            ).encode(),
        )
        gw2.hear("ocpp/gateway/gw2", gw2.gateway())
        self.clock.advance(READ_WAIT)
        self.assertEqual(gw2.errors(), [])

    def test_presence_read_after_the_will_is_gone_too(self) -> None:
        """A presence of a dead run read after its will (other connection) is gone and corrected."""
        gw1, gw2 = Instance("gw1", self.clock), Instance("gw2", self.clock).up()
        gw1.connect("CP1")
        assert gw2.catch_all.handler is not None
        gw2.catch_all.handler("ocpp/gateway/gw1", will("gw1", gw1.router._presence.run), ())
        gw2.mqtt.deliver("ocpp/presence/CP1", gw1.presence("CP1"), via="ocpp/presence/+")
        gw2.command("CP1")
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(gw2.errors(), [("d1", "Offline")])
        topic, body = gw2.mqtt.retained()[-1]
        self.assertEqual(
            (topic, body["Online"], body["CorrectedBy"]), ("ocpp/presence/CP1", False, "gw2")
        )


def routed(cid: str, unique_id: str = "d1") -> tuple[str, bytes]:
    """The topic and payload of a backend Reset for ``cid``."""
    return f"ocpp/cs/{cid}/Call/Reset", json.dumps(dict(RESET, UniqueId=unique_id)).encode()


class ReplayTests(ClockTestCase):
    """What a resumed MQTT session replays, and catch-all copies racing a connect."""

    def restarted(self) -> tuple[Instance, Instance, bytes]:
        """gw1 held CP1 and died (its will reached the peer gw2); gw1's next run connects."""
        old, peer = Instance("gw1", self.clock), Instance("gw2", self.clock).up()
        old.connect("CP1")
        peer.hear("ocpp/presence/CP1", old.presence("CP1"))
        old_will = will("gw1", old.router._presence.run)
        new = Instance("gw1", self.clock)
        new.router.announce()
        # The peer's retained presence, on the main connection only: the
        # catch-all's own connection may not be up yet.
        assert new.mqtt.handler is not None
        new.mqtt.handler("ocpp/gateway/gw2", peer.gateway(), ())
        return new, peer, old_will

    def test_replayed_after_old_will_left_to_peer(self) -> None:
        """Path 1: replayed after the old run's will: only the peer's catch-all answers it."""
        new, peer, old_will = self.restarted()
        # Routed live: the will, then the command (the peer's catch-all copy).
        peer.hear("ocpp/gateway/gw1", old_will)
        peer.command("CP1", "after")
        # The new run's resumed session replays the same, in the same order.
        new.hear("ocpp/gateway/gw1", old_will)
        new.mqtt.deliver(*routed("CP1", "after"), via="ocpp/cs/CP1/+/+")
        new.hear("ocpp/presence/CP1", json.dumps({"Online": True, "Gateway": "gw1"}).encode())
        new.hear("ocpp/gateway/gw1", new.gateway())  # the echo: the retained presence is read
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(peer.errors() + new.errors(), [("after", "Offline")])

    def test_live_command_after_own_presence_echo_delivered(self) -> None:
        """
        Path 16: the new run attached its charge point while its resumed
        session replayed (the old run's will read, the retained presence not
        yet): a command routed after the echo of the new run's presence for
        it was routed when the peer knew the new run held it (the peer's
        catch-all left it alone), so the new run delivers it, once.
        """
        new, peer, old_will = self.restarted()
        peer.hear("ocpp/gateway/gw1", old_will)
        new.hear("ocpp/gateway/gw1", old_will)  # the replay: the old run gone
        _, connection = new.connect("CP1")
        peer.hear("ocpp/presence/CP1", new.presence("CP1"))
        new.hear("ocpp/presence/CP1", new.presence("CP1"))  # the echo of its own presence
        peer.command("CP1", "live")  # the peer's catch-all copy: left to its holder
        new.mqtt.deliver(*routed("CP1", "live"), via="ocpp/cs/CP1/+/+")
        new.hear("ocpp/gateway/gw1", new.gateway())
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual([f[1] for f in connection.sent()], ["live"])
        self.assertEqual(peer.errors() + new.errors(), [])

    def test_replayed_before_old_will_answered_by_new_run(self) -> None:
        """Path 1: replayed from before the old run's will: the new run answers it."""
        new, peer, old_will = self.restarted()
        peer.command("CP1", "before")  # the peer's catch-all: gw1 holds CP1
        peer.hear("ocpp/gateway/gw1", old_will)
        new.mqtt.deliver(*routed("CP1", "before"), via="ocpp/cs/CP1/+/+")
        new.hear("ocpp/gateway/gw1", old_will)
        new.hear("ocpp/presence/CP1", json.dumps({"Online": True, "Gateway": "gw1"}).encode())
        new.hear("ocpp/gateway/gw1", new.gateway())
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(peer.errors() + new.errors(), [("before", "Offline")])

    def test_replayed_after_old_will_alone_answered(self) -> None:
        """Path 1: with no peer up, nobody's catch-all answered: the new run answers Offline."""
        new = Instance("gw1", self.clock)
        new.router.announce()
        new.hear("ocpp/gateway/gw1", will("gw1", "oldrun"))
        new.mqtt.deliver(*routed("CP1"), via="ocpp/cs/CP1/+/+")
        new.hear("ocpp/presence/CP1", json.dumps({"Online": True, "Gateway": "gw1"}).encode())
        new.hear("ocpp/gateway/gw1", new.gateway())
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(new.errors(), [("d1", "Offline")])

    def test_catch_all_copy_before_holder_presence_republished(self) -> None:
        """Path 2: a catch-all copy, then the holder's online presence: republished, not Offline."""
        gw1, gw2 = Instance("gw1", self.clock).up(), Instance("gw2", self.clock).up()
        gw2.command("CP1")  # routed while gw1 subscribes: gw2 has not read its presence
        gw1.connect("CP1")
        gw2.hear("ocpp/presence/CP1", gw1.presence("CP1"))
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(gw2.errors(), [])
        topic, payload = routed("CP1")
        self.assertIn((topic, payload, 1, False), gw2.mqtt.published)
        # The copy republished comes back through the catch-all: known, not answered.
        gw2.command("CP1")
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(gw2.errors(), [])
        self.assertEqual(gw2.mqtt.published.count((topic, payload, 1, False)), 1)

    def test_republished_copy_delivered_once(self) -> None:
        """Path 2: the holder gets the command and its republished copy: sent once, one answer."""
        gw1, gw2 = Instance("gw1", self.clock).up(), Instance("gw2", self.clock).up()
        _, connection = gw1.connect("CP1")
        gw1.mqtt.deliver(*routed("CP1"), via="ocpp/cs/CP1/+/+")  # its own subscription
        gw2.command("CP1")  # and gw2's catch-all got the copy
        gw2.hear("ocpp/presence/CP1", gw1.presence("CP1"))
        self.clock.advance(OFFLINE_WAIT)
        ((topic, payload, _, _),) = [m for m in gw2.mqtt.published if m[0].startswith("ocpp/cs/")]
        gw1.mqtt.deliver(topic, payload, via="ocpp/cs/CP1/+/+")
        self.assertEqual([f[1] for f in connection.sent()], ["d1"])
        self.assertEqual(gw1.errors() + gw2.errors(), [])

    def test_offline_for_nobody_after_offline_wait(self) -> None:
        """Path 2: a command for a charge point nobody holds: Offline after OFFLINE_WAIT."""
        gw2 = Instance("gw2", self.clock).up()
        gw2.command("NOBODY")
        self.assertEqual(gw2.errors(), [])
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(gw2.errors(), [("d1", "Offline")])

    def test_copy_of_a_command_answered_offline_gets_nothing(self) -> None:
        """Path 2: a copy of a command answered Offline (a redelivery, a retry) within
        awaiting_timeout gets no second Offline; another CALL under that id does."""
        gw2 = Instance("gw2", self.clock).up()
        gw2.command("NOBODY")
        self.clock.advance(OFFLINE_WAIT)
        gw2.command("NOBODY")
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(gw2.errors(), [("d1", "Offline")])
        assert gw2.catch_all.handler is not None
        other = dict(RESET, Payload={"type": "Other"})
        gw2.catch_all.handler("ocpp/cs/NOBODY/Call/Reset", json.dumps(other).encode(), ())
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(gw2.errors(), [("d1", "Offline"), ("d1", "Offline")])
        self.clock.advance(30)
        gw2.command("NOBODY")  # the same CALL after the window is a new one
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(len(gw2.errors()), 3)

    def test_replayed_after_handover_goodbye_left_to_peer(self) -> None:
        """Path 1: replayed from a subscription a handover goodbye left: only the peer answers."""
        old, peer = Instance("gw1", self.clock).up(), Instance("gw2", self.clock).up()
        old.connect("CP1")
        old.hear("ocpp/gateway/gw2", peer.gateway())
        peer.hear("ocpp/presence/CP1", old.presence("CP1"))
        old.router.shutting_down("gateway shutting down; not sent")
        topic, goodbye = old.router.goodbye()
        peer.hear(topic, goodbye)
        peer.command("CP1", "after")  # routed after the goodbye: the peer's catch-all
        new = Instance("gw1", self.clock)
        new.router.announce()
        assert new.mqtt.handler is not None
        new.mqtt.handler("ocpp/gateway/gw2", peer.gateway(), ())
        # The resumed session replays it; the goodbye was read live by the
        # old run, so it comes after, retained, with the subscriptions made again.
        new.mqtt.deliver(*routed("CP1", "after"), via="ocpp/cs/CP1/+/+")
        new.mqtt.handler(topic, goodbye, ())
        new.hear("ocpp/presence/CP1", old.presence("CP1"))
        new.hear("ocpp/gateway/gw1", new.gateway())
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(peer.errors() + new.errors(), [("after", "Offline")])

    def test_replayed_after_lone_goodbye_answered(self) -> None:
        """Path 1: the old run stopped alone (no handover): the new run answers what it kept."""
        old = Instance("gw1", self.clock).up()
        old.connect("CP1")
        old.router.shutting_down("gateway shutting down; not sent")
        topic, goodbye = old.router.goodbye()
        new = Instance("gw1", self.clock)
        new.router.announce()
        new.mqtt.deliver(*routed("CP1"), via="ocpp/cs/CP1/+/+")
        assert new.mqtt.handler is not None
        new.mqtt.handler(topic, goodbye, ())
        new.hear("ocpp/gateway/gw1", new.gateway())
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(new.errors(), [("d1", "Offline")])
