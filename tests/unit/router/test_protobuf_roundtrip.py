"""
The protobuf profile: payload round trips for every action, the wrapper, the
JSON fallback, garbage input, and the freshness of the generated files.

Payloads come from the schemas themselves.  hypothesis-jsonschema's
``from_schema`` is used when it works with the installed Hypothesis; version
0.23.1 does not (it calls ``many.more()``, which Hypothesis 6.1xx removed, so
every object schema fails with AttributeError).  Then a hand-made strategy
covering exactly the keywords the OCPP schemas use (``_strategy``) generates
them.  Either way each generated payload is first checked against its schema
with jsonschema, so the round trip is only ever claimed for valid payloads.
"""

from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as conjecture_utils
from zope.interface.verify import verifyObject

from ocppgw.ocpp.envelope import GATEWAY_ERROR_CODES, CodecError, DecodeContext, Envelope
from ocppgw.ocpp.messages import Call, CallError, CallResult, CallResultError, Message, Send
from ocppgw.ocpp.schemas import JSONSchema
from ocppgw.ocpp.versions import OCPP2_ERROR_CODES, OCPP16_ERROR_CODES, SUPPORTED
from ocppgw.wire import ICodec, get
from ocppgw.wire.protobuf import ProtobufCodec, wrapper_of
from ocppgw.wire.protobuf.convert import (
    PayloadEncoding,
    payload_from_proto,
    payload_to_proto,
)
from ocppgw.wire.protobuf.plan import generated_module
from ocppgw.wire.protobuf.schema import actions, load, resolve

ROOT = Path(__file__).resolve().parents[3]
INT64 = (-(2**63), 2**63 - 1)

CASES = [
    pytest.param(
        version, action, is_request, id=f"{version}-{action}-{'req' if is_request else 'conf'}"
    )
    for version in SUPPORTED
    for action, files in actions(version).items()
    for is_request, name in ((True, files[0]), (False, files[1]))
    if name is not None
]

HJS_WORKS = hasattr(conjecture_utils.many, "more")

