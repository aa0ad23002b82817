"""
The README's first round trip: the process ``examples/backend.py`` on the
test broker, behind a real gateway with the default JSON topics, answering
``ocpp``-package charge points (1.6, 2.0.1 and 2.1) through a boot, a
heartbeat, status notifications and a whole transaction; and ``make demo``,
which runs the gateway with its embedded broker and the example together
until one Ctrl-C stops both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ocpp import v16, v21, v201

from tests.integration.harness import (
    STOP_TIMEOUT,
    WAIT,
    Broker,
    accepts,
    charge_point,
    free_port,
    render_ini,
    run_async,
    stop_process,
)
from tests.integration.harness.support import NOW, PrintingProcess, kill_embedded_broker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "backend.py"
#: The example's currentTime: RFC 3339, UTC, whole seconds.
EXAMPLE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class ExampleBackend(PrintingProcess):
    """``python examples/backend.py`` on a broker."""

    def __init__(self, port: int, cwd: Path) -> None:
        argv = [sys.executable, "-u", str(EXAMPLE), "--port", str(port)]
        super().__init__([*argv, "--client-id", f"it-backend-{uuid.uuid4().hex[:12]}"], cwd)

    async def printed(self, line: str) -> None:
        """Wait up to :data:`WAIT` s for the example to print ``line``."""
        deadline = time.monotonic() + WAIT
        while line not in self.output():
            if time.monotonic() > deadline:
                raise AssertionError(f"the example did not print {line!r}: {self.output()}")
            await asyncio.sleep(0.02)


@pytest.fixture
def example(broker: Broker, tmp_path: Path) -> Iterator[ExampleBackend]:
    """The example backend, subscribed on the test broker."""
    proc = ExampleBackend(broker.port, tmp_path)
    try:
        proc.wait_line("subscribed to ocpp/cp/+/+")
        yield proc
    finally:
        stop_process(proc.proc)


def _json(value: Any) -> str:
    return json.dumps(value)


async def check_calls(
    cp: Any, example: ExampleBackend, cid: str, version: str, calls: list[tuple[Any, Any]]
) -> None:
    """Each (request, answer) CALL gets the answer; the example printed both halves."""
    for i, (request, expected) in enumerate(calls):
        unique_id = f"ex-{i}"
        await cp.call(request, suppress=False, unique_id=unique_id)
        frame = cp.conn.received_for(unique_id)
        assert frame[:2] == [3, unique_id], frame
        got = frame[2]
        if expected == "boot":
            assert set(got) == {"status", "currentTime", "interval"}, got
            assert (got["status"], got["interval"]) == ("Accepted", 300)
            assert EXAMPLE_TIME.fullmatch(got["currentTime"]), got
        elif expected == "now":
            assert set(got) == {"currentTime"} and EXAMPLE_TIME.fullmatch(got["currentTime"]), got
        else:
            assert got == expected
        action = type(request).__name__
        await example.printed(f"> {cid} {version} {action} {_json(cp.conn.sent_for(unique_id)[3])}")
        await example.printed(f"< {cid} {version} {action} {_json(got)}")


@run_async
async def test_example_backend_answers_an_ocpp16_charge_point(gateway, example):
    """The example answers a 1.6 boot, heartbeat, status, authorize and transaction."""
    gw = gateway()
    cid, version = "it-backend-16", "ocpp1.6"
    accepted = {"idTagInfo": {"status": "Accepted"}}
    call = v16.call
    calls = [
        (call.BootNotification(charge_point_model="M1", charge_point_vendor="ACME"), "boot"),
        (call.Heartbeat(), "now"),
        (call.StatusNotification(connector_id=1, error_code="NoError", status="Available"), {}),
        (call.Authorize(id_tag="TAG-16"), accepted),
        (
            call.StartTransaction(connector_id=1, id_tag="TAG-16", meter_start=0, timestamp=NOW),
            {"transactionId": 1, **accepted},
        ),
        (
            call.MeterValues(
                connector_id=1,
                transaction_id=1,
                meter_value=[{"timestamp": NOW, "sampledValue": [{"value": "12.5"}]}],
            ),
            {},
        ),
        (call.StopTransaction(meter_stop=1250, timestamp=NOW, transaction_id=1), accepted),
    ]
    async with charge_point(v16.ChargePoint, gw.url(cid), cid, version) as cp:
        await check_calls(cp, example, cid, version, calls)


@pytest.mark.parametrize(("module", "version"), [(v201, "ocpp2.0.1"), (v21, "ocpp2.1")])
@run_async
async def test_example_backend_answers_an_ocpp2x_charge_point(
    gateway, example, module: ModuleType, version: str
):
    """The example answers a 2.x boot, heartbeat, status, authorize, meters and transaction."""
    gw = gateway()
    cid = f"it-backend-{version}"
    call = module.call
    token = {"idToken": "TAG-2", "type": "ISO14443"}
    event = {"timestamp": NOW, "evse": {"id": 1, "connectorId": 1}}
    meter = [{"timestamp": NOW, "sampledValue": [{"value": 1234.5}]}]
    calls = [
        (
            call.BootNotification(
                charging_station={"model": "M2", "vendor_name": "ACME"}, reason="PowerUp"
            ),
            "boot",
        ),
        (call.Heartbeat(), "now"),
        (
            call.StatusNotification(
                timestamp=NOW, connector_status="Available", evse_id=1, connector_id=1
            ),
            {},
        ),
        (call.Authorize(id_token=token), {"idTokenInfo": {"status": "Accepted"}}),
        (
            call.TransactionEvent(
                event_type="Started",
                trigger_reason="Authorized",
                seq_no=0,
                transaction_info={"transactionId": "TX-1"},
                id_token=token,
                **event,
            ),
            {},
        ),
        (call.MeterValues(evse_id=1, meter_value=meter), {}),
        (
            call.TransactionEvent(
                event_type="Ended",
                trigger_reason="StopAuthorized",
                seq_no=1,
                transaction_info={"transactionId": "TX-1", "stoppedReason": "Local"},
                meter_value=meter,
                **event,
            ),
            {},
        ),
    ]
    async with charge_point(module.ChargePoint, gw.url(cid), cid, version) as cp:
        await check_calls(cp, example, cid, version, calls)


@run_async
async def test_make_demo_answers_the_first_charge_point_and_stops_on_ctrl_c(tmp_path: Path):
    """``make demo`` answers a BootNotification with no other process; one SIGINT stops it all."""
    ws_port, mqtt_port = free_port(), free_port()
    config = tmp_path / "ocppgw.ini"
    config.write_text(
        render_ini(
            {
                "gateway": {"id": f"it-demo-{uuid.uuid4().hex[:8]}"},
                "listener:ws": {"endpoint": f"tcp:{ws_port}:interface=127.0.0.1"},
                "mqtt": {"broker": "embedded", "embedded_port": str(mqtt_port)},
                "admin": {"endpoint": ""},
            }
        ),
        encoding="utf-8",
    )
    # -o: never reinstall the venv from here (it may be shared with other checkouts).
    argv = ["make", "-s", "-C", str(ROOT), "-o", ".venv/.installed", "demo", f"CONFIG={config}"]
    # Its own process group, as a terminal's foreground job: Ctrl-C reaches all of it.
    demo = PrintingProcess([*argv, f"DEMO_MQTT_PORT={mqtt_port}"], tmp_path, group=True)
    try:
        demo.wait_line("subscribed to ocpp/cp/+/+", timeout=3 * WAIT)
        cid = "it-demo-cp"
        url = f"ws://127.0.0.1:{ws_port}/ocpp/{cid}"
        async with charge_point(v16.ChargePoint, url, cid, "ocpp1.6") as cp:
            answer = await cp.call(v16.call.BootNotification("M", "ACME"), suppress=False)
        assert answer.status == "Accepted", answer
        demo.wait_line(f"< {cid} ocpp1.6 BootNotification ")
        os.killpg(demo.proc.pid, signal.SIGINT)
        demo.proc.wait(3 * STOP_TIMEOUT)
        assert not accepts(ws_port), "the gateway still listens after Ctrl-C"
        assert not accepts(mqtt_port), "the embedded broker still listens after Ctrl-C"
        leftover = subprocess.run(
            ["pgrep", "-a", "-g", str(demo.proc.pid)], capture_output=True, text=True, check=False
        ).stdout
        assert leftover == "", f"processes of the demo left running: {leftover}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.proc.pid, signal.SIGKILL)
        demo.proc.wait()
        kill_embedded_broker(mqtt_port)
