# -*- test-case-name: tests.unit.router.test_router -*-
"""
Who holds which identity, across the gateway instances sharing a broker.

- each identity's presence is one retained message (``[presence] topic``):
  online or offline, which gateway, since when; and each instance's own
  (``gateway_topic``), which its MQTT last will sets offline;
- every instance reads them back: the newest connection of an identity wins
  (docs/design.md, what users rely on, 4).  Newer is the order in which the
  broker delivers the presence topic, never a comparison of two hosts'
  clocks: another gateway's online presence delivered after the echo of this
  instance's own makes it let go of the identity (connected or in its grace
  period);
- an instance gone without a goodbye (its last will on ``gateway_topic``):
  its charge points are offline, the catch-all answers for them at once, and
  their retained presence is corrected by the instances that saw it;
- an online presence carries ``Registration`` (the backend's last
  BootNotification answer, null before one): "connected" and "ready" apart;
- every presence carries the run (``Run``: chosen at each process start) and
  a sequence number (``Seq``, growing with each publish of the run); the
  gateway presence and the last will carry the run.  A last will, or another
  instance's correction (``CorrectedBy``), concerns only identities last seen
  under that run with that sequence number, so a restart under the same
  ``[gateway] id`` or a broker restart (which publishes every will) never
  makes a newer presence look offline, whichever order the messages arrive
  in; a gateway presence "online" of the same run after its will revives it
  (the broker, not the instance, went away).  An offline presence never
  overrides another connection's online one;
- the instance that holds a connected identity re-asserts its presence when
  anything else lands on that retained topic (a correction, an empty or a
  stale offline message), so the retained state converges on the truth;
- when an identity's grace period ends, the instance that held it removes
  its retained presence (an empty retained message);
- a retained "online" of this gateway for an identity it lacks is left over
  from an earlier run, and is set offline;
- the offline catch-all answers for an identity only when no instance has had
  it within ``offline_ttl`` (it still holds its subscription then), nor
  kept it in its MQTT session for its next run (a goodbye with
  ``Handover: false``) until that run is up or ``session_expiry``;
- an identity taken over from another live instance where it was connected
  or in its grace period: until the echo of its presence here, what comes
  for it was routed while the other held it (and answers it).
"""

from __future__ import annotations

import itertools
import json
import secrets
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocppgw.interfaces import IMQTTClient
from ocppgw.ocpp.timestamps import rfc3339
from ocppgw.router.holders import DEAD_RUNS, PRUNE_MIN, Elsewhere, Here
from ocppgw.router.topics import TopicTemplate, topic_values

if TYPE_CHECKING:
    from ocppgw.config import Config
    from ocppgw.session.rules import Session

_log = Logger()


