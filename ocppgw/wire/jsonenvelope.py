# -*- test-case-name: tests.unit.router.test_codecs -*-
"""
The JSON envelope (docs/topics.md), with the field names of the Chargerlink
``Message`` class and the EMQX gateway::

    {"MessageTypeId": 2, "UniqueId": "1", "Action": "Heartbeat", "Payload": {}}
    {"MessageTypeId": 3, "UniqueId": "1", "Action": "Heartbeat", "Payload": {...}}
    {"MessageTypeId": 4, "UniqueId": "1", "ErrorCode": "NotSupported",
     "ErrorDescription": "...", "ErrorDetails": {}}

Upstream, results and errors also carry the ``Action`` of their CALL, and every
envelope carries ``Protocol``, ``ChargePointId`` and ``Timestamp``; envelopes
that the gateway made itself carry ``Origin: "gateway"``, and an answer that
came after its timeout ``Late: true``, and a CALL that the gateway answered
itself (``[local] heartbeat``, ``status_notification``) ``Answered: true``.
Downstream, a CALL's ``Timestamp`` (when the backend sent it) is read; other
unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from ocppgw.ocpp.envelope import CodecError, DecodeContext, Envelope
from ocppgw.ocpp.jsontext import dumps
from ocppgw.ocpp.messages import CallError, CallResultError, MessageType
from ocppgw.wire.codec import ICodec
from ocppgw.wire.fields import json_object, message_from_fields, sent_time

_CALL = MessageType.CALL


def envelope_fields(envelope: Envelope) -> dict[str, Any]:
    """The JSON object of ``envelope``, in the field order of the Message class."""
    message = envelope.message
    out: dict[str, Any] = {
        "MessageTypeId": int(message.message_type),
        "UniqueId": message.unique_id,
    }
    if message.action is not None:
        out["Action"] = message.action
    if isinstance(message, CallError | CallResultError):
        out["ErrorCode"] = message.error_code
        out["ErrorDescription"] = message.error_description
        out["ErrorDetails"] = message.error_details
    else:
        out["Payload"] = message.payload
    if envelope.version is not None:
        out["Protocol"] = envelope.version
    if envelope.charge_point is not None:
        out["ChargePointId"] = envelope.charge_point
    if envelope.timestamp is not None:
        out["Timestamp"] = envelope.timestamp
    if envelope.origin is not None:
        out["Origin"] = envelope.origin
    if envelope.late:
        out["Late"] = True
    if envelope.answered:
        out["Answered"] = True
    return out


@implementer(ICodec)
class JSONCodec:
    name = "json"

    def encode(self, envelope: Envelope) -> bytes:
        return dumps(envelope_fields(envelope)).encode("utf-8")

    def decode(self, data: bytes, context: DecodeContext) -> Envelope:
        obj = json_object(data, CodecError, "payload", "envelope")
        try:
            message = message_from_fields(
                context.version,
                obj.get("MessageTypeId"),
                obj.get("UniqueId"),
                obj.get("Action"),
                obj.get("Payload"),
                obj.get("ErrorCode"),
                obj.get("ErrorDescription"),
                obj.get("ErrorDetails"),
            )
            # Only a CALL's age matters (Expired); elsewhere it is ignored, as before.
            stamp = obj.get("Timestamp") if message.message_type is _CALL else None
            sent = None if stamp is None else sent_time(stamp)
        except CodecError as e:
            raise e.about(obj.get("UniqueId"), obj.get("Action")) from None
        return Envelope(message, context.version, sent=sent)
