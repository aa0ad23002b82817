# -*- test-case-name: tests.unit.router.test_codecs -*-
"""
The raw profile: the MQTT payload is the OCPP-J frame itself.

Upstream it is the text exactly as the charge point sent it; messages that the
gateway makes (errors) are framed as OCPP-J would frame them.  Downstream the
payload must be a valid OCPP-J frame of the charge point's version.
"""

from __future__ import annotations

from zope.interface import implementer

from ocppgw.ocpp.envelope import CodecError, DecodeContext, Envelope
from ocppgw.ocpp.messages import FrameError, encode_frame, parse_frame
from ocppgw.wire.codec import ICodec


@implementer(ICodec)
class RawCodec:
    name = "raw"

    def encode(self, envelope: Envelope) -> bytes:
        text = envelope.frame if envelope.frame is not None else encode_frame(envelope.message)
        return text.encode("utf-8")

    def decode(self, data: bytes, context: DecodeContext) -> Envelope:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CodecError("payload is not UTF-8 text") from None
        try:
            message = parse_frame(text, context.version)
        except FrameError as e:
            raise CodecError(f"not an OCPP-J frame of {context.version}: {e.description}").about(
                e.unique_id if e.unique_id != "-1" else None, e.action
            ) from None
        return Envelope(message, version=context.version, frame=text)
