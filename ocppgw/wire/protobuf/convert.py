# -*- test-case-name: tests.unit.router.test_protobuf_roundtrip -*-
"""
OCPP JSON payloads to typed protobuf messages and back, losslessly.

:func:`payload_to_proto` turns a payload into the serialized
``<Action>Request`` or ``<Action>Response`` message of its version's .proto
(proto/ocppgw_pb/v1/v16.proto, v201.proto, v21.proto), or, when the typed form
cannot carry it exactly (an unknown action, a value the schema does not allow,
an integer beyond 64 bits...), into its JSON text with
:attr:`PayloadEncoding.JSON`: a payload is never dropped or altered.
:func:`payload_from_proto` is the inverse.

Both follow the plan of the payload's (version, action, direction)
(:mod:`ocppgw.wire.protobuf.plan`), which names the step each
property and each protobuf field takes.  The rules are in
:mod:`ocppgw.wire.protobuf.schema` and docs/protobuf.md.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

from ocppgw.ocpp.jsontext import dumps, loads
from ocppgw.ocpp.messages import JSONObject
from ocppgw.wire.fields import json_object
from ocppgw.wire.protobuf.plan import (
    UNKNOWN_PROPERTY,
    Decode,
    Encode,
    Field,
    Plan,
    entry,
)
from ocppgw.wire.protobuf.schema import Kind, message_name

__all__ = [
    "PayloadEncoding",
    "PayloadError",
    "has_typed_form",
    "json_bytes",
    "payload_from_proto",
    "payload_to_proto",
]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class PayloadEncoding(IntEnum):
    """The values of the wrapper's ``PayloadEncoding`` (proto/ocppgw_pb/v1/message.proto)."""

    TYPED = 0
    JSON = 1


class PayloadError(ValueError):
    """Bytes that are not a payload of the named action; the text says why."""


class _Unrepresentable(Exception):
    """The typed form cannot carry this payload exactly."""


def has_typed_form(version: str, action: str, is_request: bool) -> bool:
    """True if the payloads of this action and direction have a typed message."""
    return entry(version, action, is_request).plan is not None


def payload_to_proto(
    version: str, action: str, is_request: bool, payload: JSONObject
) -> tuple[bytes, PayloadEncoding]:
    """
    The bytes that carry ``payload``, and how they are encoded.

    The typed message when it carries ``payload`` exactly, else the payload's
    JSON text (UTF-8) with :attr:`PayloadEncoding.JSON`.
    """
    found = entry(version, action, is_request)
    plan = found.plan
    if plan is not None:
        if not payload and not plan.required_names and type(payload) is dict:
            return b"", _TYPED  # {} (Heartbeat): the empty message, serialized
        try:
            msg = found.cls()
            _fill(msg, plan, payload)
            data: bytes = msg.SerializeToString()
            return data, PayloadEncoding.TYPED
        except Exception:  # anything the typed form refuses goes as JSON
            pass
    return json_bytes(payload), PayloadEncoding.JSON


def payload_from_proto(
    version: str, action: str, is_request: bool, data: bytes, encoding: int
) -> JSONObject:
    """
    The payload carried by ``data``.

    :raises PayloadError: ``data`` is not a payload of this action, or the
        encoding is unknown.
    """
    if encoding == _JSON:
        return json_object(data, PayloadError, "JSON payload")
    if encoding != _TYPED:
        raise PayloadError(f"unknown PayloadEncoding {encoding}")
    found = entry(version, action, is_request)
    if found.plan is None:
        direction = "request" if is_request else "response"
        raise PayloadError(
            f"{version} has no typed {direction} for action {action!r}; "
            "send the payload as JSON (PayloadEncoding JSON)"
        )
    if not data:
        # An empty message (MeterValuesResponse, StatusNotificationResponse):
        # no field can be unknown, none is set; its payload is what the plan
        # implies (what _read gives for the empty message, without making one).
        return {name: default() for name, default in found.plan.implicit}
    try:
        msg = found.cls.FromString(data)
        size = msg.ByteSize()
        msg.DiscardUnknownFields()
        if msg.ByteSize() != size:
            # Fields this .proto does not know (or known numbers with another
            # wire type): the sender's .proto differs; refuse rather than drop.
            raise PayloadError(
                f"Payload has fields that {message_name(action, is_request)} of {version} "
                "does not define (is the backend's .proto current?)"
            )
        return _read(msg, found.plan)
    except PayloadError:
        raise
    except Exception:  # protobuf raises several types; their text is protobuf's
        raise PayloadError(f"Payload is not a {message_name(action, is_request)} message") from None


