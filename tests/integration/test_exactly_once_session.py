"""
Exactly one answer for every CALL (issue #18), through mosquitto, a twistd
gateway and real or raw charge points: answers and transaction messages past
the flood limit, a QoS 1 copy of a backend CALL, lone surrogates both ways,
and a 2.1 CALLRESULTERROR while the charge point is gone.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16

from tests.integration.harness import (
    WAIT,
    Backend,
    charge_point,
    connect,
    recv_frame,
    run_async,
    settle,
)
from tests.integration.harness.support import no_frame

NOW = "2026-01-02T03:04:05.000Z"


def _answers(backend: Backend, cid: str, unique_id: str) -> list[dict[str, Any]]:
    """Every envelope the gateway published about ``cid`` with ``unique_id`` (not CALLs)."""
    out = []
    for m in backend.about(cid):
        if m.topic.startswith("ocpp/cs/") or m.topic.startswith("ocpp/presence/"):
            continue
        try:
            env = m.json()
        except ValueError:
            continue
        if isinstance(env, dict) and env.get("UniqueId") == unique_id:
            out.append(env)
    return out


async def _live(ws: Any, backend: Backend, cid: str) -> None:
    """A DataTransfer round trip: its answer came downstream, so the subscription is live."""
    await ws.send(f'[2,"live-{cid[-8:]}","DataTransfer",{{"vendorId":"ACME"}}]')
    frame = await recv_frame(ws)
    assert frame[0] == 3, frame


@run_async
async def test_answer_and_stop_transaction_past_the_rate_limit(gateway, backend):
    """With the bucket empty, the charge point's answer to the backend's Reset reaches the
    backend (no Timeout), and its StopTransaction is published; a MeterValues is refused."""
    gw = gateway(
        {
            "listener:ws": {"max_message_rate": "1", "max_message_burst": "1"},
            "local": {"heartbeat": "true"},
            "dnstream": {"awaiting_timeout": "4"},
        }
    )
    cid = "it-x1-rate-answer"
    backend.answer("DataTransfer", {"status": "Accepted"})
    backend.answer("StopTransaction", {})
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await _live(ws, backend, cid)

        async def empty_bucket() -> None:
            for n in range(3):
                await ws.send(f'[2,"hb-{n}","Heartbeat",{{}}]')
            frames = [await recv_frame(ws) for _ in range(3)]
            assert any(f[0] == 4 and f[2] == "GenericError" for f in frames), frames

        backend.publish(
            f"ocpp/cs/{cid}/Call/Reset",
            {
                "MessageTypeId": 2,
                "UniqueId": "reset-1",
                "Action": "Reset",
                "Payload": {"type": "Soft"},
            },
        )
        assert await recv_frame(ws) == [2, "reset-1", "Reset", {"type": "Soft"}]
        await empty_bucket()
        await ws.send('[3,"reset-1",{"status":"Accepted"}]')
        env = await backend.envelope(f"ocpp/cp/Reply/{cid}", UniqueId="reset-1")
        assert (env["MessageTypeId"], env["Action"], env["Payload"]) == (
            3,
            "Reset",
            {"status": "Accepted"},
        )

        await empty_bucket()
        await ws.send(
            f'[2,"stop-1","StopTransaction",{{"transactionId":1,"meterStop":5,"timestamp":"{NOW}"}}]'
        )
        assert await recv_frame(ws) == [3, "stop-1", {}]
        await ws.send('[2,"mv-1","MeterValues",{"connectorId":1,"meterValue":[]}]')
        refused = await recv_frame(ws)
        assert refused[:3] == [4, "mv-1", "GenericError"], refused

        await asyncio.sleep(4.5)  # past awaiting_timeout: no Timeout comes for reset-1
        assert [e["MessageTypeId"] for e in _answers(backend, cid, "reset-1")] == [3]
        assert not [m for m in backend.about(cid) if m.topic.endswith("/MeterValues")]


class Resettable16(ChargePoint16):
    """A 1.6 charge point that counts the Resets it is asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resets: list[str] = []

    @on(Action16.reset)
    async def on_reset(self, type: str, **kwargs: Any) -> Any:
        self.resets.append(type)
        await asyncio.sleep(0.3)  # the copy arrives while this one is in flight
        return result16.Reset(status="Accepted")


