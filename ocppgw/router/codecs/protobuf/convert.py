"""
OCPP JSON payloads to typed protobuf messages and back, losslessly.

:func:`payload_to_proto` turns a payload into the serialized
``<Action>Request`` or ``<Action>Response`` message of its version's .proto
(proto/ocppgw/v16.proto, v201.proto, v21.proto), or, when the typed form
cannot carry it exactly (an unknown action, a value the schema does not allow,
an integer beyond 64 bits...), into its JSON text with
:attr:`PayloadEncoding.JSON`: a payload is never dropped or altered.
:func:`payload_from_proto` is the inverse.

Both are driven by the schema, walked alongside the generated descriptor; the
plan of each (version, action, direction) is built once and cached.  The rules
are in :mod:`ocppgw.router.codecs.protobuf.schema` and docs/protobuf.md.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from types import ModuleType
from typing import Any

from ocppgw.ocpp.messages import JSONObject, dumps, loads
from ocppgw.ocpp.schemas import VERSION_DIRS, JSONSchema
from ocppgw.router.codecs.protobuf import schema as S

__all__ = [
    "PayloadEncoding",
    "PayloadError",
    "generated_module",
    "has_typed_form",
    "json_bytes",
    "payload_from_proto",
    "payload_to_proto",
]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class PayloadEncoding(IntEnum):
    """The values of the wrapper's ``PayloadEncoding`` (proto/ocppgw/message.proto)."""

    TYPED = 0
    JSON = 1


class PayloadError(ValueError):
    """Bytes that are not a payload of the named action; the text says why."""


class _Unrepresentable(Exception):
    """The typed form cannot carry this payload exactly."""


_MODULES: dict[str, ModuleType] = {}


def generated_module(name: str) -> Any:
    """A module of ocppgw/router/codecs/protobuf/generated/, untyped (protoc writes no types)."""
    return importlib.import_module(f"ocppgw.router.codecs.protobuf.generated.{name}")


def _module(version: str) -> ModuleType:
    module = _MODULES.get(version)
    if module is None:
        module = _MODULES[version] = generated_module(f"{VERSION_DIRS[version]}_pb2")
    return module


# FieldDescriptor type numbers (descriptor.proto FieldDescriptorProto.Type).
_T_DOUBLE, _T_INT64, _T_BOOL, _T_STRING, _T_MESSAGE, _T_BYTES, _T_ENUM, _T_SINT64 = (
    1,
    3,
    8,
    9,
    11,
    12,
    14,
    18,
)
_EXPECTED = {
    S.Kind.STRING: (_T_STRING,),
    S.Kind.BOOL: (_T_BOOL,),
    S.Kind.INT: (_T_INT64, _T_SINT64),
    S.Kind.NUMBER: (_T_DOUBLE,),
    S.Kind.ENUM: (_T_ENUM,),
    S.Kind.MESSAGE: (_T_MESSAGE,),
    S.Kind.JSON: (_T_BYTES,),
}


# What _fill does with a property, and what _read does with a protobuf field.
_E_STR, _E_INT, _E_BOOL, _E_NUM, _E_ENUM, _E_JSON, _E_MSG, _E_LIST = range(8)
_D_PLAIN, _D_ENUM, _D_JSON, _D_MSG, _D_LIST, _D_ENUMS, _D_JSONS, _D_MSGS = range(8)
_D_EMPTY, _D_RAW, _D_TEXT = range(8, 11)
_E_OPS = {
    S.Kind.STRING: _E_STR,
    S.Kind.INT: _E_INT,
    S.Kind.BOOL: _E_BOOL,
    S.Kind.NUMBER: _E_NUM,
    S.Kind.ENUM: _E_ENUM,
    S.Kind.JSON: _E_JSON,
    S.Kind.MESSAGE: _E_MSG,
}
_D_OPS = {S.Kind.ENUM: (_D_ENUM, _D_ENUMS), S.Kind.JSON: (_D_JSON, _D_JSONS)}
_D_OPS[S.Kind.MESSAGE] = (_D_MSG, _D_MSGS)


