"""
Bytes per message and codec CPU: the JSON envelope against the protobuf profile.

The mix is what charge points mostly send (BootNotification, Heartbeat,
StatusNotification, MeterValues with 10 sampled values, Start/StopTransaction
in 1.6, TransactionEvent in 2.0.1) with the answers to them.  Each message is
an :class:`~ocppgw.ocpp.envelope.Envelope` as the gateway publishes it upstream:
version and charge point set, the gateway's receive time on CALLs, the Action
on results; message ids are UUIDs, as most libraries make them.

CPU is one encode plus one decode (the downstream decode, with field checks),
timed with :mod:`timeit` in bounded loops, best of 5.  Run from the checkout:

    python bench/wire_size.py

It prints the table and writes it to bench/results/wire_size.txt.
"""

from __future__ import annotations

import platform
import sys
import timeit
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocppgw.ocpp.envelope import DecodeContext, Envelope  # noqa: E402
from ocppgw.ocpp.messages import Call, CallResult, Message  # noqa: E402
from ocppgw.wire.jsonenvelope import JSONCodec  # noqa: E402
from ocppgw.wire.protobuf import ProtobufCodec  # noqa: E402

LOOPS = 2000
CP = "CP-DE-BER-000123"
NOW = "2025-03-14T09:26:53.589Z"

_uid = uuid.UUID("6f1c2a4e-9b1d-4c57-8e2a-0d3c5b7a9e10").int


def _id() -> str:
    global _uid
    _uid += 7919
    return str(uuid.UUID(int=_uid))


def _sampled_16(i: int) -> dict[str, Any]:
    measurands = [
        ("Energy.Active.Import.Register", "Wh", None, "18234.5"),
        ("Power.Active.Import", "W", None, "11020.1"),
        ("Current.Import", "A", "L1", "16.02"),
        ("Current.Import", "A", "L2", "15.97"),
        ("Current.Import", "A", "L3", "16.05"),
        ("Voltage", "V", "L1-N", "230.4"),
        ("Voltage", "V", "L2-N", "229.8"),
        ("Voltage", "V", "L3-N", "231.0"),
        ("SoC", "Percent", None, "64"),
        ("Temperature", "Celsius", None, "31.5"),
    ]
    m, unit, phase, value = measurands[i]
    out: dict[str, Any] = {
        "value": value,
        "context": "Sample.Periodic",
        "format": "Raw",
        "measurand": m,
        "location": "EV" if m == "SoC" else "Outlet",
        "unit": unit,
    }
    if phase:
        out["phase"] = phase
    return out


def _sampled_201(i: int) -> dict[str, Any]:
    s = _sampled_16(i)
    if s["measurand"] == "Temperature":  # not a 2.0.1 measurand
        s.update(measurand="Frequency", unit="Hz", value="50.01", location="Inlet")
    out: dict[str, Any] = {
        "value": float(s["value"]),
        "context": s["context"],
        "measurand": s["measurand"],
        "location": s["location"],
        "unitOfMeasure": {"unit": s["unit"]},
    }
    if "phase" in s:
        out["phase"] = s["phase"]
    return out


