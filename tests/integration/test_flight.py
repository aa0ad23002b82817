"""
The flight recorder through a running gateway (issue 21): the records of a
charge point's exchanges with a backend over MQTT, exactly as each side sent
them after redaction, in order, correlated, with verdicts and filters.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from http.client import HTTPConnection
from typing import Any

import pytest
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16

from tests.integration.harness import (
    BIN,
    WAIT,
    Backend,
    Gateway,
    charge_point,
    connect,
    free_port,
    recv_frame,
    run_async,
    wait_log,
)
from tests.integration.harness.admin import TOKEN, admin_gateway, ahttp, http, with_admin

SECRET = "SECRET-TAG-7731"
CTL = str(BIN / "ocppgw-ctl")


def cid(tag: str) -> str:
    return f"fr-{tag}-{uuid.uuid4().hex[:8]}"


@run_async
async def test_records_of_an_exchange(
    gateway: Callable[..., Gateway], backend: Backend
) -> None:
    """
    An Authorize relayed to the backend and answered gives four records, each
    Frame byte for byte what that side sent (the idTag as its hash), in order,
    the answers with the Action and latency of their CALL; the secret appears
    in neither the JSON, the JSON lines, nor the log.
    """
    gw, url = admin_gateway(gateway)
    backend.answer("Authorize", {"idTagInfo": {"status": "Accepted"}})
    identity = cid("auth")
    async with charge_point(ChargePoint16, gw.url(identity), identity, "ocpp1.6") as cp:
        await cp.call(call16.Authorize(id_tag=SECRET))
        sent, received = list(cp.conn.sent), list(cp.conn.received)
    status, records = await ahttp("GET", url + f"/api/v1/chargepoints/{identity}/messages")
    assert status == 200, records
    assert [r["Direction"] for r in records] == [
        "FromChargePoint", "ToBackend", "FromBackend", "ToChargePoint"
    ]
    hashed = re.search(r'"idTag": ?"(h:[0-9a-f]{16})"', records[0]["Frame"])
    assert hashed is not None, records[0]
    assert records[0]["Frame"] == sent[0].replace(SECRET, hashed.group(1))
    assert records[3]["Frame"] == received[0]
    topics = (records[1]["Topic"], records[2]["Topic"])
    mine = [m for m in backend.about(identity) if m.topic in topics]
    assert [m.topic for m in mine] == [records[1]["Topic"], records[2]["Topic"]]
    assert records[1]["Frame"] == mine[0].payload.decode().replace(SECRET, hashed.group(1))
    assert records[2]["Frame"] == mine[1].payload.decode()
    unique_id = json.loads(sent[0])[1]
    for record in records:
        assert (record["UniqueId"], record["Action"]) == (unique_id, "Authorize")
        assert record["Verdict"] == "accepted"
    assert [r["MessageTypeId"] for r in records] == [2, 2, 3, 3]
    assert records[0]["LatencyMs"] is None and records[3]["LatencyMs"] >= 0
    assert records[0]["Topic"] is None and records[1]["Topic"].endswith("Authorize")
    status, lines, headers = http("GET", url + f"/api/v1/chargepoints/{identity}/messages.jsonl")
    assert status == 200 and headers["Content-Type"] == "application/jsonl"
    assert [json.loads(line) for line in lines.splitlines()] == records
    everything = json.dumps(records) + lines + gw.log()
    assert SECRET not in everything


@run_async
async def test_verdicts_and_filters(gateway: Callable[..., Gateway], backend: Backend) -> None:
    """
    A frame that is no OCPP-J message and a CALL of no known action are
    recorded refused with the CALLERROR the charge point got; the filters
    select by direction, UniqueId, type and action; limit keeps the newest.
    """
    gw, url = admin_gateway(gateway)
    identity = cid("bad")
    async with connect(gw.url(identity), ["ocpp2.0.1"]) as ws:
        await ws.send('[2,"n1","NoSuchAction",{}]')
        refused = await recv_frame(ws)
        await ws.send("not json at all")
        junk_answer = await recv_frame(ws)
    assert refused[0] == 4 and junk_answer[0] == 4
    base = url + f"/api/v1/chargepoints/{identity}/messages"
    status, records = await ahttp("GET", base)
    assert status == 200
    assert [(r["Direction"], r["MessageTypeId"]) for r in records] == [
        ("FromChargePoint", 2),
        ("ToChargePoint", 4),
        ("FromChargePoint", None),
        ("ToChargePoint", 4),
    ]
    assert records[0]["Verdict"] == {"ErrorCode": refused[2], "ErrorDescription": refused[3]}
    assert records[2]["Verdict"] == {
        "ErrorCode": junk_answer[2], "ErrorDescription": junk_answer[3]
    }
    assert records[2]["Frame"] == "not json at all"
    assert records[1]["Action"] == "NoSuchAction"
    pick = lambda query: [r["Frame"] for r in http("GET", base + "?" + query)[1]]  # noqa: E731
    assert pick("direction=ToChargePoint") == [records[1]["Frame"], records[3]["Frame"]]
    assert pick("unique_id=n1") == [records[0]["Frame"], records[1]["Frame"]]
    assert pick("type=4&limit=1") == [records[3]["Frame"]]
    assert pick("action=NoSuchAction") == [records[0]["Frame"], records[1]["Frame"]]
    assert pick("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z") == [
        r["Frame"] for r in records
    ]
    assert http("GET", base + "?direction=Sideways")[:2] == (
        400,
        {"error": "direction: one of FromChargePoint, ToChargePoint, ToBackend, FromBackend, "
                  "not 'Sideways'"},
    )
    missing = http("GET", url + "/api/v1/chargepoints/nobody-here/messages")[:2]
    assert missing == (404, {"error": "flight recorder: no history of charge point 'nobody-here'"})


@run_async
async def test_history_kept_for_keep_seconds(
    gateway: Callable[..., Gateway], backend: Backend
) -> None:
    """A disconnected charge point's history is served for [recorder] keep seconds, then 404."""
    gw, url = admin_gateway(gateway, {"recorder": {"keep": "2"}})
    identity = cid("keep")
    async with connect(gw.url(identity), ["ocpp1.6"]) as ws:
        await ws.send('[2,"k1","NoSuchAction",{}]')
        await recv_frame(ws)
    await asyncio.sleep(0.5)
    base = url + f"/api/v1/chargepoints/{identity}/messages"
    status, records = await ahttp("GET", base)
    assert status == 200 and len(records) == 2
    await asyncio.sleep(2)
    assert (await ahttp("GET", base))[0] == 404


