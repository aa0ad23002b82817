"""
Orderings the fault soak (tests/soak, seed 101) found giving a backend CALL
two answers, driven with the real Router and presence on a task.Clock: a
per-charge point subscription an earlier run under the same ``[gateway] id``
left in the resumed MQTT session, for a charge point this run does not hold.
"""

from __future__ import annotations

import json

from ocppgw.router.offline import OFFLINE_WAIT
from ocppgw.router.unclaimed import PER_CHARGE_POINT, READ_WAIT
from ocppgw.session.rules import Session
from tests.unit.router.test_exactly_once_presence import ClockTestCase, Instance, routed, will

LEFT = "ocpp/cs/CP1/+/+"


def left_behind(instance: Instance) -> Instance:
    """``instance``'s resumed session still has an earlier run's subscription for CP1."""
    instance.mqtt.subscriptions[LEFT] = 1
    instance.mqtt.identifiers[LEFT] = PER_CHARGE_POINT
    return instance


class LeftBehindTests(ClockTestCase):
    def test_left_subscription_holder_killed_one_offline(self) -> None:
        """A command on a subscription an earlier run left, its holder dead: one Offline."""
        b, a = left_behind(Instance("gw1", self.clock).up()), Instance("gw2", self.clock).up()
        a.connect("CP1")
        b.hear("ocpp/gateway/gw2", a.gateway())
        b.hear("ocpp/presence/CP1", a.presence("CP1"))
        b.hear("ocpp/gateway/gw2", will("gw2", a.router._presence.run))  # SIGKILL
        b.command("CP1")  # the left subscription's copy, and the catch-all's
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(b.errors(), [("d1", "Offline")])
        self.assertIn(LEFT, b.mqtt.unsubscribed)

    def test_left_subscription_broker_restart_holder_answers(self) -> None:
        """A broker restart (every will) and a left subscription: only the holder answers."""
        b, a = left_behind(Instance("gw1", self.clock).up()), Instance("gw2", self.clock).up()
        _, connection = a.connect("CP1")
        b.hear("ocpp/gateway/gw2", a.gateway())
        b.hear("ocpp/presence/CP1", a.presence("CP1"))
        b.hear("ocpp/gateway/gw2", will("gw2", a.router._presence.run))
        b.up()  # b connected again and read the retained presence
        b.mqtt.deliver(*routed("CP1"), via=LEFT)
        a.mqtt.deliver(*routed("CP1"), via=LEFT)  # a's own subscription
        b.hear("ocpp/gateway/gw2", a.gateway())  # a is back
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(b.errors() + a.errors(), [])
        self.assertEqual([f[1] for f in connection.sent()], ["d1"])

    def test_first_read_drops_left_subscription_of_moved_charge_point(self) -> None:
        """Starting, the retained presence of one held elsewhere drops its left subscription."""
        a = Instance("gw2", self.clock).up()
        a.connect("CP1")
        b = left_behind(Instance("gw1", self.clock))
        b.router.announce()
        b.hear("ocpp/gateway/gw2", a.gateway())
        b.hear("ocpp/presence/CP1", a.presence("CP1"))
        b.hear("ocpp/gateway/gw1", b.gateway())
        self.assertIn(LEFT, b.mqtt.unsubscribed)

    def test_own_released_subscription_copy_still_answered(self) -> None:
        """A copy on this run's own subscription just dropped (grace end) is still answered once."""
        b = Instance("gw1", self.clock).up()
        session, _ = b.connect("CP1")
        b.router.release(session)
        b.mqtt.deliver(*routed("CP1"), via=LEFT)  # routed before the unsubscribe took
        self.assertEqual(b.errors(), [("d1", "Offline")])


