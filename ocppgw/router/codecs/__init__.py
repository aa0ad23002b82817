# -*- test-case-name: tests.unit.router.test_codecs -*-
"""
Wire profiles of MQTT payloads, in a registry keyed by name.

Each topic of the configuration picks one by ``codec = NAME``.  A codec turns an
:class:`~ocppgw.ocpp.envelope.Envelope` into bytes and back, and knows nothing of
topics.  An unknown name fails with the list of the known ones.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

from ocppgw.ocpp.envelope import DecodeContext, Envelope


class ICodec(Interface):
    """Turns envelopes into MQTT payloads and back."""

    name: str = Attribute("The name a configuration selects the codec by.")

    def encode(envelope: Envelope) -> bytes:
        """The payload that carries ``envelope``."""

    def decode(data: bytes, context: DecodeContext) -> Envelope:
        """
        The envelope carried by ``data``, a downstream payload for a charge
        point of ``context.version``.

        :raises ocppgw.ocpp.envelope.CodecError: naming what is wrong.
        """


class UnknownCodec(KeyError):
    """A codec name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0])


_registry: dict[str, ICodec] = {}


def register(codec: ICodec) -> None:
    """Make ``codec`` selectable by its name."""
    _registry[codec.name] = codec


def _load_builtins() -> None:
    if _registry:
        return
    from ocppgw.router.codecs.jsonenvelope import JSONCodec
    from ocppgw.router.codecs.raw import RawCodec

    register(JSONCodec())
    register(RawCodec())
    try:
        from ocppgw.router.codecs.protobuf import ProtobufCodec
    except ImportError as e:
        # Say so: a topic configured with codec = protobuf then fails with the
        # list of known codecs, and this line tells why it is missing.
        from twisted.logger import Logger

        Logger().error("protobuf codec unavailable: {why}", why=str(e))
        return
    register(ProtobufCodec())


def names() -> list[str]:
    """The names of every registered codec, sorted."""
    _load_builtins()
    return sorted(_registry)


def get(name: str) -> ICodec:
    """
    The codec called ``name``.

    :raises UnknownCodec: naming the known codecs.
    """
    _load_builtins()
    try:
        return _registry[name]
    except KeyError:
        raise UnknownCodec(
            f"unknown codec {name!r}; known codecs: {', '.join(sorted(_registry))}"
        ) from None