@run_async
async def test_across_workers(gateway: Callable[..., Gateway], backend: Backend) -> None:
    """With two workers, the supervisor serves each charge point's records from its worker."""
    port = free_port()
    gw = gateway(with_admin(port, {"gateway": {"workers": "2"}}))
    wait_log(gw, r"worker \d: .*starting on", 2)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + WAIT
    while http("GET", f"{url}/healthz")[0] != 200:  # both workers' admin sockets up
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    identities = [cid(f"w{i}") for i in range(6)]  # the kernel picks each one's worker
    for identity in identities:
        async with connect(gw.url(identity), ["ocpp1.6"]) as ws:
            await ws.send(f'[2,"{identity}","NoSuchAction",{{}}]')
            await recv_frame(ws)
    for identity in identities:
        status, records = await ahttp("GET", url + f"/api/v1/chargepoints/{identity}/messages")
        assert status == 200, records
        assert [(r["UniqueId"], r["Direction"]) for r in records] == [
            (identity, "FromChargePoint"),
            (identity, "ToChargePoint"),
        ]
        status, lines, _ = http("GET", url + f"/api/v1/chargepoints/{identity}/messages.jsonl")
        assert status == 200 and [json.loads(x) for x in lines.splitlines()] == records
        newest = http("GET", url + f"/api/v1/chargepoints/{identity}/messages?limit=1")
        assert newest[:2] == (200, records[1:])
    assert http("GET", url + "/api/v1/chargepoints/nobody/messages")[0] == 404


def _stream(port: int, path: str) -> tuple[HTTPConnection, Any]:
    """An open ``follow=true`` stream, its first comment read: the follow is on."""
    conn = HTTPConnection("127.0.0.1", port, timeout=WAIT)
    conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
    response = conn.getresponse()
    assert response.status == 200, response.read()
    assert response.getheader("Content-Type") == "text/event-stream"
    assert response.readline().startswith(b": following")
    assert response.readline() == b"\n"
    return conn, response


def _next_event(response: Any) -> dict[str, Any]:
    """The record of the stream's next event."""
    while True:
        line = response.readline()
        assert line, "the stream ended"
        if line.startswith(b"data: "):
            return json.loads(line[len(b"data: ") :])  # type: ignore[no-any-return]


