"""
Registration enforced (issue 25, point 2), end to end through mosquitto with
real `ocpp`-package charge points of 1.6, 2.0.1 and 2.1: after the backend
answers BootNotification Pending or Rejected, a Heartbeat gets SecurityError
and is not published; after an Accepted answer it goes through again.
"""

from __future__ import annotations

import asyncio

import pytest
from ocpp import v16, v21, v201
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from tests.integration.harness import charge_point, run_async, settle, topic_value
from tests.integration.harness.support import NOW, presence_topic


class Triggered16(v16.ChargePoint):
    @on("TriggerMessage")
    def on_trigger(self, **_):
        return result16.TriggerMessage(status="Accepted")


class Triggered201(v201.ChargePoint):
    @on("TriggerMessage")
    def on_trigger(self, **_):
        return result201.TriggerMessage(status="Accepted")


class Triggered21(v21.ChargePoint):
    @on("TriggerMessage")
    def on_trigger(self, **_):
        return result21.TriggerMessage(status="Accepted")


TRIGGERED = {"ocpp1.6": Triggered16, "ocpp2.0.1": Triggered201, "ocpp2.1": Triggered21}
STATION = {"model": "M", "vendor_name": "V"}
CASES = {
    "ocpp1.6": (
        v16.ChargePoint,
        lambda: call16.BootNotification(charge_point_model="M", charge_point_vendor="V"),
        call16.Heartbeat,
    ),
    "ocpp2.0.1": (
        v201.ChargePoint,
        lambda: call201.BootNotification(charging_station=STATION, reason="PowerUp"),
        call201.Heartbeat,
    ),
    "ocpp2.1": (
        v21.ChargePoint,
        lambda: call21.BootNotification(charging_station=STATION, reason="PowerUp"),
        call21.Heartbeat,
    ),
}


async def _boot(cp, backend, cid: str, boot, uid: str, status: str) -> None:
    """The charge point sends BootNotification ``uid``; the backend answers ``status``."""
    sent = asyncio.ensure_future(cp.call(boot(), unique_id=uid))
    await backend.envelope(f"ocpp/cp/{cid}/BootNotification", UniqueId=uid)
    backend.publish(
        f"ocpp/cs/{topic_value(cid)}/Reply/BootNotification",
        {
            "MessageTypeId": 3,
            "UniqueId": uid,
            "Payload": {"status": status, "currentTime": NOW, "interval": 10},
        },
    )
    await asyncio.wait_for(sent, 10)


@pytest.mark.parametrize("version", list(CASES))
@pytest.mark.parametrize("status", ["Pending", "Rejected"])
@run_async
async def test_not_accepted_then_accepted(gateway, backend, version, status):
    """Pending or Rejected: the retained presence says so (Registration), the charge
    point's Heartbeat gets CALLERROR SecurityError and nothing is published; its next
    BootNotification is relayed, and once Accepted (the presence says Accepted) its
    Heartbeat is published and answered."""
    gw = gateway()
    cls, boot, heartbeat = CASES[version]
    cid = f"it-reg-{status}-{version.replace('.', '')}"
    async with charge_point(cls, gw.url(cid), cid, version) as cp:
        await _boot(cp, backend, cid, boot, "b1", status)
        await backend.envelope(presence_topic(cid), Online=True, Registration=status)
        await cp.call(heartbeat(), unique_id="h1")
        refused = cp.conn.received_for("h1")
        assert refused[:3] == [4, "h1", "SecurityError"], refused
        assert f"registration is {status}" in refused[3], refused
        await settle(0.3)
        assert not backend.messages(lambda m: (m.json() or {}).get("UniqueId") == "h1")
        await _boot(cp, backend, cid, boot, "b2", "Accepted")
        await backend.envelope(presence_topic(cid), Online=True, Registration="Accepted")
        answered = asyncio.ensure_future(cp.call(heartbeat(), unique_id="h2"))
        await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId="h2")
        backend.publish(
            f"ocpp/cs/{topic_value(cid)}/Reply/Heartbeat",
            {"MessageTypeId": 3, "UniqueId": "h2", "Payload": {"currentTime": NOW}},
        )
        await asyncio.wait_for(answered, 10)
        assert cp.conn.received_for("h2") == [3, "h2", {"currentTime": NOW}]


