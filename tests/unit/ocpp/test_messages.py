"""OCPP-J framing: parse_frame / encode_frame per version."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ocppgw.ocpp.messages import (
    Call,
    CallError,
    CallResult,
    CallResultError,
    FrameError,
    MessageType,
    Send,
    encode_frame,
    parse_frame,
)
from ocppgw.ocpp.versions import OCPP16, OCPP21, OCPP201, ErrorKind, error_code


def test_call_round_trip() -> None:
    """A CALL frame parses into a Call value and encodes back to the same JSON."""
    text = '[2,"19223201","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
    message = parse_frame(text, OCPP16)
    assert message == Call(
        "19223201", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}
    )
    assert json.loads(encode_frame(message)) == json.loads(text)


def test_result_and_error_round_trip() -> None:
    """CALLRESULT and CALLERROR (with ErrorDetails) survive parse and encode."""
    result = parse_frame('[3,"1",{"status":"Accepted"}]', OCPP201)
    assert result == CallResult("1", {"status": "Accepted"})
    error = parse_frame('[4,"1","NotSupported","nope",{"k":"v"}]', OCPP201)
    assert error == CallError("1", "NotSupported", "nope", {"k": "v"})
    assert encode_frame(error) == '[4,"1","NotSupported","nope",{"k":"v"}]'


def test_21_types() -> None:
    """CALLRESULTERROR (5) and SEND (6) exist in 2.1 only."""
    assert parse_frame('[6,"7","NotifyPeriodicEventStream",{}]', OCPP21) == Send(
        "7", "NotifyPeriodicEventStream", {}
    )
    assert parse_frame('[5,"7","FormatViolation","bad",{}]', OCPP21) == CallResultError(
        "7", "FormatViolation", "bad", {}
    )
    for version in (OCPP16, OCPP201):
        with pytest.raises(FrameError) as e:
            parse_frame('[6,"7","X",{}]', version)
        assert e.value.kind is ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED
        assert e.value.unique_id == "7"


@pytest.mark.parametrize(
    "text, kind, unique_id",
    [
        ("not json", ErrorKind.RPC_FRAMEWORK, "-1"),
        ("{}", ErrorKind.RPC_FRAMEWORK, "-1"),
        ("[]", ErrorKind.RPC_FRAMEWORK, "-1"),
        ('["2","1","A",{}]', ErrorKind.RPC_FRAMEWORK, "-1"),
        ('[2,1,"A",{}]', ErrorKind.RPC_FRAMEWORK, "-1"),
        ('[2,"' + "x" * 37 + '","A",{}]', ErrorKind.RPC_FRAMEWORK, "-1"),
        ('[2,"","A",{}]', ErrorKind.RPC_FRAMEWORK, "-1"),
        ('[2,"1","A"]', ErrorKind.RPC_FRAMEWORK, "1"),
        ('[2,"1",5,{}]', ErrorKind.RPC_FRAMEWORK, "1"),
        ('[2,"1","A",[]]', ErrorKind.FORMAT, "1"),
        ('[9,"1","A",{}]', ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED, "1"),
        ('[2,"1","A",{"x":NaN}]', ErrorKind.FORMAT, "1"),
        ('[2,"1","A",{"x":Infinity}]', ErrorKind.FORMAT, "1"),
        ('[2,"1","A",{"x":-Infinity}]', ErrorKind.FORMAT, "1"),
        ('[2,"1","A",{"x":1e999}]', ErrorKind.FORMAT, "1"),
        ('[2,"1","A",{"x":NaN]', ErrorKind.RPC_FRAMEWORK, "-1"),
        ('[4,"1","NotSupported","d",[]]', ErrorKind.RPC_FRAMEWORK, "1"),
        ('[true,"1","A",{}]', ErrorKind.RPC_FRAMEWORK, "-1"),
    ],
)
def test_bad_frames(text: str, kind: ErrorKind, unique_id: str) -> None:
    """Each malformed frame is refused with its error kind and the id to answer with."""
    with pytest.raises(FrameError) as e:
        parse_frame(text, OCPP201)
    assert e.value.kind is kind
    assert e.value.unique_id == unique_id


def test_id_of_36_characters_is_fine() -> None:
    """A message id of exactly 36 characters is valid (OCPP-J 1.6 §4.1.4)."""
    assert parse_frame('[2,"' + "x" * 36 + '","Heartbeat",{}]', OCPP16).unique_id == "x" * 36


def test_null_payload_in_16() -> None:
    """1.6 tolerates null for an empty payload (§4.2.1 only prefers {}); 2.x does not."""
    assert parse_frame('[2,"1","Heartbeat",null]', OCPP16) == Call("1", "Heartbeat", {})
    with pytest.raises(FrameError):
        parse_frame('[2,"1","Heartbeat",null]', OCPP201)


def test_error_codes_per_version() -> None:
    """1.6 keeps its misspellings; 2.x uses its own names."""
    assert error_code(OCPP16, ErrorKind.FORMAT) == "FormationViolation"
    assert error_code(OCPP201, ErrorKind.FORMAT) == "FormatViolation"
    assert error_code(OCPP16, ErrorKind.OCCURRENCE_CONSTRAINT) == "OccurenceConstraintViolation"
    assert error_code(OCPP21, ErrorKind.OCCURRENCE_CONSTRAINT) == "OccurrenceConstraintViolation"
    assert error_code(OCPP16, ErrorKind.RPC_FRAMEWORK) == "FormationViolation"
    assert error_code(OCPP201, ErrorKind.RPC_FRAMEWORK) == "RpcFrameworkError"


def test_description_truncated_to_255() -> None:
    """ErrorDescription is string[255] (2.0.1 Part 4 Table 7): longer ones are cut."""
    frame = json.loads(encode_frame(CallError("1", "GenericError", "d" * 400)))
    assert len(frame[3]) == 255
    assert frame[0] == MessageType.CALLERROR


def test_non_finite_numbers_are_not_written() -> None:
    """dumps refuses a non-finite float rather than write Infinity (RFC 8259 §6)."""
    from ocppgw.ocpp.jsontext import dumps, loads

    with pytest.raises(ValueError):
        dumps({"x": float("inf")})
    with pytest.raises(ValueError):
        loads('{"x":-1e999}')
    assert loads('{"x":1e308}') == {"x": 1e308}


@given(
    st.text(max_size=40)
    | st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=8,
    ).map(json.dumps)
    | st.sampled_from(["\ufeff[]", "NaN", "[Infinity]", "[1e999]", "[-0.0]", " [1] "])
    # Around the scanner's fast path: whitespace after, extra data, a cut value.
    | st.sampled_from(["[1]\n\t \r", "[1] x", "1 2", "[1,", "", " ", "{}\u00a0", '"a"'])
)
@example("\ufeff[1]")
@example("\u0600")  # its UTF-16 form after a stray byte order mark is cut in a surrogate
@example("\x00\ud800")  # UTF-16-BE: read as UTF-32 by json, which refuses the surrogate
def test_loads_answers_as_json_loads(text: str) -> None:
    """
    The reused strict decoder answers every text as json.loads with the same
    hooks does, as a str and as bytes in every encoding json.loads detects
    (RFC 8259 §8.1; with a byte order mark, and bytes that are no UTF at all).
    """
    from ocppgw.ocpp.jsontext import _finite_float, _reject_constant, loads

    def outcome(parse: Any, data: str | bytes) -> tuple[Any, ...]:
        try:
            return ("value", parse(data))
        except ValueError as e:
            return ("error", type(e).__name__, str(e))

    def surrogate(value: object) -> bool:
        """Whether ``value`` holds a lone surrogate, anywhere."""
        return any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(value, ensure_ascii=False))

    def theirs(data: str | bytes) -> Any:
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)

    forms: list[str | bytes] = [text, b"\xff\xfe\x00" + text.encode("utf-8", "surrogatepass")]
    for encoding in ("utf-8", "utf-8-sig", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32"):
        forms.append(text.encode(encoding, "surrogatepass"))
    for data in forms:
        ours, json_says = outcome(loads, data), outcome(theirs, data)
        if ours[:2] == ("error", "UnicodeDecodeError"):
            # Bytes that are no text, decoded strictly: json decodes them with
            # surrogatepass, then refuses them in its own words, or reads a lone
            # surrogate (which loads refuses by design, RFC 8259 §8.2).
            assert json_says[0] == "error" or surrogate(json_says[1]), data
        else:
            assert ours == json_says, data


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=8,
    )
)
def test_dumps_writes_as_json_dumps(value: object) -> None:
    """The reused encoder writes every value as json.dumps with the same options, or refuses it."""
    from ocppgw.ocpp.jsontext import dumps

    def outcome(write: Any) -> object:
        try:
            return ("text", write(value))
        except ValueError as e:
            return ("error", str(e))

    expected = outcome(
        lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    )
    assert outcome(dumps) == expected


def test_dumps_after_a_refusal_writes_the_next_value() -> None:
    """A value refused half-way (a NaN deep inside) leaves nothing behind for the next ones."""
    from ocppgw.ocpp.jsontext import dumps

    inner = {"a": [1, 2]}
    for _ in range(3):
        with pytest.raises(ValueError, match="not JSON compliant"):
            dumps({"x": inner, "y": [inner, {"z": float("nan")}]})
        assert dumps({"x": inner, "y": [inner]}) == '{"x":{"a":[1,2]},"y":[{"a":[1,2]}]}'


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"1",
        b"12",
        b"\x001",
        b"1\x00",
        b"\x00\x001\x00",
        b"1\x00\x00\x00",
        b"[1\x00]",
        b"\xef\xbb\xbf[1]",
        b"\xef[1]",
        b"\xfe\xff\x00[",
        b"\xff\xfe[\x00",
        b"\x7f",
        b'{"a":1}',
    ],
)
def test_loads_reads_odd_bytes_as_json_loads(data: bytes) -> None:
    """Bytes at the edges of encoding detection are read (or refused) as json.loads reads them."""
    from ocppgw.ocpp.jsontext import loads

    def outcome(parse: Any) -> object:
        try:
            return ("value", parse(data))
        except ValueError as e:
            return ("error", type(e).__name__, str(e))

    assert outcome(loads) == outcome(json.loads)


#: Words of Python's own exception texts that must never reach a charge point.
INTERNAL = ("recursion", "int_max_str_digits", "Exceeds the limit", "sys.")


def _nested(depth: int, opener: str) -> str:
    """A JSON value ``depth`` levels deep, of arrays ("[") or objects ('{"a":')."""
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "0" + "}" * depth


@pytest.mark.parametrize("version", [OCPP16, OCPP201, OCPP21])
@pytest.mark.parametrize(
    "payload, why",
    [
        ('{"x":' + "[" * 5000 + "]" * 5000 + "}", "nests"),
        ('{"x":' + "9" * 5000 + "}", "digits"),
        ('{"x":-' + "1" * 5000 + "}", "digits"),
    ],
)
def test_frames_past_decoding_limits_are_format_errors(version: str, payload: str,
                                                       why: str) -> None:
    """A CALL nested 5,000 deep or with a 5,000-digit number: format error, our words, its id."""
    with pytest.raises(FrameError) as e:
        parse_frame(f'[2,"deep-1","DataTransfer",{payload}]', version)
    assert e.value.kind is ErrorKind.FORMAT
    assert (e.value.unique_id, e.value.message_type) == ("deep-1", 2)
    assert why in e.value.description
    assert not any(word in e.value.description for word in INTERNAL)
    assert error_code(version, e.value.kind) == (
        "FormationViolation" if version == OCPP16 else "FormatViolation"
    )


@given(
    # Past the recursion limit wherever the decoder is called from: 1,000
    # frames, which Hypothesis raises by 2,000 while a test runs.
    depth=st.integers(min_value=5000, max_value=20000),
    digits=st.integers(min_value=4301, max_value=6000),
    opener=st.sampled_from(["[", '{"a":']),
    huge=st.booleans(),
    framed=st.booleans(),
    unique_id=st.text(
        st.characters(codec="ascii", exclude_characters='"\\', min_codepoint=32),
        min_size=1,
        max_size=36,
    ),
    version=st.sampled_from([OCPP16, OCPP201, OCPP21]),
)
@example(depth=5000, digits=5000, opener="[", huge=False, framed=False, unique_id="1",
         version=OCPP16)
def test_deep_or_huge_frames_never_carry_python_text(
    depth: int, digits: int, opener: str, huge: bool, framed: bool, unique_id: str,
    version: str
) -> None:
    """Deep nesting or a huge integer, framed or bare: FORMAT, our description, id when readable."""
    inner = "9" * digits if huge else _nested(depth, opener)
    if framed:
        text = f'[2,"{unique_id}","DataTransfer",{{"data":{inner}}}]'
    else:
        text = inner if not huge else f"[{inner}]"
    with pytest.raises(FrameError) as e:
        parse_frame(text, version)
    assert e.value.kind is ErrorKind.FORMAT
    assert e.value.unique_id == (unique_id if framed else "-1")
    assert not any(word in e.value.description for word in INTERNAL)
