"""
Topic templates and codecs from the INI file: a per-action topic override,
and the raw codec (the OCPP-J frame itself) both ways.
"""

from __future__ import annotations

import json

from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16

from tests.integration.harness import charge_point, connect, recv_frame, run_async

NOW = "2026-01-02T03:04:05.000Z"


@run_async
async def test_per_action_topic_override(gateway, backend):
    """[upstream:StatusNotification] topic moves StatusNotification; Heartbeat keeps the default."""
    gw = gateway({"upstream:StatusNotification": {"topic": "ocpp/status/${cid}"}})
    cid = "it-topic-override"
    backend.answer("StatusNotification", {}, cid=cid)
    backend.answer("Heartbeat", {"currentTime": NOW}, cid=cid)
    async with charge_point(ChargePoint16, gw.url(cid), cid, "ocpp1.6") as cp:
        await cp.call(
            call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"),
            suppress=False,
            unique_id="status-1",
        )
        await cp.call(call16.Heartbeat(), suppress=False, unique_id="hb-1")

    status = await backend.envelope(f"ocpp/status/{cid}", UniqueId="status-1")
    assert status["Action"] == "StatusNotification"
    assert status["Payload"] == {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
    heartbeat = await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId="hb-1")
    assert heartbeat["Action"] == "Heartbeat"
    # The Heartbeat came after the StatusNotification on the one MQTT connection.
    assert backend.messages(lambda m: m.topic == f"ocpp/cp/{cid}/StatusNotification") == []
    assert backend.messages(lambda m: m.topic == f"ocpp/status/{cid}/Heartbeat") == []


@run_async
async def test_raw_codec_upstream_is_the_exact_frame(gateway, backend):
    """[upstream] codec = raw publishes the charge point's frame byte for byte."""
    gw = gateway({"upstream": {"codec": "raw"}})
    cid = "it-raw-up"
    # Spaces, key order and non-ASCII text that a re-encoding would change.
    frame = '[2, "raw-up-1",  "DataTransfer", {"vendorId": "ACMÉ", "data": "a  b\\u00e9"}]'
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await ws.send(frame)
        msg = await backend.wait_for(
            lambda m: m.topic == f"ocpp/cp/{cid}/DataTransfer", f"on ocpp/cp/{cid}/DataTransfer"
        )
        assert msg.payload == frame.encode("utf-8")

        # The answer still comes through the (JSON) downstream topic.
        backend.publish(
            f"ocpp/cs/{cid}/Reply/DataTransfer",
            {"MessageTypeId": 3, "UniqueId": "raw-up-1", "Payload": {"status": "Accepted"}},
        )
        assert await recv_frame(ws) == [3, "raw-up-1", {"status": "Accepted"}]


@run_async
async def test_raw_codec_downstream_delivers_frames(gateway, backend):
    """[dnstream] codec = raw delivers raw CALLRESULTs and CALLs; the answer goes up raw."""
    gw = gateway({"upstream": {"codec": "raw"}, "dnstream": {"codec": "raw"}})
    cid = "it-raw-down"
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await ws.send('[2,"raw-hb-1","Heartbeat",{}]')
        await backend.wait_for(lambda m: m.topic == f"ocpp/cp/{cid}/Heartbeat", "Heartbeat")
        result = [3, "raw-hb-1", {"currentTime": NOW}]
        backend.publish(f"ocpp/cs/{cid}/Reply/Heartbeat", json.dumps(result))
        assert await recv_frame(ws) == result

        call = [2, "raw-rs-1", "RemoteStartTransaction", {"idTag": "TAG-RAW"}]
        backend.publish(f"ocpp/cs/{cid}/Call/RemoteStartTransaction", json.dumps(call))
        assert await recv_frame(ws) == call
        answer = '[3, "raw-rs-1", {"status": "Accepted"}]'
        await ws.send(answer)
        reply = await backend.wait_for(
            lambda m: m.topic == f"ocpp/cp/Reply/{cid}", f"on ocpp/cp/Reply/{cid}"
        )
        assert reply.payload == answer.encode("utf-8")
