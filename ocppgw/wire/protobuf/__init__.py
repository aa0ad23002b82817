# -*- test-case-name: tests.unit.router.test_protobuf_roundtrip -*-
"""
The protobuf profile: the ``ocppgw_pb.v1.Message`` wrapper of proto/ocppgw_pb/v1/message.proto.

Fields 1-6 are the Chargerlink guide's (MessageTypeId, UniqueId, Action,
ErrorCode, ErrorDescription, Payload); the gateway adds ErrorDetails, Protocol,
PayloadEncoding, ChargePointId, Timestamp, Origin, Late, ErrorCodeText and
Answered from field 7 on.  Payload is the typed ``<Action>Request``/``<Action>Response`` of
the version's .proto, or the payload's JSON text when PayloadEncoding is JSON
(:mod:`ocppgw.wire.protobuf.convert`).  docs/protobuf.md describes it for backend authors.

Downstream, a CALLRESULT needs its Action to decode a typed payload: the
wrapper's Action if set, else the Action of the pending CALL with that id
(:attr:`DecodeContext.action_of`).  The fields are checked by
:func:`~ocppgw.wire.fields.message_from_fields`, as for the JSON envelope.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from ocppgw.ocpp.envelope import CodecError, DecodeContext, Envelope
from ocppgw.ocpp.jsontext import loads
from ocppgw.ocpp.messages import Call, CallError, CallResult, CallResultError, MessageType, Send
from ocppgw.wire.codec import ICodec
from ocppgw.wire.fields import message_from_fields, sent_time
from ocppgw.wire.protobuf.convert import (
    PayloadEncoding,
    PayloadError,
    json_bytes,
    payload_from_proto,
    payload_to_proto,
)
from ocppgw.wire.protobuf.plan import generated_module

try:
    message_pb2 = generated_module("message_pb2")
except Exception as e:
    # protobuf's runtime_version.VersionError is no ImportError: the generated
    # modules need a runtime at least as new as the protoc that made them.
    raise ImportError(f"the protobuf profile cannot load its generated modules: {e}") from e

_ERROR_NUMBERS: dict[str, int] = {
    v.name: v.number for v in message_pb2.ErrorType.DESCRIPTOR.values if v.number != 0
}
_ERROR_NAMES: dict[int, str] = {n: s for s, n in _ERROR_NUMBERS.items()}


# The members as globals, compared per message (an Enum class attribute is a
# lookup each time); and the wrapper's MessageTypeId of each message class.
_CALL = int(MessageType.CALL)
_CALLRESULT = int(MessageType.CALLRESULT)
_SEND = int(MessageType.SEND)
_JSON = int(PayloadEncoding.JSON)
_TYPE_IDS: dict[type, int] = {
    Call: _CALL,
    CallResult: _CALLRESULT,
    CallError: int(MessageType.CALLERROR),
    CallResultError: int(MessageType.CALLRESULTERROR),
    Send: _SEND,
}
_ERRORS = (CallError, CallResultError)
_ERROR_TYPE_IDS = frozenset({int(MessageType.CALLERROR), int(MessageType.CALLRESULTERROR)})


def wrapper_of(envelope: Envelope) -> Any:
    """The ``ocppgw_pb.v1.Message`` that carries ``envelope``."""
    message = envelope.message
    out = message_pb2.Message()
    out.MessageTypeId = _TYPE_IDS[type(message)]
    out.UniqueId = message.unique_id
    if message.action is not None:
        out.Action = message.action
    if isinstance(message, _ERRORS):
        number = _ERROR_NUMBERS.get(message.error_code)
        if number is not None:
            out.ErrorCode = number
        else:
            out.ErrorCodeText = message.error_code
        out.ErrorDescription = message.error_description
        if message.error_details:
            out.ErrorDetails = json_bytes(message.error_details)
    else:
        version, action = envelope.version, message.action
        if version is not None and action is not None:
            is_request = type(message) is not CallResult
            data, encoding = payload_to_proto(version, action, is_request, message.payload)
        else:
            # Without version and Action there is no typed message to use.
            data, encoding = json_bytes(message.payload), PayloadEncoding.JSON
        out.Payload = data
        out.PayloadEncoding = int(encoding)
    if envelope.version is not None:
        out.Protocol = envelope.version
    if envelope.charge_point is not None:
        out.ChargePointId = envelope.charge_point
    if envelope.timestamp is not None:
        out.Timestamp = envelope.timestamp
    if envelope.origin is not None:
        out.Origin = envelope.origin
    if envelope.late:
        out.Late = True
    if envelope.answered:
        out.Answered = True
    return out


@implementer(ICodec)
class ProtobufCodec:
    name = "protobuf"

    def encode(self, envelope: Envelope) -> bytes:
        data: bytes = wrapper_of(envelope).SerializeToString()
        return data

    def decode(self, data: bytes, context: DecodeContext) -> Envelope:
        try:
            wrapper = message_pb2.Message.FromString(data)
        except Exception:  # DecodeError, and others on odd input; their text is protobuf's
            raise CodecError("payload is not an ocppgw_pb.v1.Message") from None
        try:
            return self._decode(wrapper, context)
        except CodecError as e:
            # The wrapper was readable: name the exchange that is refused.
            raise e.about(wrapper.UniqueId, wrapper.Action) from None

    def _decode(self, wrapper: Any, context: DecodeContext) -> Envelope:
        version = context.version
        protocol = wrapper.Protocol
        if protocol and protocol != version:
            raise CodecError(f"Protocol is {protocol!r} but the charge point speaks {version}")
        type_id: int = wrapper.MessageTypeId  # an enum field reads as an int
        # Only a CALL's age matters (Expired); elsewhere Timestamp is ignored.
        sent = sent_time(wrapper.Timestamp or None) if type_id == _CALL else None
        unique_id = wrapper.UniqueId
        action: str | None = wrapper.Action or None
        if type_id == _CALLRESULT or type_id == _CALL or type_id == _SEND:
            payload = self._payload(wrapper, type_id, unique_id, action, context)
            message = message_from_fields(version, type_id, unique_id, action, payload)
            return Envelope(message, version, sent=sent)
        # Each field read makes a new Python object: the error fields only here.
        code: str | None = None
        details: object = None
        if type_id in _ERROR_TYPE_IDS:
            code = wrapper.ErrorCodeText or _ERROR_NAMES.get(int(wrapper.ErrorCode))
            if wrapper.ErrorDetails:
                try:
                    details = loads(wrapper.ErrorDetails)
                except (ValueError, RecursionError):
                    raise CodecError("ErrorDetails is not UTF-8 JSON") from None
        message = message_from_fields(
            version, type_id, unique_id, action, None, code, wrapper.ErrorDescription, details
        )
        return Envelope(message, version, sent=sent)

    def _payload(
        self,
        wrapper: Any,
        type_id: int,
        unique_id: str,
        action: str | None,
        context: DecodeContext,
    ) -> object:
        encoding = wrapper.PayloadEncoding
        if type_id == _CALLRESULT and action is None:
            action = context.action_of(unique_id)
        if action is None:
            if encoding != _JSON:
                if type_id == _CALLRESULT:
                    raise CodecError(
                        f"CALLRESULT {unique_id!r} has no Action and matches no pending CALL, "
                        "so its typed Payload cannot be read; set Action or send the "
                        "payload as JSON (PayloadEncoding JSON)"
                    )
                return None  # message_from_fields names the missing Action
            action = ""
        try:
            is_request = type_id != _CALLRESULT
            return payload_from_proto(
                context.version, action, is_request, wrapper.Payload, encoding
            )
        except PayloadError as e:
            raise CodecError(f"Payload: {e}") from None
