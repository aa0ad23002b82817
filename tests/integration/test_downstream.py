"""
Messages from the backend to charge points: a backend CALL and its
CALLRESULT, and a backend CALLERROR answering a charge point's CALL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ocpp.exceptions import NotSupportedError
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

from tests.integration.harness import WAIT, Backend, charge_point, connect, recv_frame, run_async

NOW = "2026-01-02T03:04:05.000Z"


class RemoteStart16(ChargePoint16):
    """A 1.6 charge point that accepts RemoteStartTransaction and remembers it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.remote_starts: list[dict[str, Any]] = []

    @on(Action16.remote_start_transaction)
    def on_remote_start(self, id_tag: str, **kwargs: Any) -> Any:
        self.remote_starts.append({"id_tag": id_tag, **kwargs})
        return result16.RemoteStartTransaction(status="Accepted")


class RequestStart201(ChargePoint201):
    """A 2.0.1 charging station that accepts RequestStartTransaction and remembers it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_starts: list[dict[str, Any]] = []

    @on(Action201.request_start_transaction)
    def on_request_start(
        self, id_token: dict[str, Any], remote_start_id: int, **kwargs: Any
    ) -> Any:
        self.request_starts.append(
            {"id_token": id_token, "remote_start_id": remote_start_id, **kwargs}
        )
        return result201.RequestStartTransaction(status="Accepted", transaction_id="TX-77")


async def _until(condition: Any, what: str, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)
    assert condition(), what


async def _backend_call(
    backend: Backend,
    cp: Any,
    cid: str,
    version: str,
    boot: Any,
    action: str,
    payload: dict[str, Any],
    received: list[dict[str, Any]],
    result: dict[str, Any],
) -> None:
    # The Boot round trip goes through the downstream topic: once it is
    # answered, the gateway's subscription for this charge point is live.
    await cp.call(boot, suppress=False)
    unique_id = f"backend-{action}"[:36]
    backend.publish(
        f"ocpp/cs/{cid}/Call/{action}",
        {"MessageTypeId": 2, "UniqueId": unique_id, "Action": action, "Payload": payload},
    )
    try:
        await _until(lambda: received, f"{action} reached the charge point's handler")
    except TimeoutError:
        raise AssertionError(
            f"{action} never reached the charge point; it received {cp.conn.received}; "
            + backend.describe()
        ) from None
    assert cp.conn.received_for(unique_id) == [2, unique_id, action, payload]

    env = await backend.envelope(f"ocpp/cp/Reply/{cid}", UniqueId=unique_id)
    assert env["MessageTypeId"] == 3
    assert env["Action"] == action
    assert env["Payload"] == result
    assert env["Protocol"] == version
    assert env["ChargePointId"] == cid


@run_async
async def test_ocpp16_remote_start_from_backend(gateway, backend):
    """A 1.6 RemoteStartTransaction CALL envelope reaches the handler; its result goes upstream."""
    gw = gateway()
    cid = "it-dn16-remote-start"
    backend.answer("BootNotification", {"status": "Accepted", "currentTime": NOW, "interval": 60})
    async with charge_point(RemoteStart16, gw.url(cid), cid, "ocpp1.6") as cp:
        await _backend_call(
            backend,
            cp,
            cid,
            "ocpp1.6",
            call16.BootNotification(charge_point_vendor="ACME", charge_point_model="X1"),
            "RemoteStartTransaction",
            {"idTag": "TAG-R16", "connectorId": 2},
            cp.remote_starts,
            {"status": "Accepted"},
        )
        assert cp.remote_starts == [{"id_tag": "TAG-R16", "connector_id": 2}]


@run_async
async def test_ocpp201_request_start_from_backend(gateway, backend):
    """A 2.0.1 RequestStartTransaction CALL envelope reaches the handler; its result goes up."""
    gw = gateway()
    cid = "it-dn201-request-start"
    backend.answer("BootNotification", {"status": "Accepted", "currentTime": NOW, "interval": 60})
    payload = {
        "idToken": {"idToken": "TAG-R201", "type": "ISO14443"},
        "remoteStartId": 77,
        "evseId": 1,
    }
    async with charge_point(RequestStart201, gw.url(cid), cid, "ocpp2.0.1") as cp:
        await _backend_call(
            backend,
            cp,
            cid,
            "ocpp2.0.1",
            call201.BootNotification(
                charging_station={"model": "X2", "vendor_name": "ACME"}, reason="PowerUp"
            ),
            "RequestStartTransaction",
            payload,
            cp.request_starts,
            {"status": "Accepted", "transactionId": "TX-77"},
        )
        assert cp.request_starts == [
            {
                "id_token": {"id_token": "TAG-R201", "type": "ISO14443"},
                "remote_start_id": 77,
                "evse_id": 1,
            }
        ]


@run_async
async def test_backend_callerror_reaches_raw_charge_point(gateway, backend):
    """A backend CALLERROR envelope reaches a 1.6 charge point as the exact OCPP-J CALLERROR."""
    gw = gateway()
    cid = "it-dn-callerror-raw"
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await ws.send('[2,"ce-1","DataTransfer",{"vendorId":"ACME"}]')
        await backend.envelope(f"ocpp/cp/{cid}/DataTransfer", UniqueId="ce-1")
        backend.publish(
            f"ocpp/cs/{cid}/Reply/DataTransfer",
            {
                "MessageTypeId": 4,
                "UniqueId": "ce-1",
                "ErrorCode": "NotSupported",
                "ErrorDescription": "desc",
                "ErrorDetails": {"k": "v"},
            },
        )
        assert await recv_frame(ws) == [4, "ce-1", "NotSupported", "desc", {"k": "v"}]


@run_async
async def test_backend_callerror_raises_in_ocpp_client(gateway, backend):
    """A backend CALLERROR makes the 2.0.1 ``ocpp`` client raise with its code and details."""
    gw = gateway()
    cid = "it-dn-callerror-201"

    async def answer_with_error() -> None:
        env = await backend.envelope(f"ocpp/cp/{cid}/DataTransfer")
        backend.publish(
            f"ocpp/cs/{cid}/Error/DataTransfer",
            {
                "MessageTypeId": 4,
                "UniqueId": env["UniqueId"],
                "ErrorCode": "NotSupported",
                "ErrorDescription": "no such vendor",
                "ErrorDetails": {"vendor": "ACME"},
            },
        )

    async with charge_point(ChargePoint201, gw.url(cid), cid, "ocpp2.0.1") as cp:
        answering = asyncio.create_task(answer_with_error())
        with pytest.raises(NotSupportedError) as raised:
            await cp.call(
                call201.DataTransfer(vendor_id="ACME"), suppress=False, unique_id="ce-201"
            )
        await answering
    assert raised.value.code == "NotSupported"
    assert raised.value.description == "no such vendor"
    assert raised.value.details == {"vendor": "ACME"}