@run_async
async def test_enforce_off_relays(gateway, backend):
    """[gateway] enforce_registration = false: a Pending 2.0.1 charge point's Heartbeat is
    published as before."""
    gw = gateway({"gateway": {"enforce_registration": "false"}})
    cls, boot, heartbeat = CASES["ocpp2.0.1"]
    cid = "it-reg-off"
    async with charge_point(cls, gw.url(cid), cid, "ocpp2.0.1") as cp:
        await _boot(cp, backend, cid, boot, "b1", "Pending")
        sent = asyncio.ensure_future(cp.call(heartbeat(), unique_id="h1"))
        await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId="h1")
        backend.publish(
            f"ocpp/cs/{topic_value(cid)}/Reply/Heartbeat",
            {"MessageTypeId": 3, "UniqueId": "h1", "Payload": {"currentTime": NOW}},
        )
        await asyncio.wait_for(sent, 10)
        assert cp.conn.received_for("h1") == [3, "h1", {"currentTime": NOW}]


async def _heartbeat_relayed(cp, backend, cid: str, heartbeat, uid: str) -> None:
    """The charge point's Heartbeat ``uid`` is published, and the backend's answer arrives."""
    answered = asyncio.ensure_future(cp.call(heartbeat(), unique_id=uid))
    await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId=uid)
    backend.publish(
        f"ocpp/cs/{topic_value(cid)}/Reply/Heartbeat",
        {"MessageTypeId": 3, "UniqueId": uid, "Payload": {"currentTime": NOW}},
    )
    await asyncio.wait_for(answered, 10)
    assert cp.conn.received_for(uid) == [3, uid, {"currentTime": NOW}]


@pytest.mark.parametrize("version", list(CASES))
@run_async
async def test_pending_triggered_call_relayed_once(gateway, backend, version):
    """Pending (1.6 §4.2, 2.x B02.FR.09): after the backend's TriggerMessage for a
    Heartbeat, which the charge point accepts, one Heartbeat is published; the next
    gets SecurityError."""
    gw = gateway()
    _, boot, heartbeat = CASES[version]
    cid = f"it-reg-trigger-{version.replace('.', '')}"
    async with charge_point(TRIGGERED[version], gw.url(cid), cid, version) as cp:
        await _boot(cp, backend, cid, boot, "b1", "Pending")
        backend.publish(
            f"ocpp/cs/{topic_value(cid)}/Call/TriggerMessage",
            {
                "MessageTypeId": 2,
                "UniqueId": "t1",
                "Action": "TriggerMessage",
                "Payload": {"requestedMessage": "Heartbeat"},
            },
        )
        reply = await backend.envelope(f"ocpp/cp/Reply/{cid}", UniqueId="t1")
        assert reply["Payload"] == {"status": "Accepted"}, reply
        await _heartbeat_relayed(cp, backend, cid, heartbeat, "h1")
        await cp.call(heartbeat(), unique_id="h2")
        assert cp.conn.received_for("h2")[:3] == [4, "h2", "SecurityError"]


@pytest.mark.parametrize("version", list(CASES))
@run_async
async def test_backend_call_to_rejected(gateway, backend, version):
    """A Rejected charge point and the backend's ClearCache: 2.0.1 and 2.1 (B03.FR.03,
    the central system initiates nothing) answer it NotAccepted on the error topic
    without sending it; 1.6 (§4.2.1, a SHOULD NOT) sends it to the charge point."""
    gw = gateway()
    cls, boot, _ = CASES[version]
    cid = f"it-reg-cmd-{version.replace('.', '')}"
    async with charge_point(cls, gw.url(cid), cid, version) as cp:
        await _boot(cp, backend, cid, boot, "b1", "Rejected")
        backend.publish(
            f"ocpp/cs/{topic_value(cid)}/Call/ClearCache",
            {"MessageTypeId": 2, "UniqueId": "cc-1", "Action": "ClearCache", "Payload": {}},
        )
        if version == "ocpp1.6":
            # The ocpp package's 1.6 charge point has no ClearCache handler: it
            # answers NotImplemented, which proves the CALL reached it.
            error = await backend.envelope(f"ocpp/cp/Error/{cid}", UniqueId="cc-1")
            assert error["ErrorCode"] == "NotImplemented" and "Origin" not in error, error
        else:
            error = await backend.envelope(f"ocpp/cp/Error/{cid}", UniqueId="cc-1")
            assert (error["ErrorCode"], error["Origin"]) == ("NotAccepted", "gateway"), error
            assert "B03.FR.03" in error["ErrorDescription"], error
            await settle(0.3)
            with pytest.raises(AssertionError, match="no frame with id"):
                cp.conn.received_for("cc-1")