@run_async
async def test_qos1_copy_of_a_backend_call_gets_one_answer(gateway, backend):
    """The same Reset published twice (a plain copy), and once more after its answer: the
    charge point resets once and the backend gets one answer; another CALL under the id
    is Invalid."""
    gw = gateway({"dnstream": {"awaiting_timeout": "10"}})
    cid = "it-x2-qos1-copy"
    backend.answer("BootNotification", {"status": "Accepted", "currentTime": NOW, "interval": 60})
    reset = {
        "MessageTypeId": 2,
        "UniqueId": "r-dup",
        "Action": "Reset",
        "Payload": {"type": "Hard"},
    }
    async with charge_point(Resettable16, gw.url(cid), cid, "ocpp1.6") as cp:
        await cp.call(
            call16.BootNotification(charge_point_vendor="ACME", charge_point_model="X1"),
            suppress=False,
        )
        backend.publish(f"ocpp/cs/{cid}/Call/Reset", reset)
        backend.publish(f"ocpp/cs/{cid}/Call/Reset", reset)
        await backend.envelope(f"ocpp/cp/Reply/{cid}", UniqueId="r-dup")
        backend.publish(f"ocpp/cs/{cid}/Call/Reset", reset)  # just after the answer
        await settle(1.0)
        assert cp.resets == ["Hard"], cp.conn.received
        answers = _answers(backend, cid, "r-dup")
        assert [(a["MessageTypeId"], a.get("Payload")) for a in answers] == [
            (3, {"status": "Accepted"})
        ], backend.describe()

        backend.publish(f"ocpp/cs/{cid}/Call/Reset", {**reset, "Payload": {"type": "Soft"}})
        invalid = await backend.envelope(f"ocpp/cp/Error/{cid}", UniqueId="r-dup")
        assert invalid["ErrorCode"] == "Invalid", invalid
        await settle(0.5)
        assert cp.resets == ["Hard"]


@run_async
async def test_copies_of_refused_calls_get_no_second_answer(gateway, backend):
    """Path 2: a plain copy of a CALL refused Invalid (validation), QueueFull, or
    Offline (no instance has the charge point) gets no second error envelope."""
    gw = gateway({"dnstream": {"awaiting_timeout": "10", "max_queue": "1"}})
    cid = "it-x2-refused-copy"
    backend.answer("DataTransfer", {"status": "Accepted"})

    def call(unique_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"MessageTypeId": 2, "UniqueId": unique_id, "Action": "Reset", "Payload": payload}

    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await _live(ws, backend, cid)
        invalid = call("inv", {"type": "Sideways"})
        backend.publish(f"ocpp/cs/{cid}/Call/Reset", invalid)
        backend.publish(f"ocpp/cs/{cid}/Call/Reset", invalid)
        for unique_id in ("q0", "q1", "q2", "q2"):  # q0 in flight, q1 queued, q2 refused
            backend.publish(f"ocpp/cs/{cid}/Call/Reset", call(unique_id, {"type": "Soft"}))
        assert (await recv_frame(ws, timeout=3))[:2] == [2, "q0"]
        backend.publish("ocpp/cs/it-x2-nobody/Call/Reset", call("nobody", {"type": "Soft"}))
        await backend.envelope("ocpp/cp/Error/it-x2-nobody", UniqueId="nobody")
        backend.publish("ocpp/cs/it-x2-nobody/Call/Reset", call("nobody", {"type": "Soft"}))
        await backend.envelope(f"ocpp/cp/Error/{cid}", UniqueId="q2")
        await settle(1.0)
    codes = {
        u: [a.get("ErrorCode") for a in _answers(backend, c, u)]
        for c, u in ((cid, "inv"), (cid, "q2"), ("it-x2-nobody", "nobody"))
    }
    assert codes == {"inv": ["Invalid"], "q2": ["QueueFull"], "nobody": ["Offline"]}, codes


