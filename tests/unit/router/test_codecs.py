"""The json and raw codecs, and the codec registry."""

from __future__ import annotations

import json

import pytest

from ocppgw import wire
from ocppgw.ocpp.envelope import CodecError, DecodeContext, Envelope
from ocppgw.ocpp.messages import Call, CallError, CallResult, Send

CTX = DecodeContext("ocpp2.1")


def test_registry_names_known_codecs() -> None:
    """An unknown codec name fails with the list of known ones."""
    with pytest.raises(wire.UnknownCodec, match=r"known codecs: .*json.*raw"):
        wire.get("xml")


def test_json_envelope_shape() -> None:
    """The JSON envelope has docs/topics.md's field names, Action added to results."""
    env = Envelope(CallResult("1", {"status": "Accepted"}, "BootNotification"),
                   version="ocpp1.6", charge_point="CP1", timestamp="t")
    out = json.loads(wire.get("json").encode(env))
    assert out == {"MessageTypeId": 3, "UniqueId": "1", "Action": "BootNotification",
                   "Payload": {"status": "Accepted"}, "Protocol": "ocpp1.6",
                   "ChargePointId": "CP1", "Timestamp": "t"}


def test_json_error_carries_details() -> None:
    """ErrorDetails is carried in both directions."""
    codec = wire.get("json")
    env = Envelope(CallError("1", "NotSupported", "d", {"k": [1]}))
    assert codec.decode(codec.encode(env), CTX).message == env.message


@pytest.mark.parametrize("message", [
    Call("1", "Reset", {"type": "Soft"}),
    Send("2", "NotifyPeriodicEventStream", {}),
    CallResult("3", {}),
    CallError("4", "GenericError", "", {}),
])
def test_round_trips(message: object) -> None:
    """json and raw decode what they encode."""
    for name in ("json", "raw"):
        codec = wire.get(name)
        assert codec.decode(codec.encode(Envelope(message)), CTX).message == message  # type: ignore[arg-type]


@pytest.mark.parametrize("payload, message", [
    (b"\xff", "not valid UTF-8 JSON"),
    (b"[]", "not a JSON object"),
    (b'{"MessageTypeId": 7, "UniqueId": "1"}', "not one of"),
    (b'{"MessageTypeId": 2, "UniqueId": 1, "Action": "A", "Payload": {}}', "UniqueId"),
    (b'{"MessageTypeId": 2, "UniqueId": "1", "Payload": {}}', "Action"),
    (b'{"MessageTypeId": 3, "UniqueId": "1"}', "Payload"),
    (b'{"MessageTypeId": 4, "UniqueId": "1", "ErrorCode": "Nope"}', "ErrorCode"),
    (b'{"MessageTypeId": 4, "UniqueId": "1", "ErrorCode": "GenericError", "ErrorDetails": 1}',
     "ErrorDetails"),
])
def test_json_decode_errors(payload: bytes, message: str) -> None:
    """Every bad downstream envelope raises CodecError naming the field."""
    with pytest.raises(CodecError, match=message):
        wire.get("json").decode(payload, CTX)


#: Words of Python's or protobuf's own exception texts.
INTERNAL = ("recursion", "int_max_str_digits", "Exceeds the limit", "sys.", "Expecting",
            "codec can't", "Error parsing", "DecodeError")


@pytest.mark.parametrize("payload", [
    b'{"Payload": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"UniqueId": "1", "x": ' + b"9" * 5000 + b"}",
    b'{"UniqueId": "1", "Payload": {}',
    b"\xff\xfe{}",
])
def test_undecodable_envelopes_say_it_in_our_words(payload: bytes) -> None:
    """
    An envelope past the decoder's limits or not JSON at all is refused with
    the gateway's own text, never Python's exception text (which names
    interpreter settings and may quote what it read), in every codec.
    """
    for name in ("json", "raw", "protobuf"):
        with pytest.raises(CodecError) as caught:
            wire.get(name).decode(payload, CTX)
        text = str(caught.value)
        assert not [w for w in INTERNAL if w in text], (name, text)


def test_json_21_types_only_for_21() -> None:
    """MessageTypeId 5 and 6 are refused for a 1.6 or 2.0.1 charge point."""
    payload = b'{"MessageTypeId": 6, "UniqueId": "1", "Action": "A", "Payload": {}}'
    with pytest.raises(CodecError, match=r"does not exist in ocpp2\.0\.1"):
        wire.get("json").decode(payload, DecodeContext("ocpp2.0.1"))


def test_raw_keeps_original_text() -> None:
    """raw publishes the charge point's frame byte for byte."""
    text = '[2, "1", "Heartbeat", {} ]'
    env = Envelope(Call("1", "Heartbeat", {}), frame=text)
    assert wire.get("raw").encode(env) == text.encode()


