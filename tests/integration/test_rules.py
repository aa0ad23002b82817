"""
The OCPP-J rules the gateway enforces, end to end through mosquitto: schema
validation both ways, frame limits, one CALL in flight per direction, queue
and timeouts, local Heartbeat, the offline grace period, a connection
replaced by a newer one, and WebSocket keepalive.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201

from tests.integration.harness import (
    Backend,
    charge_point,
    connect,
    recv_frame,
    run_async,
    settle,
    topic_value,
    wait_closed,
)
from tests.integration.harness.support import NOW, no_frame, presence, raw_handshake, seconds_ago

#: The code of a missing required property, per version (1.6 spells it with one "r").
OCCURRENCE = {
    "ocpp1.6": "OccurenceConstraintViolation",
    "ocpp2.0.1": "OccurrenceConstraintViolation",
}

#: The 2.0.1 error codes that fit refusing a CALL for breaking the RPC rules (Part 4 Table 8).
OCPP2_REFUSALS = {"RpcFrameworkError", "ProtocolError", "GenericError"}

#: A BootNotification missing one required field, the field, per version.
BAD_BOOT = {
    "ocpp1.6": (
        '[2, "bad-boot",  "BootNotification", {"chargePointVendor": "ACME"}]',
        "chargePointModel",
    ),
    "ocpp2.0.1": ('[2, "bad-boot",  "BootNotification", {"reason": "PowerUp"}]', "chargingStation"),
}


def _error_topic(cid: str) -> str:
    return f"ocpp/cp/Error/{topic_value(cid)}"


def _dn(cid: str, kind: str, action: str) -> str:
    return f"ocpp/cs/{topic_value(cid)}/{kind}/{action}"


def _on(backend: Backend, topic: str) -> list:
    return backend.messages(lambda m: m.topic == topic)


# --- validation ---


@pytest.mark.parametrize("version", list(BAD_BOOT))
@run_async
async def test_invalid_call_gets_callerror_and_goes_whole_to_invalid_topic(
    gateway, backend, version
):
    """An invalid CALL gets a CALLERROR naming the field; only invalid_topic gets the raw frame."""
    gw = gateway({"upstream": {"invalid_topic": "ocpp/invalid/${cid}"}})
    cid = f"it-rules-invalid-{version}"
    frame, field = BAD_BOOT[version]
    async with connect(gw.url(cid), [version]) as ws:
        await ws.send(frame)
        answer = await recv_frame(ws)
        assert answer[:3] == [4, "bad-boot", OCCURRENCE[version]], answer
        assert field in answer[3], f"the description does not name {field}: {answer}"
        raw = await backend.wait_for(
            lambda m: m.topic == f"ocpp/invalid/{cid}", "on the invalid topic"
        )
        assert raw.payload == frame.encode(), "the invalid frame was altered"
        await settle(0.5)
    assert not _on(backend, f"ocpp/cp/{cid}/BootNotification"), backend.describe()


@run_async
async def test_unknown_action_gets_not_implemented(gateway, backend):
    """A CALL of an action unknown to the version gets NotImplemented and is not published."""
    gw = gateway()
    cid = "it-rules-unknown-action"
    async with connect(gw.url(cid), ["ocpp2.0.1"]) as ws:
        await ws.send('[2,"ua-1","MakeCoffee",{"sugar":2}]')
        answer = await recv_frame(ws)
        assert answer[:3] == [4, "ua-1", "NotImplemented"], answer
        assert "MakeCoffee" in answer[3], answer
        await settle(0.5)
    assert not _on(backend, f"ocpp/cp/{cid}/MakeCoffee"), backend.describe()


@run_async
async def test_invalid_downstream_call_is_not_sent(gateway, backend):
    """An invalid backend CALL never reaches the CP; an Invalid envelope names the field."""
    gw = gateway()
    cid = "it-rules-invalid-dn"
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await presence(backend, cid, True)
        backend.publish(
            _dn(cid, "Call", "RemoteStartTransaction"),
            {
                "MessageTypeId": 2,
                "UniqueId": "dn-bad",
                "Action": "RemoteStartTransaction",
                "Payload": {"idTag": 12345},
            },
        )
        env = await backend.envelope(_error_topic(cid), UniqueId="dn-bad")
        assert env["ErrorCode"] == "Invalid", env
        assert env["Origin"] == "gateway", env
        assert env["Action"] == "RemoteStartTransaction", env
        assert "idTag" in env["ErrorDescription"], env
        await no_frame(ws)
        # A valid CALL right after it is delivered: the invalid one held nothing up.
        backend.publish(
            _dn(cid, "Call", "RemoteStartTransaction"),
            {
                "MessageTypeId": 2,
                "UniqueId": "dn-good",
                "Action": "RemoteStartTransaction",
                "Payload": {"idTag": "TAG-1"},
            },
        )
        assert await recv_frame(ws) == [2, "dn-good", "RemoteStartTransaction", {"idTag": "TAG-1"}]


@run_async
async def test_invalid_callresult_is_a_validation_failed_envelope(gateway, backend):
    """A CP's invalid CALLRESULT is published as a ValidationFailed envelope, not as a reply."""
    gw = gateway({"upstream": {"invalid_topic": "ocpp/invalid/${cid}"}})
    cid = "it-rules-invalid-result"
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await presence(backend, cid, True)
        backend.publish(
            _dn(cid, "Call", "RemoteStartTransaction"),
            {
                "MessageTypeId": 2,
                "UniqueId": "rs-1",
                "Action": "RemoteStartTransaction",
                "Payload": {"idTag": "TAG-1"},
            },
        )
        assert (await recv_frame(ws))[:2] == [2, "rs-1"]
        bad = '[3,"rs-1",{"status":"Maybe"}]'
        await ws.send(bad)
        env = await backend.envelope(_error_topic(cid), UniqueId="rs-1")
        assert env["ErrorCode"] == "ValidationFailed", env
        assert env["Origin"] == "gateway", env
        assert env["Action"] == "RemoteStartTransaction", env
        assert "status" in env["ErrorDescription"], env
        raw = await backend.wait_for(lambda m: m.topic == f"ocpp/invalid/{cid}", "invalid frame")
        assert raw.payload == bad.encode()
        await settle(0.3)
    assert not _on(backend, f"ocpp/cp/Reply/{cid}"), backend.describe()


