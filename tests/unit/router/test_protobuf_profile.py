"""
The protobuf profile from the outside: modules compiled from proto/ by protoc
into a temporary directory, read with examples/protobuf_backend.py (which
follows docs/protobuf.md and imports nothing of the gateway), carry exactly
the JSON the JSON profile carries, for every action of every version.
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest

from ocppgw.ocpp.schemas import JSONSchema
from ocppgw.ocpp.versions import SUPPORTED
from ocppgw.wire.protobuf.convert import (
    PayloadEncoding,
    payload_from_proto,
    payload_to_proto,
)
from ocppgw.wire.protobuf.schema import actions, load, resolve
from tests.protoc import EXAMPLE, protoc
from tests.protoc import example_backend as load_example

#: Required properties only, at their defaults; every property at its defaults
#: (empty lists where allowed); every property, with other values and items.
MINIMAL, DEFAULTS, FULL = "minimal", "defaults", "full"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """proto/ compiled by the documented protoc command, run outside the checkout."""
    return protoc(tmp_path_factory.mktemp("pb"))


@pytest.fixture(scope="module")
def example(compiled: Path) -> ModuleType:
    return load_example(compiled)


def _number(node: JSONSchema, mode: str, integer: bool) -> int | float:
    lo, hi, step = node.get("minimum"), node.get("maximum"), node.get("multipleOf")
    if step is not None:
        value: float = step * (10 if mode == FULL else 0)
    elif mode == FULL:
        value = (lo + 1 if lo is not None else -3) if integer else (lo or 0) + 1.25
    else:
        value = lo if lo is not None else 0
    if hi is not None:
        value = min(value, hi)
    return int(value) if integer else float(value)


def sample(node: Any, root: JSONSchema, mode: str, depth: int = 0) -> Any:
    """A payload of schema ``node`` built the way ``mode`` says."""
    assert depth < 32
    node, _ = resolve(node, root)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return node["enum"][-1 if mode == FULL else 0]
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties", {})
        names = [n for n in props if mode != MINIMAL or n in node.get("required", ())]
        out = {n: sample(props[n], root, mode, depth + 1) for n in names}
        if mode == FULL and node.get("additionalProperties", True) is not False:
            out["vendorExtra"] = [1, None]  # free-form content keeps vendor keys
        return out
    if kind == "array":
        count = max(node.get("minItems", 0), 1 if mode == FULL else 0)
        return [sample(node["items"], root, mode, depth + 1) for _ in range(count)]
    if kind == "string":
        return "x" if mode == FULL else ""
    if kind in ("integer", "number"):
        return _number(node, mode, kind == "integer")
    if kind == "boolean":
        return mode == FULL
    return {"any": [1.5, "json", None]} if mode == FULL else {}  # no type: any JSON


def cases() -> list[tuple[str, str, bool, str, dict[str, Any]]]:
    """Three schema-valid payloads of every action and direction of every version."""
    out = []
    for version in SUPPORTED:
        for action, files in actions(version).items():
            for is_request in (True, False)[: 1 + (files[1] is not None)]:
                schema = load(version, action, is_request)
                assert schema is not None
                validator = jsonschema.validators.validator_for(schema)(schema)
                for mode in (MINIMAL, DEFAULTS, FULL):
                    payload = sample(schema, schema, mode)
                    error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
                    assert error is None, (version, action, is_request, mode, error)
                    out.append((version, action, is_request, mode, payload))
    return out


_CHILD = """
import base64, json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import protobuf_backend as pb
out = []
for version, action, is_request, data in json.load(sys.stdin):
    cls = pb.payload_class(version, action, is_request)
    decoded = pb.to_json(cls.FromString(base64.b64decode(data)))
    again = pb.from_json(cls, decoded).SerializeToString()
    out.append([decoded, base64.b64encode(again).decode()])
loaded = sorted(m for m in sys.modules if m == "ocppgw" or m.startswith("ocppgw."))
json.dump({"results": out, "gateway_modules": loaded}, sys.stdout)
"""


def test_every_payload_reads_back_from_protoc_output_alone(compiled: Path) -> None:
    """Every action's payloads, typed by the gateway, read back equal and valid with protoc code."""
    all_cases = cases()
    batch = []
    for version, action, is_request, mode, payload in all_cases:
        data, encoding = payload_to_proto(version, action, is_request, payload)
        assert encoding is PayloadEncoding.TYPED, (version, action, mode)
        batch.append([version, action, is_request, base64.b64encode(data).decode()])
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(compiled), str(EXAMPLE.parent)],
        input=json.dumps(batch),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(child.stdout)
    assert found["gateway_modules"] == []
    wrong = []
    for (version, action, is_request, mode, payload), (decoded, again) in zip(
        all_cases, found["results"], strict=True
    ):
        schema = load(version, action, is_request)
        assert schema is not None
        valid = jsonschema.validators.validator_for(schema)(schema).is_valid(decoded)
        # ...and what the backend encodes from it, the gateway reads as the same JSON.
        back = payload_from_proto(version, action, is_request, base64.b64decode(again), 0)
        if decoded != payload or not valid or back != payload:
            wrong.append(f"{version} {action} {is_request} {mode}: {payload} -> {decoded}")
    assert not wrong, f"{len(wrong)} of {len(all_cases)} differ: {wrong[:5]}"
    assert len(all_cases) > 3 * 2 * (39 + 64 + 90)


