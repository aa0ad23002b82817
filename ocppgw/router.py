"""
The router: topics and codecs between the sessions and the MQTT client.

Upstream it renders the topic an envelope goes to (CALL and SEND: ``[upstream]
topic`` or the Action's override; CALLRESULT: ``reply_topic``; CALLERROR and
CALLRESULTERROR: ``error_topic``) and encodes it with that topic's codec.
Downstream it holds one subscription per connected charge point, finds the
session a message is for, and decodes it with ``[dnstream] codec``.  Whatever
cannot be delivered is answered with an error envelope, never dropped.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from ocppgw import codecs
from ocppgw.config import Config, Topic
from ocppgw.envelope import ORIGIN_GATEWAY, CodecError, DecodeContext, Envelope, GatewayError
from ocppgw.interfaces import IMQTTClient, IUpstream
from ocppgw.messages import (
    Call,
    CallError,
    CallResult,
    Send,
    check_unique_id,
    loads,
)
from ocppgw.session import Session
from ocppgw.topics import topic_matches
from ocppgw.versions import OCPP21

_log = Logger()


@implementer(IUpstream)
class Router:
    """Sessions by identity, and the topics between them and the broker."""

    def __init__(self, config: Config, mqtt: IMQTTClient) -> None:
        self._config = config
        self._mqtt = mqtt
        self._qos = config.mqtt.qos
        self._sessions: dict[str, Session] = {}
        self._subscriptions: dict[str, str] = {}
        self._dn = config.dnstream.topic
        self._dn_codec = codecs.get(self._dn.codec)
        mqtt.set_message_handler(self.message_received)

    # --- sessions ---

    def session(self, identity: str) -> Session | None:
        return self._sessions.get(identity)

    def attach(self, session: Session) -> Session | None:
        """
        Route ``identity``'s downstream messages to ``session``.

        Returns the session it replaces, if the identity was connected already;
        the caller closes that one's connection.
        """
        old = self._sessions.get(session.identity)
        self._sessions[session.identity] = session
        if session.identity not in self._subscriptions:
            topic_filter = self._dn.template.subscription(
                self._values(session.identity, session.version)
            )
            self._subscriptions[session.identity] = topic_filter
            self._mqtt.subscribe(topic_filter, self._qos)
        return old

    def detach(self, session: Session) -> None:
        """``session``'s connection is gone; stop its downstream topic."""
        if self._sessions.get(session.identity) is not session:
            return
        del self._sessions[session.identity]
        topic_filter = self._subscriptions.pop(session.identity, None)
        if topic_filter is not None:
            self._mqtt.unsubscribe(topic_filter)

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

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
            from twisted.internet.defer import fail

            return fail(e)
        return self._mqtt.publish(name, payload, self._qos)

    # --- downstream ---

    def message_received(self, topic: str, payload: bytes) -> None:
        """A message arrived on a downstream topic."""
        identity = self._dn.template.charge_point_of(topic)
        if identity is None:
            _log.warn("message on {topic} matches no downstream topic", topic=topic)
            return
        session = self._sessions.get(identity)
        topic_filter = self._subscriptions.get(identity)
        if topic_filter is None or not topic_matches(topic_filter, topic):
            session = None
        version = session.version if session is not None else OCPP21
        context = DecodeContext(
            version, session.action_of if session is not None else (lambda uid: None)
        )
        try:
            envelope = self._dn_codec.decode(payload, context)
        except CodecError as e:
            self._reject(
                identity,
                version,
                payload,
                GatewayError.INVALID,
                f"invalid downstream message on {topic}: {e}",
            )
            return
        if session is None:
            message = envelope.message
            self._error(
                identity,
                None,
                message.unique_id,
                GatewayError.OFFLINE,
                "charge point is not connected",
                getattr(message, "action", None),
            )
            return
        session.deliver(envelope)

    def _reject(
        self, identity: str, version: str | None, payload: bytes, code: GatewayError, why: str
    ) -> None:
        _log.warn("{cid}: {why}", cid=identity, why=why)
        unique_id, action = "-1", None
        try:
            obj = loads(payload)
            if isinstance(obj, dict):
                unique_id = check_unique_id(obj.get("UniqueId")) or "-1"
                action = obj.get("Action") if isinstance(obj.get("Action"), str) else None
        except (ValueError, RecursionError):
            pass
        self._error(identity, version, unique_id, code, why, action)

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
