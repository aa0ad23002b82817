# -*- test-case-name: tests.unit.ocpp.test_validation -*-
"""
What is wrong with a payload, as an OCPP-J error kind and description.

A :class:`Violation` is an :class:`~ocppgw.ocpp.versions.ErrorKind` (which
:func:`~ocppgw.ocpp.versions.error_code` spells for the connection's version)
and a description of at most 255 characters (OCPP 2.0.1 Part 4 Table 7) that
names the offending field path, e.g.
``meterValue[0].sampledValue[1].unit: 'Foo' is not one of ...``.

Kinds
    A ``jsonschema`` error is mapped by its keyword, using the definitions of
    OCPP-J 1.6 Table 7 and OCPP 2.0.1 Part 4 Table 8:

    ====================================================  =========================
    keyword                                               kind
    ====================================================  =========================
    ``type``                                              TYPE_CONSTRAINT
    ``required``, ``minItems``, ``maxItems``,             OCCURRENCE_CONSTRAINT
    ``minProperties``, ``maxProperties``,
    ``dependencies``, ``additionalItems``
    ``enum``, ``const``, ``maxLength``, ``minLength``,    PROPERTY_CONSTRAINT
    ``minimum``, ``maximum``, ``exclusiveMinimum``,
    ``exclusiveMaximum``, ``multipleOf``, ``pattern``
    ``additionalProperties`` and anything else            FORMAT
    ====================================================  =========================

    ``additionalProperties`` (a field the schema does not define) is FORMAT,
    not OCCURRENCE_CONSTRAINT: an occurrence constraint is the cardinality of
    a *defined* field, whereas an unknown field means the payload does "not
    conform the PDU structure for Action", the wording of 1.6's
    FormationViolation.  The ``ocpp`` package makes the same choice
    (ocpp-rpc reports PropertyConstraintViolation instead).
    An unknown action is NOT_IMPLEMENTED ("Requested Action is not known by
    receiver", OCPP-J 1.6 Table 7); a known action with no schema for the
    requested direction (a response to a SEND) is NOT_SUPPORTED.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ocppgw.ocpp.messages import MAX_ERROR_DESCRIPTION_LENGTH
from ocppgw.ocpp.versions import ErrorKind

_KINDS: Mapping[str, ErrorKind] = {
    "type": ErrorKind.TYPE_CONSTRAINT,
    "required": ErrorKind.OCCURRENCE_CONSTRAINT,
    "minItems": ErrorKind.OCCURRENCE_CONSTRAINT,
    "maxItems": ErrorKind.OCCURRENCE_CONSTRAINT,
    "minProperties": ErrorKind.OCCURRENCE_CONSTRAINT,
    "maxProperties": ErrorKind.OCCURRENCE_CONSTRAINT,
    "dependencies": ErrorKind.OCCURRENCE_CONSTRAINT,
    "additionalItems": ErrorKind.OCCURRENCE_CONSTRAINT,
    "enum": ErrorKind.PROPERTY_CONSTRAINT,
    "const": ErrorKind.PROPERTY_CONSTRAINT,
    "maxLength": ErrorKind.PROPERTY_CONSTRAINT,
    "minLength": ErrorKind.PROPERTY_CONSTRAINT,
    "minimum": ErrorKind.PROPERTY_CONSTRAINT,
    "maximum": ErrorKind.PROPERTY_CONSTRAINT,
    "exclusiveMinimum": ErrorKind.PROPERTY_CONSTRAINT,
    "exclusiveMaximum": ErrorKind.PROPERTY_CONSTRAINT,
    "multipleOf": ErrorKind.PROPERTY_CONSTRAINT,
    "pattern": ErrorKind.PROPERTY_CONSTRAINT,
    "additionalProperties": ErrorKind.FORMAT,
}

#: How a description words the failure of a keyword about one value.
_PHRASES: Mapping[str, str] = {
    "const": "is not",
    "minimum": "is less than the minimum",
    "maximum": "is greater than the maximum",
    "exclusiveMinimum": "is not greater than",
    "exclusiveMaximum": "is not less than",
    "multipleOf": "is not a multiple of",
    "pattern": "does not match",
}

#: How much of an offending value a description quotes.
_MAX_QUOTE = 40

_ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Violation:
    """A payload that does not match its schema."""

    kind: ErrorKind
    #: At most 255 characters; names the offending field path.
    description: str


def unknown_action(version: str, action: str) -> Violation:
    """``action`` is not an action of ``version``."""
    return Violation(
        ErrorKind.NOT_IMPLEMENTED, _truncate(f"unknown action {_quote(action)} for {version}")
    )


def no_response(version: str, action: str) -> Violation:
    """``action`` exists in ``version`` but is never answered (a SEND)."""
    return Violation(ErrorKind.NOT_SUPPORTED, _truncate(f"{action} has no response in {version}"))


def violation_of(error: Any) -> Violation:
    """The :class:`Violation` for a ``jsonschema`` error."""
    keyword = str(error.validator)
    kind = _KINDS.get(keyword, ErrorKind.FORMAT)
    path = list(error.absolute_path)
    where = _path(path) or "payload"
    instance = error.instance
    value = error.validator_value
    if keyword == "required" and isinstance(instance, dict):
        missing = [p for p in value if p not in instance]
        text = f"missing required {_properties(path, missing)}"
    elif keyword == "additionalProperties" and isinstance(instance, dict):
        text = f"unexpected {_properties(path, _additional(instance, error.schema))}"
    elif keyword == "type":
        text = f"{where}: {_quote(instance)} is not of type {_types(value)}"
    elif keyword == "enum":
        allowed = ", ".join(_quote(v) for v in value)
        text = f"{where}: {_quote(instance)} is not one of {allowed}"
    elif keyword in ("maxLength", "minLength") and isinstance(instance, str):
        size = "long" if keyword == "maxLength" else "short"
        text = (
            f"{where}: {_quote(instance)} ({len(instance)} characters) is too {size} "
            f"({keyword} {value})"
        )
    elif keyword in ("maxItems", "minItems") and isinstance(instance, list):
        size = "many" if keyword == "maxItems" else "few"
        text = f"{where}: {len(instance)} items are too {size} ({keyword} {value})"
    elif keyword in _PHRASES:
        text = f"{where}: {_quote(instance)} {_PHRASES[keyword]} {_quote(value)}"
    else:
        text = f"{where}: {error.message}"
    return Violation(kind, _truncate(text))


def _properties(path: list[Any], names: list[str]) -> str:
    """``property 'a.b'`` or ``properties 'a.b', 'a.c'``: ``names`` below ``path``."""
    noun = "property" if len(names) == 1 else "properties"
    return f"{noun} " + ", ".join(_quote(_path([*path, name])) for name in names)


def _additional(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """The properties of ``instance`` that ``schema`` does not define."""
    defined = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [
        p
        for p in instance
        if p not in defined and not any(re.search(pattern, p) for pattern in patterns)
    ]


def _path(parts: Iterable[object]) -> str:
    """``["meterValue", 0, "sampledValue"]`` as ``meterValue[0].sampledValue``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _types(value: object) -> str:
    if isinstance(value, list):
        return " or ".join(repr(v) for v in value)
    return repr(value)


def _quote(value: object) -> str:
    """``value`` as JSON-ish ``repr``, cut to :data:`_MAX_QUOTE` characters."""
    text = repr(value)
    if len(text) > _MAX_QUOTE:
        text = text[: _MAX_QUOTE - 1] + _ELLIPSIS
    return text


def _truncate(text: str) -> str:
    if len(text) > MAX_ERROR_DESCRIPTION_LENGTH:
        text = text[: MAX_ERROR_DESCRIPTION_LENGTH - 1] + _ELLIPSIS
    return text


__all__ = ["Violation", "no_response", "unknown_action", "violation_of"]