async def _follow_delivers(port: int, gw: Gateway, identity: str) -> None:
    """A frame sent after the request arrives on the stream within 1 s, with its answer."""
    path = f"/api/v1/chargepoints/{identity}/messages?follow=true&direction=FromChargePoint"
    async with connect(gw.url(identity), ["ocpp1.6"]) as ws:
        await ws.send('[2,"before","NoSuchAction",{}]')
        await recv_frame(ws)
        conn, response = await asyncio.to_thread(_stream, port, path)
        try:
            started = time.monotonic()
            await ws.send('[2,"after","NoSuchAction",{}]')
            record = await asyncio.to_thread(_next_event, response)
            assert time.monotonic() - started < 1.0
            assert (record["UniqueId"], record["Direction"]) == ("after", "FromChargePoint")
            assert record["Frame"] == '[2,"after","NoSuchAction",{}]'
            await recv_frame(ws)
        finally:
            conn.close()


@run_async
async def test_follow(gateway: Callable[..., Gateway]) -> None:
    """follow=true streams the new records that match, not the past ones, as Server-Sent Events."""
    port = free_port()
    gw = gateway(with_admin(port))
    await _follow_delivers(port, gw, cid("follow"))


@run_async
async def test_follow_across_workers(gateway: Callable[..., Gateway]) -> None:
    """Through the supervisor of two workers, follow=true relays the worker's events."""
    port = free_port()
    gw = gateway(with_admin(port, {"gateway": {"workers": "2"}}))
    wait_log(gw, r"worker \d: .*starting on", 2)
    deadline = time.monotonic() + WAIT
    while http("GET", f"http://127.0.0.1:{port}/healthz")[0] != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    for i in range(3):  # whichever worker the kernel picks
        await _follow_delivers(port, gw, cid(f"fw{i}"))


async def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [CTL, *args], capture_output=True, text=True, timeout=30
    )


