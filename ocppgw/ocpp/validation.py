# -*- test-case-name: tests.unit.ocpp.test_validation -*-
"""
JSON-schema validation of OCPP payloads, with failures named as OCPP-J errors.

A :class:`Validator` checks the payload of a request (CALL or SEND) or of a
response (CALLRESULT) against the OCA schema of its version, action and
direction, and reports the most relevant problem
(:func:`jsonschema.exceptions.best_match`: the shallowest, first one) as a
:class:`~ocppgw.ocpp.violations.Violation`, whose kind and wording
:mod:`ocppgw.ocpp.violations` describes.  The schema files are found and read
by :mod:`ocppgw.ocpp.schemas`: those of the ``ocpp`` package, or of a
configured ``schema_dir``.

Validators
    One compiled validator per (version, action, direction), built on first
    use and cached in the :class:`Validator` instance, beside its compiled
    yes/no check (:mod:`ocppgw.ocpp.fastvalidation`, jsonschema-rs), which
    every payload meets first; only a payload it refuses is walked by
    ``jsonschema`` for the error to report.  The class follows the
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
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import Any

import jsonschema.exceptions
import jsonschema.validators
from referencing import Registry
from referencing.exceptions import Unresolvable

from ocppgw.ocpp.fastvalidation import FastCheck, compile_fast
from ocppgw.ocpp.schemas import VERSION_DIRS, SchemaError, SchemaSet
from ocppgw.ocpp.violations import Violation, no_response, unknown_action, violation_of

#: How close to an integer the quotient of a ``multipleOf`` check must be.
_REL_TOLERANCE = Fraction(1, 10**12)
_ABS_TOLERANCE = Fraction(1, 10**9)


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


def _never(payload: Any) -> bool:
    """The fast check of a schema jsonschema-rs cannot compile: always ask jsonschema."""
    return False


class Validator:
    """
    Validates OCPP payloads against the schemas of their version and action.

    :param schema_dir: a directory with ``v16/``, ``v201/`` and ``v21/``
        subdirectories of schema files, used instead of the ``ocpp`` package's.
    :raises ValueError: ``schema_dir`` is not a directory or holds none of the
        version subdirectories.
    """

    def __init__(self, schema_dir: str | None = None) -> None:
        self._schemas = SchemaSet(schema_dir)
        #: Compiled validators by (version, action, request).
        self._compiled: dict[tuple[str, str, bool], Any] = {}
        #: The compiled yes/no check of each, on the hot path.
        self._fast: dict[tuple[str, str, bool], FastCheck] = {}
        #: (version, action, request) -> the compiled check of each schema
        #: used so far: ``True`` when a payload is valid.  For a caller's
        #: fast path; :meth:`validate` still says why one is not.
        self.fast_checks: Mapping[tuple[str, str, bool], FastCheck] = self._fast
        #: The tolerant validator class derived from each draft's class.
        self._classes: dict[type[Any], type[Any]] = {}

    def knows(self, version: str, action: str) -> bool:
        """Whether ``action`` exists in ``version``: its request schema is present."""
        return self._schemas.file_name(version, action, request=True) is not None

    def validate(
        self, version: str, action: str, request: bool, payload: dict[str, Any]
    ) -> Violation | None:
        """
        Check ``payload`` of ``action`` (a request if ``request``, else its response).

        :returns: ``None`` when it is valid, else what is wrong with it.
        :raises ValueError: ``version`` is not one of the supported versions.
        :raises SchemaError: the schema file is unreadable or invalid.
        """
        fast = self._fast.get((version, action, request))
        if fast is not None and fast(payload):
            return None
        validator = self.compiled(version, action, request)
        if validator is None:
            if not self.knows(version, action):
                return unknown_action(version, action)
            return no_response(version, action)
        if fast is None:
            fast = self._fast[(version, action, request)]
            if fast(payload):
                return None
        # Refused by the compiled check: jsonschema names the field and the
        # OCPP-J error code (OCPP-J 1.6 Table 7, OCPP 2.0.1 Part 4 Table 8).
        try:
            error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
        except Unresolvable as e:
            raise SchemaError(f"{version} {action}: unresolvable $ref: {e}") from e
        if error is None:
            return None
        return violation_of(error)

    def check_all(self) -> int:
        """
        Compile every schema there is, so that a broken one stops the gateway
        at start rather than failing a charge point later.

        :returns: how many schemas were checked.
        :raises SchemaError: naming the first schema that cannot be used.
        """
        count = 0
        for version in VERSION_DIRS:
            for name in sorted(self._schemas.files(version)):
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
            name = self._schemas.file_name(version, action, request)
            if name is None:
                return None
            validator = self._compile(version, name)
            self._compiled[key] = validator
            try:
                self._fast[key] = compile_fast(validator.schema, is_multiple_of)
            except ValueError:
                # jsonschema-rs cannot compile it: every payload takes the slow path.
                self._fast[key] = _never
        return validator

    def _compile(self, version: str, name: str) -> Any:
        schema = self._schemas.load(version, name)
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


__all__ = ["SchemaError", "Validator", "Violation", "is_multiple_of"]