class ReplayHeldTests(ClockTestCase):
    def test_replayed_after_old_will_charge_point_back_left_to_peer(self) -> None:
        """Replayed after the old run's will, its charge point back here: only the peer answers."""
        old, peer = Instance("gw1", self.clock), Instance("gw2", self.clock).up()
        old.connect("CP1")
        peer.hear("ocpp/presence/CP1", old.presence("CP1"))
        old_will = will("gw1", old.router._presence.run)  # SIGKILL
        peer.hear("ocpp/gateway/gw1", old_will)
        peer.command("CP1", "after")  # the peer's catch-all: nobody holds CP1
        new = Instance("gw1", self.clock)
        _, connection = new.connect("CP1")  # accepted before MQTT is up
        new.router.announce()
        new.hear("ocpp/gateway/gw1", old_will)  # the resumed session's replay
        new.mqtt.deliver(*routed("CP1", "after"), via=LEFT)
        assert new.mqtt.handler is not None
        new.mqtt.handler("ocpp/gateway/gw2", peer.gateway(), ())
        new.hear("ocpp/gateway/gw1", new.gateway())  # the echo
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(peer.errors() + new.errors(), [("after", "Offline")])
        self.assertEqual(connection.sent(), [])

    def test_replayed_before_old_will_charge_point_back_delivered(self) -> None:
        """Replayed from before the old run's will, its charge point back here: delivered once."""
        old, peer = Instance("gw1", self.clock), Instance("gw2", self.clock).up()
        old.connect("CP1")
        peer.hear("ocpp/presence/CP1", old.presence("CP1"))
        peer.command("CP1", "before")  # the peer's catch-all: gw1 holds CP1
        old_will = will("gw1", old.router._presence.run)
        new = Instance("gw1", self.clock)
        _, connection = new.connect("CP1")
        new.router.announce()
        new.mqtt.deliver(*routed("CP1", "before"), via=LEFT)
        new.hear("ocpp/gateway/gw1", old_will)
        assert new.mqtt.handler is not None
        new.mqtt.handler("ocpp/gateway/gw2", peer.gateway(), ())
        new.hear("ocpp/gateway/gw1", new.gateway())
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(peer.errors() + new.errors(), [])
        self.assertEqual([f[1] for f in connection.sent()], ["before"])


class PeerRunTests(ClockTestCase):
    def test_old_will_after_newer_run_keeps_peer_up(self) -> None:
        """A peer's earlier run's will after its newer run's presence: still a peer (handover)."""
        gw1, old, new = (Instance(gw, self.clock) for gw in ("gw1", "gw2", "gw2"))
        gw1.up()
        old.router.announce()
        new.router.announce()
        gw1.hear("ocpp/gateway/gw2", old.gateway())
        gw1.hear("ocpp/gateway/gw2", new.gateway())
        gw1.hear("ocpp/gateway/gw2", will("gw2", old.router._presence.run))
        gw1.connect("CP1")
        gw1.router.shutting_down("gateway shutting down; not sent")
        _, goodbye = gw1.router.goodbye()
        self.assertIs(json.loads(goodbye)["Handover"], True)

    def test_own_old_will_after_first_reading_reasserted(self) -> None:
        """An earlier run's will landing after this run's gateway presence: it is said again."""
        old, new = Instance("gw1", self.clock), Instance("gw1", self.clock).up()
        before = len(new.mqtt.published)
        new.hear("ocpp/gateway/gw1", will("gw1", old.router._presence.run))
        ((topic, payload, _, retain),) = new.mqtt.published[before:]
        body = json.loads(payload)
        self.assertEqual(
            (topic, retain, body["Online"], body["Run"]),
            ("ocpp/gateway/gw1", True, True, new.router._presence.run),
        )

    def test_replayed_before_old_will_charge_point_elsewhere_passed_on(self) -> None:
        """Replayed from before the old run's will, its charge point now on a peer: passed on."""
        old, peer = Instance("gw1", self.clock), Instance("gw2", self.clock).up()
        old.connect("CP1")
        peer.hear("ocpp/presence/CP1", old.presence("CP1"))
        peer.command("CP1", "before")  # routed while gw1 held CP1: the catch-all leaves it
        old_will = will("gw1", old.router._presence.run)
        peer.connect("CP1")  # subscribed after the command was routed
        new = Instance("gw1", self.clock)
        new.router.announce()
        new.mqtt.deliver(*routed("CP1", "before"), via=LEFT)  # unacknowledged by the old run
        new.hear("ocpp/gateway/gw1", old_will)
        new.hear("ocpp/presence/CP1", peer.presence("CP1"))
        new.hear("ocpp/gateway/gw1", new.gateway())
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(peer.errors() + new.errors(), [])
        self.assertIn((*routed("CP1", "before"), 1, False), new.mqtt.published)