def mix() -> list[tuple[str, str, Message]]:
    """(label, version, message) of the realistic mix, requests and responses."""
    v16, v201 = "ocpp1.6", "ocpp2.0.1"
    out: list[tuple[str, str, Message]] = []

    def pair(version: str, action: str, req: dict[str, Any], conf: dict[str, Any]) -> None:
        uid = _id()
        out.append((f"{version} {action}", version, Call(uid, action, req)))
        out.append((f"{version} {action}Response", version, CallResult(uid, conf, action)))

    pair(
        v16,
        "BootNotification",
        {
            "chargePointVendor": "Wallbox",
            "chargePointModel": "Commander 2",
            "chargePointSerialNumber": "WB-2209-004711",
            "firmwareVersion": "5.12.3",
            "meterType": "EM340",
        },
        {"status": "Accepted", "currentTime": NOW, "interval": 300},
    )
    pair(v16, "Heartbeat", {}, {"currentTime": NOW})
    pair(
        v16,
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": NOW},
        {},
    )
    pair(
        v16,
        "StartTransaction",
        {"connectorId": 1, "idTag": "04E1A2B3C4D5E6", "meterStart": 18234, "timestamp": NOW},
        {"transactionId": 582331, "idTagInfo": {"status": "Accepted"}},
    )
    pair(
        v16,
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": 582331,
            "meterValue": [{"timestamp": NOW, "sampledValue": [_sampled_16(i) for i in range(10)]}],
        },
        {},
    )
    pair(
        v16,
        "StopTransaction",
        {
            "transactionId": 582331,
            "idTag": "04E1A2B3C4D5E6",
            "meterStop": 41876,
            "timestamp": NOW,
            "reason": "EVDisconnected",
        },
        {"idTagInfo": {"status": "Accepted"}},
    )
    pair(
        v201,
        "BootNotification",
        {
            "chargingStation": {
                "vendorName": "Wallbox",
                "model": "Commander 2",
                "serialNumber": "WB-2209-004711",
                "firmwareVersion": "6.4.0",
            },
            "reason": "PowerUp",
        },
        {"status": "Accepted", "currentTime": NOW, "interval": 300},
    )
    pair(v201, "Heartbeat", {}, {"currentTime": NOW})
    pair(
        v201,
        "StatusNotification",
        {"timestamp": NOW, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
        {},
    )
    pair(
        v201,
        "MeterValues",
        {
            "evseId": 1,
            "meterValue": [
                {"timestamp": NOW, "sampledValue": [_sampled_201(i) for i in range(10)]}
            ],
        },
        {},
    )
    pair(
        v201,
        "TransactionEvent",
        {
            "eventType": "Updated",
            "timestamp": NOW,
            "triggerReason": "MeterValuePeriodic",
            "seqNo": 17,
            "transactionInfo": {
                "transactionId": "f3a9c1d2-5b7e-4a0c-9d8f-1e2b3c4d5e6f",
                "chargingState": "Charging",
            },
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": NOW, "sampledValue": [_sampled_201(i) for i in range(3)]}],
        },
        {"totalCost": 4.87},
    )
    return out


def _check(version: str, message: Message) -> None:
    import jsonschema

    from ocppgw.wire.protobuf.convert import PayloadEncoding, payload_to_proto
    from ocppgw.wire.protobuf.schema import load

    assert isinstance(message, Call | CallResult) and message.action is not None
    is_request = isinstance(message, Call)
    schema = load(version, message.action, is_request)
    assert schema is not None
    jsonschema.validators.validator_for(schema)(schema).validate(message.payload)
    _, encoding = payload_to_proto(version, message.action, is_request, message.payload)
    assert encoding is PayloadEncoding.TYPED


def _pending(action: str | None) -> Callable[[str], str | None]:
    return lambda unique_id: action


def _envelope(version: str, message: Message) -> Envelope:
    timestamp = NOW if isinstance(message, Call) else None
    return Envelope(message, version=version, charge_point=CP, timestamp=timestamp)


def _cpu_us(codec: Any, env: Envelope, ctx: DecodeContext) -> float:
    def once() -> None:
        codec.decode(codec.encode(env), ctx)

    once()
    best = min(timeit.repeat(once, number=LOOPS, repeat=5))
    return best / LOOPS * 1e6


def run() -> str:
    json_codec, pb_codec = JSONCodec(), ProtobufCodec()
    rows = []
    tj = tp = 0
    cj = cp = 0.0
    items = mix()
    for label, version, message in items:
        env = _envelope(version, message)
        ctx = DecodeContext(version, _pending(message.action))
        jb, pb = json_codec.encode(env), pb_codec.encode(env)
        # The mix must be valid and typed, and both codecs must give the
        # message back, or the figures mean nothing.
        _check(version, message)
        assert json_codec.decode(jb, ctx).message == message, label
        assert pb_codec.decode(pb, ctx).message == message, label
        uj, up = _cpu_us(json_codec, env, ctx), _cpu_us(pb_codec, env, ctx)
        tj, tp, cj, cp = tj + len(jb), tp + len(pb), cj + uj, cp + up
        rows.append((label, len(jb), len(pb), len(pb) / len(jb), uj, up))
    head = (
        f"{'message':<38} {'json B':>7} {'proto B':>7} {'ratio':>6} {'json µs':>8} {'proto µs':>9}"
    )
    lines = [head, "-" * len(head)]
    for label, j, p, r, uj, up in rows:
        lines.append(f"{label:<38} {j:>7} {p:>7} {r:>6.0%} {uj:>8.1f} {up:>9.1f}")
    lines.append("-" * len(head))
    n = len(items)
    lines.append(f"{'total (' + str(n) + ' messages)':<38} {tj:>7} {tp:>7} {tp / tj:>6.0%}")
    mean = f"{tj / n:>7.0f} {tp / n:>7.0f} {'':>6} {cj / n:>8.1f} {cp / n:>9.1f}"
    lines.append(f"{'mean per message':<38} {mean}")
    lines.append("")
    lines.append(
        "µs = one encode + one decode, best of 5 x "
        f"{LOOPS} loops; Python {platform.python_version()}, "
        f"protobuf {_protobuf_version()} ({_protobuf_backend()}), {platform.machine()}"
    )
    return "\n".join(lines) + "\n"


def _protobuf_version() -> str:
    from google.protobuf import __version__

    return str(__version__)


def _protobuf_backend() -> str:
    from google.protobuf.internal import api_implementation

    return str(api_implementation.Type())


def main() -> None:
    text = run()
    out = ROOT / "bench" / "results" / "wire_size.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
