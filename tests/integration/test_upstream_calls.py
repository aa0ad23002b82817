"""
Charge point CALLs answered by the backend over MQTT, with the PyPI ``ocpp``
package as the charge point: the envelope the backend reads, and the answer
the charge point gets.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest
from ocpp.charge_point import camel_to_snake_case, remove_nones
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201

from tests.integration.harness import Backend, charge_point, run_async

NOW = "2026-01-02T03:04:05.000Z"

#: (Action, the ocpp request, the payload it sends, the payload the backend answers)
CASES_16: list[tuple[str, Any, dict[str, Any], dict[str, Any]]] = [
    (
        "BootNotification",
        call16.BootNotification(charge_point_vendor="ACME", charge_point_model="X1"),
        {"chargePointVendor": "ACME", "chargePointModel": "X1"},
        {"status": "Accepted", "currentTime": NOW, "interval": 317},
    ),
    ("Heartbeat", call16.Heartbeat(), {}, {"currentTime": NOW}),
    (
        "StatusNotification",
        call16.StatusNotification(connector_id=1, error_code="NoError", status="Available"),
        {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
        {},
    ),
    (
        "Authorize",
        call16.Authorize(id_tag="TAG-16"),
        {"idTag": "TAG-16"},
        {
            "idTagInfo": {
                "status": "Accepted",
                "expiryDate": "2027-01-01T00:00:00.000Z",
                "parentIdTag": "PARENT-16",
            }
        },
    ),
    (
        "StartTransaction",
        call16.StartTransaction(connector_id=1, id_tag="TAG-16", meter_start=1000, timestamp=NOW),
        {"connectorId": 1, "idTag": "TAG-16", "meterStart": 1000, "timestamp": NOW},
        {"transactionId": 4242, "idTagInfo": {"status": "Accepted"}},
    ),
    (
        "StopTransaction",
        call16.StopTransaction(
            meter_stop=2500, timestamp=NOW, transaction_id=4242, id_tag="TAG-16", reason="Local"
        ),
        {
            "meterStop": 2500,
            "timestamp": NOW,
            "transactionId": 4242,
            "idTag": "TAG-16",
            "reason": "Local",
        },
        {"idTagInfo": {"status": "Blocked"}},
    ),
]

CASES_201: list[tuple[str, Any, dict[str, Any], dict[str, Any]]] = [
    (
        "BootNotification",
        call201.BootNotification(
            charging_station={"model": "X2", "vendor_name": "ACME"}, reason="PowerUp"
        ),
        {"chargingStation": {"model": "X2", "vendorName": "ACME"}, "reason": "PowerUp"},
        {"currentTime": NOW, "interval": 299, "status": "Accepted"},
    ),
    ("Heartbeat", call201.Heartbeat(), {}, {"currentTime": NOW}),
    (
        "StatusNotification",
        call201.StatusNotification(
            timestamp=NOW, connector_status="Available", evse_id=1, connector_id=1
        ),
        {"timestamp": NOW, "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        {},
    ),
    (
        "Authorize",
        call201.Authorize(id_token={"id_token": "TAG-201", "type": "ISO14443"}),
        {"idToken": {"idToken": "TAG-201", "type": "ISO14443"}},
        {"idTokenInfo": {"status": "Accepted", "cacheExpiryDateTime": NOW}},
    ),
    (
        "TransactionEvent",
        call201.TransactionEvent(
            event_type="Started",
            timestamp=NOW,
            trigger_reason="Authorized",
            seq_no=0,
            transaction_info={"transaction_id": "TX-201"},
            id_token={"id_token": "TAG-201", "type": "ISO14443"},
            evse={"id": 1, "connector_id": 1},
        ),
        {
            "eventType": "Started",
            "timestamp": NOW,
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "TX-201"},
            "idToken": {"idToken": "TAG-201", "type": "ISO14443"},
            "evse": {"id": 1, "connectorId": 1},
        },
        {"totalCost": 1.25, "idTokenInfo": {"status": "Accepted"}},
    ),
]


async def _round_trip(
    backend: Backend,
    url: str,
    cls: type[Any],
    version: str,
    cid: str,
    case: tuple[str, Any, dict[str, Any], dict[str, Any]],
) -> None:
    action, request, sent_payload, answer = case
    unique_id = f"{action}-{version}"
    backend.answer(action, answer, cid=cid)
    async with charge_point(cls, url, cid, version) as cp:
        result = await cp.call(request, suppress=False, unique_id=unique_id)

    # The charge point got exactly the payload the backend published...
    assert cp.conn.received_for(unique_id) == [3, unique_id, answer]
    # ...and the ocpp library read it as such.
    assert remove_nones(asdict(result)) == camel_to_snake_case(answer)

    env = await backend.envelope(f"ocpp/cp/{cid}/{action}", UniqueId=unique_id)
    assert cp.conn.sent_for(unique_id)[3] == sent_payload
    assert env["MessageTypeId"] == 2
    assert env["UniqueId"] == unique_id
    assert env["Action"] == action
    assert env["Payload"] == sent_payload
    assert env["Protocol"] == version
    assert env["ChargePointId"] == cid


@pytest.mark.parametrize("case", CASES_16, ids=[c[0] for c in CASES_16])
@run_async
async def test_ocpp16_call_answered_over_mqtt(gateway, backend, case):
    """A 1.6 CALL is published as a JSON CALL envelope and answered with the backend's payload."""
    gw = gateway()
    cid = f"it16-{case[0]}"
    await _round_trip(backend, gw.url(cid), ChargePoint16, "ocpp1.6", cid, case)


@pytest.mark.parametrize("case", CASES_201, ids=[c[0] for c in CASES_201])
@run_async
async def test_ocpp201_call_answered_over_mqtt(gateway, backend, case):
    """A 2.0.1 CALL is published as a JSON CALL envelope and answered with the backend's payload."""
    gw = gateway()
    cid = f"it201-{case[0]}"
    await _round_trip(backend, gw.url(cid), ChargePoint201, "ocpp2.0.1", cid, case)