#: Payloads per action and direction: 6 keeps `make test` within its 10
#: minutes (411 cases; a payload of the large 2.x schemas takes some 0.3 s to
#: generate, and at 10 this file was half the unit tests' CPU); set
#: OCPPGW_ROUNDTRIP_EXAMPLES for a deeper run (30, then 10, were the default before).
ROUNDTRIP_SETTINGS = settings(
    max_examples=int(os.environ.get("OCPPGW_ROUNDTRIP_EXAMPLES", "6")),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


# -- payload strategies ---------------------------------------------------------


def _inline(node: Any, root: JSONSchema, depth: int = 0) -> Any:
    """``node`` with every ``$ref`` replaced by its definition, and no ``$id``."""
    assert depth < 64
    if isinstance(node, dict):
        if "$ref" in node:
            node, _ = resolve(node, root)
        return {
            k: _inline(v, root, depth + 1)
            for k, v in node.items()
            if k not in ("$id", "definitions", "$schema")
        }
    if isinstance(node, list):
        return [_inline(v, root, depth + 1) for v in node]
    return node


_JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _date_times(draw: st.DrawFn) -> str:
    """RFC 3339 date-times in the forms chargers send: Z or offsets, 0-6 fraction digits."""
    dt = draw(st.datetimes())
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    digits = draw(st.sampled_from([0, 0, 3, 6]))
    if digits:
        text += "." + f"{dt.microsecond:06d}"[:digits]
    offset = draw(st.sampled_from(["Z", "Z", "+00:00", "+02:00", "-05:30"]))
    return text + offset


def _multiple_ok(step: float, value: float) -> bool:
    valid: bool = jsonschema.Draft4Validator({"multipleOf": step}).is_valid(value)
    return valid


def _strategy(node: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """A strategy for values of an inlined schema, for the keywords OCPP uses."""
    if "enum" in node:
        return st.sampled_from(node["enum"])
    t = node.get("type")
    if t == "string":
        if node.get("format") == "date-time":
            return _date_times()
        if node.get("format") == "uri":
            return st.from_regex(r"\A(https|wss|ftp)://[a-z]{1,10}\.example/[a-z0-9]{0,8}\Z")
        return st.text(max_size=min(node.get("maxLength", 40), 40))
    if t == "integer":
        lo, hi = node.get("minimum"), node.get("maximum")
        return st.integers(
            None if lo is None else math.ceil(lo), None if hi is None else math.floor(hi)
        )
    if t == "number":
        lo, hi = node.get("minimum"), node.get("maximum")
        step = node.get("multipleOf")
        if step is not None:
            return (
                st.integers(-10_000, 10_000)
                .map(lambda n: round(n * step, 6))
                .filter(lambda v: _multiple_ok(step, v))
            )
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False) | st.integers(
            None if lo is None else math.ceil(lo), None if hi is None else math.floor(hi)
        )
    if t == "boolean":
        return st.booleans()
    if t == "array":
        lo = node.get("minItems", 0)
        # Few items, fewer deeper down: nested lists multiply the input size.
        more = 3 if depth == 0 else 1
        hi = min(node.get("maxItems", lo + more), lo + more)
        return st.lists(_strategy(node["items"], depth + 1), min_size=lo, max_size=hi)
    if t == "object":
        props = node.get("properties", {})
        required = set(node.get("required", ()))
        fixed = st.fixed_dictionaries(
            {k: _strategy(v, depth + 1) for k, v in props.items() if k in required},
            optional={k: _strategy(v, depth + 1) for k, v in props.items() if k not in required},
        )
        if node.get("additionalProperties", True) is False:
            return fixed
        extra = st.dictionaries(
            st.text(min_size=1, max_size=8).filter(lambda k: k not in props),
            JSON_VALUES,
            max_size=3,
        )
        return st.builds(lambda a, b: {**b, **a}, fixed, extra)
    return JSON_VALUES  # no type: any JSON value


def _short_arrays(node: Any) -> Any:
    """``node`` with every array allowed at most max(minItems, 1) items."""
    if isinstance(node, list):
        return [_short_arrays(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _short_arrays(v) for k, v in node.items()}
    if out.get("type") == "array":
        cap = max(out.get("minItems", 0), 1)
        out["maxItems"] = min(out.get("maxItems", cap), cap)
    return out


@cache
def _payloads(version: str, action: str, is_request: bool) -> st.SearchStrategy[Any]:
    root = load(version, action, is_request)
    assert root is not None
    inlined = _inline(root, root)
    if HJS_WORKS:
        from hypothesis_jsonschema import from_schema

        # Smaller documents, still valid against the real schema (checked in
        # the test): nested 2.x arrays otherwise cost minutes per action.
        return from_schema(_short_arrays(inlined))
    return _strategy(inlined)


@cache
def _validator(version: str, action: str, is_request: bool) -> Any:
    root = load(version, action, is_request)
    assert root is not None
    cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft4Validator)
    return cls(root)


# -- equality of JSON documents, numbers by value ---------------------------------


def same_json(a: object, b: object) -> bool:
    """JSON equality where 1 == 1.0 but true != 1 and "1" != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _ints(value: object) -> Iterator[int]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _ints(v)
    elif isinstance(value, list):
        for v in value:
            yield from _ints(v)


def _fits_int64(payload: object) -> bool:
    return all(INT64[0] <= n <= INT64[1] for n in _ints(payload))


# -- the property test ------------------------------------------------------------


@pytest.mark.parametrize(("version", "action", "is_request"), CASES)
def test_payload_roundtrip(version: str, action: str, is_request: bool) -> None:
    """Every schema-valid payload of every action survives JSON -> protobuf -> JSON."""
    validator = _validator(version, action, is_request)

    @ROUNDTRIP_SETTINGS
    @given(_payloads(version, action, is_request))
    def check(payload: Any) -> None:
        errors = list(validator.iter_errors(payload))
        assert not errors, f"generator made an invalid payload: {errors[0].message}"
        data, encoding = payload_to_proto(version, action, is_request, payload)
        # Integers beyond 64 bits are valid JSON Schema but have no typed form.
        if _fits_int64(payload):
            assert encoding is PayloadEncoding.TYPED, payload
        back = payload_from_proto(version, action, is_request, data, encoding)
        assert same_json(back, payload), (payload, back)

    check()


def test_empty_typed_payload_reads_as_the_empty_message() -> None:
    """
    No Payload bytes read, for every action and direction, as the empty message
    of its type does (the required fields' defaults), without that message made.
    """
    from ocppgw.wire.protobuf.convert import _read
    from ocppgw.wire.protobuf.plan import entry

    checked = 0
    for version, action, is_request in (case.values for case in CASES):
        found = entry(version, action, is_request)
        if found.plan is None:
            continue
        expected = _read(found.cls(), found.plan)
        got = payload_from_proto(version, action, is_request, b"", PayloadEncoding.TYPED)
        assert got == expected, (version, action, is_request)
        assert got is not payload_from_proto(version, action, is_request, b"", 0)
        checked += 1
    assert checked > 300


def test_every_action_is_covered() -> None:
    """The round trip covers 39 actions in 1.6, 64 in 2.0.1, 90 pairs and one SEND in 2.1."""
    counts = {v: len(actions(v)) for v in SUPPORTED}
    assert counts == {"ocpp1.6": 39, "ocpp2.0.1": 64, "ocpp2.1": 91}
    assert len(CASES) == 78 + 128 + 181


# -- hand-picked payloads -----------------------------------------------------------


def test_hazards_roundtrip_typed() -> None:
    """Dotted/hyphenated enums, 0, acronyms, big numbers, open customData stay typed, exact."""
    samples: list[tuple[str, str, bool, dict[str, Any]]] = [
        (
            "ocpp1.6",
            "MeterValues",
            True,
            {
                "connectorId": 0,
                "meterValue": [
                    {
                        "timestamp": "2024-05-01T10:00:00.123+02:00",
                        "sampledValue": [
                            {
                                "value": "0",
                                "measurand": "Energy.Active.Import.Register",
                                "phase": "L1-N",
                                "unit": "Celsius",
                            }
                        ],
                    }
                ],
            },
        ),
        ("ocpp1.6", "GetConfiguration", True, {"key": []}),
        ("ocpp1.6", "GetConfiguration", True, {}),
        (
            "ocpp2.0.1",
            "SetNetworkProfile",
            True,
            {
                "configurationSlot": 1,
                "connectionData": {
                    "ocppVersion": "OCPP20",
                    "ocppTransport": "JSON",
                    "ocppCsmsUrl": "wss://x.example/ocpp",
                    "messageTimeout": 30,
                    "securityProfile": 2,
                    "ocppInterface": "Wired0",
                },
            },
        ),
        ("ocpp2.0.1", "DataTransfer", True, {"vendorId": "v", "data": [1, 2.5, None, {"a": "b"}]}),
        ("ocpp2.0.1", "DataTransfer", False, {"status": "Accepted", "data": None}),
        (
            "ocpp2.0.1",
            "TransactionEvent",
            False,
            {"totalCost": 2**60 + 1, "customData": {"vendorId": "x", "extra": [1]}},
        ),
        ("ocpp2.0.1", "TransactionEvent", False, {"totalCost": -0.0}),
        (
            "ocpp2.1",
            "NotifyPeriodicEventStream",
            True,
            {
                "id": 1,
                "pending": 0,
                "basetime": "2025-01-01T00:00:00Z",
                "data": [{"t": 1.5, "v": "x"}],
            },
        ),
    ]
    for version, action, is_request, payload in samples:
        assert not list(_validator(version, action, is_request).iter_errors(payload)), action
        data, encoding = payload_to_proto(version, action, is_request, payload)
        assert encoding is PayloadEncoding.TYPED, action
        back = payload_from_proto(version, action, is_request, data, encoding)
        assert same_json(back, payload), (action, back)
        if action == "TransactionEvent" and "totalCost" in payload:
            assert math.copysign(1, back["totalCost"]) == math.copysign(1, payload["totalCost"])


def test_acronym_field_names_keep_json_spelling() -> None:
    """Fields carry the exact JSON names: ocppCsmsUrl, fullSoC, evMinV2XEnergyRequest, limit_L2."""
    v201 = generated_module("v201_pb2")
    v21 = generated_module("v21_pb2")
    checks = [
        (v201.NetworkConnectionProfileType, "ocppCsmsUrl"),
        (v21.DCChargingParametersType, "fullSoC"),
        (v21.V2XChargingParametersType, "evMinV2XEnergyRequest"),
        (v21.ChargingSchedulePeriodType, "limit_L2"),
    ]
    for cls, name in checks:
        assert cls.DESCRIPTOR.fields_by_name[name].json_name == name


def test_unknown_enum_string_survives_typed() -> None:
    """An enum string the schema does not list travels in the raw alternative, typed."""
    payload = {"status": "Maybe", "currentTime": "2024-01-01T00:00:00Z", "interval": 10}
    data, encoding = payload_to_proto("ocpp1.6", "BootNotification", False, payload)
    assert encoding is PayloadEncoding.TYPED
    assert payload_from_proto("ocpp1.6", "BootNotification", False, data, encoding) == payload


@pytest.mark.parametrize(
    ("version", "action", "is_request", "payload"),
    [
        ("ocpp1.6", "FooBar", True, {"anything": [1, {"x": None}]}),
        ("ocpp1.6", "BootNotification", True, {"chargePointVendor": "V", "chargePointModel": 7}),
        (
            "ocpp1.6",
            "BootNotification",
            True,
            {"chargePointVendor": "V", "chargePointModel": "M", "x": 1},
        ),
        ("ocpp1.6", "BootNotification", True, {"chargePointVendor": "V"}),
        ("ocpp1.6", "Heartbeat", False, {"currentTime": True}),
        (
            "ocpp1.6",
            "StartTransaction",
            True,
            {"connectorId": 2**64, "idTag": "t", "meterStart": 0, "timestamp": "x"},
        ),
        (
            "ocpp2.0.1",
            "TransactionEvent",
            True,
            {
                "eventType": "Started",
                "timestamp": "2024-01-01T00:00:00Z",
                "triggerReason": "Authorized",
                "seqNo": 0,
                "transactionInfo": {"transactionId": "t"},
                "meterValue": [],
            },
        ),
        (
            "ocpp2.1",
            "NotifyPeriodicEventStream",
            True,
            {"id": 1, "pending": 0, "basetime": "x", "data": [{"t": "1", "v": "x"}]},
        ),
        ("ocpp9", "Heartbeat", True, {}),
    ],
)
def test_untyped_payload_falls_back_to_json(
    version: str, action: str, is_request: bool, payload: dict[str, Any]
) -> None:
    """An unknown action or a payload its schema does not allow goes as JSON bytes, unchanged."""
    data, encoding = payload_to_proto(version, action, is_request, payload)
    assert encoding is PayloadEncoding.JSON
    assert payload_from_proto(version, action, is_request, data, encoding) == payload


def test_lone_surrogate_goes_as_json_and_is_refused_back() -> None:
    """A string no protobuf string holds (an unpaired surrogate) goes as JSON bytes; read
    back, strict JSON refuses it (RFC 8259 §8.2), as it refuses it from any backend."""
    from ocppgw.wire.protobuf.convert import PayloadError

    payload = {"chargePointVendor": "\ud800", "chargePointModel": "M"}
    data, encoding = payload_to_proto("ocpp1.6", "BootNotification", True, payload)
    assert encoding is PayloadEncoding.JSON
    with pytest.raises(PayloadError, match="unpaired surrogate"):
        payload_from_proto("ocpp1.6", "BootNotification", True, data, encoding)


# -- the wrapper ------------------------------------------------------------------------


CTX = {v: DecodeContext(v) for v in SUPPORTED}


def _messages(version: str) -> list[Message]:
    out: list[Message] = [
        Call("-1", "Heartbeat", {}),
        Call(
            "19223201",
            "Authorize",
            {"idTag": "ABC"}
            if version == "ocpp1.6"
            else {"idToken": {"idToken": "A", "type": "Central"}},
        ),
        CallResult("c1", {"currentTime": "2024-01-01T00:00:00Z"}, "Heartbeat"),
        CallResult("c2", {"anything": 1}, "NoSuchAction"),
        CallError("e1", "NotImplemented", "nope", {"why": ["x"]}),
        CallError(
            "-1", sorted(OCPP16_ERROR_CODES if version == "ocpp1.6" else OCPP2_ERROR_CODES)[0]
        ),
    ]
    if version == "ocpp2.1":
        out += [
            CallResultError("e2", "RpcFrameworkError", "bad result", {}),
            Send(
                "s1",
                "NotifyPeriodicEventStream",
                {
                    "id": 1,
                    "pending": 0,
                    "basetime": "2025-01-01T00:00:00Z",
                    "data": [{"t": 0, "v": "1"}],
                },
            ),
        ]
    return out


def test_codec_is_registered_and_provides_icodec() -> None:
    """The registry serves ProtobufCodec as "protobuf" and it provides ICodec."""
    codec = get("protobuf")
    assert isinstance(codec, ProtobufCodec)
    assert verifyObject(ICodec, codec)


@pytest.mark.parametrize("version", SUPPORTED)
def test_wrapper_roundtrip_every_message_type(version: str) -> None:
    """Each message type of the version, "-1" ids included, decodes to the message encoded."""
    codec = ProtobufCodec()
    for message in _messages(version):
        data = codec.encode(Envelope(message, version=version, charge_point="CP1"))
        decoded = codec.decode(data, CTX[version])
        assert decoded.version == version
        assert decoded.message == message, message


def test_wrapper_carries_metadata_and_error_codes() -> None:
    """Metadata, ErrorDetails, gateway codes and unknown error codes all reach the wire."""
    message_pb2 = generated_module("message_pb2")
    codec = get("protobuf")
    for code in (
        *GATEWAY_ERROR_CODES,
        "FormationViolation",
        "OccurenceConstraintViolation",
        "Weird",
    ):
        env = Envelope(
            CallError("u1", code, "d", {"k": 1}, action="Reset"),
            version="ocpp1.6",
            charge_point="CP 1",
            timestamp="2024-01-01T00:00:00.000Z",
            origin="gateway",
            late=True,
        )
        wire = message_pb2.Message.FromString(codec.encode(env))
        assert (wire.MessageTypeId, wire.UniqueId, wire.Action) == (4, "u1", "Reset")
        name = message_pb2.ErrorType.Name(wire.ErrorCode) if wire.ErrorCode else wire.ErrorCodeText
        assert name == code
        assert wire.ErrorCodeText == ("Weird" if code == "Weird" else "")
        assert wire.ErrorDetails == b'{"k":1}'
        assert (wire.Protocol, wire.ChargePointId, wire.Timestamp, wire.Origin, wire.Late) == (
            "ocpp1.6",
            "CP 1",
            "2024-01-01T00:00:00.000Z",
            "gateway",
            True,
        )


def test_callresult_without_action_uses_pending_call() -> None:
    """A typed CALLRESULT without Action decodes through the pending CALL's Action."""
    codec = ProtobufCodec()
    wire = wrapper_of(
        Envelope(
            CallResult("c1", {"currentTime": "2024-01-01T00:00:00Z"}, "Heartbeat"),
            version="ocpp1.6",
        )
    )
    assert wire.PayloadEncoding == PayloadEncoding.TYPED
    wire.ClearField("Action")
    data = wire.SerializeToString()
    ctx = DecodeContext("ocpp1.6", lambda uid: "Heartbeat" if uid == "c1" else None)
    assert codec.decode(data, ctx).message == CallResult(
        "c1", {"currentTime": "2024-01-01T00:00:00Z"}
    )
    with pytest.raises(CodecError, match="no Action"):
        codec.decode(data, CTX["ocpp1.6"])


def test_callresult_without_action_as_json_decodes() -> None:
    """A CALLRESULT with a JSON payload needs no Action."""
    message_pb2 = generated_module("message_pb2")
    wire = message_pb2.Message(
        MessageTypeId=3, UniqueId="c9", Payload=b'{"a":1}', PayloadEncoding=1
    )
    decoded = ProtobufCodec().decode(wire.SerializeToString(), CTX["ocpp2.0.1"])
    assert decoded.message == CallResult("c9", {"a": 1})


def test_protocol_mismatch_is_refused() -> None:
    """A downstream wrapper naming another version than the charge point's is a CodecError."""
    data = ProtobufCodec().encode(Envelope(Call("1", "Heartbeat", {}), version="ocpp2.1"))
    with pytest.raises(CodecError, match=r"ocpp2\.1"):
        ProtobufCodec().decode(data, CTX["ocpp1.6"])


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff",
        b"garbage",
        b"\x0a\x05abc",
        b"",
        b'{"MessageTypeId": 2}',
        b"\x08\x02\x12\x011\x1a\x09Heartbeat\x32\x03\xff\xff\xff",
        b"\x08\x03\x12\x011\x1a\x09Heartbeat\x32\x02\x08\x09",
        b"\x08\x02\x12\x011\x1a\x09Heartbeat\x32\x01x\x48\x01",
        b"\x08\x04\x12\x011\x20\x01\x3a\x01[",
        b"\x08\x09\x12\x011",
    ],
)
def test_garbage_is_a_codec_error(data: bytes) -> None:
    """Bytes that are not a valid wrapper of the version raise CodecError."""
    with pytest.raises(CodecError):
        ProtobufCodec().decode(data, CTX["ocpp1.6"])


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(SUPPORTED))
def test_random_bytes_raise_only_codec_error(data: bytes, version: str) -> None:
    """Decoding any bytes yields an envelope or raises CodecError, never another exception."""
    try:
        ProtobufCodec().decode(data, DecodeContext(version, lambda uid: "BootNotification"))
    except CodecError:
        pass


