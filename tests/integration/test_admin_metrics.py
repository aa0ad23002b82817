"""
/metrics after real traffic, parsed with prometheus-client's parser; and
the log lines of the same events, in [gateway] log_format = json.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from tests.integration.harness import (
    Backend,
    Gateway,
    charge_point,
    connect,
    recv_frame,
    run_async,
    wait_closed,
)
from tests.integration.harness.admin import admin_gateway, ahttp, http

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    status, text, headers = http("GET", url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Resetting16(ChargePoint16):
    @on(Action16.reset)
    def on_reset(self, type: str) -> Any:
        return result16.Reset(status="Accepted")


@run_async
async def test_metrics_after_traffic(gateway: Callable[..., Gateway], backend: Backend) -> None:
    """Connections, messages, errors, refusals, takeovers and latencies are counted by label."""
    gw, url = admin_gateway(gateway, {"gateway": {"log_format": "json"}})
    backend.answer("Heartbeat", {"currentTime": "2026-01-01T00:00:00Z"})
    a, b = f"met-a-{uuid.uuid4().hex[:6]}", f"met-b-{uuid.uuid4().hex[:6]}"
    async with charge_point(Resetting16, gw.url(a), a, "ocpp1.6"):
        status, _ = await ahttp(
            "POST", url + f"/api/v1/chargepoints/{a}/calls",
            {"action": "Reset", "payload": {"type": "Soft"}},
        )
        assert status == 200
        async with connect(gw.url(b), ["ocpp2.0.1"]) as ws:
            await ws.send('[2,"h","Heartbeat",{}]')
            assert (await recv_frame(ws))[0] == 3
            await ws.send('[2,"v","BootNotification",{"reason":"Nope"}]')
            assert (await recv_frame(ws))[0] == 4
            during = scrape(url)
            async with connect(gw.url(b), ["ocpp2.0.1"]):  # takes b over
                await wait_closed(ws)
                await asyncio.sleep(0.2)
                after = scrape(url)
    end = scrape(url)
    assert value(during, "ocppgw_charge_points_connected", version="ocpp1.6", listener="ws") == 1
    assert value(during, "ocppgw_charge_points_connected", version="ocpp2.0.1", listener="ws") == 1
    assert value(during, "ocppgw_messages_total", direction="in", type="CALL",
                 action="Heartbeat") == 1
    assert value(during, "ocppgw_messages_total", direction="out", type="CALLRESULT",
                 action="Heartbeat") == 1
    assert value(during, "ocppgw_messages_total", direction="out", type="CALL",
                 action="Reset") == 1
    assert value(during, "ocppgw_downstream_call_seconds_count", action="Reset") == 1
    assert value(during, "ocppgw_upstream_answer_seconds_count", action="Heartbeat") == 1
    assert value(during, "ocppgw_validation_failures_total", action="BootNotification",
                 direction="in") == 1
    errors = {labels: v for (name, labels), v in during.items()
              if name == "ocppgw_callerrors_total"}
    assert errors == {(("code", "OccurrenceConstraintViolation"), ("direction", "out")): 1}, errors
    assert value(after, "ocppgw_takeovers_total", where="same") == 1
    assert value(end, "ocppgw_mqtt_connected") == 1
    assert value(end, "ocppgw_queue_length") == 0
    assert ("ocppgw_process_resident_memory_bytes", ()) in end
    assert all(name.startswith("ocppgw_") for name, _ in end)
    assert not any(a in v or b in v for _, labels in end for _, v in labels)
    log = [json.loads(line) for line in gw.log().splitlines() if line.strip()]
    lines = [e for e in log if e.get("identity") == b]
    assert any("connected (ocpp2.0.1)" in e["text"] and e.get("peer") for e in lines), lines
    assert any("taken over" in e["text"] for e in lines), lines


@run_async
async def test_refusals_and_gateway_errors(
    gateway: Callable[..., Gateway], backend: Backend
) -> None:
    """A refused handshake counts by status, a gateway error envelope by code."""
    gw, url = admin_gateway(gateway)
    with pytest.raises(InvalidStatus):
        async with connect(f"ws://127.0.0.1:{gw.port}/elsewhere/x", ["ocpp1.6"]):
            pass
    identity = f"met-inv-{uuid.uuid4().hex[:6]}"
    async with connect(gw.url(identity), ["ocpp1.6"]):
        await asyncio.sleep(0.2)  # subscribed
        backend.publish(f"ocpp/cs/{identity}/Reset/2", b"not json")
        await backend.envelope(f"ocpp/cp/Error/{identity}", ErrorCode="Invalid")
    samples = scrape(url)
    refused = {labels: v for (name, labels), v in samples.items()
               if name == "ocppgw_handshakes_refused_total"}
    assert sum(refused.values()) == 1 and next(iter(refused)) == (("reason", "404"),), refused
    assert value(samples, "ocppgw_gateway_errors_total", code="Invalid") == 1
