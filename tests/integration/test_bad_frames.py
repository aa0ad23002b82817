"""
Bad frames get a clear answer in the error codes of the charge point's
version, and never harm another charge point (OCPP-J 1.6 §4.2.3, Table 7;
2.0.1 Part 4 §4.2.3, Table 8).
"""

from __future__ import annotations

import pytest
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201

from tests.integration.harness import charge_point, connect, recv_frame, run_async, wait_closed

NOW = "2026-01-02T03:04:05.000Z"

#: (version, the error code of an unreadable frame in that version)
FRAMING_ERROR = {"ocpp2.0.1": "RpcFrameworkError", "ocpp1.6": "FormationViolation"}


def _is_callerror(frame: list, unique_id: str, code: str) -> bool:
    return (
        len(frame) == 5
        and frame[:3] == [4, unique_id, code]
        and isinstance(frame[3], str)
        and isinstance(frame[4], dict)
    )


@pytest.mark.parametrize("version", list(FRAMING_ERROR))
@run_async
async def test_bad_frames_answered_per_version(gateway, backend, version):
    """Unreadable frames get a "-1" CALLERROR in the version's code; binary closes with 1003."""
    gw = gateway()
    code = FRAMING_ERROR[version]
    bystander = f"it-bad-bystander-{version}"
    backend.answer("Heartbeat", {"currentTime": NOW})
    async with charge_point(ChargePoint201, gw.url(bystander), bystander, "ocpp2.0.1") as other:
        await other.call(call201.Heartbeat(), suppress=False, unique_id="by-1")

        cid = f"it-bad-{version}"
        async with connect(gw.url(cid), [version]) as ws:
            await ws.send("not json")
            frame = await recv_frame(ws)
            assert _is_callerror(frame, "-1", code), f"{version}, 'not json': {frame}"

            too_long = "x" * 37
            await ws.send(f'[2,"{too_long}","Heartbeat",{{}}]')
            frame = await recv_frame(ws)
            assert _is_callerror(frame, "-1", code), f"{version}, 37-char id: {frame}"

            # The connection is still usable after both.
            await ws.send('[2,"ok-1","Heartbeat",{}]')
            assert await recv_frame(ws) == [3, "ok-1", {"currentTime": NOW}], version

        async with connect(gw.url(cid), [version]) as ws:
            await ws.send(b"\x00\x01binary")
            closed = await wait_closed(ws)
            assert closed.rcvd is not None and closed.rcvd.code == 1003, (
                f"{version}: binary frame: {closed}"
            )

        # The other charge point was not harmed.
        result = await other.call(call201.Heartbeat(), suppress=False, unique_id="by-2")
        assert result.current_time == NOW
        assert other.conn.received_for("by-2") == [3, "by-2", {"currentTime": NOW}]


@run_async
async def test_unknown_message_type_ocpp201(gateway):
    """2.0.1: a MessageTypeId that 2.0.1 lacks (5, 6, 7) gets CALLERROR MessageTypeNotSupported."""
    # OCPP 2.0.1 Part 4 §4.4: the receiver "SHALL respond with an CALLERROR
    # with errorCode: MessageTypeNotSupported" (2.1 dropped that reply).
    gw = gateway()
    missing = []
    async with connect(gw.url("it-bad-msgtype-201"), ["ocpp2.0.1"]) as ws:
        for unique_id, frame in [
            ("mt-5", '[5,"mt-5","GenericError","from a 2.1 peer",{}]'),
            ("mt-6", '[6,"mt-6","Heartbeat",{}]'),
            ("mt-7", '[7,"mt-7","Heartbeat",{}]'),
        ]:
            await ws.send(frame)
            try:
                reply = await recv_frame(ws, timeout=3)
            except AssertionError:
                missing.append(f"{frame}: no answer")
                continue
            if not (
                _is_callerror(reply, unique_id, "MessageTypeNotSupported")
                or _is_callerror(reply, "-1", "MessageTypeNotSupported")
            ):
                missing.append(f"{frame}: answered {reply}")
    assert not missing, "\n".join(missing)
