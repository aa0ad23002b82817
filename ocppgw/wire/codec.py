# -*- test-case-name: tests.unit.router.test_codecs -*-
"""What a wire profile is: :class:`ICodec`."""

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
