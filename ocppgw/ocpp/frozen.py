# -*- test-case-name: tests.unit.ocpp.test_frozen -*-
"""
A faster ``__init__`` for the frozen, slotted dataclasses made per message.

A frozen dataclass's generated ``__init__`` sets each field with
``object.__setattr__(self, name, value)``, which looks the name up through
the class each time: an :class:`~ocppgw.ocpp.envelope.Envelope` took about
0.9 us to make, and every round trip makes two, besides its messages.
:func:`fast_init` replaces that ``__init__`` with one taking the same
parameters (names, order, defaults, default factories) that calls each
slot's descriptor directly.  Everything else the dataclass has (frozen
assignment refused, ``__eq__``, ``__hash__``, ``__repr__``,
``dataclasses.replace``) is unchanged; tests compare the two for every class
it decorates.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["fast_init"]

T = TypeVar("T")


class _Factory:
    """The default of a parameter whose field has a default factory."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def fast_init(cls: type[T]) -> type[T]:
    """Give the frozen, slotted dataclass ``cls`` an ``__init__`` that sets its slots directly."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass with slots")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has __post_init__, which this __init__ would skip")
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    signature: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f.name
        if f.kw_only:
            raise TypeError(f"{cls.__name__}.{name} is keyword-only, which this __init__ lacks")
        namespace[f"_set_{name}"] = getattr(cls, name).__set__
        has_default = f.default is not dataclasses.MISSING
        has_factory = f.default_factory is not dataclasses.MISSING
        if has_default:
            namespace[f"_default_{name}"] = f.default
        if has_factory:
            namespace[f"_factory_{name}"] = f.default_factory
        if not f.init:
            value = f"_default_{name}" if has_default else f"_factory_{name}()"
        elif has_factory:
            signature.append(f"{name}=_FACTORY")
            value = f"_factory_{name}() if {name} is _FACTORY else {name}"
        else:
            signature.append(f"{name}=_default_{name}" if has_default else name)
            value = name
        body.append(f"    _set_{name}(self, {value})")
    source = f"def __init__(self, {', '.join(signature)}):\n" + "\n".join(body or ["    pass"])
    exec(source, namespace)  # the dataclass module makes its __init__ the same way
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
