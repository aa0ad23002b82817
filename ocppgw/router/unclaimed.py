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
- The subscription an earlier run under the same ``[gateway] id`` left in the
  resumed MQTT session for a charge point this run does not hold is dropped,
  so its CALLs are not answered both here and by the catch-all.

Every such message gets one answer (``Offline``, or ``Invalid`` when it cannot
be read), never none and never two.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Set
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ocppgw.interfaces import IMQTTClient
from ocppgw.ocpp.envelope import CodecError, DecodeContext, GatewayError
from ocppgw.ocpp.versions import OCPP21
from ocppgw.router import codecs
from ocppgw.router.answers import Answers
from ocppgw.router.presence import Presence
from ocppgw.router.topics import compile_filter
from ocppgw.session.rules import Session

if TYPE_CHECKING:
    from ocppgw.config import Config

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

#: How long the catch-all's copy of a message for a charge point no instance
#: holds waits for an online presence of it (the holder may have subscribed
#: just before the message was routed, and published its presence just
#: after) before it is answered Offline.
OFFLINE_WAIT = 0.3

#: At most this many downstream messages wait for that decision; beyond it
#: they are decided at once.
MAX_HELD = 10_000


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
        values: Callable[[str, str | None], dict[str, str]],
        deliver: Callable[[str, Session, str, bytes], None],
        replay: Callable[[str, bytes], None],
        answers: Answers,
        catch_all: IMQTTClient | None,
    ) -> None:
        self._config = config
        self._mqtt = mqtt
        self._clock = clock
        self._presence = presence
        #: The router's sessions, and its identities whose per-charge point
        #: subscription has delivered nothing yet (read here, kept there).
        self._sessions = sessions
        self._unproven = unproven
        self._values = values
        self._deliver = deliver
        self._replay = replay
        self._answers = answers
        dn = config.downstream.topic
        self._dn = dn
        self._dn_codec = codecs.get(dn.codec)
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
        self._held: list[tuple[str, bytes, bool]] = []
        self._reading: IDelayedCall | None = None
        #: Whether the catch-all's own connection reads the gateway presence.
        self.reads_gateways = False
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
        self._announced = None
        self._unread = False
        held, self._held = self._held, []
        for topic, payload, catch_all in held:
            if catch_all:
                self.copy(topic, payload)
            else:
                self._replay(topic, payload)

    def hold(self, topic: str, payload: bytes, catch_all: bool) -> bool:
        """Whether an "absent" decision waits until the retained presence is read."""
        if not self._unread or len(self._held) >= MAX_HELD:
            return False
        self._held.append((topic, payload, catch_all))
        if self._reading is None:
            # Not connected yet: bounded all the same.
            self._reading = self._clock.callLater(READ_WAIT, self._presence_read)
        return True

    def leave(self) -> None:
        """The gateway stops: decide everything that waits now (answered Shutdown)."""
        for key in list(self.parked):
            self.parked[key].cancel()
            self._unpark(key)
        if self._reading is not None:
            self._presence_read()

    # --- the catch-all ---

    def _catch_all_received(self, topic: str, payload: bytes, identifiers: tuple[int, ...]) -> None:
        """A message on the catch-all's own connection: a gateway presence, or a copy."""
        if self._is_gateway(topic):
            self._presence.gateway_received(topic, payload)
            if not self._is_downstream(topic):
                return
        self.copy(topic, payload)

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
            key = (topic, payload)
            unproven = identity in self._unproven
            if unproven and key not in self.parked and len(self.parked) < MAX_HELD:
                # Its own subscription may not have been taken when this was
                # published: unless its twin comes that way, deliver this one.
                self.parked[key] = self._clock.callLater(TWIN_WAIT, self._unpark, key)
            return
        if not self._presence.unclaimed(identity) or self.hold(topic, payload, True):
            return
        self.answer_offline(
            identity, topic, payload, "charge point is not connected to any gateway"
        )

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
            self._deliver(identity, session, topic, payload)
        else:
            self.copy(topic, payload)

    # --- answers ---

    def answer_offline(self, identity: str, topic: str, payload: bytes, why: str) -> None:
        """Answer a downstream message for an absent charge point: Offline (or Invalid)."""
        try:
            # Any version's message types are possible for an unknown peer.
            message = self._dn_codec.decode(payload, DecodeContext(OCPP21)).message
        except CodecError as e:
            self._answers.reject(identity, None, e, topic, payload)
            return
        self._answers.error(
            identity,
            None,
            message.unique_id,
            GatewayError.OFFLINE,
            why,
            getattr(message, "action", None),
        )

    def drop_left_behind(self, identity: str, payload: bytes) -> None:
        """
        The presence of a charge point an earlier run of this instance (same
        ``[gateway] id``, so the same MQTT session, resumed) held and this run
        does not: drop that run's subscription for it from the session, so
        that its CALLs are not answered both here and by the catch-all.  What
        the session had queued for it was delivered (and answered) first.
        """
        try:
            body = json.loads(payload)
            gateway, version = body["Gateway"], body.get("Protocol")
        except (ValueError, KeyError, TypeError):
            return
        if gateway != self._config.gateway_id or not (version is None or isinstance(version, str)):
            return
        self._mqtt.unsubscribe(self._dn.template.subscription(self._values(identity, version)))