class Presence:
    """This instance's presence messages, and what the other instances say."""

    def __init__(self, config: Config, mqtt: IMQTTClient, clock: IReactorTime) -> None:
        self._config = config
        self._mqtt = mqtt
        self._clock = clock
        self._qos = config.mqtt.qos
        self._gateway = config.gateway_id
        #: This instance's connections, by identity.
        self._here: dict[str, Here] = {}
        self._connections = itertools.count(1)
        #: Chosen at each process start: tokens of two runs never collide, and
        #: a last will or correction names the run it concerns.
        self.run = secrets.token_hex(4)
        self._seq = itertools.count(1)
        #: Identities taken over from another live instance whose presence
        #: here is not echoed yet: a command read for one now was routed
        #: before that presence, when the other instance held it and answers it.
        self.taken: set[str] = set()
        #: What other instances said of identities, pruned (:meth:`prune`).
        self._elsewhere: dict[str, Elsewhere] = {}
        #: Whether each other instance said last that it is up, and the run that said so.
        self._gateways: dict[str, bool] = {}
        self._up_runs: dict[str, object] = {}
        #: Runs of other instances whose last will came (and no "online"
        #: since), oldest first: a presence of such a run read afterwards
        #: (on the main connection, which the will did not come through) is
        #: gone too.
        self._dead: dict[tuple[str, object], bool] = {}
        #: How long a stopped instance's MQTT session keeps its commands.
        self._expiry = config.mqtt.session_expiry
        self._prune_at = PRUNE_MIN
        self._topic_in = TopicTemplate.parse(config.presence.topic.text, downstream=True)
        #: The subscription that brings every identity's presence.
        self.topic_filter = self._topic_in.subscription(self._values("", None), any_cid=True)
        #: The subscription that brings every instance's presence (and last will).
        self.gateway_filter = "/".join(
            "+" if "${" in level else level
            for level in config.presence.gateway_topic.text.split("/")
        )

    def _values(self, identity: str, version: str | None) -> dict[str, str]:
        return topic_values(self._gateway, identity, version)

    def identity_of(self, topic: str) -> str | None:
        """The identity whose presence ``topic`` is, if it is a presence topic."""
        return self._topic_in.charge_point_of(topic)

    def online(self, identity: str, version: str, peer: str) -> None:
        """``identity`` connected here now."""
        token = f"{self._gateway}/{self.run}/{next(self._connections)}"
        now = self._clock.seconds()
        here = self._here[identity] = Here(token, version, peer, now)
        seen = self._elsewhere.pop(identity, None)
        here.taken = seen is not None and self._holds(seen)
        if here.taken:
            self.taken.add(identity)
        else:
            self.taken.discard(identity)
        self._publish(identity, version, True)

    def offline(self, identity: str, version: str | None) -> None:
        """``identity``'s connection here is gone."""
        self._publish(identity, version, False)

    def registered(self, identity: str, status: str) -> None:
        """``identity``'s connection here got the backend's BootNotification answer ``status``."""
        here = self._here.get(identity)
        if here is not None and here.registration != status:
            here.registration = status
            self._publish(identity, here.version, True)

    def forget(self, identity: str) -> bool:
        """This instance holds nothing for ``identity`` any more; whether it did."""
        self.taken.discard(identity)
        return self._here.pop(identity, None) is not None

    def taken_over(self, identity: str) -> bool:
        """Whether this instance's connection of ``identity`` took it from another live one."""
        here = self._here.get(identity)
        return here is not None and here.taken

    def clear(self, identity: str, version: str | None) -> None:
        """Remove ``identity``'s retained presence (an empty retained message)."""
        topic = self._config.presence.topic.render(self._values(identity, version))
        self._mqtt.publish(topic, b"", self._qos, retain=True).addErrback(
            lambda f: _log.error(
                "presence of {cid} not cleared: {f}", cid=identity, f=f.getErrorMessage()
            )
        )

    def republish(self) -> None:
        """Publish the presence of every connection again (a broker that lost it)."""
        for identity, here in self._here.items():
            here.echoed = False
            self._publish(identity, here.version, True)

    def _publish(self, identity: str, version: str | None, online: bool) -> None:
        now = self._clock.seconds()
        here = self._here.get(identity)
        seq = next(self._seq)
        if here is not None:
            here.seq = seq
        body: dict[str, Any] = {
            "ChargePointId": identity,
            "Online": online,
            "Gateway": self._gateway,
            "Protocol": version,
            "Since": rfc3339(here.since if online and here is not None else now),
            "Run": self.run,
            "Seq": seq,
        }
        if online and here is not None:
            body.update(here.online_fields())
        self._publish_body(identity, version, body)

    def _publish_body(self, identity: str, version: str | None, body: dict[str, Any]) -> None:
        topic = self._config.presence.topic.render(self._values(identity, version))
        self._mqtt.publish(topic, json.dumps(body).encode(), self._qos, retain=True).addErrback(
            lambda f: _log.error(
                "presence of {cid} not published: {f}", cid=identity, f=f.getErrorMessage()
            )
        )

    def gateway(self, online: bool) -> tuple[str, bytes]:
        """The retained topic and payload saying whether this instance is up."""
        topic = self._config.presence.gateway_topic.render(self._values("", None))
        body = {
            "Gateway": self._gateway,
            "Online": online,
            "Since": rfc3339(self._clock.seconds()),
            "Run": self.run,
        }
        return topic, json.dumps(body).encode()

    def echoed(self, identity: str) -> bool:
        """Whether this run's presence for ``identity``'s connection here was routed back."""
        return (mine := self._here.get(identity)) is not None and mine.echoed

    def received(self, identity: str, payload: bytes, here: Session | None) -> bool:
        """
        A presence message for ``identity`` (``here``: its session on this
        instance).  True when a newer connection on another instance wins, so
        this instance must let go of ``here``.

        Newer is decided by the order in which the broker delivers presence
        (one topic, one order for every subscriber), never by comparing the
        clocks of two hosts: another instance's online presence that arrives
        after the echo of our own was published after ours.  Within one run
        of one instance, the sequence number orders its messages.
        """
        mine = self._here.get(identity)
        try:
            body = json.loads(payload)
            online, gateway = body["Online"], body["Gateway"]
        except (ValueError, KeyError, TypeError):
            # An empty retained message clears presence: if it cleared ours
            # while we hold the charge point, say so again.
            self._reassert(identity, mine, here)
            return False
        run, seq = body.get("Run"), body.get("Seq")
        if gateway == self._gateway:
            if body.get("CorrectedBy") is not None:
                # Another instance took this instance for dead (a broker
                # restart publishes every will): we are here.
                self._reassert(identity, mine, here)
            elif mine is not None and body.get("Connection") == mine.token:
                mine.echoed = True
                self.taken.discard(identity)
            elif online is True and here is None and run != self.run:
                # A presence left behind by an earlier run of this instance.
                self._publish(identity, body.get("Protocol"), False)
            return False
        if not isinstance(gateway, str):
            return False
        before = self._elsewhere.get(identity)
        if body.get("CorrectedBy") is not None:
            # Of exactly the presence it names; now retained: ours again if we hold it.
            if before and (before.gateway, before.run, before.seq) == (gateway, run, seq):
                before.gone = True
            self._reassert(identity, mine, here)
            return False
        elif before is not None and before.gateway == gateway and before.run == run:
            if isinstance(seq, int) and isinstance(before.seq, int) and seq < before.seq:
                return False  # an older message of the same run, delivered late
        elif online is not True and before is not None and before.online and not before.gone:
            # Another connection's online presence is newer than this offline one.
            self._reassert(identity, mine, here)
            return False
        seen = self._elsewhere[identity] = Elsewhere(
            gateway, online is True, self._clock.seconds(), run, seq
        )
        if len(self._elsewhere) > self._prune_at:
            # Amortised: identities come and go; only those online elsewhere stay.
            self.prune()
            self._prune_at = 2 * len(self._elsewhere) + PRUNE_MIN
        if self._dead and (gateway, run) in self._dead:
            # Its will was read first (on the catch-all's connection): as offline.
            self._gone(identity, seen, self._clock.seconds(), self._dead[(gateway, run)])
            online = False
        if online is not True:
            self._reassert(identity, mine, here)
            return False
        if here is None or mine is None or not mine.echoed:
            # Delivered before our own: ours is the newer, and the other
            # instance lets go when ours reaches it.
            return False
        _log.info(
            "{cid}: connected again through gateway {gw}; letting go here",
            cid=identity,
            gw=gateway,
        )
        return True

    def _reassert(self, identity: str, mine: Here | None, here: Session | None) -> None:
        """Something else landed on the retained presence of a charge point connected here."""
        if mine is not None and here is not None and here.connected:
            mine.echoed = False
            self._publish(identity, mine.version, True)

    def gateway_received(self, topic: str, payload: bytes) -> None:
        """
        Another instance's presence, or its last will: when it is gone, its
        charge points (those it last said it had in that run) are offline,
        and their retained presence says so.  Its presence "online" in the
        same run after its will: it is back (the broker went away, not it).
        """
        try:
            body = json.loads(payload)
            online, gateway = body["Online"], body["Gateway"]
        except (ValueError, KeyError, TypeError):
            return
        if gateway == self._gateway or not isinstance(gateway, str):
            return
        run = body.get("Run")
        if online is True or run is None or self._up_runs.get(gateway, run) == run:
            # Not an earlier run's will after its newer run's presence: that one is up.
            self._gateways[gateway] = online is True
        if online is True:
            self._up_runs[gateway] = run
            self._dead.pop((gateway, run), None)
            for seen in self._elsewhere.values():
                if seen.gone and seen.gateway == gateway:
                    # The same run is back; a next run answers what the
                    # earlier one kept up to here, the catch-all after it.
                    seen.gone = seen.run != run
                    seen.kept = False
            return
        if online is not False:
            return
        # A goodbye with no peer to hand over to: its session keeps the commands.
        kept = body.get("Handover") is False
        if run is not None:
            self._dead[(gateway, run)] = kept
            if len(self._dead) > DEAD_RUNS:
                del self._dead[next(iter(self._dead))]
        now = self._clock.seconds()
        for identity, seen in self._elsewhere.items():
            if seen.gateway == gateway and not seen.gone and (run is None or seen.run == run):
                self._gone(identity, seen, now, kept)

    def _gone(self, identity: str, seen: Elsewhere, now: float, kept: bool) -> None:
        """``seen``'s instance is gone: correct what it left retained (unless ours is newer)."""
        if seen.online and identity not in self._here:
            # Exactly that presence (its run and sequence number).
            self._publish_body(
                identity,
                None,
                {
                    "ChargePointId": identity,
                    "Online": False,
                    "Gateway": seen.gateway,
                    "Protocol": None,
                    "Since": rfc3339(now),
                    "Run": seen.run,
                    "Seq": seen.seq,
                    "CorrectedBy": self._gateway,
                },
            )
        seen.gone, seen.kept, seen.heard = True, kept, now

    def peers(self) -> bool:
        """Whether another instance said last that it is up (its catch-all answers)."""
        return any(self._gateways.values())

    def remembered(self) -> int:
        """How many identities this instance remembers what other instances said of."""
        return len(self._elsewhere)

    def held_elsewhere(self, identity: str) -> bool:
        """Whether another live instance said last that it has ``identity``."""
        seen = self._elsewhere.get(identity)
        return seen is not None and seen.online and not seen.gone

    def unclaimed(self, identity: str) -> bool:
        """Whether no other instance has ``identity``, nor had it within ``offline_ttl``."""
        seen = self._elsewhere.get(identity)
        if seen is None:
            return True
        if seen.gone:
            # Kept for its next run: until the broker drops its session.
            return not seen.kept or self._clock.seconds() - seen.heard >= self._expiry
        if self._holds(seen):
            return False
        del self._elsewhere[identity]
        return True

    def _holds(self, seen: Elsewhere) -> bool:
        """Whether ``seen``'s instance is connected to it, or in its grace period there."""
        ttl = self._config.downstream.offline_ttl
        return not seen.gone and (seen.online or self._clock.seconds() - seen.heard < ttl)

    def prune(self) -> int:
        """
        Forget what other instances said of identities that went offline more
        than ``offline_ttl`` ago (or whose instance died): what is remembered
        stays bounded by the identities online elsewhere.  Returns how many.
        """
        now = self._clock.seconds()
        ttl = self._config.downstream.offline_ttl
        stale = [
            identity
            for identity, seen in self._elsewhere.items()
            if (seen.gone or not seen.online)
            and now - seen.heard >= (self._expiry if seen.kept else ttl)
        ]
        for identity in stale:
            del self._elsewhere[identity]
        return len(stale)
