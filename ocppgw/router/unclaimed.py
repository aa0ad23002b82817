# -*- test-case-name: tests.unit.router.test_exactly_once_presence,tests.unit.router.test_router -*-
"""
Downstream messages no session of this instance claims, and who answers them.

- The catch-all (``[dnstream] offline_group``, a shared subscription, on a
  connection of its own or tagged :data:`CATCH_ALL`) answers a message
  ``Offline`` only when no instance has its charge point or had it within
  ``offline_ttl`` (:meth:`ocppgw.router.presence.Presence.unclaimed`).
- Its copy of a message for a charge point held here whose own subscription
  has delivered nothing yet is delivered itself unless the twin comes that
  way within :data:`TWIN_WAIT` (the session knows a duplicate).
- After each connect, "no instance has it" is not decided until the retained
  presence is read back (the echo of this instance's gateway presence), at
  most :data:`READ_WAIT`; at most :data:`MAX_HELD` messages wait for it.
- The subscriptions an earlier run under the same ``[gateway] id`` left in
  the resumed MQTT session: :mod:`ocppgw.router.earlier`.
- What that session replays is in the broker's routing order, the earlier
  run's last will (or goodbye) among the commands: a command on such a
  subscription routed before it was that run's to answer (the catch-all of
  every instance took the charge point for held), and is answered here; one
  routed after it was answered by a live peer's catch-all, and only when no
  peer is up is it answered here.
- A catch-all copy for a charge point no instance holds waits for a holder
  a moment, then is answered Offline: :mod:`ocppgw.router.offline`.
- The broker took this instance for dead (its own last will: a stall past
  1.5 x keepalive, a broker restart): until its gateway presence is routed
  again, peers' catch-alls answer for its charge points; what its resumed
  session replays after its own will is theirs (with no peer up, it is
  delivered here), and a copy its own catch-all reads then is answered as a
  peer's would be.

Every such message gets one answer (``Offline``, or ``Invalid`` when it cannot
be read), never none and never two.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Set
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ocppgw.interfaces import IMQTTClient
from ocppgw.router.answers import Answers
from ocppgw.router.earlier import Earlier
from ocppgw.router.offline import Offline
from ocppgw.router.presence import Presence
from ocppgw.router.topics import compile_filter
from ocppgw.session.rules import Session

if TYPE_CHECKING:
    from ocppgw.config import Config

_log = Logger()

#: MQTT 5 subscription identifiers: the shared catch-all, and the per-charge
#: point subscriptions (so a copy that matched both is never taken for the
#: catch-all's alone).
CATCH_ALL = 1
PER_CHARGE_POINT = 2

#: After each connect to the broker, how long at most "no instance has it"
#: decisions wait for the retained presence to be read back (the echo of
#: this instance's own gateway presence, published after subscribing).
READ_WAIT = 2.0

#: How long the catch-all's copy of a message for a charge point whose own
#: subscription has delivered nothing yet waits for its twin from that
#: subscription before it is delivered itself.
TWIN_WAIT = 0.5

#: At most this many downstream messages wait for that decision; beyond it
#: they are decided at once.
MAX_HELD = 10_000

#: What a held message is: a per-charge point copy, one routed after the
#: earlier run's will (in a resumed session's replay), or a catch-all copy.
_OWN, _AFTER_WILL, _COPY = 0, 1, 2


class Unclaimed:
    """The router's downstream messages that no session here takes at once."""

    def __init__(
        self,
        config: Config,
        mqtt: IMQTTClient,
        clock: IReactorTime,
        presence: Presence,
        sessions: Mapping[str, Session],
        unproven: Set[str],
        subscriptions: Mapping[str, str],
        values: Callable[[str, str | None], dict[str, str]],
        deliver: Callable[[str, Session, str, bytes], None],
        answers: Answers,
        catch_all: IMQTTClient | None,
    ) -> None:
        self._mqtt = mqtt
        self._clock = clock
        self._presence = presence
        #: The router's sessions, and its identities whose per-charge point
        #: subscription has delivered nothing yet (read here, kept there).
        self._sessions = sessions
        self._unproven = unproven
        self._values = values
        self._deliver = deliver
        self._answers = answers
        dn = config.downstream.topic
        self._dn = dn
        dn_any = dn.template.subscription(values("", None), any_cid=True)
        self._is_gateway = compile_filter(presence.gateway_filter)
        self._is_downstream = compile_filter(dn_any)
        #: Catch-all copies waiting for their twin from the per-charge point
        #: subscription (:data:`TWIN_WAIT`).
        self.parked: dict[tuple[str, bytes], IDelayedCall] = {}
        #: Until the retained presence is read after a connect: the gateway
        #: presence whose echo ends the wait, and the decisions waiting.
        self._announced: bytes | None = None
        #: Whether the retained presence is still to be read: from the start
        #: when the catch-all has a connection of its own (it may get copies
        #: before the main connection is up), and after each connect.
        self._unread = catch_all is not None and bool(config.downstream.offline_group)
        self._held: list[tuple[str, bytes, int]] = []
        self._reading: IDelayedCall | None = None
        #: Whether the catch-all's own connection reads the gateway presence.
        self.reads_gateways = False
        #: Whether this connection delivered an earlier run's last will (or
        #: goodbye) of this ``[gateway] id`` since it connected: what follows
        #: on that run's subscriptions was routed after peers knew it gone.
        self.old_run_gone = False
        #: Whether that was a goodbye handing over to the peers' catch-all.
        self.handed_over = False
        #: Whether this run's own last will came since our gateway presence
        #: was last routed: the broker took this instance for dead (a stall
        #: past 1.5 x keepalive, a broker restart), so what is read now was
        #: routed when peers answered for its charge points.  As the main
        #: connection reads it, and as the catch-all's own connection does.
        self.gone_here = False
        self._gone_read = False
        #: Whether a per-charge point message may be one to hold or leave
        #: (the first reading is not done, or ``gone_here``).
        self.replaying = True
        self._own_topic = presence.gateway(True)[0]
        #: Whether each other instance is up, by gateway topic, as the main
        #: connection last read it.
        self.peers: dict[str, bool] = {}
        #: The subscriptions an earlier run of this ``[gateway] id`` left.
        self.earlier = Earlier(config, mqtt, values, subscriptions)
        #: Catch-all copies for identities no instance holds, waiting for a holder.
        self.offline = Offline(config, mqtt, clock, presence, sessions, answers)
        qos = config.mqtt.qos
        group = config.downstream.offline_group
        if group and catch_all is not None:
            # A connection of its own, keeping no session: when this instance
            # dies, the broker drops it from the group at once instead of
            # queueing the dead instance's share of the messages.
            # It reads the instances' presence (and last wills) itself: in the
            # order the broker routed them between the downstream messages,
            # so "that instance is gone" is decided between the same messages
            # as on the instance that went (a command routed before a
            # gateway's goodbye is that gateway's to answer, one after is
            # the catch-all's).
            self.reads_gateways = True
            catch_all.set_message_handler(self._catch_all_received)
            catch_all.subscribe(presence.gateway_filter, qos)
            catch_all.subscribe(f"$share/{group}/{dn_any}", qos)
        elif group and mqtt.supports_identifiers:
            # One instance of the group gets each downstream message, and
            # answers it when no instance has that charge point.
            mqtt.subscribe(f"$share/{group}/{dn_any}", qos, CATCH_ALL)

    # --- the retained presence, read after each connect ---

    def announced(self, payload: bytes) -> None:
        """
        The gateway presence ``payload`` is published after the subscriptions
        were (re)made: its echo comes after the retained presence they bring,
        so until then (at most :data:`READ_WAIT`) "no instance has it" waits.
        """
        self._announced = payload
        self._unread = True
        self.old_run_gone = self.handed_over = False
        if self._reading is not None and self._reading.active():
            self._reading.reset(READ_WAIT)
        else:
            self._reading = self._clock.callLater(READ_WAIT, self._presence_read)

    def echo(self, payload: bytes) -> bool:
        """Whether ``payload`` is the echo of the announced presence (the wait ends)."""
        if self._announced is None or payload != self._announced:
            return False
        self._presence_read()
        return True

    def _presence_read(self) -> None:
        """The retained presence is read (or READ_WAIT passed): decide what waited."""
        if self._reading is not None and self._reading.active():
            self._reading.cancel()
        self._reading = None
        announced, self._announced = self._announced is not None, None
        self._unread = False
        held, self._held = self._held, []
        for topic, payload, kind in held:
            if kind == _COPY:
                self.copy(topic, payload)
            else:
                after = kind == _AFTER_WILL or self.handed_over
                self._decide(topic, payload, after and any(self.peers.values()))
        if announced:
            self.earlier.replayed = True  # what the session kept came before
        self.gone(False)

    def gone(self, gone: bool) -> None:
        """
        The main connection read this run's own will (True), or its gateway
        presence (False: routed again; copies waiting for us go to us now).
        """
        self.gone_here = gone
        self.replaying = gone or not self.earlier.replayed
        if not gone:
            self.offline.back()

    def _taken_for_gone(self) -> bool:
        """Whether a catch-all copy read now was routed while peers answered for this instance."""
        gone = self._gone_read if self.reads_gateways else self.gone_here
        return gone and any(self.peers.values())

    def hold(self, topic: str, payload: bytes, kind: int) -> bool:
        """Whether an "absent" decision waits until the retained presence is read."""
        if not self._unread or len(self._held) >= MAX_HELD:
            return False
        self._held.append((topic, payload, kind))
        if self._reading is None:
            # Not connected yet: bounded all the same.
            self._reading = self._clock.callLater(READ_WAIT, self._presence_read)
        return True

    def leave(self) -> None:
        """The gateway stops: decide everything that waits now (answered Shutdown or Offline)."""
        for key in list(self.parked):
            self.parked[key].cancel()
            self._unpark(key)
        if self._reading is not None:
            self._presence_read()
        self.offline.leave()

    # --- a per-charge point subscription, for a charge point not held here ---

    def absent(self, identity: str, topic: str, payload: bytes) -> None:
        """A message on a per-charge point subscription of a charge point not held here."""
        if self._presence.held_elsewhere(identity):
            # A copy still on its way after we let go: the instance that
            # has the charge point now answers it.
            return
        if self.earlier.live(identity, topic):
            return  # routed live on a subscription an earlier run left: the catch-all's
        if self.old_run_gone:
            if self.hold(topic, payload, _AFTER_WILL):
                return
            if self.earlier.left(identity) and any(self.peers.values()):
                return  # on a subscription the earlier run left: a peer's catch-all answered
        elif self.hold(topic, payload, _OWN):
            return
        self.offline.answer(identity, topic, payload, "charge point is not connected")

    def replayed_here(self, topic: str, payload: bytes) -> bool:
        """
        Whether a message for a charge point held here waits for the first reading of the
        retained presence: the resumed session's replay may have routed it after the earlier
        run's will or handover goodbye, when a peer's catch-all answered it (a live one that
        waits too was published again for its holder by that catch-all, or answered).
        """
        if self.gone_here:
            # Routed after our own will: with a peer up, the catch-all that
            # got its copy answers it (or passes it on when we are back).
            return any(self.peers.values())
        if self._announced is None:
            return False  # not connected yet
        identity = self._dn.template.charge_point_of(topic)
        if identity is not None and self._presence.echoed(identity):
            # Routed after the echo of this run's presence for it: peers knew
            # this run held it (their catch-all left it alone): this run's.
            return False
        return self.hold(topic, payload, _AFTER_WILL if self.old_run_gone else _OWN)

    def _decide(self, topic: str, payload: bytes, answered: bool) -> None:
        """
        A per-charge point message held until the retained presence was read:
        ``answered`` when the resumed session replayed it after the earlier
        run's will with a peer up (routed while this run did not hold the
        charge point, so a peer's catch-all answered it, or published it
        again for its new holder).
        """
        identity = self._dn.template.charge_point_of(topic)
        if answered or identity is None:
            return
        session = self._sessions.get(identity)
        if session is not None:
            # Straight to it (stopping: answered Shutdown even after the goodbye's echo).
            self._deliver(identity, session, topic, payload)
        elif self._presence.held_elsewhere(identity):
            # Routed to the earlier run (its holder then), maybe before the new
            # holder subscribed: passed on to it (a session drops a copy it has).
            self.offline.pass_on(identity, topic, payload)
        else:
            self.offline.answer(identity, topic, payload, "charge point is not connected")

    # --- the catch-all ---

    def _catch_all_received(self, topic: str, payload: bytes, identifiers: tuple[int, ...]) -> None:
        """A message on the catch-all's own connection: a gateway presence, or a copy."""
        if self._is_gateway(topic):
            self._presence.gateway_received(topic, payload)
            if topic == self._own_topic:
                self._own_read(payload)
            if not self._is_downstream(topic):
                return
        self.copy(topic, payload)

    def _own_read(self, payload: bytes) -> None:
        """This instance's own gateway presence or will, as the catch-all's connection reads it."""
        try:
            body = json.loads(payload)
            gone = body["Online"] is False and body.get("Run") == self._presence.run
        except (ValueError, KeyError, TypeError):
            return
        if "Handover" in body:
            return  # our goodbye: this connection left the group before it
        self._gone_read = gone
        if not gone:
            self.offline.back()

    def copy(self, topic: str, payload: bytes) -> None:
        """
        The catch-all copy of a downstream message: answer it Offline unless
        some instance (this one included) has the charge point, or had it
        within ``offline_ttl`` and so still holds its subscription.
        """
        identity = self._dn.template.charge_point_of(topic)
        if identity is None:
            return
        if identity in self._sessions:
            if self._taken_for_gone():
                # Answered as a peer's catch-all would (this instance's session
                # leaves what it reads after its own will to the catch-alls).
                self.offline.wait(identity, topic, payload)
                return
            key = (topic, payload)
            unproven = identity in self._unproven
            if unproven and key not in self.parked and len(self.parked) < MAX_HELD:
                # Its own subscription may not have been taken when this was
                # published: unless its twin comes that way, deliver this one.
                self.parked[key] = self._clock.callLater(TWIN_WAIT, self._unpark, key)
            return
        if not self._presence.unclaimed(identity) or self.hold(topic, payload, _COPY):
            return
        self.offline.wait(identity, topic, payload)

    def twin(self, topic: str, payload: bytes) -> None:
        """The charge point's own subscription delivered this: its parked copy is not needed."""
        twin = self.parked.pop((topic, payload), None)
        if twin is not None:
            twin.cancel()

    def _unpark(self, key: tuple[str, bytes]) -> None:
        """The catch-all's copy had no twin: it was published before the subscription took."""
        del self.parked[key]
        topic, payload = key
        identity = self._dn.template.charge_point_of(topic)
        session = self._sessions.get(identity) if identity is not None else None
        if session is not None and identity is not None:
            if self._presence.taken_over(identity):
                return  # routed before the subscription took: the instance it moved from answers
            self._deliver(identity, session, topic, payload)
        else:
            self.copy(topic, payload)