def test_raw_decode_error() -> None:
    """A raw downstream payload that is not an OCPP-J frame is a CodecError."""
    with pytest.raises(CodecError, match="not an OCPP-J frame"):
        wire.get("raw").decode(b'{"a":1}', CTX)


def test_errors_name_the_exchange() -> None:
    """A refused envelope whose id and Action were readable names them (all codecs)."""
    with pytest.raises(CodecError) as e:
        wire.get("json").decode(
            b'{"MessageTypeId": 2, "UniqueId": "c1", "Action": "Reset", "Payload": 5}', CTX)
    assert (e.value.unique_id, e.value.action) == ("c1", "Reset")
    with pytest.raises(CodecError) as e:
        wire.get("raw").decode(b'[2,"c2","Reset",5]', CTX)
    assert (e.value.unique_id, e.value.action) == ("c2", "Reset")
    with pytest.raises(CodecError) as e:
        wire.get("json").decode(b'{"MessageTypeId": 2, "UniqueId": 7}', CTX)
    assert e.value.unique_id is None


def test_timestamp_read_downstream_by_both_envelope_codecs() -> None:
    """A downstream ``Timestamp`` (RFC 3339 with an offset) becomes ``sent``, in
    epoch seconds, in the JSON envelope and the protobuf wrapper alike; none: None."""
    call = {"MessageTypeId": 2, "UniqueId": "t1", "Action": "Reset", "Payload": {"type": "Soft"}}
    json_codec, protobuf = wire.get("json"), wire.get("protobuf")
    for stamp, when in [("2026-12-07T01:00:00.500Z", 1796605200.5),
                        ("2026-12-07T02:00:00+01:00", 1796605200.0)]:
        got = json_codec.decode(json.dumps({**call, "Timestamp": stamp}).encode(), CTX)
        assert got.sent == when
        wrapped = protobuf.encode(Envelope(Call("t1", "Reset", {"type": "Soft"}),
                                           "ocpp2.1", timestamp=stamp))
        assert protobuf.decode(wrapped, CTX).sent == when
    assert json_codec.decode(json.dumps(call).encode(), CTX).sent is None
    assert protobuf.decode(protobuf.encode(Envelope(Call("t1", "Reset", {}))), CTX).sent is None


@pytest.mark.parametrize("stamp, message", [
    ("yesterday", "not an RFC 3339 date-time"),
    (1796605200, "not an RFC 3339 date-time"),
    ("", "not an RFC 3339 date-time"),
    ("2026-12-07T01:00:00", "no UTC offset"),
])
def test_bad_timestamp_refused_naming_it(stamp: object, message: str) -> None:
    """A downstream ``Timestamp`` that is not an RFC 3339 date-time with an offset is
    refused (CodecError naming it and the exchange), never guessed."""
    call = {"MessageTypeId": 2, "UniqueId": "t2", "Action": "Reset", "Payload": {},
            "Timestamp": stamp}
    with pytest.raises(CodecError, match=message) as e:
        wire.get("json").decode(json.dumps(call).encode(), CTX)
    assert (e.value.unique_id, e.value.action) == ("t2", "Reset")


def test_timestamp_of_an_answer_is_ignored() -> None:
    """Only a CALL's ``Timestamp`` is read: an answer with one that is no date-time
    is decoded as before (its charge point's CALL still gets it)."""
    result = {"MessageTypeId": 3, "UniqueId": "t3", "Payload": {}, "Timestamp": 17}
    got = wire.get("json").decode(json.dumps(result).encode(), CTX)
    assert (got.message, got.sent) == (CallResult("t3", {}), None)


def test_registering_a_codec_keeps_the_built_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    """A codec registered by a third party joins the built-ins (registered at import);
    it never hides them."""
    monkeypatch.setattr(wire, "_registry", dict(wire._registry))

    class Upper:
        name = "upper"

    wire.register(Upper())  # type: ignore[arg-type]
    assert {"json", "raw", "protobuf", "upper"} <= set(wire.names())
    assert wire.get("json").name == "json"


def test_an_unavailable_built_in_names_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """A built-in codec that could not load (protobuf without its runtime) is refused
    with the reason, not as unknown."""
    monkeypatch.setattr(wire, "_registry", {k: v for k, v in wire._registry.items()
                                            if k != "protobuf"})
    monkeypatch.setattr(wire, "_unavailable", {"protobuf": "no module named google"})
    with pytest.raises(wire.UnknownCodec, match="'protobuf' is unavailable: no module named"):
        wire.get("protobuf")