# --- frames ---


@pytest.mark.parametrize("compression", ["plain", "deflate"])
@run_async
async def test_oversized_message_closes_1009(gateway, backend, compression):
    """A message over max_frame_size (also one deflated below it) closes 1009; others live on."""
    gw = gateway({"listener:ws": {"max_frame_size": "2048"}})
    backend.answer("Heartbeat", {"currentTime": NOW})
    backend.answer("DataTransfer", {"status": "Accepted"})
    options = {"compression": None} if compression == "plain" else {}
    bystander = f"it-rules-big-bystander-{compression}"
    async with charge_point(ChargePoint201, gw.url(bystander), bystander, "ocpp2.0.1") as other:
        await other.call(call201.Heartbeat(), suppress=False, unique_id="by-1")

        # Just under the limit passes.
        async with connect(gw.url(f"it-rules-fits-{compression}"), ["ocpp1.6"], **options) as ws:
            fits = json.dumps([2, "fit-1", "DataTransfer", {"vendorId": "A", "data": "y" * 1900}])
            assert len(fits) <= 2048
            await ws.send(fits)
            assert await recv_frame(ws) == [3, "fit-1", {"status": "Accepted"}]

        # 3000 bytes of "x": with permessage-deflate, a few dozen bytes on the wire.
        cid = f"it-rules-big-{compression}"
        big = json.dumps([2, "big-1", "DataTransfer", {"vendorId": "ACME", "data": "x" * 3000}])
        async with connect(gw.url(cid), ["ocpp1.6"], **options) as ws:
            await ws.send(big)
            closed = await wait_closed(ws)
            assert closed.rcvd is not None and closed.rcvd.code == 1009, (
                f"{compression}: expected a close frame with 1009, got {closed!r}"
            )

        result = await other.call(call201.Heartbeat(), suppress=False, unique_id="by-2")
        assert result.current_time == NOW
    assert not _on(backend, f"ocpp/cp/{cid}/DataTransfer")


@run_async
async def test_binary_frame_closes_1003_only_its_connection(gateway, backend):
    """A binary frame closes its connection with 1003; another charge point is unaffected."""
    gw = gateway()
    backend.answer("Heartbeat", {"currentTime": NOW})
    bystander = "it-rules-binary-bystander"
    async with charge_point(ChargePoint201, gw.url(bystander), bystander, "ocpp2.0.1") as other:
        await other.call(call201.Heartbeat(), suppress=False, unique_id="by-1")
        async with connect(gw.url("it-rules-binary"), ["ocpp2.0.1"]) as ws:
            await ws.send(b'[2,"bin-1","Heartbeat",{}]')
            closed = await wait_closed(ws)
            assert closed.rcvd is not None and closed.rcvd.code == 1003, f"binary: {closed!r}"
        result = await other.call(call201.Heartbeat(), suppress=False, unique_id="by-2")
        assert result.current_time == NOW
    assert not backend.messages(lambda m: (m.json() or {}).get("UniqueId") == "bin-1")