@run_async
async def test_lone_surrogate_from_a_charge_point_is_a_format_error(gateway, backend):
    """'\\ud800' in a CALL: 1.6 FormationViolation, 2.0.1 FormatViolation, nothing published,
    no traceback (the fixture checks the log)."""
    gw = gateway()
    for version, code in (("ocpp1.6", "FormationViolation"), ("ocpp2.0.1", "FormatViolation")):
        cid = f"it-x3-surrogate-up-{version[4:].replace('.', '')}"
        async with connect(gw.url(cid), [version]) as ws:
            await ws.send('[2,"s-1","DataTransfer",{"vendorId":"\\ud800"}]')
            frame = await recv_frame(ws)
            assert frame[:3] == [4, "s-1", code], frame
        await settle()
        assert not [m for m in backend.about(cid) if m.topic.endswith("/DataTransfer")]


@run_async
async def test_lone_surrogate_from_a_backend_is_one_invalid_and_the_queue_goes_on(gateway, backend):
    """A downstream CALL holding '\\ud800' (escaped, or as UTF-8 bytes): one Invalid envelope,
    nothing sent to the charge point, and the next CALL goes out at once."""
    gw = gateway({"dnstream": {"awaiting_timeout": "10"}})
    cid = "it-x3-surrogate-down"
    backend.answer("DataTransfer", {"status": "Accepted"})
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await _live(ws, backend, cid)
        escaped = (
            b'{"MessageTypeId":2,"UniqueId":"bad-1","Action":"DataTransfer",'
            b'"Payload":{"vendorId":"\\ud800"}}'
        )
        raw = escaped.replace(b"bad-1", b"bad-2").replace(b"\\ud800", b"\xed\xa0\x80")
        for payload in (escaped, raw):
            backend.publish(f"ocpp/cs/{cid}/Call/DataTransfer", payload)
        for unique_id in ("bad-1", "bad-2"):
            env = await backend.envelope(f"ocpp/cp/Error/{cid}", UniqueId=unique_id)
            assert env["ErrorCode"] == "Invalid", env
        await no_frame(ws)
        backend.publish(
            f"ocpp/cs/{cid}/Call/DataTransfer",
            {
                "MessageTypeId": 2,
                "UniqueId": "ok-1",
                "Action": "DataTransfer",
                "Payload": {"vendorId": "ACME"},
            },
        )
        assert (await recv_frame(ws, timeout=3))[:2] == [2, "ok-1"]
        for unique_id in ("bad-1", "bad-2"):
            assert len(_answers(backend, cid, unique_id)) == 1, backend.describe()


@run_async
async def test_callresulterror_for_a_charge_point_in_grace_is_unmatched(gateway, backend):
    """A 2.1 backend CALLRESULTERROR while the charge point is gone (grace): Unmatched,
    as its CALLRESULT sibling is."""
    gw = gateway()
    cid = "it-x9-cre-grace"
    backend.answer("DataTransfer", {"status": "Accepted"})
    async with connect(gw.url(cid), ["ocpp2.1"]) as ws:
        assert ws.subprotocol == "ocpp2.1"
        await _live(ws, backend, cid)
    await backend.wait_for(
        lambda m: (
            m.topic == f"ocpp/presence/{cid}"
            and not m.retain
            and json.loads(m.payload).get("Online") is False
        ),
        "offline presence",
    )
    for type_id, unique_id in ((3, "res-1"), (5, "cre-1")):
        fields: dict[str, Any] = {"MessageTypeId": type_id, "UniqueId": unique_id}
        if type_id == 3:
            fields["Payload"] = {}
        else:
            fields.update(ErrorCode="FormatViolation", ErrorDescription="bad", ErrorDetails={})
        backend.publish(f"ocpp/cs/{cid}/Reply/DataTransfer", fields)
        env = await backend.envelope(f"ocpp/cp/Error/{cid}", UniqueId=unique_id, timeout=WAIT)
        assert env["ErrorCode"] == "Unmatched", env
