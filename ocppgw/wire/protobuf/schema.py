# -*- test-case-name: tests.unit.router.test_protobuf_roundtrip -*-
"""
The OCPP JSON schemas, walked the way the protobuf mapping needs them.

Both the generator of the ``.proto`` files (``tools/genproto.py``) and the
converter (:mod:`ocppgw.wire.protobuf.convert`) walk the schemas
through this module, so the two agree on every rule of the mapping
(docs/protobuf.md):

- each property of an object becomes one field, in schema order
  (``customData``, present on every 2.x class and rarely set, comes last so
  the common fields keep one-byte tags); its number is the one locked in
  proto/ocppgw_pb/v1/numbers.json, or for a new field the next free one
  (``tools/protonumbers.py``); the converter reads numbers from the generated
  descriptors, never from here;
- a property may need a second field (first numbered :data:`ALT_OFFSET` above
  the first): the raw string of an enum value the schema does not list, the
  text of a ``number`` that a double does not hold exactly, or the mark of a
  present but empty list;
- what has no fixed shape (an object whose ``additionalProperties`` is not
  false, such as 2.x ``customData``, or a property without a type, such as 2.x
  ``DataTransfer.data``) is JSON bytes.

The schemas are those of the PyPI ``ocpp`` package, as
:func:`ocppgw.ocpp.schemas.packaged` finds and reads them; the generator may
name another :class:`~ocppgw.ocpp.schemas.SchemaSet` (a test simulates an
upgrade of the ``ocpp`` package that way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any

from ocppgw.ocpp.schemas import VERSION_DIRS, ActionFiles, JSONSchema, SchemaSet, packaged

#: The second field of a property is numbered this much above the first.
ALT_OFFSET = 1000

#: Suffixes of the second field's name.
RAW_SUFFIX = "_raw"  # an enum string the schema does not list
TEXT_SUFFIX = "_text"  # a number a double cannot hold exactly (large integers)
EMPTY_SUFFIX = "_empty"  # true when an optional list is present and empty
#: Suffix of the oneof that holds an enum or number field and its alternative.
CHOICE_SUFFIX = "_choice"

#: 2.x classes carry this free-form property; it is numbered last.
CUSTOM_DATA = "customData"


class Kind(Enum):
    """How one property (or one list item) is carried."""

    STRING = "string"
    BOOL = "bool"
    INT = "int"
    NUMBER = "number"
    ENUM = "enum"
    MESSAGE = "message"
    JSON = "json"


@dataclass(frozen=True)
class Prop:
    """One property of an object schema, as its message carries it."""

    name: str
    kind: Kind
    repeated: bool
    required: bool
    #: The property's schema (the item schema for a list), ``$ref`` resolved.
    schema: JSONSchema
    #: The ``$ref`` definition name of that schema, if it came from one.
    ref_name: str | None
    #: For lists: the schema requires at least one item.
    non_empty: bool = False

    @property
    def alt_name(self) -> str | None:
        """The name of the second field, or ``None`` when the property has none."""
        if self.repeated:
            if self.required or self.non_empty:
                return None
            # Only here can "absent" and "[]" both be valid (rules §4.4).
            return self.name + EMPTY_SUFFIX
        if self.kind is Kind.ENUM:
            return self.name + RAW_SUFFIX
        if self.kind is Kind.NUMBER:
            return self.name + TEXT_SUFFIX
        return None

    @property
    def choice_name(self) -> str | None:
        """The oneof that holds the field and its alternative, if any."""
        if not self.repeated and self.kind in (Kind.ENUM, Kind.NUMBER):
            return self.name + CHOICE_SUFFIX
        return None

    @property
    def integer_signed(self) -> bool:
        """An integer without a minimum of 0 or more is zigzag-encoded (sint64)."""
        minimum = self.schema.get("minimum")
        return not (isinstance(minimum, int | float) and minimum >= 0)


def actions(version: str, schemas: SchemaSet | None = None) -> Mapping[str, ActionFiles]:
    """Every action of ``version``: its request and response schema file names."""
    if version not in VERSION_DIRS:
        return {}
    return (schemas or packaged()).actions(version)


def message_name(action: str, is_request: bool) -> str:
    """The protobuf message of an action's payload: ``<Action>Request``/``Response``."""
    return action + ("Request" if is_request else "Response")


def load(
    version: str, action: str, is_request: bool, schemas: SchemaSet | None = None
) -> JSONSchema | None:
    """The schema of one payload, or ``None`` if ``version`` has no such action."""
    if version not in VERSION_DIRS:
        return None
    if schemas is not None:
        found = schemas.file_name(version, action, is_request)
        return None if found is None else schemas.load(version, found)
    name = packaged().file_name(version, action, is_request)
    # Cached by file, not by action: actions come from charge points, and may be anything.
    return None if name is None else _load_file(version, name)


@cache
def _load_file(version: str, name: str) -> JSONSchema:
    return packaged().load(version, name)


def resolve(node: JSONSchema, root: JSONSchema) -> tuple[JSONSchema, str | None]:
    """``node`` with its ``$ref`` (``#/definitions/X``) followed, and X."""
    name: str | None = None
    seen = 0
    while "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/definitions/") or seen > 32:
            raise ValueError(f"unsupported $ref {ref!r}")
        name = ref[len("#/definitions/") :]
        node = root["definitions"][name]
        seen += 1
    return node, name


def is_message(node: JSONSchema) -> bool:
    """An object with a fixed set of properties: a protobuf message."""
    return node.get("type") == "object" and node.get("additionalProperties", True) is False


def kind_of(node: JSONSchema) -> Kind:
    """How a (resolved, non-list) schema is carried."""
    t = node.get("type")
    if t == "string":
        return Kind.ENUM if "enum" in node else Kind.STRING
    if t == "integer":
        return Kind.INT
    if t == "number":
        return Kind.NUMBER
    if t == "boolean":
        return Kind.BOOL
    if is_message(node):
        return Kind.MESSAGE
    # No type, a list of types, or an object open to more properties.
    return Kind.JSON


def properties(node: JSONSchema, root: JSONSchema) -> list[Prop]:
    """The fields of the message for object schema ``node``, in schema order, customData last."""
    props: dict[str, Any] = node.get("properties", {})
    required = set(node.get("required", ()))
    names = [n for n in props if n != CUSTOM_DATA]
    if CUSTOM_DATA in props:
        names.append(CUSTOM_DATA)
    out: list[Prop] = []
    for name in names:
        sub, ref_name = resolve(props[name], root)
        repeated = False
        non_empty = False
        if sub.get("type") == "array" and isinstance(sub.get("items"), dict):
            item, item_ref = resolve(sub["items"], root)
            if item.get("type") != "array":  # no OCPP schema nests lists (rules §4.4)
                repeated = True
                non_empty = int(sub.get("minItems", 0)) >= 1
                sub, ref_name = item, item_ref
        kind = Kind.JSON if sub.get("type") == "array" else kind_of(sub)
        out.append(Prop(name, kind, repeated, name in required, sub, ref_name, non_empty))
    return out
