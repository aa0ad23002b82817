# -*- test-case-name: tests.unit.ocpp.test_surrogates -*-
"""
Unpaired surrogates are not JSON text (RFC 8259 §8.2, I-JSON RFC 7493 §2.1):
the strict reader refuses them, escaped or as bytes, and a frame holding one
is a format error of the sender's version.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocppgw.ocpp.jsontext import LoneSurrogate, loads
from ocppgw.ocpp.messages import FrameError, parse_frame
from ocppgw.ocpp.versions import OCPP16, OCPP201, ErrorKind

LONE = st.integers(0xD800, 0xDFFF).map(lambda n: f"\\u{n:04x}")


@pytest.mark.parametrize(
    "text",
    ['["\\ud800"]', '{"a":"x\\uDFFF"}', '{"\\udc00":1}', '["\\ud83d"]', '["\\ude00\\ud83d"]'],
)
def test_escaped_lone_surrogate_refused(text: str) -> None:
    """An escaped unpaired surrogate, in a value or a key, is refused as LoneSurrogate."""
    with pytest.raises(LoneSurrogate, match="RFC 8259"):
        loads(text)
    with pytest.raises(LoneSurrogate):
        loads(text.encode("utf-8"))


def test_raw_surrogate_bytes_refused() -> None:
    """UTF-8 (or UTF-16) bytes encoding a surrogate are not text: refused, not passed through."""
    with pytest.raises(ValueError):
        loads(b'["\xed\xa0\x80"]')
    with pytest.raises(ValueError):
        loads('["\ud800"]'.encode("utf-16-le", "surrogatepass"))


@pytest.mark.parametrize("text", ['["\\ud83d\\ude00"]', '["\\\\ud800"]', '["\\u00e9\\u20ac"]'])
def test_pairs_and_lookalikes_read(text: str) -> None:
    """A surrogate pair, an escaped backslash before "ud800", other escapes: read as json does."""
    assert loads(text) == json.loads(text)


@given(st.lists(st.text(max_size=4) | LONE, min_size=1, max_size=4))
def test_lone_surrogate_anywhere_refused(parts: list[str]) -> None:
    """Any string holding an escaped unpaired surrogate is refused; the rest is read as json."""
    body = "".join(p if p.startswith("\\u") else json.dumps(p)[1:-1] for p in parts)
    text = f'["{body}"]'
    decoded = json.loads(text)[0]
    lone = any(0xD800 <= ord(c) <= 0xDFFF for c in decoded)
    if lone:
        with pytest.raises(LoneSurrogate):
            loads(text)
    else:
        assert loads(text) == [decoded]


@pytest.mark.parametrize("version", [OCPP16, OCPP201])
def test_frame_with_lone_surrogate_is_a_format_error(version: str) -> None:
    """A CALL holding one is a format error (1.6 FormationViolation, 2.x FormatViolation)
    naming its MessageId, as the other strict-JSON refusals are."""
    with pytest.raises(FrameError) as caught:
        parse_frame('[2,"u1","DataTransfer",{"vendorId":"\\ud800"}]', version)
    assert (caught.value.kind, caught.value.unique_id, caught.value.message_type) == (
        ErrorKind.FORMAT,
        "u1",
        2,
    )


@pytest.mark.parametrize(
    "payload",
    [
        b'{"MessageTypeId":2,"UniqueId":"d1","Action":"DataTransfer","Payload":{"vendorId":"\\ud800"}}',
        b'{"MessageTypeId":2,"UniqueId":"d1","Action":"DataTransfer","Payload":{"vendorId":"\xed\xa0\x80"}}',
    ],
)
def test_json_envelope_with_lone_surrogate_is_refused_naming_its_id(payload: bytes) -> None:
    """A downstream JSON envelope holding one is a CodecError; its UniqueId is still found."""
    from ocppgw.ocpp.envelope import CodecError, DecodeContext
    from ocppgw.ocpp.messages import unique_id_of
    from ocppgw.wire.jsonenvelope import JSONCodec

    with pytest.raises(CodecError):
        JSONCodec().decode(payload, DecodeContext(OCPP16))
    assert unique_id_of(payload) == "d1"


@pytest.mark.parametrize(
    "payload",
    [
        b'[2,"d1","DataTransfer",{"vendorId":"\\ud800"}]',
        b'[2,"d1","DataTransfer",{"vendorId":"\xed\xa0\x80"}]',
    ],
)
def test_raw_frame_with_lone_surrogate_is_refused(payload: bytes) -> None:
    """The raw codec refuses one too, escaped (naming the UniqueId) or as bytes."""
    from ocppgw.ocpp.envelope import CodecError, DecodeContext
    from ocppgw.wire.raw import RawCodec

    with pytest.raises(CodecError) as caught:
        RawCodec().decode(payload, DecodeContext(OCPP16))
    if b"\\u" in payload:
        assert caught.value.unique_id == "d1"


def test_protobuf_cannot_carry_a_surrogate() -> None:
    """A protobuf string is UTF-8: surrogate bytes in one are a CodecError naming the UniqueId."""
    from ocppgw.ocpp.envelope import CodecError, DecodeContext, Envelope
    from ocppgw.ocpp.messages import Call
    from ocppgw.wire import get

    codec = get("protobuf")
    data = codec.encode(Envelope(Call("d1", "DataTransfer", {"vendorId": "xyz"}), OCPP16))
    assert b"xyz" in data
    with pytest.raises(CodecError) as caught:
        codec.decode(data.replace(b"xyz", b"\xed\xa0\x80"), DecodeContext(OCPP16))
    assert caught.value.unique_id == "d1"