class StalledTests(ClockTestCase):
    """
    Seed 404: an instance stalled (SIGSTOP) past 1.5 x keepalive.  The broker
    fires its will; until its gateway presence is routed again, the peers'
    catch-all answers for its charge points, and its resumed session replays
    those commands as well, after its own will.
    """

    def stalled(self, peer: bool = True) -> tuple[Instance, Instance, bytes]:
        """b holds CP1 and is taken for gone (its will routed); a is the peer (up or not)."""
        b = Instance("gw1", self.clock)
        self.session, self.connection = b.connect("CP1")
        b.up()
        a = Instance("gw2", self.clock).up()
        if peer:
            b.hear("ocpp/gateway/gw2", a.gateway())
            a.hear("ocpp/gateway/gw1", b.gateway())
            a.hear("ocpp/presence/CP1", b.presence("CP1"))
        own_will = will("gw1", b.router._presence.run)
        a.hear("ocpp/gateway/gw1", own_will)
        return b, a, own_will

    def replay(self, b: Instance, own_will: bytes) -> None:
        """b connects again: its session replays "before", its own will, and "after"."""
        assert b.mqtt.handler is not None
        b.router.announce()
        b.mqtt.deliver(*routed("CP1", "before"), via="ocpp/cs/CP1/+/+")
        self.sent()
        b.mqtt.handler("ocpp/gateway/gw1", own_will, ())
        b.mqtt.deliver(*routed("CP1", "after"), via="ocpp/cs/CP1/+/+")

    def echo(self, b: Instance) -> None:
        """The echo of b's gateway presence (routed after everything replayed)."""
        assert b.mqtt.handler is not None
        b.mqtt.handler("ocpp/gateway/gw1", b.gateway(), ())

    def sent(self) -> list[str]:
        """The CALLs sent to the charge point, which answers each (one is in flight at a time)."""
        answered = 0
        while answered < len(self.connection.sent()):
            unique_id = self.connection.sent()[answered][1]
            self.session.frame_received(f'[3,"{unique_id}",{{"status":"Accepted"}}]')
            answered += 1
        return [f[1] for f in self.connection.sent()]

    def test_replayed_after_own_will_left_to_the_peer(self) -> None:
        """Replayed after this run's own will, a peer up: the peer's Offline is the one answer."""
        b, a, own_will = self.stalled()
        a.command("CP1", "after")  # a's catch-all: gw1 is gone
        self.clock.advance(OFFLINE_WAIT)
        self.replay(b, own_will)
        self.echo(b)
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(a.errors() + b.errors(), [("after", "Offline")])
        self.assertEqual(self.sent(), ["before"])

    def test_replayed_after_own_will_passed_on_delivered_once(self) -> None:
        """b back within OFFLINE_WAIT: the peer passes the command on, b delivers it once."""
        b, a, own_will = self.stalled()
        a.command("CP1", "after")
        self.replay(b, own_will)
        self.echo(b)
        a.hear("ocpp/gateway/gw1", b.gateway())
        a.hear("ocpp/presence/CP1", b.presence("CP1"))
        passed = [(t, p) for t, p, _, r in a.mqtt.published if not r and "/Call/" in t]
        self.assertEqual(len(passed), 1)
        b.mqtt.deliver(*passed[0], via="ocpp/cs/CP1/+/+")
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(a.errors() + b.errors(), [])
        self.assertEqual(self.sent(), ["before", "after"])

    def test_own_catch_all_copy_after_own_will_answered(self) -> None:
        """b's own catch-all gets the copy while it reads b gone: answered, as a peer's would."""
        b, _, own_will = self.stalled()
        assert b.catch_all.handler is not None
        b.catch_all.handler("ocpp/gateway/gw1", own_will, ())  # its new connection reads it
        b.catch_all.handler(*routed("CP1", "after"), ())
        self.replay(b, own_will)
        self.clock.advance(OFFLINE_WAIT)
        self.echo(b)
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(b.errors(), [("after", "Offline")])
        self.assertEqual(self.sent(), ["before"])

    def test_own_catch_all_copy_passed_on_when_back(self) -> None:
        """b's own catch-all copy, b back within OFFLINE_WAIT: passed on, delivered once."""
        b, _, own_will = self.stalled()
        assert b.catch_all.handler is not None
        b.catch_all.handler("ocpp/gateway/gw1", own_will, ())
        b.catch_all.handler(*routed("CP1", "after"), ())
        self.replay(b, own_will)
        self.echo(b)
        b.catch_all.handler("ocpp/gateway/gw1", b.gateway(), ())
        passed = [(t, p) for t, p, _, r in b.mqtt.published if not r and "/Call/" in t]
        self.assertEqual(len(passed), 1)
        b.mqtt.deliver(*passed[0], via="ocpp/cs/CP1/+/+")
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(b.errors(), [])
        self.assertEqual(self.sent(), ["before", "after"])

    def test_replayed_after_own_will_alone_delivered(self) -> None:
        """No peer up: nobody else answers, so what is replayed after the will is delivered."""
        b, _, own_will = self.stalled(peer=False)
        self.replay(b, own_will)
        self.echo(b)
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(b.errors(), [])
        self.assertEqual(self.sent(), ["before", "after"])