# --- calls ---


@run_async
async def test_one_downstream_call_in_flight(gateway, backend):
    """Three quick backend CALLs reach the CP one at a time, each after the previous is answered."""
    gw = gateway()
    cid = "it-rules-in-flight"
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await presence(backend, cid, True)
        for n in (1, 2, 3):
            backend.publish(
                _dn(cid, "Call", "ClearCache"),
                {"MessageTypeId": 2, "UniqueId": f"if-{n}", "Action": "ClearCache", "Payload": {}},
            )
        for n in (1, 2, 3):
            assert await recv_frame(ws) == [2, f"if-{n}", "ClearCache", {}]
            await no_frame(ws, 0.7)  # nothing else while this one is unanswered
            await ws.send(json.dumps([3, f"if-{n}", {"status": "Accepted"}]))
            env = await backend.envelope(f"ocpp/cp/Reply/{cid}", UniqueId=f"if-{n}")
            assert env["Action"] == "ClearCache" and env["Payload"] == {"status": "Accepted"}


@run_async
async def test_queue_overflow_gives_queue_full(gateway, backend):
    """With max_queue = 2, the fourth CALL (one in flight, two queued) gets a QueueFull envelope."""
    gw = gateway({"dnstream": {"max_queue": "2"}})
    cid = "it-rules-queue-full"
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await presence(backend, cid, True)
        for n in range(1, 5):
            backend.publish(
                _dn(cid, "Call", "ClearCache"),
                {"MessageTypeId": 2, "UniqueId": f"q-{n}", "Action": "ClearCache", "Payload": {}},
            )
        env = await backend.envelope(_error_topic(cid), UniqueId="q-4")
        assert env["ErrorCode"] == "QueueFull" and env["Origin"] == "gateway", env
        assert env["Action"] == "ClearCache", env
        # The first three are delivered, in order.
        for n in (1, 2, 3):
            assert await recv_frame(ws) == [2, f"q-{n}", "ClearCache", {}]
            await ws.send(json.dumps([3, f"q-{n}", {"status": "Accepted"}]))
        await no_frame(ws, 0.5)
        errors = [m.json() for m in _on(backend, _error_topic(cid))]
    assert [e["UniqueId"] for e in errors] == ["q-4"], errors


@run_async
async def test_downstream_timeout_then_late_answer(gateway, backend):
    """An unanswered backend CALL gets a Timeout envelope; the later answer is marked Late."""
    gw = gateway({"dnstream": {"awaiting_timeout": "1"}})
    cid = "it-rules-dn-timeout"
    async with connect(gw.url(cid), ["ocpp2.0.1"]) as ws:
        await presence(backend, cid, True)
        backend.publish(
            _dn(cid, "Call", "Reset"),
            {
                "MessageTypeId": 2,
                "UniqueId": "to-1",
                "Action": "Reset",
                "Payload": {"type": "Immediate"},
            },
        )
        assert await recv_frame(ws) == [2, "to-1", "Reset", {"type": "Immediate"}]
        sent = time.monotonic()
        env = await backend.envelope(_error_topic(cid), timeout=4, UniqueId="to-1")
        elapsed = time.monotonic() - sent
        assert env["ErrorCode"] == "Timeout" and env["Origin"] == "gateway", env
        assert env["Action"] == "Reset", env
        assert 0.7 < elapsed < 3, f"Timeout after {elapsed:.2f} s, expected about 1 s"
        await ws.send('[3,"to-1",{"status":"Accepted"}]')
        late = await backend.envelope(f"ocpp/cp/Reply/{cid}", UniqueId="to-1")
        assert late.get("Late") is True, late
        assert late["Action"] == "Reset" and late["Payload"] == {"status": "Accepted"}, late


@run_async
async def test_unmatched_downstream_result_gives_unmatched(gateway, backend):
    """A backend CALLRESULT matching no pending CALL gets Unmatched; the CP gets nothing."""
    gw = gateway()
    cid = "it-rules-unmatched"
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await presence(backend, cid, True)
        backend.publish(
            _dn(cid, "Reply", "Heartbeat"),
            {"MessageTypeId": 3, "UniqueId": "nobody-asked", "Payload": {"currentTime": NOW}},
        )
        env = await backend.envelope(_error_topic(cid), UniqueId="nobody-asked")
        assert env["ErrorCode"] == "Unmatched" and env["Origin"] == "gateway", env
        await no_frame(ws)


