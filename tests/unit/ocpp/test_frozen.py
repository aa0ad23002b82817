"""Tests for ocppgw.ocpp.frozen: fast_init makes what the dataclass __init__ made."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocppgw.ocpp.envelope import Envelope
from ocppgw.ocpp.frozen import fast_init
from ocppgw.ocpp.messages import Call, CallError, CallResult, CallResultError, Send

DECORATED = [Envelope, Call, CallResult, CallError, CallResultError, Send]


def twin(cls: type) -> Any:
    """The same frozen, slotted dataclass with the __init__ dataclasses generates."""
    fields = []
    for f in dataclasses.fields(cls):
        options: dict[str, Any] = {"init": f.init}
        if f.default is not dataclasses.MISSING:
            options["default"] = f.default
        if f.default_factory is not dataclasses.MISSING:
            options["default_factory"] = f.default_factory
        fields.append((f.name, f.type, dataclasses.field(**options)))
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True, slots=True)


@pytest.mark.parametrize("cls", DECORATED, ids=lambda c: c.__name__)
def test_signature_is_the_dataclass_one(cls: type) -> None:
    """Each decorated class takes the parameters (names, order, defaults) of its dataclass."""
    assert cls.__init__ is not twin(cls).__init__
    assert str(inspect.signature(cls)) == str(inspect.signature(twin(cls)))


values = (
    st.none()
    | st.booleans()
    | st.text(max_size=4)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)
)


@pytest.mark.parametrize("cls", DECORATED, ids=lambda c: c.__name__)
@given(data=st.data())
def test_instances_are_the_dataclass_ones(cls: type, data: st.DataObject) -> None:
    """
    Made from the same arguments, positional or by name, with any left out,
    an instance has every field of its dataclass twin's, each default factory
    called afresh, and stays frozen.
    """
    params = list(inspect.signature(cls).parameters.values())
    required = [p for p in params if p.default is inspect.Parameter.empty]
    optional = [p for p in params if p.default is not inspect.Parameter.empty]
    given_optional = data.draw(
        st.lists(st.sampled_from(optional), unique=True) if optional else st.just([])
    )
    positional = [data.draw(values) for _ in required]
    by_name = {p.name: data.draw(values) for p in given_optional}
    ours, theirs = cls(*positional, **by_name), twin(cls)(*positional, **by_name)
    for f in dataclasses.fields(cls):
        assert getattr(ours, f.name) == getattr(theirs, f.name), f.name
        if f.default_factory is not dataclasses.MISSING and f.name not in by_name:
            assert getattr(ours, f.name) is not getattr(cls(*positional, **by_name), f.name)
    assert ours == dataclasses.replace(ours)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(ours, dataclasses.fields(cls)[0].name, "changed")


def test_missing_argument_refused_as_before() -> None:
    """Leaving out a required field raises TypeError, as the dataclass __init__ does."""
    with pytest.raises(TypeError):
        Envelope()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Call("1", "Heartbeat")  # type: ignore[call-arg]


def test_refuses_what_it_cannot_serve() -> None:
    """Classes whose __init__ it would get wrong are refused: not frozen, no slots,
    a __post_init__, a keyword-only field."""

    @dataclasses.dataclass(slots=True)
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class KeywordOnly:
        a: int

    for cls in (Mutable, NoSlots, PostInit, KeywordOnly):
        with pytest.raises(TypeError):
            fast_init(cls)