class StoppingViewTests(ClockTestCase):
    """
    Seed 404 again: a SIGTERM while the peer comes back from a stall.  The
    stopping instance's catch-all connection leaves first; what the main
    connection reads after that must still tell it who is up.
    """

    def test_peer_back_after_catch_all_left_is_handed_over(self) -> None:
        """The peer's presence read after the catch-all left: the goodbye hands over to it."""
        b, a = Instance("gw1", self.clock).up(), Instance("gw2", self.clock).up()
        b.hear("ocpp/gateway/gw2", a.gateway())
        b.hear("ocpp/gateway/gw2", will("gw2", a.router._presence.run))  # a stalls
        b.router.catch_all_leaving()  # SIGTERM: the catch-all connection stops first
        assert b.mqtt.handler is not None
        b.mqtt.handler("ocpp/gateway/gw2", a.gateway(), ())  # a is back (main connection only)
        b.router.shutting_down("gateway shutting down; not sent")
        _, goodbye = b.router.goodbye()
        self.assertIs(json.loads(goodbye)["Handover"], True)

    def test_moved_after_catch_all_left_not_answered_offline(self) -> None:
        """A copy for a charge point that moved to the revived peer is left to it, not Offline."""
        b, a = Instance("gw1", self.clock).up(), Instance("gw2", self.clock).up()
        b.connect("CP1")
        b.hear("ocpp/presence/CP1", b.presence("CP1"))
        b.hear("ocpp/gateway/gw2", a.gateway())
        b.hear("ocpp/gateway/gw2", will("gw2", a.router._presence.run))
        b.router.catch_all_leaving()
        assert b.mqtt.handler is not None
        a.up()  # back: a new presence of the same run
        b.mqtt.handler("ocpp/gateway/gw2", a.gateway(), ())
        a.connect("CP1")
        b.mqtt.handler("ocpp/presence/CP1", a.presence("CP1"), ())  # b lets go
        b.mqtt.deliver(*routed("CP1"), via="ocpp/cs/CP1/+/+")  # still on b's subscription
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(b.errors(), [])