# -- generated files are current ----------------------------------------------------------


def _descriptor_and_imports(path: Path) -> tuple[bytes, list[str]]:
    tree = ast.parse(path.read_text())
    blobs = [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "AddSerializedFile"
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, bytes)
    ]
    imports = sorted(
        ast.unparse(n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)
    )
    assert len(blobs) == 1, path
    return blobs[0], imports


def test_generated_files_are_current(tmp_path: Path) -> None:
    """The committed .proto files and generated modules equal a fresh `make proto` run."""
    proto_dir, python_dir = tmp_path / "proto", tmp_path / "py"
    cmd = [sys.executable, str(ROOT / "tools/genproto.py")]
    cmd += ["--proto-dir", str(proto_dir), "--python-dir", str(python_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    # It needs grpcio-tools (python -m grpc_tools.protoc), like `make proto`.
    assert done.returncode == 0, f"tools/genproto.py failed:\n{done.stderr[-2000:]}"
    stale = []
    fresh_files = sorted((proto_dir / "ocppgw_pb/v1").iterdir())
    assert {f.name for f in fresh_files} >= {"numbers.json", "v16.proto", "message.proto"}
    for fresh in fresh_files:
        committed = ROOT / "proto/ocppgw_pb/v1" / fresh.name
        if not committed.exists() or committed.read_text() != fresh.read_text():
            stale.append(str(committed.relative_to(ROOT)))
    for fresh in sorted(python_dir.glob("*_pb2.py")):
        committed = ROOT / "ocppgw/wire/protobuf/generated" / fresh.name
        # Compare what the module defines (descriptor and imports), not the
        # protoc version stamped in its header.
        if not committed.exists() or _descriptor_and_imports(committed) != _descriptor_and_imports(
            fresh
        ):
            stale.append(str(committed.relative_to(ROOT)))
    assert not stale, f"stale generated files, run `make proto`: {stale}"
