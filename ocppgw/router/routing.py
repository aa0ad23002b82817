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
Which instance holds an identity is :mod:`ocppgw.router.presence`'s to decide;
messages no session here takes at once are :mod:`ocppgw.router.unclaimed`'s, the
error envelopes :mod:`ocppgw.router.answers`', this instance's own presence
:mod:`ocppgw.router.instance`'s.  Topic names: :mod:`ocppgw.router.topics`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ocppgw import wire
from ocppgw.interfaces import NO_EVENTS, IGatewayEvents, IMQTTClient, IRouter
from ocppgw.ocpp.envelope import CodecError, Envelope, GatewayError
from ocppgw.ocpp.messages import Call, CallResult, Send
from ocppgw.router.answers import Answers
from ocppgw.router.awaited import Awaited
from ocppgw.router.directory import Directory
from ocppgw.router.instance import Instance
from ocppgw.router.presence import Presence
from ocppgw.router.topics import TopicNames, compile_filter, shard, topic_matches, topic_values
from ocppgw.router.unclaimed import CATCH_ALL, PER_CHARGE_POINT, Unclaimed
from ocppgw.session.rules import Session

if TYPE_CHECKING:
    # The stages read the typed configuration they are handed; config/ is above them.
    from ocppgw.config import Config, Topic

#: The smallest share of the MQTT buffer a charge point gets (:meth:`Router.share`).
MIN_SHARE = 16

_log = Logger()


class ShareFull(Exception):
    """A charge point already has its share of the MQTT buffer waiting."""


