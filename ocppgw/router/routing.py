"""
The router: topics and codecs between the sessions and the MQTT client.

Upstream it renders the topic an envelope goes to (CALL and SEND: ``[upstream]
topic`` or the Action's override; CALLRESULT: ``reply_topic``; CALLERROR and
CALLRESULTERROR: ``error_topic``) and encodes it with that topic's codec.
Downstream it holds one subscription per connected charge point, finds the
session a message is for, and decodes it with ``[dnstream] codec``.  Whatever
cannot be delivered is answered with an error envelope, never dropped.

It also keeps each identity's presence: a retained message per charge point
(online or offline, which gateway, since when), read back by every instance
sharing the broker so that the newest connection of an identity wins across
instances, and an offline grace period (``[dnstream] offline_ttl``) during
which the subscription stays and backend CALLs are held for a reconnection.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ocppgw.config import Config, Topic
from ocppgw.interfaces import IMQTTClient, IRouter
from ocppgw.ocpp.envelope import ORIGIN_GATEWAY, CodecError, DecodeContext, Envelope, GatewayError
from ocppgw.ocpp.messages import (
    Call,
    CallError,
    CallResult,
    Send,
)
from ocppgw.ocpp.versions import OCPP21
from ocppgw.router import codecs
from ocppgw.router.topics import TopicTemplate, topic_matches
from ocppgw.session.rules import Session, rfc3339

#: RFC 6455 close code for a connection replaced by a newer one.
CLOSE_REPLACED = 1000

#: MQTT 5 subscription identifiers: the shared catch-all, and the per-charge
#: point subscriptions (so a copy that matched both is never taken for the
#: catch-all's alone).
CATCH_ALL = 1
PER_CHARGE_POINT = 2

_log = Logger()


@implementer(IRouter)
class Router:
    """Sessions by identity, and the topics between them and the broker."""

    def __init__(self, config: Config, mqtt: IMQTTClient, clock: IReactorTime) -> None:
        self._config = config
        self._mqtt = mqtt
        self._clock = clock
        self._qos = config.mqtt.qos
        self._sessions: dict[str, Session] = {}
        self._subscriptions: dict[str, str] = {}
        self._expiry: dict[str, IDelayedCall] = {}
        #: When each identity's current connection was made (epoch seconds).
        self._since: dict[str, float] = {}
        #: What other instances said of identities: (online, when we heard it).
        self._elsewhere: dict[str, tuple[bool, float]] = {}
        self._dn = config.downstream.topic
        self._dn_codec = codecs.get(self._dn.codec)
        self._dn_any = self._dn.template.subscription(self._values("", None), any_cid=True)
        presence = config.presence.topic.text
        self._presence_in = TopicTemplate.parse(presence, downstream=True)
        self._presence_filter = self._presence_in.subscription(self._values("", None), any_cid=True)
        mqtt.set_message_handler(self.message_received)
        mqtt.subscribe(self._presence_filter, self._qos)
        group = config.downstream.offline_group
        if group and mqtt.supports_identifiers:
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

        A connection the identity already has is replaced: its socket is
        closed (reason "replaced"), and the CALLs queued for it move over.
        """
        identity = session.identity
        old = self._sessions.get(identity)
        timer = self._expiry.pop(identity, None)
        if timer is not None and timer.active():
            timer.cancel()
        self._sessions[identity] = session
        self._since[identity] = self._clock.seconds()
        if old is not None:
            if old.connected:
                _log.info("{cid}: new connection replaces the old one", cid=identity)
                old.connection.close(CLOSE_REPLACED, "replaced")
                old.connection_lost(replaced=True)
            session.adopt(old)
        if identity not in self._subscriptions:
            topic_filter = self._dn.template.subscription(self._values(identity, session.version))
            self._subscriptions[identity] = topic_filter
            self._mqtt.subscribe(topic_filter, self._qos, PER_CHARGE_POINT)
        self._publish_presence(identity, session.version, True, peer)

    def detach(self, session: Session) -> None:
        """
        ``session``'s connection is gone.  Its downstream topic stays for
        ``offline_ttl`` seconds; CALLs arriving then wait for a reconnection.
        """
        identity = session.identity
        if self._sessions.get(identity) is not session:
            return
        self._publish_presence(identity, session.version, False)
        ttl = self._config.downstream.offline_ttl
        if ttl > 0:
            self._expiry[identity] = self._clock.callLater(ttl, self._expire, session)
        else:
            self._expire(session)

    def _expire(self, session: Session) -> None:
        identity = session.identity
        self._expiry.pop(identity, None)
        if self._sessions.get(identity) is not session:
            return
        del self._sessions[identity]
        self._since.pop(identity, None)
        session.expire()
        topic_filter = self._subscriptions.pop(identity, None)
        if topic_filter is not None:
            self._mqtt.unsubscribe(topic_filter)

    def sessions(self) -> list[Session]:
        """Every session, connected or in its offline grace period."""
        return list(self._sessions.values())

    def connected(self) -> list[Session]:
        """Every session whose charge point is connected now."""
        return [s for s in self._sessions.values() if s.connected]

    # --- presence ---

    def _publish_presence(
        self, identity: str, version: str | None, online: bool, peer: str = ""
    ) -> None:
        now = self._clock.seconds()
        body: dict[str, Any] = {
            "ChargePointId": identity,
            "Online": online,
            "Gateway": self._config.gateway_id,
            "Protocol": version,
            "Since": rfc3339(self._since.get(identity, now) if online else now),
        }
        if online:
            body["RemoteAddress"] = peer
        topic = self._config.presence.topic.render(self._values(identity, version))
        self._mqtt.publish(topic, json.dumps(body).encode(), self._qos, retain=True).addErrback(
            lambda f: _log.error(
                "presence of {cid} not published: {f}", cid=identity, f=f.getErrorMessage()
            )
        )

    def gateway_presence(self, online: bool) -> tuple[str, bytes]:
        """The retained topic and payload saying whether this instance is up."""
        topic = self._config.presence.gateway_topic.render(self._values("", None))
        body = {
            "Gateway": self._config.gateway_id,
            "Online": online,
            "Since": rfc3339(self._clock.seconds()),
        }
        return topic, json.dumps(body).encode()

    def _presence_received(self, identity: str, payload: bytes) -> None:
        try:
            body = json.loads(payload)
            online, gateway = body["Online"], body["Gateway"]
        except (ValueError, KeyError, TypeError):
            return  # not ours to judge; an empty retained message clears presence
        if gateway == self._config.gateway_id:
            if online is True and identity not in self._sessions:
                # A presence left behind by an earlier run of this instance.
                self._publish_presence(identity, body.get("Protocol"), False)
            return
        self._elsewhere[identity] = (online is True, self._clock.seconds())
        session = self._sessions.get(identity)
        if online is not True or session is None or not session.connected:
            return
        since = body.get("Since")
        if isinstance(since, str) and since > rfc3339(self._since.get(identity, 0)):
            # A newer connection for this identity on another instance wins.
            _log.info(
                "{cid}: connected again through gateway {gw}; closing here",
                cid=identity,
                gw=gateway,
            )
            self._moved(session)

    def _moved(self, session: Session) -> None:
        """
        Let go of an identity that another instance now holds: close the old
        socket and drop the session and subscription at once, publishing no
        offline presence (the other instance's online presence stands) and
        holding nothing for a reconnection here (the other instance receives
        the downstream messages now).  What this instance had accepted and not
        delivered is answered Replaced.
        """
        identity = session.identity
        session.connection.close(CLOSE_REPLACED, "replaced")
        session.connection_lost(replaced=True)
        session.fail_queue(
            GatewayError.REPLACED, "charge point moved to another gateway instance; not sent"
        )
        del self._sessions[identity]
        self._since.pop(identity, None)
        topic_filter = self._subscriptions.pop(identity, None)
        if topic_filter is not None:
            self._mqtt.unsubscribe(topic_filter)

    # --- upstream ---

    def _values(self, identity: str, version: str | None, message: object = None) -> dict[str, str]:
        values = {"cid": identity, "gateway": self._config.gateway_id, "version": version or ""}
        if message is not None:
            values["action"] = getattr(message, "action", None) or ""
            values["type"] = str(int(message.message_type))  # type: ignore[attr-defined]
            values["id"] = message.unique_id  # type: ignore[attr-defined]
        return values

    def topic_of(self, envelope: Envelope) -> Topic:
        """The topic (template and codec) that ``envelope`` is published on."""
        message = envelope.message
        up = self._config.upstream
        if isinstance(message, Call | Send):
            return up.call_topic(message.action)
        if isinstance(message, CallResult):
            return up.reply
        return up.error

    def publish(self, envelope: Envelope) -> Deferred[None]:
        topic = self.topic_of(envelope)
        name = topic.template.render(
            self._values(envelope.charge_point or "", envelope.version, envelope.message)
        )
        try:
            payload = codecs.get(topic.codec).encode(envelope)
        except Exception as e:  # a codec bug must not take the session down
            _log.failure("encoding for {topic} failed", topic=name)
            return fail(e)
        return self._mqtt.publish(name, payload, self._qos)

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
        if topic_matches(self._presence_filter, topic):
            identity = self._presence_in.charge_point_of(topic)
            if identity is not None:
                self._presence_received(identity, payload)
            if not topic_matches(self._dn_any, topic):
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
            self._answer_offline(identity, topic, payload, "charge point is not connected")
            return
        try:
            envelope = self._dn_codec.decode(
                payload, DecodeContext(session.version, session.action_of)
            )
        except CodecError as e:
            self._reject(identity, session.version, e, topic)
            return
        session.envelope_received(envelope)

    def _unclaimed(self, topic: str, payload: bytes) -> None:
        """
        The catch-all copy of a downstream message: answer it Offline unless
        some instance (this one included) has the charge point, or had it
        within ``offline_ttl`` and so still holds its subscription.
        """
        identity = self._dn.template.charge_point_of(topic)
        if identity is None or identity in self._sessions:
            return
        seen = self._elsewhere.get(identity)
        if seen is not None:
            online, when = seen
            if online or self._clock.seconds() - when < self._config.downstream.offline_ttl:
                return
            del self._elsewhere[identity]
        self._answer_offline(
            identity, topic, payload, "charge point is not connected to any gateway"
        )

    def _answer_offline(self, identity: str, topic: str, payload: bytes, why: str) -> None:
        """Answer a downstream message for an absent charge point: Offline (or Invalid)."""
        try:
            # Any version's message types are possible for an unknown peer.
            message = self._dn_codec.decode(payload, DecodeContext(OCPP21)).message
        except CodecError as e:
            self._reject(identity, None, e, topic)
            return
        self._error(
            identity,
            None,
            message.unique_id,
            GatewayError.OFFLINE,
            why,
            getattr(message, "action", None),
        )

    def _reject(self, identity: str, version: str | None, error: CodecError, topic: str) -> None:
        why = f"invalid downstream message on {topic}: {error}"
        _log.warn("{cid}: {why}", cid=identity, why=why)
        unique_id = error.unique_id or "-1"
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
            origin=ORIGIN_GATEWAY,
        )
        self.publish(envelope).addErrback(
            lambda f: _log.error("could not publish error envelope: {f}", f=f.getErrorMessage())
        )
