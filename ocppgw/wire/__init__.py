# -*- test-case-name: tests.unit.router.test_codecs -*-
"""
Wire profiles of MQTT payloads (codecs), in a registry keyed by name.

Each topic of the configuration picks one by ``codec = NAME``.  A codec turns an
:class:`~ocppgw.ocpp.envelope.Envelope` into bytes and back, and knows nothing of
topics (:class:`~ocppgw.wire.codec.ICodec`).  The built-in ones (``json``,
``raw``, ``protobuf``) are registered when this package is imported, so a
codec registered later under one of their names replaces it, never the other
way round.  An unknown name fails with the list of the known ones.

Stage: above the OCPP-J domain, below the router and the configuration,
which use it.  May import: :mod:`ocppgw.ocpp`, zope.interface, and the
protobuf runtime (for its profile).
"""

from __future__ import annotations

from ocppgw.wire.codec import ICodec, UnknownCodec
from ocppgw.wire.jsonenvelope import JSONCodec
from ocppgw.wire.raw import RawCodec

_registry: dict[str, ICodec] = {}

#: Built-in codecs that could not be loaded, and why (named when one is asked for).
_unavailable: dict[str, str] = {}


def register(codec: ICodec) -> None:
    """Make ``codec`` selectable by its name (replacing one of that name)."""
    _registry[codec.name] = codec


def names() -> list[str]:
    """The names of every registered codec, sorted."""
    return sorted(_registry)


def get(name: str) -> ICodec:
    """
    The codec called ``name``.

    :raises UnknownCodec: naming the known codecs.
    """
    try:
        return _registry[name]
    except KeyError:
        if name in _unavailable:
            raise UnknownCodec(f"codec {name!r} is unavailable: {_unavailable[name]}") from None
        raise UnknownCodec(
            f"unknown codec {name!r}; known codecs: {', '.join(sorted(_registry))}"
        ) from None


register(JSONCodec())
register(RawCodec())
try:
    from ocppgw.wire.protobuf import ProtobufCodec
except ImportError as e:
    # A topic configured with codec = protobuf then fails, saying why.
    _unavailable["protobuf"] = str(e)
else:
    register(ProtobufCodec())


__all__ = ["ICodec", "UnknownCodec", "get", "names", "register"]