def json_bytes(value: object) -> bytes:
    """``value`` as compact UTF-8 JSON, as the JSON payload encoding carries it."""
    text = dumps(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (JSON "\\ud800") has no UTF-8 form: escape it.
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# The steps as module globals, which _fill and _read compare each field's step
# with: in Python 3.11 reading a member off its Enum class (Encode.STRING) goes
# through EnumType.__getattr__ and costs several times as much as a global.
_TYPED = PayloadEncoding.TYPED
_JSON = PayloadEncoding.JSON
_KIND_MESSAGE = Kind.MESSAGE
_ENCODE_STRING = Encode.STRING
_ENCODE_INT = Encode.INT
_ENCODE_BOOL = Encode.BOOL
_ENCODE_NUMBER = Encode.NUMBER
_ENCODE_ENUM = Encode.ENUM
_ENCODE_JSON = Encode.JSON
_ENCODE_MESSAGE = Encode.MESSAGE
_ENCODE_LIST = Encode.LIST
_DECODE_SCALAR = Decode.SCALAR
_DECODE_ENUM = Decode.ENUM
_DECODE_JSON = Decode.JSON
_DECODE_MESSAGE = Decode.MESSAGE
_DECODE_SCALAR_LIST = Decode.SCALAR_LIST
_DECODE_ENUM_LIST = Decode.ENUM_LIST
_DECODE_JSON_LIST = Decode.JSON_LIST
_DECODE_MESSAGE_LIST = Decode.MESSAGE_LIST
_DECODE_RAW_ENUM = Decode.RAW_ENUM
_DECODE_NUMBER_TEXT = Decode.NUMBER_TEXT


# -- JSON -> protobuf ---------------------------------------------------------


def _fill(msg: Any, plan: Plan, obj: object) -> None:
    if type(obj) is not dict:
        raise _Unrepresentable("not an object")
    fields = plan.fields
    for name, value in obj.items():
        step, f = fields.get(name, UNKNOWN_PROPERTY)
        t = type(value)
        # The steps by how often payloads have them; each branch refuses what
        # the typed form cannot carry exactly.
        if step is _ENCODE_STRING:
            if t is not str:
                raise _Unrepresentable(name)
            setattr(msg, name, value)
        elif step is _ENCODE_ENUM:
            number = f.enum_numbers.get(value) if t is str else None
            if number is not None:
                setattr(msg, name, number)
            elif t is str:
                setattr(msg, f.alt, value)
            else:
                raise _Unrepresentable(name)
        elif step is _ENCODE_INT:
            if t is int and _INT64_MIN <= value <= _INT64_MAX:
                setattr(msg, name, value)
            else:
                setattr(msg, name, _int(name, value))
        elif step is _ENCODE_LIST:
            if t is not list:
                raise _Unrepresentable(name)
            if not value:
                # A required list always decodes (as [] when empty); an
                # optional one needs its _empty mark, which only lists that
                # may be empty have (a minItems >= 1 list cannot be []).
                if f.alt:
                    setattr(msg, f.alt, True)
                elif not f.required:
                    raise _Unrepresentable(f"{name} cannot be empty")
                continue
            container = getattr(msg, name)
            if f.kind is _KIND_MESSAGE:
                item_plan = f.plan
                add = container.add
                for item in value:
                    _fill(add(), item_plan, item)
            else:
                container.extend([_item(f, item) for item in value])
        elif step is _ENCODE_MESSAGE:
            sub = getattr(msg, name)
            sub.SetInParent()
            _fill(sub, f.plan, value)
        elif step is _ENCODE_NUMBER:
            if t is float or (t is int and _exact_double(value)):
                setattr(msg, name, value)
            elif t is int:
                setattr(msg, f.alt, str(value))
            else:
                raise _Unrepresentable(name)
        elif step is _ENCODE_BOOL:
            if t is not bool:
                raise _Unrepresentable(name)
            setattr(msg, name, value)
        elif step is _ENCODE_JSON:
            setattr(msg, name, json_bytes(value))
        else:
            raise _Unrepresentable(f"unknown property {name}")
    required = plan.required_names
    if required and not required <= obj.keys():
        missing = sorted(required - obj.keys())
        raise _Unrepresentable(f"missing {', '.join(missing)}")


def _item(f: Field, value: Any) -> Any:
    """The protobuf value of one list item (list items have no alternative)."""
    kind = f.kind
    t = type(value)
    if kind is Kind.STRING:
        if t is str:
            return value
    elif kind is Kind.INT:
        return _int(f.name, value)
    elif kind is Kind.ENUM:
        number = f.enum_numbers.get(value) if t is str else None
        if number is not None:
            return number
    elif kind is Kind.NUMBER:
        if t is float or (t is int and _exact_double(value)):
            return value
    elif kind is Kind.BOOL:
        if t is bool:
            return value
    elif kind is Kind.JSON:
        return json_bytes(value)
    raise _Unrepresentable(f.name)


def _int(name: str, value: Any) -> int:
    t = type(value)
    if t is float and value.is_integer():
        value = int(value)  # 1.0 is an integer to JSON Schema draft 6
    elif t is not int:
        raise _Unrepresentable(name)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Unrepresentable(name)
    return int(value)


def _exact_double(value: int) -> bool:
    try:
        return float(value) == value
    except OverflowError:
        return False


# -- protobuf -> JSON ---------------------------------------------------------


def _read(msg: Any, plan: Plan) -> JSONObject:
    out: JSONObject = {}
    by_name = plan.by_proto_name
    for fd, value in msg.ListFields():
        step, f = by_name[fd.name]
        if step is _DECODE_SCALAR:
            out[f.name] = value
        elif step is _DECODE_ENUM:
            out[f.name] = _enum_string(f, value)
        elif step is _DECODE_MESSAGE_LIST:
            sub = f.plan
            out[f.name] = [_read(item, sub) for item in value]
        elif step is _DECODE_MESSAGE:
            out[f.name] = _read(value, f.plan)
        elif step is _DECODE_SCALAR_LIST:
            out[f.name] = list(value)
        elif step is _DECODE_ENUM_LIST:
            out[f.name] = [_enum_string(f, item) for item in value]
        elif step is _DECODE_JSON:
            out[f.name] = _json_value(f, value)
        elif step is _DECODE_JSON_LIST:
            out[f.name] = [_json_value(f, item) for item in value]
        elif step is _DECODE_RAW_ENUM:
            out[f.name] = value
        elif step is _DECODE_NUMBER_TEXT:
            out[f.name] = _number_text(f.name, value)
        elif value:  # Decode.EMPTY_LIST
            out[f.name] = []
    for name, default in plan.implicit:
        if name not in out:
            out[name] = default()
    return out


def _enum_string(f: Field, number: int) -> str:
    text = f.enum_strings.get(number)
    if text is None:
        raise PayloadError(f"{f.name}: enum number {number} is not a value of the schema")
    return text


def _json_value(f: Field, data: bytes) -> Any:
    try:
        return loads(data)
    except (ValueError, RecursionError):
        raise PayloadError(f"{f.name} is not UTF-8 JSON") from None


def _number_text(name: str, text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise PayloadError(f"{name}_text {text!r} is not a number") from None
