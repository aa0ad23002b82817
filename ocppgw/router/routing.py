# -*- test-case-name: tests.unit.router.test_router,tests.unit.session.test_lifecycle -*-
"""
The router: topics and codecs between the sessions and the MQTT client.

Upstream it renders the topic an envelope goes to (CALL and SEND: ``[upstream]
topic`` or the Action's override; CALLRESULT: ``reply_topic``; CALLERROR and
CALLRESULTERROR: ``error_topic``) and encodes it with that topic's codec.
Downstream it holds one subscription per charge point it has (connected, or
in its offline grace period: ``[dnstream] offline_ttl``), finds the session a
message is for, and decodes it with ``[dnstream] codec``.  Whatever cannot be
delivered is answered with an error envelope, never dropped.
Which instance holds an identity, and when the catch-all answers for one, is
:mod:`ocppgw.router.presence`'s to decide.  Topic names: :mod:`ocppgw.router.topics`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ocppgw.interfaces import NO_EVENTS, IGatewayEvents, IMQTTClient, IRouter
from ocppgw.ocpp.envelope import ORIGIN_GATEWAY, CodecError, DecodeContext, Envelope, GatewayError
from ocppgw.ocpp.messages import Call, CallError, CallResult, Send, unique_id_of
from ocppgw.ocpp.versions import OCPP21
from ocppgw.router import codecs
from ocppgw.router.presence import Presence, topic_values
from ocppgw.router.topics import TopicNames, compile_filter, shard, topic_matches
from ocppgw.session.exchanges import rfc3339
from ocppgw.session.owed import Owed
from ocppgw.session.rules import Session

if TYPE_CHECKING:
    # The stages read the typed configuration they are handed; config/ is above them.
    from ocppgw.config import Config, Topic

#: MQTT 5 subscription identifiers: the shared catch-all, and the per-charge
#: point subscriptions (so a copy that matched both is never taken for the
#: catch-all's alone).
CATCH_ALL = 1
PER_CHARGE_POINT = 2

#: The smallest share of the MQTT buffer a charge point gets (:meth:`Router.share`).
MIN_SHARE = 16

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

_log = Logger()


class ShareFull(Exception):
    """A charge point already has its share of the MQTT buffer waiting."""


@implementer(IRouter)
class Router:
    """Sessions by identity, and the topics between them and the broker."""

    events: IGatewayEvents = NO_EVENTS

    def __init__(
        self,
        config: Config,
        mqtt: IMQTTClient,
        clock: IReactorTime,
        catch_all: IMQTTClient | None = None,
    ) -> None:
        self._config = config
        self._mqtt = mqtt
        self._qos = config.mqtt.qos
        self._sessions: dict[str, Session] = {}
        self._subscriptions: dict[str, str] = {}
        self._clock = clock
        self._presence = Presence(config, mqtt, clock)
        #: Publishes waiting for the broker's acknowledgement, per charge point.
        self._waiting: dict[str, int] = {}
        self._names = TopicNames(self._values)
        #: Why downstream CALLs are refused now (the gateway is stopping), if they are.
        self._stopping: str | None = None
        #: Error envelopes about charge points no session holds, not published yet.
        self._owed = Owed(clock, self.publish, "router")
        self._dn = config.downstream.topic
        self._dn_codec = codecs.get(self._dn.codec)
        self._dn_any = self._dn.template.subscription(self._values("", None), any_cid=True)
        #: Identities whose per-charge point subscription has delivered
        #: nothing yet: the broker may not have taken it, so the catch-all's
        #: copy is theirs to deliver (the session knows a duplicate).
        self._unproven: set[str] = set()
        self._parked: dict[tuple[str, bytes], IDelayedCall] = {}
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
        self._catch_all_reads = False
        #: Stopping: the goodbye (gateway offline) published, and whether its
        #: echo came back (after it, the catch-all answers for our charge points).
        self._goodbye: bytes | None = None
        self._gone = False
        #: Stopping with another instance up: it takes over the answers.
        self._handover = False
        self._pruning: IDelayedCall | None = None
        # Every message is checked against these three; compiled once.
        self._is_presence = compile_filter(self._presence.topic_filter)
        self._is_gateway = compile_filter(self._presence.gateway_filter)
        self._is_downstream = compile_filter(self._dn_any)
        mqtt.set_message_handler(self.message_received)
        mqtt.subscribe(self._presence.topic_filter, self._qos)
        mqtt.subscribe(self._presence.gateway_filter, self._qos)
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
            self._catch_all_reads = True
            catch_all.set_message_handler(self._catch_all_received)
            catch_all.subscribe(self._presence.gateway_filter, self._qos)
            catch_all.subscribe(f"$share/{group}/{self._dn_any}", self._qos)
        elif group and mqtt.supports_identifiers:
            # One instance of the group gets each downstream message, and
            # answers it when no instance has that charge point.
            mqtt.subscribe(f"$share/{group}/{self._dn_any}", self._qos, CATCH_ALL)

    # --- sessions ---

    def session(self, identity: str) -> Session | None:
        """The session of ``identity``, connected or in its offline grace period."""
        return self._sessions.get(identity)

    def attach(self, session: Session, peer: str = "") -> None:
        """
        Route ``identity``'s downstream messages to ``session``.

        A session the identity already has is replaced: its socket is closed
        (reason "replaced"), and the CALLs queued for it move over.
        """
        identity = session.identity
        old = self._sessions.get(identity)
        self._sessions[identity] = session
        if old is not None:
            session.adopt(old)
        # The version is the connection's, never the identity's: a charge
        # point back with another version gets that version's topic.
        topic_filter = self._dn.template.subscription(self._values(identity, session.version))
        held = self._subscriptions.get(identity)
        if held != topic_filter:
            if held is not None:
                self._mqtt.unsubscribe(held)
            self._subscriptions[identity] = topic_filter
            self._unproven.add(identity)
            self._mqtt.subscribe(topic_filter, self._qos, PER_CHARGE_POINT)
        self._presence.online(identity, session.version, peer)

    def detach(self, session: Session) -> None:
        """
        ``session``'s connection is gone: its presence goes offline.  Its
        downstream topic stays until the session's grace period ends
        (:meth:`release`); CALLs arriving then wait for a reconnection.
        """
        if self._sessions.get(session.identity) is session:
            self._presence.offline(session.identity, session.version)

    def release(self, session: object) -> None:
        """Forget ``session`` (expired, or moved to another instance) if it is current."""
        identity = getattr(session, "identity", None)
        if identity is None or self._sessions.get(identity) is not session:
            return
        del self._sessions[identity]
        if self._presence.forget(identity) and self._stopping is None:
            # Its grace period ended here (not moved: the other instance's
            # presence is on the topic now): nothing is left behind.
            self._presence.clear(identity, getattr(session, "version", None))
        self._unproven.discard(identity)
        topic_filter = self._subscriptions.pop(identity, None)
        if topic_filter is not None:
            self._mqtt.unsubscribe(topic_filter)

    def goodbye(self) -> tuple[str, bytes]:
        """
        The gateway's offline presence, to publish when stopping; a downstream
        message delivered after its echo is left to the other instances'
        catch-all (:meth:`said_goodbye` tells when the echo came).
        """
        topic, payload = self._presence.gateway(False)
        self._handover = self._presence.peers()
        if self._handover:
            self._goodbye = payload
        return topic, payload

    def said_goodbye(self) -> bool:
        """
        Whether the broker delivered this instance's goodbye back to it (with
        no other instance up: nothing to wait for; it answers until it leaves).
        """
        return self._gone or not self._handover

    def leave(self) -> None:
        """
        The gateway stops, after its goodbye: with another instance up, take
        no more downstream messages (its catch-all answers them); alone, keep
        the subscriptions, so a kept MQTT session queues what comes for the
        next run.
        """
        if self._pruning is not None and self._pruning.active():
            self._pruning.cancel()
        self._pruning = None
        for key in list(self._parked):
            self._parked[key].cancel()
            self._unpark(key)  # answered Shutdown now
        if self._reading is not None:
            self._presence_read()
        if not self._handover:
            return
        for identity in list(self._subscriptions):
            self._mqtt.unsubscribe(self._subscriptions.pop(identity))
        self._unproven.clear()

    def sessions(self) -> list[Session]:
        """Every session, connected or in its offline grace period."""
        return list(self._sessions.values())

    def connected(self) -> list[Session]:
        """Every session whose charge point is connected now (open or closing)."""
        return [s for s in self._sessions.values() if s.connected]

    def gateway_presence(self, online: bool) -> tuple[str, bytes]:
        """The retained topic and payload saying whether this instance is up."""
        return self._presence.gateway(online)

    def shutting_down(self, why: str) -> None:
        """
        The gateway stops: every downstream CALL queued or in flight, and every
        one that arrives from now on, is answered Shutdown; answers to the
        charge points' CALLs are still delivered.
        """
        self._stopping = why
        for session in self.sessions():
            session.shutdown(why)

    def owed(self) -> int:
        """Error envelopes whose publish failed and that wait to be published again."""
        return len(self._owed) + sum(s.owed() for s in self._sessions.values())

    def prune(self) -> int:
        """Forget what other instances said of identities long gone (bounded memory)."""
        return self._presence.prune()

    def _prune_tick(self) -> None:
        self._pruning = None
        pruned = self.prune()
        if pruned:
            _log.debug("forgot the presence of {n} identities gone elsewhere", n=pruned)
        self._schedule_prune()

    def _schedule_prune(self) -> None:
        if self._pruning is None and self._stopping is None:
            every = max(1.0, self._config.downstream.offline_ttl)
            self._pruning = self._clock.callLater(every, self._prune_tick)

    def remembered_elsewhere(self) -> int:
        """Identities of other instances this router keeps presence of (pruned)."""
        return self._presence.remembered()

    def announce(self) -> None:
        """
        This instance and its charge points are here: after each connect to
        the broker, which may have lost every retained message and session.
        """
        topic, payload = self._presence.gateway(True)
        # Published after the subscriptions were (re)made: its echo comes
        # after the retained presence they bring, so until then (at most
        # READ_WAIT) "no instance has it" is not decided.
        self._announced = payload
        self._unread = True
        if self._reading is not None and self._reading.active():
            self._reading.reset(READ_WAIT)
        else:
            self._reading = self._clock.callLater(READ_WAIT, self._presence_read)
        self._mqtt.publish(topic, payload, 1, retain=True).addErrback(
            lambda f: _log.error("gateway presence not published: {f}", f=f.getErrorMessage())
        )
        self._presence.republish()
        self._schedule_prune()

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
                self._unclaimed(topic, payload)
            else:
                self.message_received(topic, payload)

    # --- upstream ---

    def _values(self, identity: str, version: str | None, message: object = None) -> dict[str, str]:
        values = topic_values(self._config.gateway_id, identity, version)
        shards = self._config.upstream.shards
        values["shard"] = shard(identity, shards) if shards > 1 else "0"
        if message is not None:
            values["action"] = getattr(message, "action", None) or ""
            values["type"] = str(int(message.message_type))  # type: ignore[attr-defined]
            values["id"] = message.unique_id  # type: ignore[attr-defined]
        return values

    def topic_of(self, envelope: Envelope) -> Topic:
        """The topic (template and codec) that ``envelope`` is published on."""
        message = envelope.message
        up = self._config.upstream
        if isinstance(message, (Call, Send)):  # a tuple: isinstance of a union is slower
            return up.call_topic(message.action)
        if type(message) is CallResult:
            return up.reply
        return up.error

    def share(self) -> int:
        """
        How many publishes one charge point may have waiting for the broker:
        an equal part of ``[mqtt] max_buffer`` for each charge point held, so
        that a flood cannot fill the buffer for the others (at least
        :data:`MIN_SHARE`, never more than the buffer).
        """
        buffer = self._config.mqtt.max_buffer
        return min(buffer, max(MIN_SHARE, buffer // max(1, len(self._sessions))))

    def publish(self, envelope: Envelope) -> Deferred[None]:
        self.events.published(envelope)
        topic = self.topic_of(envelope)
        cid = envelope.charge_point or ""
        name = self._names.name(topic.template, cid, envelope.version, envelope.message)
        waiting = self._waiting.get(cid, 0)
        if cid and waiting and waiting >= self.share():  # share() >= 1: max_buffer >= 1
            return fail(
                ShareFull(
                    f"{cid}'s share of the MQTT buffer is full ({waiting} messages waiting "
                    "for the broker)"
                )
            )
        try:
            payload = codecs.get(topic.codec).encode(envelope)
        except Exception as e:  # a codec bug must not take the session down
            _log.failure("encoding for {topic} failed", topic=name)
            return fail(e)
        d = self._mqtt.publish(name, payload, self._qos)
        if not d.called and cid:
            self._waiting[cid] = waiting + 1
            d.addBoth(self._acknowledged, cid)
        return d

    def _acknowledged(self, result: object, cid: str) -> object:
        left = self._waiting.get(cid, 1) - 1
        if left > 0:
            self._waiting[cid] = left
        else:
            self._waiting.pop(cid, None)
        return result

    def publish_invalid(self, charge_point: str, version: str, frame: str) -> None:
        template = self._config.upstream.invalid
        if template is None:
            return
        topic = template.render(self._values(charge_point, version))
        self._mqtt.publish(topic, frame.encode("utf-8"), self._qos).addErrback(
            lambda f: _log.error("invalid frame not published: {f}", f=f.getErrorMessage())
        )

    # --- downstream ---

    def message_received(
        self, topic: str, payload: bytes, identifiers: tuple[int, ...] = ()
    ) -> None:
        """A message arrived on a downstream or presence topic."""
        if self._is_presence(topic):
            identity = self._presence.identity_of(topic)
            if identity is not None:
                here = self._sessions.get(identity)
                if self._presence.received(identity, payload, here) and here is not None:
                    # Let go at once: no offline presence over the other
                    # instance's online one, nothing held for a reconnection.
                    self.events.takeover(identity, across=True)
                    self._presence.forget(identity)  # the retained presence is theirs now
                    here.moved()
                elif here is None and identity not in self._subscriptions:
                    self._drop_left_behind(identity, payload)
            if not self._is_downstream(topic):
                return
        if self._is_gateway(topic):
            if self._announced is not None and payload == self._announced:
                self._presence_read()
            elif self._goodbye is not None and payload == self._goodbye:
                self._gone = True
            elif not self._catch_all_reads:
                self._presence.gateway_received(topic, payload)
            if not self._is_downstream(topic):
                return
        if self._gone:
            # Routed after our goodbye: the catch-all of another instance
            # answers it (Offline), so this instance must not.
            return
        if CATCH_ALL in identifiers and PER_CHARGE_POINT not in identifiers:
            self._unclaimed(topic, payload)
            return
        identity = self._dn.template.charge_point_of(topic)
        if identity is None:
            _log.warn("message on {topic} matches no downstream topic", topic=topic)
            return
        session = self._sessions.get(identity)
        topic_filter = self._subscriptions.get(identity)
        if session is None or topic_filter is None or not topic_matches(topic_filter, topic):
            if self._presence.held_elsewhere(identity):
                # A copy still on its way after we let go: the instance that
                # has the charge point now answers it.
                return
            if self._hold(topic, payload, False):
                return
            self._answer_offline(identity, topic, payload, "charge point is not connected")
            return
        if self._unproven:
            self._unproven.discard(identity)
        if self._parked:
            twin = self._parked.pop((topic, payload), None)
            if twin is not None:
                twin.cancel()
        self._deliver(identity, session, topic, payload)

    def _deliver(self, identity: str, session: Session, topic: str, payload: bytes) -> None:
        """A downstream message for a session held here."""
        try:
            envelope = self._dn_codec.decode(payload, session.decode_context)
        except CodecError as e:
            self._reject(identity, session.version, e, topic, payload)
            return
        message = envelope.message
        if self._stopping is not None and isinstance(message, Call | Send):
            self._error(
                identity,
                session.version,
                message.unique_id,
                GatewayError.SHUTDOWN,
                self._stopping,
                message.action,
            )
            return
        try:
            session.envelope_received(envelope)
        except Exception as e:
            # A bug must not eat the message: the backend learns it failed.
            _log.failure("{cid}: handling a downstream message failed", cid=identity)
            self._error(
                identity,
                session.version,
                message.unique_id,
                GatewayError.INTERNAL,
                f"the gateway failed handling this message ({type(e).__name__}: {e}); "
                "it may not have been sent",
                getattr(message, "action", None),
            )

    def _drop_left_behind(self, identity: str, payload: bytes) -> None:
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

    def _catch_all_received(self, topic: str, payload: bytes, identifiers: tuple[int, ...]) -> None:
        """A message on the catch-all's own connection: a gateway presence, or a copy."""
        if self._is_gateway(topic):
            self._presence.gateway_received(topic, payload)
            if not self._is_downstream(topic):
                return
        self._unclaimed(topic, payload)

    def _unclaimed(self, topic: str, payload: bytes) -> None:
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
            if (
                identity in self._unproven
                and key not in self._parked
                and len(self._parked) < MAX_HELD
            ):
                # Its own subscription may not have been taken when this was
                # published: unless its twin comes that way, deliver this one.
                self._parked[key] = self._clock.callLater(TWIN_WAIT, self._unpark, key)
            return
        if not self._presence.unclaimed(identity) or self._hold(topic, payload, True):
            return
        self._answer_offline(
            identity, topic, payload, "charge point is not connected to any gateway"
        )

    def _unpark(self, key: tuple[str, bytes]) -> None:
        """The catch-all's copy had no twin: it was published before the subscription took."""
        del self._parked[key]
        topic, payload = key
        identity = self._dn.template.charge_point_of(topic)
        session = self._sessions.get(identity) if identity is not None else None
        if session is not None and identity is not None:
            self._deliver(identity, session, topic, payload)
        else:
            self._unclaimed(topic, payload)

    def _hold(self, topic: str, payload: bytes, catch_all: bool) -> bool:
        """Whether an "absent" decision waits until the retained presence is read."""
        if not self._unread or len(self._held) >= MAX_HELD:
            return False
        self._held.append((topic, payload, catch_all))
        if self._reading is None:
            # Not connected yet: bounded all the same.
            self._reading = self._clock.callLater(READ_WAIT, self._presence_read)
        return True

    def _answer_offline(self, identity: str, topic: str, payload: bytes, why: str) -> None:
        """Answer a downstream message for an absent charge point: Offline (or Invalid)."""
        try:
            # Any version's message types are possible for an unknown peer.
            message = self._dn_codec.decode(payload, DecodeContext(OCPP21)).message
        except CodecError as e:
            self._reject(identity, None, e, topic, payload)
            return
        self._error(
            identity,
            None,
            message.unique_id,
            GatewayError.OFFLINE,
            why,
            getattr(message, "action", None),
        )

    def _reject(
        self, identity: str, version: str | None, error: CodecError, topic: str, payload: bytes
    ) -> None:
        why = f"invalid downstream message on {topic}: {error}"
        _log.warn("{cid}: {why}", cid=identity, why=why)
        unique_id = error.unique_id or unique_id_of(payload) or "-1"
        action = error.action
        session = self._sessions.get(identity)
        if action is None and session is not None and error.unique_id is not None:
            action = session.action_of(error.unique_id)
        self._error(identity, version, unique_id, GatewayError.INVALID, why, action)

    def _error(
        self,
        identity: str,
        version: str | None,
        unique_id: str,
        code: GatewayError,
        description: str,
        action: str | None,
    ) -> None:
        envelope = Envelope(
            CallError(unique_id, code.value, description, {}, action),
            version=version,
            charge_point=identity,
            # Every envelope the gateway publishes carries when (README).
            timestamp=rfc3339(self._clock.seconds()),
            origin=ORIGIN_GATEWAY,
        )
        # No session holds these: the router owes them itself (never a log line alone).
        self._owed.publish(envelope)
