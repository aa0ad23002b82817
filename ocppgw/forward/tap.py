# -*- test-case-name: tests.unit.forward.test_relay -*-
"""
The tap: every frame of a forwarded charge point, published to ``tap_topic``
in ``tap_codec``, in the order the gateway relayed them (one MQTT client,
whose publishes keep their order: MQTT 5 §4.6), at the gateway's QoS and
through its publish window, so a broker that is away buffers them like every
other publish (``[mqtt] max_buffer``).  The relay never waits for the tap: a
publish that fails is logged and counted, and the frame was relayed anyway.

Each envelope is the usual one (README, "Topics and envelopes") plus
``Direction`` (who sent the frame: ``ChargePoint``, ``CSMS``, ``Mirror``,
``Backend``), ``Peer`` (the central system's host and port) and ``Verdict``
(:mod:`~ocppgw.forward.verdicts`).  A frame that is no OCPP-J message is
carried as a CALLERROR envelope of UniqueId ``-1`` whose ``ErrorDetails``
hold it (``{"Frame": text}``).  ``raw`` carries the frame exactly as relayed;
``protobuf`` the usual wrapper with its tap-only fields 16-18 set
(``Verdict``: ``accepted``, or the refusal as JSON text).
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw import wire
from ocppgw.forward.verdicts import Verdict
from ocppgw.interfaces import IMQTTClient
from ocppgw.ocpp.envelope import Envelope
from ocppgw.ocpp.jsontext import dumps
from ocppgw.ocpp.messages import CallError, Message
from ocppgw.ocpp.timestamps import rfc3339
from ocppgw.router.topics import TopicTemplate, topic_values
from ocppgw.wire.jsonenvelope import envelope_fields
from ocppgw.wire.protobuf import wrapper_of

_log = Logger()

#: Topics remembered at most (charge points; all forgotten at once past it).
MAX_TOPICS = 100_000

#: Who sent a frame (the tap's ``Direction``).
CHARGE_POINT = "ChargePoint"
CSMS = "CSMS"
MIRROR = "Mirror"
BACKEND = "Backend"


class Tap:
    """The tap of one ``[forward:NAME]``."""

    def __init__(
        self,
        mqtt: IMQTTClient,
        qos: int,
        template: TopicTemplate,
        codec: str,
        gateway: str,
        clock: IReactorTime,
    ) -> None:
        self._mqtt = mqtt
        self._qos = qos
        self._template = template
        self._codec = codec
        wire.get(codec)  # an unavailable codec is refused here, by name
        self._gateway = gateway
        self._clock = clock
        #: Publishes that failed (the MQTT buffer full, the gateway stopping).
        self.lost = 0
        #: The template names no message field: each charge point's topic is rendered once.
        self._per_charge_point = not any(
            "${" + name + "}" in template.text for name in ("action", "type", "id")
        )
        self._topics: dict[tuple[str, str], str] = {}

    def frame(
        self,
        identity: str,
        version: str,
        text: str,
        direction: str,
        peer: str,
        message: Message | None,
        verdict: Verdict,
    ) -> None:
        """Publish ``text``, which ``direction`` sent, with its ``message`` and ``verdict``."""
        topic = self._topics.get((identity, version)) if self._per_charge_point else None
        if topic is None:
            topic = self._topic(identity, version, message)
        if self._codec == "raw":
            payload = text.encode("utf-8")
        else:
            if message is None:
                description = verdict["ErrorDescription"] if isinstance(verdict, dict) else ""
                code = verdict["ErrorCode"] if isinstance(verdict, dict) else "GenericError"
                message = CallError("-1", code, description, {"Frame": text})
            envelope = Envelope(
                message,
                version,
                identity,
                timestamp=rfc3339(self._clock.seconds()),
                frame=text,
            )
            if self._codec == "json":
                fields = envelope_fields(envelope)
                fields["Direction"] = direction
                fields["Peer"] = peer
                fields["Verdict"] = verdict
                payload = dumps(fields).encode("utf-8")
            else:
                wrapper = wrapper_of(envelope)
                wrapper.Direction = direction
                wrapper.Peer = peer
                wrapper.Verdict = verdict if isinstance(verdict, str) else dumps(verdict)
                payload = wrapper.SerializeToString()
        self._mqtt.publish(topic, payload, self._qos).addErrback(self._failed, identity)

    def _topic(self, identity: str, version: str, message: Message | None) -> str:
        values = topic_values(self._gateway, identity, version)
        values["shard"] = "0"
        if message is not None:
            values["action"] = message.action or ""
            values["type"] = str(int(message.message_type))
            values["id"] = message.unique_id
        topic = self._template.render(values)
        if self._per_charge_point:
            if len(self._topics) >= MAX_TOPICS:
                self._topics.clear()
            self._topics[(identity, version)] = topic
        return topic

    def _failed(self, failure: Failure, identity: str) -> None:
        self.lost += 1
        _log.warn(
            "{cid}: a tap message was not published: {why}",
            cid=identity,
            why=failure.getErrorMessage(),
        )
