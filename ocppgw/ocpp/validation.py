"""
JSON-schema validation of OCPP payloads, with failures named as OCPP-J errors.

A :class:`Validator` checks the payload of a request (CALL or SEND) or of a
response (CALLRESULT) against the OCA schema of its version, action and
direction, and reports the first problem as a :class:`Violation`: an
:class:`~ocppgw.ocpp.versions.ErrorKind` (which :func:`~ocppgw.ocpp.versions.error_code`
spells for the connection's version) and a description of at most 255
characters (OCPP 2.0.1 Part 4 Table 7) that names the offending field path,
e.g. ``meterValue[0].sampledValue[1].unit: 'Foo' is not one of ...``.

Schemas
    By default the schemas shipped as package data of the PyPI ``ocpp``
    package (``ocpp/v16/schemas``, ``ocpp/v201/schemas``, ``ocpp/v21/schemas``)
    are used; they are located with :func:`importlib.resources.files`, which
    imports only ``ocpp/__init__.py`` (empty), not the library itself.  A
    ``schema_dir`` override holds ``v16/``, ``v201/`` and ``v21/``
    subdirectories with the same file names (``v16/schemas/`` etc. also
    works, so the ``ocpp`` package directory itself can be named).  The
    override replaces the packaged schemas; there is no fall-back to them.

    File names: 1.6 ``<Action>.json`` (request) and ``<Action>Response.json``;
    2.x ``<Action>Request.json`` and ``<Action>Response.json``, plus
    ``<Action>.json`` for a 2.1 SEND-only message with no response
    (``NotifyPeriodicEventStream``, 2.1 Part 4 §4.2.5).  Actions are looked up
    in a listing of the directory, never joined into a path, so an Action from
    the wire cannot name another file.  Files are read as ``utf-8-sig``: some
    published schema sets start with a byte-order mark.

Validators
    One compiled validator per (version, action, direction), built on first
    use and cached in the :class:`Validator` instance.  The class follows the
    schema's ``$schema`` (the 1.6 core schemas are draft-04, the 1.6 security
    schemas and all 2.x schemas draft-06); a file without ``$schema`` is read
    as draft-04, the draft of the OCA 1.6 set.  References are resolved in an
    empty ``referencing`` registry that never retrieves anything, so an
    ``id``/``$id`` (``urn:OCPP:...``) cannot trigger a remote lookup: all OCPP
    references are local (``#/definitions/...``).

    No format checker is used, so ``format: date-time`` (and ``uri``) is not
    enforced.  This matches the ``ocpp`` reference implementation (MH #216,
    #499) and lets through 1.6 charge points that send offsets or
    fractional seconds that a strict RFC 3339 check would refuse
    (OCPP 1.6 §3.15 asks receivers to accept them).

    ``multipleOf`` is tolerant of binary floating point: 1.6 ``limit`` and
    ``minChargingRate`` are ``multipleOf 0.1``, and the plain check rejects
    8.2 (8.2 / 0.1 == 81.99999999999999) and 0.30000000000000004.  A number
    passes when its quotient by the schema's decimal divisor is within a
    relative 1e-12 (absolute 1e-9) of an integer; ocpp-rpc does the same with
    a 1e-6 epsilon.  0.35 still fails ``multipleOf 0.1``.

Kinds
    The most relevant error (:func:`jsonschema.exceptions.best_match`: the
    shallowest, first one) is mapped by its keyword, using the definitions of
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

import importlib.resources
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jsonschema.exceptions
import jsonschema.validators
from referencing import Registry
from referencing.exceptions import Unresolvable

from ocppgw.ocpp.messages import MAX_ERROR_DESCRIPTION_LENGTH
from ocppgw.ocpp.versions import OCPP16, OCPP21, OCPP201, ErrorKind

#: The subdirectory of each version, in the ``ocpp`` package and an override.
_VERSION_DIRS: Mapping[str, str] = {OCPP16: "v16", OCPP201: "v201", OCPP21: "v21"}

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

#: How close to an integer the quotient of a ``multipleOf`` check must be.
_REL_TOLERANCE = Fraction(1, 10**12)
_ABS_TOLERANCE = Fraction(1, 10**9)

#: How much of an offending value a description quotes.
_MAX_QUOTE = 40

_ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Violation:
    """A payload that does not match its schema."""

    kind: ErrorKind
    #: At most 255 characters; names the offending field path.
    description: str


class SchemaError(Exception):
    """A schema file that cannot be read or is not a valid JSON schema."""


def is_multiple_of(instance: float, divisor: float) -> bool:
    """
    Whether ``instance`` is a multiple of ``divisor``, forgiving float artefacts.

    ``divisor`` is taken as the decimal the schema writes (``0.1`` is 1/10),
    ``instance`` as the binary float it is; the quotient must lie within a
    relative 1e-12 (at least an absolute 1e-9) of an integer.
    """
    if isinstance(instance, float) and not math.isfinite(instance):
        return False
    exact_divisor = Fraction(str(divisor))
    if exact_divisor == 0:
        return False
    if isinstance(instance, int) and exact_divisor.denominator == 1:
        return instance % exact_divisor == 0
    quotient = Fraction(instance) / exact_divisor
    distance = abs(quotient - round(quotient))
    return distance <= max(_ABS_TOLERANCE, _REL_TOLERANCE * abs(quotient))


def _multiple_of(
    validator: Any, divisor: float, instance: object, schema: Mapping[str, Any]
) -> Iterator[Any]:
    """The ``multipleOf`` keyword, with :func:`is_multiple_of`."""
    if not validator.is_type(instance, "number"):
        return
    assert isinstance(instance, int | float)
    if not is_multiple_of(instance, divisor):
        yield jsonschema.exceptions.ValidationError(f"{instance!r} is not a multiple of {divisor}")


class Validator:
    """
    Validates OCPP payloads against the schemas of their version and action.

    :param schema_dir: a directory with ``v16/``, ``v201/`` and ``v21/``
        subdirectories of schema files, used instead of the ``ocpp`` package's.
    :raises ValueError: ``schema_dir`` is not a directory or holds none of the
        version subdirectories.
    """

    def __init__(self, schema_dir: str | None = None) -> None:
        self._roots: dict[str, Traversable | None] = {}
        if schema_dir is None:
            package = importlib.resources.files("ocpp")
            for version, sub in _VERSION_DIRS.items():
                self._roots[version] = package / sub / "schemas"
        else:
            base = Path(schema_dir)
            if not base.is_dir():
                raise ValueError(f"schema directory {schema_dir!r} does not exist")
            for version, sub in _VERSION_DIRS.items():
                nested = base / sub / "schemas"
                flat = base / sub
                root = nested if nested.is_dir() else flat
                self._roots[version] = root if root.is_dir() else None
            if not any(self._roots.values()):
                raise ValueError(
                    f"schema directory {schema_dir!r} has none of the subdirectories "
                    + ", ".join(_VERSION_DIRS.values())
                )
        #: The schema file names of each version, listed on first use.
        self._files: dict[str, frozenset[str]] = {}
        #: Compiled validators by (version, action, request).
        self._compiled: dict[tuple[str, str, bool], Any] = {}
        #: The tolerant validator class derived from each draft's class.
        self._classes: dict[type[Any], type[Any]] = {}

    def knows(self, version: str, action: str) -> bool:
        """Whether ``action`` exists in ``version``: its request schema is present."""
        return self._file_name(version, action, request=True) is not None

    def validate(
        self, version: str, action: str, request: bool, payload: dict[str, Any]
    ) -> Violation | None:
        """
        Check ``payload`` of ``action`` (a request if ``request``, else its response).

        :returns: ``None`` when it is valid, else what is wrong with it.
        :raises ValueError: ``version`` is not one of the supported versions.
        :raises SchemaError: the schema file is unreadable or invalid.
        """
        validator = self.compiled(version, action, request)
        if validator is None:
            if not self.knows(version, action):
                return Violation(
                    ErrorKind.NOT_IMPLEMENTED,
                    _truncate(f"unknown action {_quote(action)} for {version}"),
                )
            return Violation(
                ErrorKind.NOT_SUPPORTED,
                _truncate(f"{action} has no response in {version}"),
            )
        try:
            error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
        except Unresolvable as e:
            raise SchemaError(f"{version} {action}: unresolvable $ref: {e}") from e
        if error is None:
            return None
        return _violation(error)

    def check_all(self) -> int:
        """
        Compile every schema there is, so that a broken one stops the gateway
        at start rather than failing a charge point later.

        :returns: how many schemas were checked.
        :raises SchemaError: naming the first schema that cannot be used.
        """
        count = 0
        for version in _VERSION_DIRS:
            for name in sorted(self._listing(version)):
                self._compile(version, name)
                count += 1
        return count

    def compiled(self, version: str, action: str, request: bool) -> Any:
        """
        The compiled ``jsonschema`` validator for ``action``'s request or response.

        Built once and cached.  ``None`` when there is no such schema.
        """
        key = (version, action, request)
        validator = self._compiled.get(key)
        if validator is None:
            name = self._file_name(version, action, request)
            if name is None:
                return None
            validator = self._compile(version, name)
            self._compiled[key] = validator
        return validator

    def _root(self, version: str) -> Traversable | None:
        try:
            return self._roots[version]
        except KeyError:
            raise ValueError(
                f"unknown OCPP version {version!r}; known: {', '.join(_VERSION_DIRS)}"
            ) from None

    def _listing(self, version: str) -> frozenset[str]:
        files = self._files.get(version)
        if files is None:
            root = self._root(version)
            if root is None or not root.is_dir():
                files = frozenset()
            else:
                files = frozenset(
                    entry.name
                    for entry in root.iterdir()
                    if entry.name.endswith(".json") and entry.is_file()
                )
            self._files[version] = files
        return files

    def _file_name(self, version: str, action: str, request: bool) -> str | None:
        files = self._listing(version)
        if not action or action.endswith(("Request", "Response")):
            # Not an action name but a schema name (1.6 has <Action>Response.json).
            return None
        if version == OCPP16:
            request_name = f"{action}.json"
        else:
            request_name = f"{action}Request.json"
            if request_name not in files and f"{action}.json" in files:
                # 2.1 SEND-only message (NotifyPeriodicEventStream): no response.
                request_name = f"{action}.json"
        if request_name not in files:
            return None
        if request:
            return request_name
        response_name = f"{action}Response.json"
        return response_name if response_name in files else None

    def _compile(self, version: str, name: str) -> Any:
        root = self._root(version)
        assert root is not None
        try:
            schema = json.loads((root / name).read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as e:
            raise SchemaError(f"{version} schema {name}: {e}") from e
        if not isinstance(schema, dict):
            raise SchemaError(f"{version} schema {name}: not a JSON object")
        base = jsonschema.validators.validator_for(
            schema, default=jsonschema.validators.Draft4Validator
        )
        try:
            base.check_schema(schema)
        except jsonschema.exceptions.SchemaError as e:
            raise SchemaError(f"{version} schema {name}: {e.message}") from e
        cls = self._classes.get(base)
        if cls is None:
            cls = jsonschema.validators.extend(base, {"multipleOf": _multiple_of})
            self._classes[base] = cls
        # An empty registry never retrieves: an id/$id cannot go remote.
        return cls(schema, registry=Registry())


def _violation(error: Any) -> Violation:
    """The :class:`Violation` for a ``jsonschema`` error."""
    keyword = str(error.validator)
    kind = _KINDS.get(keyword, ErrorKind.FORMAT)
    path = list(error.absolute_path)
    where = _path(path) or "payload"
    instance = error.instance
    value = error.validator_value
    if keyword == "required" and isinstance(instance, dict):
        missing = [p for p in value if p not in instance]
        names = ", ".join(_quote(_path([*path, p])) for p in missing)
        noun = "property" if len(missing) == 1 else "properties"
        text = f"missing required {noun} {names}"
    elif keyword == "additionalProperties" and isinstance(instance, dict):
        extra = _additional(instance, error.schema)
        names = ", ".join(_quote(_path([*path, p])) for p in extra)
        noun = "property" if len(extra) == 1 else "properties"
        text = f"unexpected {noun} {names}"
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


__all__ = ["SchemaError", "Validator", "Violation", "is_multiple_of"]
