# -*- test-case-name: tests.unit.router.test_protobuf_roundtrip -*-
"""
The conversion plan of each (version, action, direction): its schema laid onto
its generated message, field by field.

A :class:`Plan` is built by walking the payload's schema
(:mod:`ocppgw.wire.protobuf.schema`) alongside the descriptor of its
generated ``<Action>Request`` or ``<Action>Response`` class, which also checks
that the two agree: where they do not (the installed schemas are not those
the modules were generated from), the action has no plan and its payloads go
as JSON.  Each property's :class:`Encode` step and each protobuf field's
:class:`Decode` step are worked out here, once, so that converting
(:mod:`ocppgw.wire.protobuf.convert`) is a lookup and a few integer
comparisons per field.  Plans are cached, one per (version, action,
direction) of the schemas.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from types import ModuleType
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from ocppgw.ocpp.schemas import VERSION_DIRS, JSONSchema
from ocppgw.wire.protobuf.schema import Kind, actions, load, message_name, properties


class Encode(IntEnum):
    """What the converter does with one property of a JSON object."""

    #: Not a property of the schema: the typed form cannot carry the object.
    UNKNOWN = -1
    STRING = 0
    #: An integer of at most 64 bits (1.0 is one too).
    INT = 1
    BOOL = 2
    #: A double, or the exact text of an integer that a double does not hold.
    NUMBER = 3
    #: The enum number, or the raw string of a value the schema does not list.
    ENUM = 4
    #: Any JSON value, as JSON bytes.
    JSON = 5
    #: An object, into its sub-message.
    MESSAGE = 6
    #: A list of any of these but lists; the ``_empty`` mark for ``[]``.
    LIST = 7


class Decode(IntEnum):
    """What the converter does with one field of a protobuf message it reads."""

    #: A string, integer, double or bool: the value as it is.
    SCALAR = 0
    #: An enum number, as the schema's string.
    ENUM = 1
    #: JSON bytes, parsed.
    JSON = 2
    #: A sub-message, as an object.
    MESSAGE = 3
    SCALAR_LIST = 4
    ENUM_LIST = 5
    JSON_LIST = 6
    MESSAGE_LIST = 7
    #: The ``_empty`` mark of an optional list: ``[]``.
    EMPTY_LIST = 8
    #: The ``_raw`` string of an enum value the schema does not list.
    RAW_ENUM = 9
    #: The ``_text`` of a number a double does not hold exactly.
    NUMBER_TEXT = 10


_ENCODE = {
    Kind.STRING: Encode.STRING,
    Kind.INT: Encode.INT,
    Kind.BOOL: Encode.BOOL,
    Kind.NUMBER: Encode.NUMBER,
    Kind.ENUM: Encode.ENUM,
    Kind.JSON: Encode.JSON,
    Kind.MESSAGE: Encode.MESSAGE,
}
#: How a field of each kind is read, alone and repeated; scalars by default.
_DECODE = {
    Kind.ENUM: (Decode.ENUM, Decode.ENUM_LIST),
    Kind.JSON: (Decode.JSON, Decode.JSON_LIST),
    Kind.MESSAGE: (Decode.MESSAGE, Decode.MESSAGE_LIST),
}
_DECODE_SCALAR = (Decode.SCALAR, Decode.SCALAR_LIST)

#: The protobuf field types (descriptor.proto) that carry each kind.
_FIELD_TYPES = {
    Kind.STRING: (FieldDescriptor.TYPE_STRING,),
    Kind.BOOL: (FieldDescriptor.TYPE_BOOL,),
    Kind.INT: (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64),
    Kind.NUMBER: (FieldDescriptor.TYPE_DOUBLE,),
    Kind.ENUM: (FieldDescriptor.TYPE_ENUM,),
    Kind.MESSAGE: (FieldDescriptor.TYPE_MESSAGE,),
    Kind.JSON: (FieldDescriptor.TYPE_BYTES,),
}
#: Field types with presence in proto3: unset is not their default value.
_WITH_PRESENCE = (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_BYTES)


@dataclass(eq=False)
class Field:
    """One property of an object schema, as its message carries it."""

    name: str
    kind: Kind
    repeated: bool
    required: bool
    #: The alternative field's name, or "" (schema.Prop.alt_name).
    alt: str
    enum_numbers: dict[str, int] = field(default_factory=dict)
    enum_strings: dict[int, str] = field(default_factory=dict)
    #: For messages; an empty plan otherwise.
    plan: Plan = field(default_factory=lambda: Plan())

    @property
    def encode(self) -> Encode:
        return Encode.LIST if self.repeated else _ENCODE[self.kind]

    @property
    def decode(self) -> Decode:
        single, many = _DECODE.get(self.kind, _DECODE_SCALAR)
        return many if self.repeated else single

    @property
    def decode_alt(self) -> Decode:
        """How the alternative field is read."""
        if self.repeated:
            return Decode.EMPTY_LIST
        return Decode.RAW_ENUM if self.kind is Kind.ENUM else Decode.NUMBER_TEXT


@dataclass(eq=False)
class Plan:
    """How one object schema maps onto one message type."""

    #: JSON name -> (encode step, property).
    fields: dict[str, tuple[Encode, Field]] = field(default_factory=dict)
    #: Proto field name (main or alternative) -> (decode step, property).
    by_proto_name: dict[str, tuple[Decode, Field]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    #: The same, as a set to compare an object's keys with.
    required_names: frozenset[str] = frozenset()
    #: Required properties whose field has no presence: (name, default factory).
    implicit: tuple[tuple[str, Callable[[], Any]], ...] = ()


#: What :attr:`Plan.fields` gives for a name it does not hold.
UNKNOWN_PROPERTY = (Encode.UNKNOWN, Field("", Kind.JSON, False, False, ""))


@dataclass(frozen=True)
class Entry:
    """The plan of one (version, action, direction), and its message class."""

    plan: Plan | None
    cls: Any


_NO_ENTRY = Entry(None, None)
#: One entry per (version, action, direction) of the schemas: bounded.
_CACHE: dict[tuple[str, str, bool], Entry] = {}
_LOCK = threading.Lock()
_MODULES: dict[str, ModuleType] = {}


class _SchemaMismatch(Exception):
    """The generated modules do not match the installed schemas (run `make proto`)."""


def generated_module(name: str) -> Any:
    """A module of ocppgw/wire/protobuf/generated/, untyped (protoc writes no types)."""
    return importlib.import_module(f"ocppgw.wire.protobuf.generated.{name}")


def entry(version: str, action: str, is_request: bool) -> Entry:
    """The plan and class of this action and direction; no plan when it has no typed form."""
    key = (version, action, is_request)
    found = _CACHE.get(key)
    if found is not None:
        return found
    if action not in actions(version):
        # Not cached: actions come from charge points, and may be anything.
        return _NO_ENTRY
    with _LOCK:
        found = _CACHE.get(key)
        if found is None:
            found = _CACHE[key] = _make_entry(version, action, is_request)
    return found


def _make_entry(version: str, action: str, is_request: bool) -> Entry:
    root = load(version, action, is_request)
    if root is None:
        return _NO_ENTRY
    cls = getattr(_module(version), message_name(action, is_request), None)
    if cls is None:
        return _NO_ENTRY
    try:
        return Entry(_build(root, root, cls.DESCRIPTOR), cls)
    except (_SchemaMismatch, ValueError, KeyError):
        # The installed schemas and the generated modules disagree: carry this
        # action as JSON rather than guess (the staleness test catches it).
        return _NO_ENTRY


def _module(version: str) -> ModuleType:
    module = _MODULES.get(version)
    if module is None:
        module = _MODULES[version] = generated_module(f"{VERSION_DIRS[version]}_pb2")
    return module


def _build(node: JSONSchema, root: JSONSchema, desc: Any, depth: int = 0) -> Plan:
    if depth > 64:
        raise _SchemaMismatch("schema nests too deep")
    plan = Plan()
    implicit: list[tuple[str, Callable[[], Any]]] = []
    for prop in properties(node, root):
        fd = desc.fields_by_name.get(prop.name)
        # Fields are matched by name: their numbers are locked in numbers.json.
        if fd is None or fd.type not in _FIELD_TYPES[prop.kind] or fd.is_repeated != prop.repeated:
            raise _SchemaMismatch(f"{desc.full_name}.{prop.name} does not match the schema")
        alt = prop.alt_name
        if alt is not None and alt not in desc.fields_by_name:
            raise _SchemaMismatch(f"{desc.full_name}.{alt} is missing")
        f = Field(prop.name, prop.kind, prop.repeated, prop.required, alt or "")
        if prop.kind is Kind.ENUM:
            f.enum_numbers, f.enum_strings = _enum_table(fd.enum_type, prop.schema["enum"])
        elif prop.kind is Kind.MESSAGE:
            f.plan = _build(prop.schema, root, fd.message_type, depth + 1)
        plan.fields[prop.name] = (f.encode, f)
        plan.by_proto_name[prop.name] = (f.decode, f)
        if alt is not None:
            plan.by_proto_name[alt] = (f.decode_alt, f)
        if prop.required and (prop.repeated or fd.type not in _WITH_PRESENCE):
            if prop.repeated:
                implicit.append((prop.name, list))
            elif prop.kind not in (Kind.ENUM, Kind.NUMBER):  # oneofs have presence
                implicit.append((prop.name, _constant(fd.default_value)))
    plan.required = tuple(node.get("required", ()))
    plan.required_names = frozenset(plan.required)
    plan.implicit = tuple(implicit)
    return plan


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


def _constant(value: object) -> Callable[[], object]:
    return lambda: value


__all__ = [
    "UNKNOWN_PROPERTY",
    "Decode",
    "Encode",
    "Entry",
    "Field",
    "Plan",
    "entry",
    "generated_module",
]
