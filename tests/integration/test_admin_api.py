"""
The admin HTTP API against a running gateway: the token, charge points
listed and shown, CALLs through the session's validation and queue,
closing a connection, the gateway's state and /healthz.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16

from tests.integration.harness import (
    WAIT,
    Backend,
    Gateway,
    charge_point,
    connect,
    free_port,
    recv_frame,
    run_async,
    wait_closed,
)
from tests.integration.harness.admin import admin_gateway, ahttp, http
from tests.integration.harness.support import own_gateway, start_own_broker, stop_broker


def cid(tag: str) -> str:
    return f"adm-{tag}-{uuid.uuid4().hex[:8]}"


class Answering16(ChargePoint16):
    """Accepts every ChangeAvailability."""

    @on(Action16.change_availability)
    def on_change(self, connector_id: int, type: str) -> Any:
        return result16.ChangeAvailability(status="Accepted")


def test_token_guards_api_and_metrics(gateway: Callable[..., Gateway]) -> None:
    """/api/ and /metrics need the bearer token (401 and nothing else); /healthz is open."""
    _, url = admin_gateway(gateway)
    for path in ("/api/v1/gateway", "/api/v1/chargepoints/x", "/api/v1/nosuch", "/metrics"):
        for token in (None, "wrong"):
            status, body, headers = http("GET", url + path, token=token)
            assert status == 401, (path, token, status, body)
            assert body == {"error": "missing or wrong bearer token"}
            assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    status, body, _ = http("GET", url + "/healthz", token=None)
    assert (status, body["status"]) == (200, "ok")
    assert http("GET", url + "/api/v1/gateway")[0] == 200
    missing = {"error": "no such route: /api/v1/nosuch"}
    assert http("GET", url + "/api/v1/nosuch")[:2] == (404, missing)


def test_metrics_open_when_asked(gateway: Callable[..., Gateway]) -> None:
    """metrics_auth = false opens /metrics; /api/ still needs the token."""
    _, url = admin_gateway(gateway, metrics_auth="false")
    status, text, _ = http("GET", url + "/metrics", token=None)
    assert status == 200 and "ocppgw_mqtt_connected 1.0" in text
    assert http("GET", url + "/api/v1/gateway", token=None)[0] == 401


@run_async
async def test_list_and_show(gateway: Callable[..., Gateway], backend: Backend) -> None:
    """Charge points are listed with filters and a cursor, and shown with counters and events."""
    gw, url = admin_gateway(gateway)
    backend.answer("Heartbeat", {"currentTime": "2026-01-01T00:00:00Z"})
    a, b = cid("a"), cid("b")
    async with connect(gw.url(a), ["ocpp1.6"]) as ws_a, connect(gw.url(b), ["ocpp2.0.1"]):
        await ws_a.send('[2,"h1","Heartbeat",{}]')
        assert (await recv_frame(ws_a))[:2] == [3, "h1"]
        status, body = await ahttp("GET", url + "/api/v1/chargepoints?identity_like=adm-%25")
        assert status == 200
        mine = {c["identity"]: c for c in body["chargepoints"] if c["identity"] in (a, b)}
        assert set(mine) == {a, b}
        assert mine[a]["version"] == "ocpp1.6" and mine[b]["version"] == "ocpp2.0.1"
        assert mine[a]["listener"] == "ws" and mine[a]["security_profile"] == 0
        assert mine[a]["state"] == "connected" and mine[a]["queue_length"] == 0
        assert mine[a]["remote_address"].startswith("tcp4:127.0.0.1:")
        assert mine[a]["messages_in"] == 1 and mine[a]["messages_out"] == 1
        assert mine[a]["connected_since"] and mine[a]["last_message_at"]
        status, body = await ahttp("GET", url + "/api/v1/chargepoints?version=ocpp2.0.1")
        assert [c["identity"] for c in body["chargepoints"]] == [b]
        first, second = sorted([a, b])
        status, page1 = await ahttp("GET", url + "/api/v1/chargepoints?limit=1")
        assert [c["identity"] for c in page1["chargepoints"]] == [first]
        status, page2 = await ahttp(
            "GET", url + f"/api/v1/chargepoints?limit=1&cursor={page1['next_cursor']}"
        )
        assert [c["identity"] for c in page2["chargepoints"]] == [second]
        assert page2["next_cursor"] is None
        assert (await ahttp("GET", url + "/api/v1/chargepoints?limit=0"))[0] == 400
        status, bad = await ahttp("GET", url + "/api/v1/chargepoints?colour=red")
        assert (status, bad) == (400, {"error": "unknown query parameter(s): colour"})
        status, shown = await ahttp("GET", url + f"/api/v1/chargepoints/{a}")
        assert status == 200
        assert {"direction": "in", "type": "CALL", "action": "Heartbeat", "count": 1} in shown[
            "messages"
        ]
        assert {"direction": "out", "type": "CALLRESULT", "action": "Heartbeat", "count": 1} in (
            shown["messages"]
        )
        assert shown["bytes_in"] == len('[2,"h1","Heartbeat",{}]')
        assert [e["event"] for e in shown["events"]] == ["connect"]
    # Gone: its history stays, with the close code.
    await asyncio.sleep(0.3)
    status, shown = await ahttp("GET", url + f"/api/v1/chargepoints/{a}")
    assert shown["events"][-1]["event"] == "close" and shown["events"][-1]["code"] == 1000
    assert (await ahttp("GET", url + "/api/v1/chargepoints/nobody"))[0] == 404


@run_async
async def test_call_answered(gateway: Callable[..., Gateway]) -> None:
    """A CALL from the API reaches the charge point and its CALLRESULT comes back as JSON."""
    gw, url = admin_gateway(gateway)
    identity = cid("call")
    async with charge_point(Answering16, gw.url(identity), identity, "ocpp1.6"):
        status, body = await ahttp(
            "POST",
            url + f"/api/v1/chargepoints/{identity}/calls",
            {"action": "ChangeAvailability", "payload": {"connectorId": 0, "type": "Operative"}},
        )
    assert status == 200, body
    assert body["type"] == "CALLRESULT" and body["payload"] == {"status": "Accepted"}
    assert body["action"] == "ChangeAvailability" and body["identity"] == identity


@run_async
async def test_call_errors(gateway: Callable[..., Gateway]) -> None:
    """Invalid payload 400 naming the field, offline 404, queue full 409, timeout 504."""
    gw, url = admin_gateway(gateway, {"dnstream": {"max_queue": "1"}})
    identity = cid("err")
    calls = url + f"/api/v1/chargepoints/{identity}/calls"
    status, body = await ahttp("POST", calls, {"action": "Reset", "payload": {"type": "Hard"}})
    assert status == 404 and body["code"] == "Offline"
    async with connect(gw.url(identity), ["ocpp1.6"]) as ws:
        status, body = await ahttp("POST", calls, {"action": "Reset", "payload": {"type": "Nope"}})
        assert status == 400 and body["code"] == "Invalid" and body["field"] == "type", body
        assert (await ahttp("POST", calls, {"action": "Reset", "payload": []}))[1]["field"] == (
            "payload"
        )
        assert (await ahttp("POST", calls, {"payload": {}}))[1]["field"] == "action"
        reset = {"action": "Reset", "payload": {"type": "Soft"}, "timeout": 1.5}
        in_flight = asyncio.create_task(ahttp("POST", calls, reset))
        assert (await recv_frame(ws))[2] == "Reset"  # never answered
        queued = asyncio.create_task(ahttp("POST", calls, reset))
        await asyncio.sleep(0.3)
        status, body = await ahttp("POST", calls, reset)
        assert status == 409 and body["code"] == "QueueFull", body
        status, body = await in_flight
        assert status == 504 and body["code"] == "Timeout", body
        await queued


@run_async
async def test_calls_to_several(gateway: Callable[..., Gateway]) -> None:
    """POST /api/v1/calls returns each identity's outcome, the silent one's as a timeout."""
    gw, url = admin_gateway(gateway)
    answering, silent, absent = cid("yes"), cid("mute"), cid("gone")
    async with charge_point(Answering16, gw.url(answering), answering, "ocpp1.6"):
        async with connect(gw.url(silent), ["ocpp1.6"]):
            status, body = await ahttp(
                "POST",
                url + "/api/v1/calls",
                {
                    "identities": [answering, silent, absent],
                    "action": "ChangeAvailability",
                    "payload": {"connectorId": 1, "type": "Inoperative"},
                    "timeout": 1.5,
                },
            )
    assert status == 200, body
    results = body["results"]
    assert results[answering]["status"] == 200
    assert results[answering]["payload"] == {"status": "Accepted"}
    assert results[silent]["status"] == 504 and results[silent]["code"] == "Timeout"
    assert results[absent]["status"] == 404


@run_async
async def test_kick(gateway: Callable[..., Gateway]) -> None:
    """DELETE closes the connection with the code asked for; 404 once it is gone."""
    gw, url = admin_gateway(gateway)
    identity = cid("kick")
    async with connect(gw.url(identity), ["ocpp1.6"]) as ws:
        status, body = await ahttp("DELETE", url + f"/api/v1/chargepoints/{identity}?code=4001")
        assert (status, body["closed"]) == (200, True)
        closed = await wait_closed(ws)
        assert closed.rcvd is not None and closed.rcvd.code == 4001
    await asyncio.sleep(0.3)
    status, body = await ahttp("DELETE", url + f"/api/v1/chargepoints/{identity}")
    assert status == 404 and "not connected" in body["error"]
    assert (await ahttp("DELETE", url + "/api/v1/chargepoints/x?code=1005"))[0] == 400


def test_gateway_info(gateway: Callable[..., Gateway]) -> None:
    """GET /api/v1/gateway: instance, version, listeners, workers and MQTT state."""
    gw, url = admin_gateway(gateway)
    status, body, _ = http("GET", url + "/api/v1/gateway")
    assert status == 200
    assert body["gateway_id"] == gw.name and body["workers"] == 1
    assert body["listeners"][0]["name"] == "ws" and body["listeners"][0]["listening"] is True
    assert body["listeners"][0]["port"] == gw.port
    assert body["mqtt"]["connected"] is True
    # Right after start the gateway's own presence may still await its PUBACK.
    assert isinstance(body["mqtt"]["unacknowledged_publishes"], int)
    assert isinstance(body["mqtt"]["buffered_publishes"], int) and body["uptime_seconds"] >= 0


def test_healthz_without_broker(tmp_path: Path) -> None:
    """/healthz answers 503 naming the broker while it is down, 200 while up."""
    broker = start_own_broker(tmp_path / "broker")
    port = free_port()
    admin = {"admin": {"endpoint": f"tcp:{port}:interface=127.0.0.1"}}
    try:
        with own_gateway(tmp_path / "gw", broker, admin):
            url = f"http://127.0.0.1:{port}/healthz"
            assert http("GET", url, token=None)[0] == 200
            stop_broker(broker)
            deadline = time.monotonic() + WAIT
            while (answer := http("GET", url, token=None))[0] != 503:
                assert time.monotonic() < deadline, answer
                time.sleep(0.05)
            assert answer[1]["status"] == "unavailable"
            assert answer[1]["reasons"] == ["not connected to the MQTT broker"]
    finally:
        stop_broker(broker) if broker.proc.poll() is None else None