@implementer(IRouter)
class Router:
    """The topics between this instance's sessions and the broker."""

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
        #: The sessions of this instance, by identity: where charge points connect.
        self.directory = Directory(self, clock, self._route, self._went_offline)
        self._sessions = self.directory.by_identity
        #: Answers the admin API's CALLs wait for, handed over as they are published.
        self.awaited = Awaited()
        self._subscriptions: dict[str, str] = {}
        self._clock = clock
        self._presence = Presence(config, mqtt, clock)
        #: Publishes waiting for the broker's acknowledgement, per charge point.
        self._waiting: dict[str, int] = {}
        self._names = TopicNames(self._values)
        #: Why downstream CALLs are refused now (the gateway is stopping), if they are.
        self._stopping: str | None = None
        #: The error envelopes the router publishes itself (and still owes).
        self._answers = Answers(clock, self.publish, self._sessions)
        self._dn = config.downstream.topic
        self._dn_codec = wire.get(self._dn.codec)
        self._dn_any = self._dn.template.subscription(self._values("", None), any_cid=True)
        #: Identities whose per-charge point subscription has delivered
        #: nothing yet: the broker may not have taken it, so the catch-all's
        #: copy is theirs to deliver (the session knows a duplicate).
        self._unproven: set[str] = set()
        #: Stopping: whether the echo of our goodbye came back (after it, the
        #: catch-all of another instance answers for our charge points).
        self._gone = False
        # Every message is checked against these three; compiled once.
        self._is_presence = compile_filter(self._presence.topic_filter)
        self._is_gateway = compile_filter(self._presence.gateway_filter)
        self._is_downstream = compile_filter(self._dn_any)
        mqtt.set_message_handler(self.message_received)
        mqtt.subscribe(self._presence.topic_filter, self._qos)
        mqtt.subscribe(self._presence.gateway_filter, self._qos)
        #: Messages no session here takes at once (subscribes the catch-all).
        self._unclaimed = Unclaimed(
            config,
            mqtt,
            clock,
            self._presence,
            self._sessions,
            self._unproven,
            self._subscriptions,
            self._values,
            self._deliver,
            self._answers,
            catch_all,
        )
        # The hot path asks only whether a copy waits for its twin (the same dict).
        self._parked, self._taken = self._unclaimed.parked, self._presence.taken
        self._absent = self._unclaimed.offline.waiting  # and whether a copy waits for a holder
        #: Its own presence: announced after each connect, pruned, its goodbye.
        self._instance = Instance(config, mqtt, clock, self._presence, self._unclaimed)

    # --- sessions (held by :attr:`directory`) ---

    def _route(self, session: Session, peer: str) -> None:
        """``session`` holds its identity here now: its downstream topic, its presence."""
        identity = session.identity
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
        if self._absent:
            self._unclaimed.offline.claimed(identity)  # after the subscription: it gets them

    def _went_offline(self, session: Session) -> None:
        """
        ``session``'s connection is gone: its presence goes offline.  Its
        downstream topic stays until the session's grace period ends
        (:meth:`release`); CALLs arriving then wait for a reconnection.
        """
        self._presence.offline(session.identity, session.version)

    def registered(self, charge_point: str, status: str) -> None:
        """``charge_point``'s registration changed: its presence carries it (issue 25)."""
        self._presence.registered(charge_point, status)

    def release(self, session: object) -> None:
        """Forget ``session`` (expired, or moved to another instance) if it is current."""
        identity = self.directory.forget(session)
        if identity is None:
            return
        if self._presence.forget(identity) and self._stopping is None:
            # Its grace period ended here (not moved: the other instance's
            # presence is on the topic now): nothing is left behind.
            self._presence.clear(identity, getattr(session, "version", None))
        self._unproven.discard(identity)
        topic_filter = self._subscriptions.pop(identity, None)
        if topic_filter is not None:
            self._mqtt.unsubscribe(topic_filter)
            self._unclaimed.earlier.released(identity)  # a copy may still come on it

    def goodbye(self) -> tuple[str, bytes]:
        """
        The gateway's offline presence, to publish when stopping; a downstream message delivered
        after its echo is left to the others' catch-all (:meth:`said_goodbye`: the echo came).
        """
        return self._instance.goodbye()

    def said_goodbye(self) -> bool:
        """Whether our goodbye's echo came (alone: none to wait for; it answers until it leaves)."""
        return self._gone or not self._instance.handover

    def leave(self) -> None:
        """
        The gateway stops, after its goodbye: with another instance up, take
        no more downstream messages (its catch-all answers them); alone, keep
        the subscriptions, so a kept MQTT session queues what comes for the
        next run.
        """
        self._instance.leave()
        self._unclaimed.leave()  # what waits is answered Shutdown now
        if not self._instance.handover:
            return
        for identity in list(self._subscriptions):
            self._mqtt.unsubscribe(self._subscriptions.pop(identity))
        self._unproven.clear()

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
        self._instance.shutting_down()
        for session in self.directory.all():
            session.shutdown(why)

    def owed(self) -> int:
        """Error envelopes whose publish failed and that wait to be published again."""
        return len(self._answers) + sum(s.owed() for s in self._sessions.values())

    def catch_all_leaving(self) -> None:
        """The catch-all's own connection stops first: the main connection reads who is up now."""
        self._unclaimed.reads_gateways = False

    def remembered_elsewhere(self) -> int:
        """Identities of other instances this router keeps presence of (pruned)."""
        return self._presence.remembered()

    def announce(self) -> None:
        """
        This instance and its charge points are here: after each connect to
        the broker, which may have lost every retained message and session.
        """
        self._instance.announce()

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
        if self.awaited.waiting:
            self.awaited.published(envelope)
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
            payload = wire.get(topic.codec).encode(envelope)
        except Exception as e:  # a codec bug must not take the session down
            _log.failure("encoding for {topic} failed", topic=name)
            return fail(e)
        self.events.relayed(cid, True, name, payload, envelope.message)
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
                    self._unclaimed.earlier.drop(identity, payload)
                if self._absent and identity in self._absent:
                    self._unclaimed.offline.presence_of(identity)  # copies waiting: held now?
            if not self._is_downstream(topic):
                return
        if self._is_gateway(topic):
            if self._instance.gateway_received(topic, payload):
                self._gone = True
            if not self._is_downstream(topic):
                return
        if self._gone:
            # Routed after our goodbye: the catch-all of another instance
            # answers it (Offline), so this instance must not.
            return
        if CATCH_ALL in identifiers and PER_CHARGE_POINT not in identifiers:
            self._unclaimed.copy(topic, payload)
            return
        identity = self._dn.template.charge_point_of(topic)
        if identity is None:
            _log.warn("message on {topic} matches no downstream topic", topic=topic)
            return
        session = self._sessions.get(identity)
        topic_filter = self._subscriptions.get(identity)
        if session is None or topic_filter is None or not topic_matches(topic_filter, topic):
            self._unclaimed.absent(identity, topic, payload)
            return
        if self._taken and identity in self._taken:
            return  # routed before our presence for it: the instance it moved from answers it
        if self._unproven:
            self._unproven.discard(identity)
        if self._parked:
            self._unclaimed.twin(topic, payload)
        if self._unclaimed.replaying and self._unclaimed.replayed_here(topic, payload):
            return  # a resumed session's replay: held until the retained presence is read, or left
        self._deliver(identity, session, topic, payload)

    def _deliver(self, identity: str, session: Session, topic: str, payload: bytes) -> None:
        """A downstream message for a session held here."""
        try:
            envelope = self._dn_codec.decode(payload, session.decode_context)
        except CodecError as e:
            self.events.relayed(identity, False, topic, payload, None)
            self._answers.reject(identity, session.version, e, topic, payload)
            return
        message = envelope.message
        self.events.relayed(identity, False, topic, payload, message)
        if self._stopping is not None and isinstance(message, Call | Send):
            self._answers.error(
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
            self._answers.error(
                identity,
                session.version,
                message.unique_id,
                GatewayError.INTERNAL,
                f"the gateway failed handling this message ({type(e).__name__}: {e}); "
                "it may not have been sent",
                getattr(message, "action", None),
            )