class TakenOverTests(ClockTestCase):
    """
    Seed 404, the third: a charge point moves to an instance whose presence
    for it is routed a while after its subscription (its MQTT connection
    just came back, with a backlog).  A command routed in between reaches
    both the previous holder and the new one.
    """

    def moving(self) -> tuple[Instance, Instance, Session]:
        """CP1 is connected to b (its old connection still open); a, its peer, knows it."""
        b, a = Instance("gw1", self.clock).up(), Instance("gw2", self.clock).up()
        b.hear("ocpp/gateway/gw2", a.gateway())
        a.hear("ocpp/gateway/gw1", b.gateway())
        session, _ = b.connect("CP1")
        b.hear("ocpp/presence/CP1", b.presence("CP1"))  # the echo
        a.hear("ocpp/presence/CP1", b.presence("CP1"))
        return b, a, session

    def test_offline_elsewhere_past_offline_ttl_not_taken(self) -> None:
        """An offline presence elsewhere older than offline_ttl (its grace over) is no take-over."""
        b, a, session = self.moving()
        b.router.directory.close(session)
        a.hear("ocpp/presence/CP1", b.presence("CP1"))
        self.clock.advance(60)  # [dnstream] offline_ttl
        _, connection = a.connect("CP1")
        a.mqtt.deliver(*routed("CP1"), via="ocpp/cs/CP1/+/+")
        self.assertEqual([f[1] for f in connection.sent()], ["d1"])

    def test_routed_before_new_holders_presence_in_grace_left_to_the_previous_holder(
        self,
    ) -> None:
        """
        Seed 808: the charge point's TCP connection to b reset, it reconnects
        to a within b's grace period.  A command routed between a's
        subscription and a's presence reaches both: b queues it for the
        reconnection, a leaves it to b, and b answers Replaced when it reads
        a's presence (one answer, not a Replaced and a result).
        """
        b, a, session = self.moving()
        b.router.directory.close(session)
        a.hear("ocpp/presence/CP1", b.presence("CP1"))
        self.routed_before_presence(b, a)  # queued in b's grace period

    def test_routed_before_new_holders_presence_left_to_the_previous_holder(self) -> None:
        """Routed before the new holder's presence, the old connection open: its Replaced only."""
        b, a, _ = self.moving()
        self.routed_before_presence(b, a)  # sent on the old connection

    def routed_before_presence(self, b: Instance, a: Instance) -> None:
        """CP1 connects to a; a command reaches b and a, then a's presence: b's Replaced only."""
        _, connection = a.connect("CP1")
        b.mqtt.deliver(*routed("CP1"), via="ocpp/cs/CP1/+/+")
        a.mqtt.deliver(*routed("CP1"), via="ocpp/cs/CP1/+/+")  # before a's presence is routed
        b.hear("ocpp/presence/CP1", a.presence("CP1"))  # b lets go
        a.hear("ocpp/presence/CP1", a.presence("CP1"))  # the echo
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(b.errors() + a.errors(), [("d1", "Replaced")])
        self.assertEqual(connection.sent(), [])

    def test_routed_after_new_holders_presence_delivered(self) -> None:
        """Routed after the new holder's presence: delivered there, the old one leaves it."""
        b, a, _ = self.moving()
        _, connection = a.connect("CP1")
        b.hear("ocpp/presence/CP1", a.presence("CP1"))
        a.hear("ocpp/presence/CP1", a.presence("CP1"))
        b.mqtt.deliver(*routed("CP1"), via="ocpp/cs/CP1/+/+")  # its unsubscribe not yet taken
        a.mqtt.deliver(*routed("CP1"), via="ocpp/cs/CP1/+/+")
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(b.errors() + a.errors(), [])
        self.assertEqual([f[1] for f in connection.sent()], ["d1"])

    def test_previous_holder_dead_delivered_before_presence(self) -> None:
        """The previous holder's will came first: the new holder delivers at once."""
        b, a, _ = self.moving()
        a.hear("ocpp/gateway/gw1", will("gw1", b.router._presence.run))
        _, connection = a.connect("CP1")
        a.mqtt.deliver(*routed("CP1"), via="ocpp/cs/CP1/+/+")
        self.clock.advance(READ_WAIT + OFFLINE_WAIT)
        self.assertEqual(a.errors(), [])
        self.assertEqual([f[1] for f in connection.sent()], ["d1"])