@run_async
async def test_ctl_messages_and_trace(gateway: Callable[..., Gateway], backend: Backend) -> None:
    """
    ocppgw-ctl messages prints one row per exchange (a CALL with its answer:
    action, id, answer, latency, verdict), --json the API's records; trace
    prints each new record as it comes, as tail -f does.
    """
    gw, url = admin_gateway(gateway)
    backend.answer("Authorize", {"idTagInfo": {"status": "Accepted"}})
    identity = cid("ctl")
    auth = ["--url", url, "--token", TOKEN]
    async with charge_point(ChargePoint16, gw.url(identity), identity, "ocpp1.6") as cp:
        await cp.call(call16.Authorize(id_tag=SECRET))
        await cp.conn.ws.send('[2,"bad-1","NoSuchAction",{}]')
        await asyncio.sleep(0.3)
        shown = await _ctl(*auth, "messages", identity)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0].split() == [
            "TIME", "FROM", "ACTION", "UNIQUE_ID", "ANSWER", "LATENCY_MS", "VERDICT"
        ]
        authorize = lines[1].split()
        assert authorize[1:4] == ["charge", "point", "Authorize"]
        assert authorize[5] == "CALLRESULT" and authorize[7] == "accepted"
        refused = lines[2].split()
        assert refused[1:7] == ["charge", "point", "NoSuchAction", "bad-1", "CALLERROR",
                                "NotImplemented"]
        assert int(refused[7]) >= 0
        why = "refused: NotImplemented (unknown action 'NoSuchAction' for ocpp1.6)"
        assert lines[2].endswith(why)
        assert len(lines) == 3 and SECRET not in shown.stdout
        as_json = await _ctl(*auth, "--json", "messages", identity, "--unique-id", "bad-1")
        api = http("GET", url + f"/api/v1/chargepoints/{identity}/messages?unique_id=bad-1")[1]
        assert json.loads(as_json.stdout) == api
        tracing = subprocess.Popen(
            [CTL, *auth, "trace", identity, "--direction", "FromChargePoint"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            await asyncio.sleep(1.0)  # the command has no way to say its follow is on
            await cp.conn.ws.send('[2,"live-1","NoSuchAction",{}]')
            line = await asyncio.to_thread(tracing.stdout.readline)  # type: ignore[union-attr]
            assert " FromChargePoint " in line and "NoSuchAction live-1" in line, line
            assert line.rstrip().endswith('[2,"live-1","NoSuchAction",{}]')
        finally:
            tracing.terminate()
            tracing.wait(5)
    missing = await _ctl(*auth, "messages", "nobody-here")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "ocppgw-ctl: 404: flight recorder: no history of charge point 'nobody-here'"
    )


def _clearing(version: str) -> type[Any]:
    """A charge point of ``version`` (the ``ocpp`` package) that accepts ClearCache."""
    from ocpp.routing import on

    module = "v201" if version == "ocpp2.0.1" else "v21"
    base = importlib.import_module(f"ocpp.{module}").ChargePoint
    results = importlib.import_module(f"ocpp.{module}.call_result")

    class Clearing(base):  # type: ignore[misc, valid-type]
        @on("ClearCache")
        def on_clear(self, **_: Any) -> Any:
            return results.ClearCache(status="Accepted")

    return Clearing


@pytest.mark.parametrize("version", ["ocpp2.0.1", "ocpp2.1"])
@run_async
async def test_both_ways_201_and_21(
    gateway: Callable[..., Gateway], backend: Backend, version: str
) -> None:
    """
    A charge point's Authorize (its idToken.idToken redacted) and a backend's
    ClearCache each give four records in order, each leg's Frame what that
    side sent, answers correlated to their CALL with its Action.
    """
    gw, url = admin_gateway(gateway)
    backend.answer("Authorize", {"idTokenInfo": {"status": "Accepted"}})
    identity = cid(version[-3:].replace(".", ""))
    calls = importlib.import_module(f"ocpp.{'v201' if version == 'ocpp2.0.1' else 'v21'}.call")
    async with charge_point(_clearing(version), gw.url(identity), identity, version) as cp:
        await cp.call(calls.Authorize(id_token={"id_token": SECRET, "type": "ISO14443"}))
        backend.publish(
            f"ocpp/cs/{identity}/Call/ClearCache",
            {"MessageTypeId": 2, "UniqueId": "dn-1", "Action": "ClearCache", "Payload": {}},
        )
        await backend.envelope(f"ocpp/cp/Reply/{identity}", UniqueId="dn-1")
        sent, received = list(cp.conn.sent), list(cp.conn.received)
    status, records = await ahttp("GET", url + f"/api/v1/chargepoints/{identity}/messages")
    assert status == 200, records
    assert [(r["Direction"], r["MessageTypeId"], r["Action"]) for r in records] == [
        ("FromChargePoint", 2, "Authorize"),
        ("ToBackend", 2, "Authorize"),
        ("FromBackend", 3, "Authorize"),
        ("ToChargePoint", 3, "Authorize"),
        ("FromBackend", 2, "ClearCache"),
        ("ToChargePoint", 2, "ClearCache"),
        ("FromChargePoint", 3, "ClearCache"),
        ("ToBackend", 3, "ClearCache"),
    ]
    hashed = re.search(r'"idToken": ?"(h:[0-9a-f]{16})"', records[0]["Frame"])
    assert hashed is not None, records[0]
    assert [r["Frame"] for r in records if r["Topic"] is None] == [
        sent[0].replace(SECRET, hashed.group(1)), received[0], received[1], sent[1]
    ]
    assert '"type":"ISO14443"' in records[0]["Frame"].replace(" ", "")
    assert all(r["Verdict"] == "accepted" for r in records)
    assert records[6]["LatencyMs"] is not None and records[7]["LatencyMs"] is not None
    assert SECRET not in json.dumps(records) + gw.log()


@run_async
async def test_downstream_refused(gateway: Callable[..., Gateway], backend: Backend) -> None:
    """
    A backend CALL the gateway refuses itself (an action 1.6 does not have)
    is recorded FromBackend with the gateway's error as its Verdict, and the
    error envelope as published ToBackend, correlated to it.
    """
    gw, url = admin_gateway(gateway)
    identity = cid("dn")
    base = url + f"/api/v1/chargepoints/{identity}/messages"
    async with connect(gw.url(identity), ["ocpp1.6"]) as ws:
        await ws.send('[2,"hb","Heartbeat",{}]')  # answered once the backend is reachable
        backend.answer("Heartbeat", {"currentTime": "2026-01-01T00:00:00Z"})
        await recv_frame(ws)
        backend.publish(
            f"ocpp/cs/{identity}/Call/NoSuchAction",
            {"MessageTypeId": 2, "UniqueId": "dn-bad", "Action": "NoSuchAction", "Payload": {}},
        )
        deadline = time.monotonic() + WAIT
        while len(records := http("GET", base + "?unique_id=dn-bad")[1]) < 2:
            assert time.monotonic() < deadline, records
            await asyncio.sleep(0.05)
    call, error = records
    assert (call["Direction"], call["MessageTypeId"]) == ("FromBackend", 2)
    assert (error["Direction"], error["MessageTypeId"], error["Action"]) == (
        "ToBackend", 4, "NoSuchAction"
    )
    published = json.loads(error["Frame"])
    assert call["Verdict"] == {
        "ErrorCode": published["ErrorCode"], "ErrorDescription": published["ErrorDescription"]
    }
    assert error["LatencyMs"] is not None