@dataclass(eq=False)
class _Field:
    name: str
    kind: S.Kind
    repeated: bool
    required: bool
    #: The alternative field's name, or "" (schema.Prop.alt_name).
    alt: str
    enum_numbers: dict[str, int] = field(default_factory=dict)
    enum_strings: dict[int, str] = field(default_factory=dict)
    #: For messages; an empty plan otherwise.
    plan: _Plan = field(default_factory=lambda: _Plan())

    @property
    def encode_op(self) -> int:
        return _E_LIST if self.repeated else _E_OPS[self.kind]

    @property
    def decode_op(self) -> int:
        single, many = _D_OPS.get(self.kind, (_D_PLAIN, _D_LIST))
        return many if self.repeated else single

    @property
    def alt_op(self) -> int:
        if self.repeated:
            return _D_EMPTY
        return _D_RAW if self.kind is S.Kind.ENUM else _D_TEXT


@dataclass(eq=False)
class _Plan:
    """How one object schema maps onto one message type."""

    #: JSON name -> (encode op, property).
    fields: dict[str, tuple[int, _Field]] = field(default_factory=dict)
    #: Proto field name (main or alternative) -> (decode op, property).
    by_proto_name: dict[str, tuple[int, _Field]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    #: Required properties whose field has no presence: (name, default factory).
    implicit: tuple[tuple[str, Callable[[], Any]], ...] = ()


_UNKNOWN = (-1, _Field("", S.Kind.JSON, False, False, ""))


class _SchemaMismatch(Exception):
    """The generated modules do not match the installed schemas (run `make proto`)."""


def _enum_table(enum_desc: Any, values: list[Any]) -> tuple[dict[str, int], dict[int, str]]:
    json_value = generated_module("options_pb2").json_value
    numbers: dict[str, int] = {}
    for value in enum_desc.values:
        options = value.GetOptions()
        if options.HasExtension(json_value):
            numbers[options.Extensions[json_value]] = value.number
    if set(numbers) != set(values):
        raise _SchemaMismatch(f"enum {enum_desc.full_name} does not list the schema's values")
    return numbers, {n: s for s, n in numbers.items()}


def _build(node: JSONSchema, root: JSONSchema, desc: Any, depth: int = 0) -> _Plan:
    if depth > 64:
        raise _SchemaMismatch("schema nests too deep")
    plan = _Plan()
    implicit: list[tuple[str, Callable[[], Any]]] = []
    for prop in S.properties(node, root):
        fd = desc.fields_by_name.get(prop.name)
        if fd is None or fd.number != prop.number or fd.type not in _EXPECTED[prop.kind]:
            raise _SchemaMismatch(f"{desc.full_name}.{prop.name} does not match the schema")
        alt = prop.alt_name
        if alt is not None and alt not in desc.fields_by_name:
            raise _SchemaMismatch(f"{desc.full_name}.{alt} is missing")
        f = _Field(prop.name, prop.kind, prop.repeated, prop.required, alt or "")
        if prop.kind is S.Kind.ENUM:
            f.enum_numbers, f.enum_strings = _enum_table(fd.enum_type, prop.schema["enum"])
        elif prop.kind is S.Kind.MESSAGE:
            f.plan = _build(prop.schema, root, fd.message_type, depth + 1)
        plan.fields[prop.name] = (f.encode_op, f)
        plan.by_proto_name[prop.name] = (f.decode_op, f)
        if alt is not None:
            plan.by_proto_name[alt] = (f.alt_op, f)
        if prop.required and (prop.repeated or fd.type not in (_T_MESSAGE, _T_BYTES)):
            if prop.repeated:
                implicit.append((prop.name, list))
            elif prop.kind not in (S.Kind.ENUM, S.Kind.NUMBER):  # oneofs have presence
                implicit.append((prop.name, _constant(fd.default_value)))
    plan.required = tuple(node.get("required", ()))
    plan.implicit = tuple(implicit)
    return plan


def _constant(value: object) -> Callable[[], object]:
    return lambda: value


@dataclass(frozen=True)
class _Entry:
    plan: _Plan | None
    cls: Any


_NO_ENTRY = _Entry(None, None)
#: One entry per (version, action, direction) of the schemas: bounded.
_CACHE: dict[tuple[str, str, bool], _Entry] = {}
_LOCK = threading.Lock()


def _entry(version: str, action: str, is_request: bool) -> _Entry:
    key = (version, action, is_request)
    entry = _CACHE.get(key)
    if entry is not None:
        return entry
    if action not in S.actions(version):
        # Not cached: actions come from charge points, and may be anything.
        return _NO_ENTRY
    with _LOCK:
        entry = _CACHE.get(key)
        if entry is None:
            entry = _make_entry(version, action, is_request)
            _CACHE[key] = entry
    return entry


def _make_entry(version: str, action: str, is_request: bool) -> _Entry:
    root = S.load(version, action, is_request) if version in VERSION_DIRS else None
    if root is None:
        return _NO_ENTRY
    cls = getattr(_module(version), S.message_name(action, is_request), None)
    if cls is None:
        return _NO_ENTRY
    try:
        return _Entry(_build(root, root, cls.DESCRIPTOR), cls)
    except (_SchemaMismatch, ValueError, KeyError):
        # The installed schemas and the generated modules disagree: carry this
        # action as JSON rather than guess (the staleness test catches it).
        return _NO_ENTRY


def has_typed_form(version: str, action: str, is_request: bool) -> bool:
    """True if the payloads of this action and direction have a typed message."""
    return _entry(version, action, is_request).plan is not None


def payload_to_proto(
    version: str, action: str, is_request: bool, payload: JSONObject
) -> tuple[bytes, PayloadEncoding]:
    """
    The bytes that carry ``payload``, and how they are encoded.

    The typed message when it carries ``payload`` exactly, else the payload's
    JSON text (UTF-8) with :attr:`PayloadEncoding.JSON`.
    """
    entry = _entry(version, action, is_request)
    if entry.plan is not None:
        try:
            msg = entry.cls()
            _fill(msg, entry.plan, payload)
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
    if encoding == PayloadEncoding.JSON:
        try:
            value = loads(data)
        except (ValueError, RecursionError) as e:
            raise PayloadError(f"JSON payload is not valid UTF-8 JSON: {str(e)[:120]}") from None
        if not isinstance(value, dict):
            raise PayloadError("JSON payload is not a JSON object")
        return value
    if encoding != PayloadEncoding.TYPED:
        raise PayloadError(f"unknown PayloadEncoding {encoding}")
    entry = _entry(version, action, is_request)
    if entry.plan is None:
        direction = "request" if is_request else "response"
        raise PayloadError(
            f"{version} has no typed {direction} for action {action!r}; "
            "send the payload as JSON (PayloadEncoding JSON)"
        )
    try:
        msg = entry.cls.FromString(data)
        size = msg.ByteSize()
        msg.DiscardUnknownFields()
        if msg.ByteSize() != size:
            # Fields this .proto does not know (or known numbers with another
            # wire type): the sender's .proto differs; refuse rather than drop.
            raise PayloadError(
                f"Payload has fields that {S.message_name(action, is_request)} of {version} "
                "does not define (is the backend's .proto current?)"
            )
        return _read(msg, entry.plan)
    except PayloadError:
        raise
    except Exception as e:  # protobuf raises several types
        raise PayloadError(
            f"Payload is not a {S.message_name(action, is_request)} message: {str(e)[:120]}"
        ) from None


def json_bytes(value: object) -> bytes:
    """``value`` as compact UTF-8 JSON, as the JSON payload encoding carries it."""
    text = dumps(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (JSON "\\ud800") has no UTF-8 form: escape it.
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# -- JSON -> protobuf ---------------------------------------------------------


def _item(f: _Field, value: Any) -> Any:
    """The protobuf value of one list item (list items have no alternative)."""
    kind = f.kind
    t = type(value)
    if kind is S.Kind.STRING:
        if t is str:
            return value
    elif kind is S.Kind.INT:
        return _int(f.name, value)
    elif kind is S.Kind.ENUM:
        number = f.enum_numbers.get(value) if t is str else None
        if number is not None:
            return number
    elif kind is S.Kind.NUMBER:
        if t is float or (t is int and _exact_double(value)):
            return value
    elif kind is S.Kind.BOOL:
        if t is bool:
            return value
    elif kind is S.Kind.JSON:
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


def _fill(msg: Any, plan: _Plan, obj: object) -> None:
    if type(obj) is not dict:
        raise _Unrepresentable("not an object")
    fields = plan.fields
    for name, value in obj.items():
        op, f = fields.get(name, _UNKNOWN)
        t = type(value)
        if op == _E_STR:
            if t is not str:
                raise _Unrepresentable(name)
            setattr(msg, name, value)
        elif op == _E_ENUM:
            number = f.enum_numbers.get(value) if t is str else None
            if number is not None:
                setattr(msg, name, number)
            elif t is str:
                setattr(msg, f.alt, value)
            else:
                raise _Unrepresentable(name)
        elif op == _E_MSG:
            sub = getattr(msg, name)
            sub.SetInParent()
            _fill(sub, f.plan, value)
        elif op == _E_INT:
            setattr(msg, name, _int(name, value))
        elif op == _E_NUM:
            if t is float or (t is int and _exact_double(value)):
                setattr(msg, name, value)
            elif t is int:
                setattr(msg, f.alt, str(value))
            else:
                raise _Unrepresentable(name)
        elif op == _E_BOOL:
            if t is not bool:
                raise _Unrepresentable(name)
            setattr(msg, name, value)
        elif op == _E_JSON:
            setattr(msg, name, json_bytes(value))
        elif op == _E_LIST:
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
            if f.kind is S.Kind.MESSAGE:
                for item in value:
                    _fill(container.add(), f.plan, item)
            else:
                container.extend([_item(f, item) for item in value])
        else:
            raise _Unrepresentable(f"unknown property {name}")
    for name in plan.required:
        if name not in obj:
            raise _Unrepresentable(f"missing {name}")


# -- protobuf -> JSON ---------------------------------------------------------


def _enum_string(f: _Field, number: int) -> str:
    text = f.enum_strings.get(number)
    if text is None:
        raise PayloadError(f"{f.name}: enum number {number} is not a value of the schema")
    return text


def _json_value(f: _Field, data: bytes) -> Any:
    try:
        return loads(data)
    except (ValueError, RecursionError):
        raise PayloadError(f"{f.name} is not UTF-8 JSON") from None


def _read(msg: Any, plan: _Plan) -> JSONObject:
    out: JSONObject = {}
    by_name = plan.by_proto_name
    for fd, value in msg.ListFields():
        op, f = by_name[fd.name]
        if op == _D_PLAIN:
            out[f.name] = value
        elif op == _D_ENUM:
            out[f.name] = _enum_string(f, value)
        elif op == _D_MSGS:
            sub = f.plan
            out[f.name] = [_read(item, sub) for item in value]
        elif op == _D_MSG:
            out[f.name] = _read(value, f.plan)
        elif op == _D_LIST:
            out[f.name] = list(value)
        elif op == _D_ENUMS:
            out[f.name] = [_enum_string(f, item) for item in value]
        elif op == _D_JSON:
            out[f.name] = _json_value(f, value)
        elif op == _D_JSONS:
            out[f.name] = [_json_value(f, item) for item in value]
        elif op == _D_RAW:
            out[f.name] = value
        elif op == _D_TEXT:
            out[f.name] = _number_text(f.name, value)
        elif value:  # _D_EMPTY
            out[f.name] = []
    for name, default in plan.implicit:
        if name not in out:
            out[name] = default()
    return out


def _number_text(name: str, text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise PayloadError(f"{name}_text {text!r} is not a number") from None