@run_async
async def test_upstream_timeout(gateway, backend):
    """An unanswered CP CALL gets CALLERROR InternalError; the backend a Timeout envelope."""
    gw = gateway({"upstream": {"awaiting_timeout": "1"}})
    cid = "it-rules-up-timeout"
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await ws.send('[2,"ut-1","Heartbeat",{}]')
        sent = time.monotonic()
        await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId="ut-1")
        assert await recv_frame(ws, timeout=4) == [
            4,
            "ut-1",
            "InternalError",
            "backend did not answer",
            {},
        ]
        elapsed = time.monotonic() - sent
        assert 0.7 < elapsed < 3, f"CALLERROR after {elapsed:.2f} s, expected about 1 s"
        env = await backend.envelope(_error_topic(cid), UniqueId="ut-1")
        assert env["ErrorCode"] == "Timeout" and env["Origin"] == "gateway", env
        assert env["Action"] == "Heartbeat", env


@pytest.mark.parametrize("strict", ["true", "false"])
@run_async
async def test_second_upstream_call_while_one_pends(gateway, backend, strict):
    """strict: a second CP CALL while one pends gets a CALLERROR; strict = false: it passes."""
    gw = gateway({"gateway": {"strict": strict}})
    cid = f"it-rules-second-call-{strict}"
    async with connect(gw.url(cid), ["ocpp2.0.1"]) as ws:
        await ws.send('[2,"sc-1","Heartbeat",{}]')
        await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId="sc-1")
        await ws.send('[2,"sc-2","Heartbeat",{}]')
        if strict == "true":
            answer = await recv_frame(ws)
            assert answer[:2] == [4, "sc-2"] and answer[2] in OCPP2_REFUSALS, answer
            await settle(0.3)
            assert not backend.messages(lambda m: (m.json() or {}).get("UniqueId") == "sc-2")
        else:
            await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId="sc-2")
        ids = ["sc-1"] if strict == "true" else ["sc-2", "sc-1"]
        for uid in ids:  # lenient: answered out of order, matched by id
            backend.publish(
                _dn(cid, "Reply", "Heartbeat"),
                {"MessageTypeId": 3, "UniqueId": uid, "Payload": {"currentTime": NOW}},
            )
            assert await recv_frame(ws) == [3, uid, {"currentTime": NOW}]


@run_async
async def test_local_heartbeat(gateway, backend):
    """[local] heartbeat answers Heartbeat with currentTime and still publishes it, Answered."""
    gw = gateway({"local": {"heartbeat": "true"}})
    cid = "it-rules-local-hb"
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:  # the backend does not answer
        await ws.send('[2,"hb-1","Heartbeat",{}]')
        answer = await recv_frame(ws, timeout=3)
        assert answer[:2] == [3, "hb-1"] and list(answer[2]) == ["currentTime"], answer
        assert abs(seconds_ago(answer[2]["currentTime"])) < 5, answer
        env = await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId="hb-1")
        assert env.get("Answered") is True, env
        assert env["MessageTypeId"] == 2 and env["Payload"] == {}, env