class KeptForNextRunTests(ClockTestCase):
    """
    Seed 404, the fourth: b stops on SIGTERM while it takes its only peer
    for gone (the peer is stalled), so its goodbye says ``Handover: false``
    and its MQTT session keeps its charge points' commands for its next run.
    The peer's catch-all, back a moment later, must not answer them too.
    """

    def stopped_alone(self) -> tuple[Instance, Instance, bytes]:
        """b held CP1 (in its grace period) and said goodbye without handover; a is up."""
        b, a = Instance("gw1", self.clock).up(), Instance("gw2", self.clock).up()
        a.hear("ocpp/gateway/gw1", b.gateway())
        session, _ = b.connect("CP1")
        a.hear("ocpp/presence/CP1", b.presence("CP1"))
        b.router.directory.close(session)
        a.hear("ocpp/presence/CP1", b.presence("CP1"))
        b.router.shutting_down("gateway shutting down; not sent")
        topic, goodbye = b.router.goodbye()
        self.assertIs(json.loads(goodbye)["Handover"], False)
        a.hear(topic, goodbye)
        return b, a, goodbye

    def test_catch_all_leaves_commands_kept_for_the_next_run(self) -> None:
        """After a goodbye without handover, the catch-all leaves its charge points' commands."""
        _, a, _ = self.stopped_alone()
        self.clock.advance(5)
        a.command("CP1")
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(a.errors(), [])

    def test_next_run_up_catch_all_answers_again(self) -> None:
        """Once the next run of b is up, the catch-all answers for what it does not hold."""
        _, a, _ = self.stopped_alone()
        b2 = Instance("gw1", self.clock)
        b2.router.announce()
        a.hear("ocpp/gateway/gw1", b2.gateway())
        a.command("CP1")
        self.clock.advance(OFFLINE_WAIT)
        self.assertEqual(a.errors(), [("d1", "Offline")])


class StaleRetainedTests(ClockTestCase):
    """
    Seed 808, the third: a's stall outlived its keepalive, and as it
    reconnects, b is killed and CP1 moves from b to a.  The retained
    presence a's subscriptions bring back is b's old online one for CP1,
    read after a published its own.
    """

    def moved_to_a(self) -> tuple[Instance, Instance, bytes]:
        """CP1 was b's; b's will is read; CP1 is connected to a now."""
        b, a = Instance("gw1", self.clock).up(), Instance("gw2", self.clock).up()
        a.hear("ocpp/gateway/gw1", b.gateway())
        b.connect("CP1")
        stale = b.presence("CP1")
        a.hear("ocpp/presence/CP1", stale)
        a.hear("ocpp/gateway/gw1", will("gw1", b.router._presence.run))  # b killed
        a.connect("CP1")
        return b, a, stale

    def test_no_correction_over_a_presence_held_here(self) -> None:
        """A stale presence of a dead run for a charge point held here is not corrected."""
        _, a, stale = self.moved_to_a()
        published = len(a.mqtt.published)
        a.hear("ocpp/presence/CP1", stale)  # the retained one, read after ours went out
        after = [p for t, p, _, r in a.mqtt.published[published:] if t == "ocpp/presence/CP1"]
        self.assertEqual([p for p in after if "CorrectedBy" in json.loads(p)], [])
        self.assertIs(json.loads(a.presence("CP1"))["Online"], True)

    def test_a_correction_over_a_presence_held_here_is_answered_with_ours(self) -> None:
        """
        A dead run's presence read after our echo does not take the charge
        point away, and a correction of it (it landed on the retained
        presence of a charge point held here): ours again.
        """
        _, a, stale = self.moved_to_a()
        a.hear("ocpp/presence/CP1", a.presence("CP1"))  # the echo of ours
        a.hear("ocpp/presence/CP1", stale)
        self.assertEqual(list(a.router._sessions), ["CP1"])
        correction = [p for t, p, _, r in a.mqtt.published if b"CorrectedBy" in p][-1]
        published = len(a.mqtt.published)
        a.hear("ocpp/presence/CP1", correction)  # routed after ours: it is the retained one now
        after = [json.loads(p) for t, p, _, r in a.mqtt.published[published:]]
        self.assertEqual([(p["Gateway"], p["Online"]) for p in after], [("gw2", True)])
