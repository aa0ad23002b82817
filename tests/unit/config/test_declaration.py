"""
The one declaration of each key (ocppgw/config/keys*.py) and the model it
fills (ocppgw/config/model.py): every field has exactly one source, a key's
field has the type its parser gives, and the model keeps no default of its own
(but ListenerConfig's, which equal the declared ones).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import pytest

from ocppgw.config import SECTIONS, ListenerConfig, model, parse
from ocppgw.config.mapping import FromKey, FromSection, PlanError, plan


def models() -> list[type[Any]]:
    """Config and every model dataclass built from a section below it."""
    found, todo = [], [model.Config]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo += [s.model for s in plan(cls).values() if isinstance(s, FromSection)]
    return found


def conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type ``hint`` (the few kinds the model uses)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(conforms(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, tuple) and all(conforms(v, item) for v in value)
    if hint in (int, float, bool, str, type(None)):
        return type(value) is hint
    return isinstance(value, hint)


def test_every_field_has_one_source() -> None:
    """Each field of each model is filled from one declared key, one derivation or one section."""
    assert models() == [
        model.Config,
        model.ListenerConfig,
        model.MQTTConfig,
        model.UpstreamConfig,
        model.DownstreamConfig,
        model.PresenceConfig,
        model.LoginLimits,
        model.AdminConfig,
        model.RecorderConfig,
        model.ForwardConfig,
    ]


def test_every_section_fills_a_model_that_is_built() -> None:
    """Each section's model is one the configuration is built of, and each key fills a
    field or is declared as read by a derivation, never both."""
    built = set(models())
    for name, section in SECTIONS.items():
        assert section.model is None or section.model in built, name
        for key_name, key in section.keys.items():
            assert not (key.derived and key.field), f"[{name}] {key_name}"
            if section.model is None:
                assert key.derived, f"[{name}] {key_name}: no model to fill"


def test_a_field_without_a_source_is_found() -> None:
    """A model field that no key, derivation or section fills makes the plan fail."""

    @dataclasses.dataclass(frozen=True)
    class Stray:
        colour: str

    with pytest.raises(PlanError, match=r"Stray\.colour"):
        plan(Stray)


def test_key_fields_have_the_type_of_their_parser() -> None:
    """Each field filled from a key is annotated with the type the key's parser returns
    for its default and its example (None for an empty optional one)."""
    for cls in models():
        hints = typing.get_type_hints(cls)
        for field, source in plan(cls).items():
            if not isinstance(source, FromKey):
                continue
            key = source.spec
            shown = [raw for raw in (key.default, key.example) if raw is not None]
            assert shown, f"[{source.section}] {source.key}: neither default nor example"
            for raw in shown:
                value = key.parse(raw)
                if key.optional and not value:
                    value = None
                assert conforms(value, hints[field]), (
                    f"{cls.__name__}.{field}: {hints[field]}, but [{source.section}] "
                    f"{source.key} = {raw!r} parses to {value!r}"
                )


def test_only_listener_config_keeps_defaults() -> None:
    """No model dataclass repeats a default but ListenerConfig (for tests and benchmarks)."""
    for cls in models():
        defaults = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        ]
        assert cls is ListenerConfig or not defaults, (cls.__name__, defaults)


def test_listener_config_defaults_are_the_declared_ones() -> None:
    """ListenerConfig's defaults equal what a listener section with only an endpoint gets."""
    (parsed,) = parse("[listener:t]\nendpoint = tcp:0\n").listeners
    fields = dataclasses.fields(ListenerConfig)
    defaulted = [f for f in fields if f.default is not dataclasses.MISSING]
    assert len(defaulted) > 5
    for f in defaulted:
        assert getattr(parsed, f.name) == f.default, f.name