@run_async
async def test_local_status_notification(gateway, backend):
    """[local] status_notification answers a real 1.6 and 2.0.1 charge point's
    StatusNotification with its empty result and still publishes it, Answered."""
    gw = gateway({"local": {"status_notification": "true"}})  # the backend does not answer
    cid16, cid201 = "it-rules-local-sn16", "it-rules-local-sn201"
    async with charge_point(ChargePoint16, gw.url(cid16), cid16, "ocpp1.6") as cp:
        request = call16.StatusNotification(
            connector_id=1, error_code="NoError", status="Available"
        )
        await cp.call(request, suppress=False, unique_id="sn-16")
        assert cp.conn.received_for("sn-16") == [3, "sn-16", {}]
    env = await backend.envelope(f"ocpp/cp/{cid16}/StatusNotification", UniqueId="sn-16")
    assert env.get("Answered") is True and env["MessageTypeId"] == 2, env
    assert env["Payload"] == {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    async with charge_point(ChargePoint201, gw.url(cid201), cid201, "ocpp2.0.1") as cp:
        request = call201.StatusNotification(
            timestamp=NOW, connector_status="Occupied", evse_id=1, connector_id=2
        )
        await cp.call(request, suppress=False, unique_id="sn-201")
        assert cp.conn.received_for("sn-201") == [3, "sn-201", {}]
    env = await backend.envelope(f"ocpp/cp/{cid201}/StatusNotification", UniqueId="sn-201")
    assert env.get("Answered") is True and env["MessageTypeId"] == 2, env
    assert env["Payload"]["connectorStatus"] == "Occupied", env


# --- offline grace period ---


@run_async
async def test_offline_call_held_until_reconnect_else_offline(gateway, backend):
    """A CALL for a gone CP waits offline_ttl for its reconnection; past it, it gets Offline."""
    ttl = 3
    gw = gateway({"dnstream": {"offline_ttl": str(ttl)}})
    cid = "it-rules-offline"
    call = {"MessageTypeId": 2, "Action": "ClearCache", "Payload": {}}
    async with connect(gw.url(cid), ["ocpp1.6"]):
        await presence(backend, cid, True)
    await presence(backend, cid, False)
    backend.publish(_dn(cid, "Call", "ClearCache"), {**call, "UniqueId": "held-1"})
    await settle(1)
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        assert await recv_frame(ws) == [2, "held-1", "ClearCache", {}]
        await ws.send('[3,"held-1",{"status":"Accepted"}]')
        await backend.envelope(f"ocpp/cp/Reply/{cid}", UniqueId="held-1")
        closing = time.monotonic()
    gone = (await presence(backend, cid, False, after=closing)).arrived
    backend.publish(_dn(cid, "Call", "ClearCache"), {**call, "UniqueId": "held-2"})
    env = await backend.envelope(_error_topic(cid), timeout=ttl + 4, UniqueId="held-2")
    waited = time.monotonic() - gone
    assert env["ErrorCode"] == "Offline" and env["Origin"] == "gateway", env
    assert ttl - 0.5 < waited < ttl + 3, f"Offline after {waited:.2f} s, offline_ttl is {ttl}"
    assert not backend.messages(
        lambda m: m.topic == _error_topic(cid) and (m.json() or {}).get("UniqueId") == "held-1"
    ), backend.describe()


# --- takeover on one gateway ---


@run_async
async def test_second_connection_replaces_first(gateway, backend):
    """A new connection closes the old one ("replaced"); its pending CALL gets Replaced."""
    gw = gateway()
    cid = "it-rules-replace"
    backend.answer("Heartbeat", {"currentTime": NOW}, cid=cid)
    async with connect(gw.url(cid), ["ocpp1.6"]) as old:
        await presence(backend, cid, True)
        backend.publish(
            _dn(cid, "Call", "ClearCache"),
            {"MessageTypeId": 2, "UniqueId": "rp-1", "Action": "ClearCache", "Payload": {}},
        )
        assert await recv_frame(old) == [2, "rp-1", "ClearCache", {}]
        async with connect(gw.url(cid), ["ocpp1.6"]) as new:
            closed = await wait_closed(old)
            assert closed.rcvd is not None and closed.rcvd.reason == "replaced", closed
            env = await backend.envelope(_error_topic(cid), UniqueId="rp-1")
            assert env["ErrorCode"] == "Replaced" and env["Origin"] == "gateway", env
            assert env["Action"] == "ClearCache", env
            await new.send('[2,"rp-hb","Heartbeat",{}]')
            assert await recv_frame(new) == [3, "rp-hb", {"currentTime": NOW}]


# --- keepalive ---


@run_async
async def test_silent_client_closed_by_ping_timeout(gateway, backend):
    """A client that never answers pings is dropped and marked offline; one that answers stays."""
    gw = gateway({"listener:ws": {"ping_interval": "1", "pong_timeout": "1"}})
    cid, alive = "it-rules-silent", "it-rules-ponging"
    async with connect(gw.url(alive), ["ocpp1.6"]) as ws:  # websockets answers pings itself
        reader, writer = await raw_handshake(gw.port, cid)
        try:
            opened = time.monotonic()
            await presence(backend, cid, True)
            # The gateway pings (opcode 9); the client stays silent.
            ping = await asyncio.wait_for(reader.readexactly(2), 3)
            assert ping[0] == 0x89, f"expected a ping frame, got {ping!r}"
            await presence(backend, cid, False, timeout=6)
            elapsed = time.monotonic() - opened
            assert elapsed < 5, f"offline after {elapsed:.2f} s with ping 1 s + pong 1 s"
        finally:
            writer.close()
        await settle(1)
        assert not backend.messages(
            lambda m: (
                m.topic == f"ocpp/presence/{alive}" and (m.json() or {}).get("Online") is False
            )
        ), "a client answering pings was dropped"
        backend.answer("Heartbeat", {"currentTime": NOW}, cid=alive)
        await ws.send('[2,"alive-1","Heartbeat",{}]')
        assert await recv_frame(ws) == [3, "alive-1", {"currentTime": NOW}]