def test_required_empty_lists_read_as_empty(example: ModuleType) -> None:
    """A required list sent as [] is absent on the wire and reads back [] by the required option."""
    payload = {"transactionId": 1, "meterStop": 0, "timestamp": "2026-01-01T00:00:00Z"}
    payload["transactionData"] = [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": []}]
    data, encoding = payload_to_proto("ocpp1.6", "StopTransaction", True, payload)
    assert encoding is PayloadEncoding.TYPED
    msg = example.payload_class("ocpp1.6", "StopTransaction", True).FromString(data)
    assert len(msg.transactionData[0].sampledValue) == 0
    assert example.to_json(msg) == payload


def test_absent_typed_payload_is_every_field_unset(example: ModuleType) -> None:
    """No Payload bytes read as the required fields' defaults; {} itself goes as JSON."""
    for version, action, payload in [
        ("ocpp1.6", "RemoteStopTransaction", {"transactionId": 0}),
        ("ocpp1.6", "DataTransfer", {"vendorId": ""}),
        ("ocpp1.6", "Heartbeat", {}),
    ]:
        assert payload_to_proto(version, action, True, payload) == (b"", PayloadEncoding.TYPED)
        wire = example.message_pb2.Message.FromString(
            example.wrapper(2, "u1", action, version, payload)
        )
        assert (wire.Payload, wire.PayloadEncoding) == (b"", example.TYPED)
        assert example.read_payload(wire, True) == payload
    # {} is not a valid RemoteStopTransaction: it cannot be typed, so it differs on the wire.
    assert payload_to_proto("ocpp1.6", "RemoteStopTransaction", True, {}) == (
        b"{}",
        PayloadEncoding.JSON,
    )


def test_where_numbers_normalise(example: ModuleType) -> None:
    """The documented normalisations: 1.0 for an integer reads 1, 300 for a number 300.0."""
    cls = example.payload_class("ocpp2.0.1", "SetChargingProfile", True)
    period = {"startPeriod": 1.0, "limit": 300}
    schedule = {"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [period]}
    payload = {
        "evseId": 0,
        "chargingProfile": {
            "id": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [schedule],
        },
    }
    data, encoding = payload_to_proto("ocpp2.0.1", "SetChargingProfile", True, payload)
    assert encoding is PayloadEncoding.TYPED
    read = example.to_json(cls.FromString(data))["chargingProfile"]["chargingSchedule"][0]
    (got,) = read["chargingSchedulePeriod"]
    assert (got["startPeriod"], type(got["startPeriod"])) == (1, int)
    assert (got["limit"], type(got["limit"])) == (300.0, float)
    # A decimal reads back as the nearest double (0.1 stays 0.1); an integer a
    # double cannot hold keeps every digit in limit_text.
    for limit in (0.1, 2**53 + 1):
        period["limit"] = limit
        data, _ = payload_to_proto("ocpp2.0.1", "SetChargingProfile", True, payload)
        msg = cls.FromString(data)
        read = example.to_json(msg)["chargingProfile"]["chargingSchedule"][0]
        assert read["chargingSchedulePeriod"][0]["limit"] == limit
        which = msg.chargingProfile.chargingSchedule[0].chargingSchedulePeriod[0]
        assert which.WhichOneof("limit_choice") == (
            "limit" if math.isclose(limit, 0.1) else "limit_text"
        )


def test_protoc_output_is_not_the_gateway_package(compiled: Path) -> None:
    """protoc writes the package ocppgw_pb (importing itself), never one named ocppgw."""
    assert sorted(p.name for p in compiled.iterdir()) == ["ocppgw_pb"]
    text = (compiled / "ocppgw_pb" / "v1" / "v16_pb2.py").read_text()
    assert "from ocppgw_pb.v1 import options_pb2" in text
    assert "from ocppgw " not in text and "import ocppgw." not in text


def test_example_backend_answers_a_boot_notification(example: ModuleType) -> None:
    """The example answers a CALL with a typed CALLRESULT on the charge point's Reply topic."""
    call = example.message_pb2.Message.FromString(
        example.wrapper(
            2,
            "u1",
            "BootNotification",
            "ocpp1.6",
            {"chargePointVendor": "A", "chargePointModel": "B"},
        )
    )
    call.ChargePointId = "CP/1"
    topic, data = example.handle(call.SerializeToString())
    reply = example.message_pb2.Message.FromString(data)
    assert topic == "ocpp/cs/CP%2F1/Reply/BootNotification"
    assert (reply.MessageTypeId, reply.UniqueId, reply.PayloadEncoding) == (3, "u1", example.TYPED)
    answer = payload_from_proto("ocpp1.6", "BootNotification", False, reply.Payload, 0)
    assert (answer["status"], answer["interval"]) == ("Accepted", 300)
