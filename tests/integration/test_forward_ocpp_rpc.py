"""
Forward mode (issue 20) in front of a central system on npm's ``ocpp-rpc``
in strict mode (tests/integration/node/csms.js), over ws and wss, with
charge points on the PyPI ``ocpp`` package: complete sessions, its own
commands, a backend's command over MQTT, refusals, passthrough Basic auth.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from websockets.exceptions import InvalidStatus

from tests.certs import CA
from tests.integration.harness import (
    Backend,
    Gateway,
    basic_auth,
    charge_point,
    connect,
    run_async,
    settle,
)
from tests.integration.harness.ocpprpc import RpcCentralSystem

Start = Callable[..., Gateway]
NOW = "2026-01-02T03:04:05.000Z"


class Station16(ChargePoint16):
    """A 1.6 charge point that accepts Reset and GetConfiguration."""

    @on("Reset")
    def reset(self, type: str) -> Any:
        return result16.Reset(status="Accepted")

    @on("GetConfiguration")
    def get_configuration(self, **kw: Any) -> Any:
        return result16.GetConfiguration(configuration_key=[])


@pytest.fixture
def rpc() -> Iterator[RpcCentralSystem]:
    """The ocpp-rpc central system over ws."""
    central = RpcCentralSystem()
    try:
        yield central
    finally:
        central.stop()


def forwarding(central: RpcCentralSystem, **forward: str) -> dict[str, Any]:
    return {
        "listener:ws": {"forward": "csms"},
        "forward:csms": {"url": central.url(), **forward},
    }


async def waited(central: RpcCentralSystem, identity: str, kind: str, n: int = 1) -> list[Any]:
    """The first ``n`` events of ``kind`` about ``identity``, waiting off the loop."""
    await asyncio.to_thread(
        central.wait, lambda e: len(central.of(identity, kind)) >= n, f"{n} {kind} of {identity}"
    )
    return central.of(identity, kind)[:n]


@run_async
async def test_a_16_session_in_strict_mode(
    gateway: Start, backend: Backend, rpc: RpcCentralSystem
) -> None:
    """
    Boot, authorize, start and stop a transaction, and the central system's
    Reset: every exchange passes ocpp-rpc's strict validation both ways, and
    a backend's GetConfiguration over MQTT takes its turn beside them.
    """
    gw = gateway(forwarding(rpc))
    async with charge_point(Station16, gw.url("RPC-16"), "RPC-16", "ocpp1.6") as cp:
        assert (await cp.call(call16.BootNotification("ACME", "X1"))).status == "Accepted"
        await cp.call(call16.Authorize(id_tag="TAG"))
        assert (await cp.call(call16.StartTransaction(1, "TAG", 0, NOW))).transaction_id == 42
        rpc.call("RPC-16", "Reset", {"type": "Soft"})
        backend.publish(
            "ocpp/cs/RPC-16/Call/GetConfiguration",
            {"MessageTypeId": 2, "UniqueId": "b1", "Action": "GetConfiguration", "Payload": {}},
        )
        (result,) = await waited(rpc, "RPC-16", "result")
        assert result["result"] == {"status": "Accepted"}
        await backend.envelope("ocpp/cp/Reply/RPC-16", UniqueId="b1")
        await cp.call(call16.StopTransaction(10, NOW, 42))
        await settle()
    calls = [e["method"] for e in rpc.of("RPC-16", "call")]
    assert calls == ["BootNotification", "Authorize", "StartTransaction", "StopTransaction"]
    assert rpc.of("RPC-16", "invalid") == []
    (connected,) = rpc.of("RPC-16", "connected")
    assert connected["protocol"] == "ocpp1.6"


@run_async
async def test_a_201_session_in_strict_mode(gateway: Start, rpc: RpcCentralSystem) -> None:
    """A 2.0.1 station's boot and transaction events pass strict validation through the relay."""
    gw = gateway(forwarding(rpc))
    async with charge_point(ChargePoint201, gw.url("RPC-201"), "RPC-201", "ocpp2.0.1") as cp:
        boot = call201.BootNotification({"model": "X2", "vendor_name": "ACME"}, "PowerUp")
        assert (await cp.call(boot)).status == "Accepted"
        started = call201.TransactionEvent(
            "Started", NOW, "CablePluggedIn", 1, {"transaction_id": "T1"}
        )
        await cp.call(started)
    calls = [e["method"] for e in await waited(rpc, "RPC-201", "call", 2)]
    assert calls == ["BootNotification", "TransactionEvent"]
    assert rpc.of("RPC-201", "invalid") == []


@run_async
async def test_refusals_and_passthrough_basic_auth(gateway: Start, rpc: RpcCentralSystem) -> None:
    """Its 401 and 404 are the charge point's; the Basic password it gets is the charge point's."""
    gw = gateway(forwarding(rpc, allow_plain_auth="true"))
    for identity, status in (("REJECT401-a", 401), ("REJECT404-b", 404)):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(gw.url(identity), ["ocpp1.6"]):
                pass
        assert refused.value.response.status_code == status
    header = basic_auth(b"RPC-AUTH", b"secret-password-16")
    async with connect(gw.url("RPC-AUTH"), ["ocpp1.6"], additional_headers=header):
        (connected,) = await waited(rpc, "RPC-AUTH", "connected")
    assert connected["password"] == "secret-password-16"
    assert connected["authorization"] == header["Authorization"]


@run_async
async def test_over_wss(gateway: Start, tmp_path: Path) -> None:
    """ocpp-rpc behind HTTPS: the gateway verifies its certificate against tls_ca and relays."""
    ca = CA()
    cert, key = ca.issue("localhost", server=True, dns=("localhost",), ips=("127.0.0.1",)).write(
        tmp_path, "csms"
    )
    central = RpcCentralSystem(tls=(cert, key))
    try:
        gw = gateway(forwarding(central, tls_ca=str(ca.write(tmp_path / "ca.pem"))))
        async with connect(gw.url("RPC-TLS"), ["ocpp1.6"]) as ws:
            await ws.send('[2,"h1","Heartbeat",{}]')
            assert json.loads(await ws.recv())[:2] == [3, "h1"]
        (call,) = await waited(central, "RPC-TLS", "call")
        assert call["method"] == "Heartbeat"
    finally:
        central.stop()
