"""
The example backend of docs/protobuf.md as a backend team runs it: the
process ``examples/protobuf_backend.py`` on protoc's output alone, on the test
broker, behind a real gateway with ``codec = protobuf`` both ways, answering
``ocpp``-package charge points (1.6 and 2.0.1) through a boot, heartbeats,
status notifications and a whole transaction.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201

from tests.integration.harness import WAIT, Backend, Broker, charge_point, run_async, stop_process
from tests.integration.harness.support import PrintingProcess
from tests.protoc import EXAMPLE

NOW = "2026-01-02T03:04:05.000Z"
#: The example's currentTime: RFC 3339, UTC, whole seconds.
EXAMPLE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
PROTOBUF_BOTH_WAYS = {"upstream": {"codec": "protobuf"}, "dnstream": {"codec": "protobuf"}}


class ExampleProcess(PrintingProcess):
    """``python examples/protobuf_backend.py`` with only protoc's output on its path."""

    def __init__(self, protoc_out: Path, broker: Broker, cwd: Path) -> None:
        client_id = f"it-example-{uuid.uuid4().hex[:12]}"
        argv = [sys.executable, "-u", str(EXAMPLE), "--port", str(broker.port)]
        argv += ["--client-id", client_id]
        super().__init__(argv, cwd, {**os.environ, "PYTHONPATH": str(protoc_out)})

    async def printed(self, cid: str, version: str, action: str, payload: Any) -> None:
        """Wait up to :data:`WAIT` s for the example to print that it read ``payload``."""
        prefix = f"{cid} {version} {action} "
        deadline = time.monotonic() + WAIT
        while not any(
            line.startswith(prefix) and json.loads(line[len(prefix) :]) == payload
            for line in self.output()
        ):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the example did not print {prefix}{payload}: {self.output()}"
                )
            await asyncio.sleep(0.02)


@pytest.fixture
def example(protoc_out: Path, broker: Broker, tmp_path: Path) -> Iterator[ExampleProcess]:
    """The example backend, subscribed on the test broker."""
    proc = ExampleProcess(protoc_out, broker, tmp_path)
    try:
        proc.wait_line("subscribed to ocpp/cp/+/+")
        yield proc
    finally:
        stop_process(proc.proc)


async def call(cp: Any, request: Any, unique_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One CALL: (the payload the charge point sent, the CALLRESULT payload it got)."""
    await cp.call(request, suppress=False, unique_id=unique_id)
    frame = cp.conn.received_for(unique_id)
    assert frame[:2] == [3, unique_id], frame
    return cp.conn.sent_for(unique_id)[3], frame[2]


async def check_calls(
    cp: Any, example: ExampleProcess, cid: str, version: str, calls: list[tuple[Any, Any]]
) -> None:
    """Each (request, answer) CALL gets the answer; the example read exactly what was sent."""
    for i, (request, answer) in enumerate(calls):
        sent, got = await call(cp, request, f"ex-{i}")
        if answer == "boot":
            assert set(got) == {"status", "currentTime", "interval"}, got
            assert (got["status"], got["interval"]) == ("Accepted", 300)
            assert EXAMPLE_TIME.fullmatch(got["currentTime"]), got
        elif answer == "now":
            assert set(got) == {"currentTime"} and EXAMPLE_TIME.fullmatch(got["currentTime"]), got
        else:
            assert got == answer
        await example.printed(cid, version, type(request).__name__, sent)


def check_protobuf_both_ways(backend: Backend, cid: str, count: int) -> None:
    """Every message of ``cid`` both ways was protobuf; nothing went to its error topic."""
    up = backend.messages(lambda m: m.topic.startswith(f"ocpp/cp/{cid}/"))
    down = backend.messages(lambda m: m.topic.startswith(f"ocpp/cs/{cid}/Reply/"))
    assert len(up) == len(down) == count, (up, down)
    assert all(m.json() is None for m in up + down), [m for m in up + down if m.json()]
    assert backend.messages(lambda m: m.topic == f"ocpp/cp/Error/{cid}") == []


@run_async
async def test_example_backend_serves_an_ocpp16_charge_point(gateway, backend, example):
    """The example process answers a 1.6 boot, heartbeat, status and transaction over protobuf."""
    gw = gateway(PROTOBUF_BOTH_WAYS)
    cid, version = "it-example-16", "ocpp1.6"
    accepted = {"idTagInfo": {"status": "Accepted"}}
    calls = [
        (call16.BootNotification(charge_point_model="M1", charge_point_vendor="ACME"), "boot"),
        (call16.Heartbeat(), "now"),
        (call16.StatusNotification(connector_id=1, error_code="NoError", status="Available"), {}),
        (call16.Authorize(id_tag="TAG-16"), accepted),
        (
            call16.StartTransaction(connector_id=1, id_tag="TAG-16", meter_start=0, timestamp=NOW),
            {"transactionId": 1, **accepted},
        ),
        (call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"), {}),
        (
            call16.MeterValues(
                connector_id=1,
                transaction_id=1,
                meter_value=[{"timestamp": NOW, "sampledValue": [{"value": "12.5"}]}],
            ),
            {},
        ),
        (
            call16.StopTransaction(
                meter_stop=1250,
                timestamp=NOW,
                transaction_id=1,
                reason="Local",
                # A required list, empty: no bytes on the wire, [] by (required).
                transaction_data=[{"timestamp": NOW, "sampledValue": []}],
            ),
            {},
        ),
    ]
    async with charge_point(ChargePoint16, gw.url(cid), cid, version) as cp:
        await check_calls(cp, example, cid, version, calls)
    check_protobuf_both_ways(backend, cid, len(calls))


@run_async
async def test_example_backend_serves_an_ocpp201_charge_point(gateway, backend, example):
    """The example process answers a 2.0.1 boot, heartbeat, status and transaction over protobuf."""
    gw = gateway(PROTOBUF_BOTH_WAYS)
    cid, version = "it-example-201", "ocpp2.0.1"
    token = {"idToken": "TAG-201", "type": "ISO14443"}
    event = {"timestamp": NOW, "evse": {"id": 1, "connectorId": 1}}
    calls = [
        (
            call201.BootNotification(
                charging_station={"model": "M2", "vendor_name": "ACME"}, reason="PowerUp"
            ),
            "boot",
        ),
        (call201.Heartbeat(), "now"),
        (
            call201.StatusNotification(
                timestamp=NOW, connector_status="Available", evse_id=1, connector_id=1
            ),
            {},
        ),
        (call201.Authorize(id_token=token), {"idTokenInfo": {"status": "Accepted"}}),
        (
            call201.TransactionEvent(
                event_type="Started",
                trigger_reason="Authorized",
                seq_no=0,
                transaction_info={"transactionId": "TX-1", "chargingState": "Charging"},
                id_token=token,
                **event,
            ),
            {},
        ),
        (
            call201.TransactionEvent(
                event_type="Ended",
                trigger_reason="StopAuthorized",
                seq_no=1,
                transaction_info={"transactionId": "TX-1", "stoppedReason": "Local"},
                meter_value=[
                    {
                        "timestamp": NOW,
                        "sampledValue": [
                            {"value": 1234.5, "measurand": "Energy.Active.Import.Register"}
                        ],
                    }
                ],
                **event,
            ),
            {},
        ),
    ]
    async with charge_point(ChargePoint201, gw.url(cid), cid, version) as cp:
        await check_calls(cp, example, cid, version, calls)
    check_protobuf_both_ways(backend, cid, len(calls))
