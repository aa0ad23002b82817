# -*- test-case-name: tests.unit.config.test_declaration,tests.unit.config.test_config -*-
"""
The parsed keys onto the model: :func:`build`.

Each field of a model dataclass has one source (:func:`plan`): the key
declared for it (its value as parsed; None for an empty ``optional`` one), the
derivation that makes it (:data:`~ocppgw.config.derived.DERIVATIONS`), or,
for a field whose type is a section's model, that section built in turn (a
tuple of them for a section that takes a suffix, one per section in file order).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ocppgw.config.declaration import Key, Values
from ocppgw.config.derived import DERIVATIONS as _BASE
from ocppgw.config.derived import Context, Derivation
from ocppgw.config.derived_forward import FORWARD_DERIVATIONS
from ocppgw.config.keys import SECTIONS
from ocppgw.config.values import ConfigError

_T = TypeVar("_T")

#: Every derivation: the gateway's, then forward mode's.
DERIVATIONS = _BASE + FORWARD_DERIVATIONS


@dataclass(frozen=True)
class FromKey:
    """The field is the value of ``[section] key``."""

    section: str
    key: str
    spec: Key


@dataclass(frozen=True)
class FromDerivation:
    """The field is made by a derivation (with the others it makes)."""

    derivation: Derivation


@dataclass(frozen=True)
class FromSection:
    """The field is ``section``'s model, built; a tuple of them if it takes a suffix."""

    section: str
    model: type[Any]


Source = FromKey | FromDerivation | FromSection


class PlanError(Exception):
    """The declaration and the model do not fit: a field of no source, or of two."""


def plan(cls: type[Any]) -> Mapping[str, Source]:
    """
    The source of each field of the model dataclass ``cls``, in field order.

    :raises PlanError: a field has no source or more than one, or a source
        names a field ``cls`` does not have.
    """
    sources: dict[str, list[Source]] = {}
    for name, section in SECTIONS.items():
        if section.model is cls:
            for key_name, key in section.keys.items():
                field = key.field_name(key_name)
                if field is not None:
                    sources.setdefault(field, []).append(FromKey(name, key_name, key))
    for derivation in DERIVATIONS:
        if derivation.model is cls:
            for field in derivation.fields:
                sources.setdefault(field, []).append(FromDerivation(derivation))
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    for field in fields:
        if field not in sources:
            found = _section_of(hints[field])
            if found is not None:
                sources[field] = [found]
    for field in sources.keys() - set(fields):
        raise PlanError(f"{cls.__name__} has no field {field!r}, which {sources[field]} fill")
    for field in fields:
        if len(sources.get(field, ())) != 1:
            raise PlanError(f"{cls.__name__}.{field}: sources {sources.get(field, [])}")
    return {field: sources[field][0] for field in fields}


def _section_of(hint: Any) -> FromSection | None:
    """The section whose model is ``hint`` (or, if it takes a suffix, ``tuple[hint, ...]``)."""
    suffixed = typing.get_origin(hint) is tuple
    inner = typing.get_args(hint)[0] if suffixed else hint
    for name, section in SECTIONS.items():
        if section.model is not None and section.model is inner:
            if name.endswith(":") == suffixed:
                return FromSection(name, section.model)
    return None


def build(cls: type[_T], raw: Mapping[str, Values], base_dir: str, section: str = "") -> _T:
    """
    A ``cls`` of the parsed sections ``raw``, its fields filled in their order
    (so the first problem found is the one reported), then the checks of
    ``cls`` made.  ``section``: the section (``listener:ws``) a model of a
    section that takes a suffix is built from.
    """
    built: dict[str, Any] = {}
    ctx = Context(raw, base_dir, section, built)
    for field, source in plan(cls).items():
        if field in built:
            continue
        if isinstance(source, FromKey):
            value = raw[section if source.section.endswith(":") else source.section][source.key]
            built[field] = None if source.spec.optional and not value else value
        elif isinstance(source, FromDerivation):
            built.update(_derive(source.derivation, ctx))
        elif source.section.endswith(":"):
            built[field] = _build_each(source, raw, base_dir)
        else:
            built[field] = build(source.model, raw, base_dir)
    for derivation in DERIVATIONS:
        if derivation.model is cls and not derivation.fields:
            _derive(derivation, ctx)
    return cls(**built)


def _derive(derivation: Derivation, ctx: Context) -> Mapping[str, Any]:
    made = derivation.derive(ctx)
    if set(made) != set(derivation.fields):
        raise PlanError(
            f"{derivation.derive.__name__} made {sorted(made)}, not {derivation.fields}"
        )
    return made


def _build_each(source: FromSection, raw: Mapping[str, Values], base_dir: str) -> tuple[Any, ...]:
    """A model of each ``[NAME:SUFFIX]`` section, in file order."""
    out = tuple(
        build(source.model, raw, base_dir, name) for name in raw if name.startswith(source.section)
    )
    if not out and SECTIONS[source.section].required:
        base = source.section.rstrip(":")
        raise ConfigError(f"[{source.section}NAME]: at least one {base} section is required")
    return out
