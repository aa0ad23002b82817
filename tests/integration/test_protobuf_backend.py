"""
The protobuf profile end to end: ``ocpp``-package charge points (1.6 and
2.0.1) through the real gateway, and a backend that speaks only protobuf.

The backend is written as a CSMS in another language would be: it parses
``ocppgw_pb.v1.Message`` and the typed ``<Action>Request`` messages of the
generated modules, builds typed ``<Action>Response`` messages, and turns a
typed message into OCPP JSON only the way docs/protobuf.md tells a backend to
(field names are the JSON names, enum numbers map through
``(ocppgw_pb.v1.json_value)``, ``_raw``/``_text``/``_empty`` alternatives).  It never
uses the gateway's own JSON helpers, so the gateway's conversion is checked
against an independent reading of the profile.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ocpp.exceptions import FormationViolationError, OccurrenceConstraintViolationError
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

from tests.integration.harness import (
    WAIT,
    Backend,
    Broker,
    Msg,
    charge_point,
    connect,
    recv_frame,
    run_async,
    topic_value,
)
from tests.protoc import Compiled

#: The backend's modules: proto/ compiled by protoc into a directory of its own,
#: as docs/protobuf.md tells a backend team (``protoc_out``, conftest.py); and
#: the example backend on them.
pb = Compiled()


@pytest.fixture(scope="module", autouse=True)
def _compiled(protoc_out: Path) -> None:
    pb.load(protoc_out)


NOW = "2026-01-02T03:04:05.000Z"
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


#: The configuration of issue 4: protobuf on every upstream and the downstream topic.
PROTOBUF_BOTH_WAYS = {"upstream": {"codec": "protobuf"}, "dnstream": {"codec": "protobuf"}}

#: message.proto's MessageType and PayloadEncoding values.
CALL, CALLRESULT, CALLERROR = 2, 3, 4
TYPED = 0


# --- the backend's side of the profile ---


def parse(data: bytes) -> Any:
    """The ``ocppgw_pb.v1.Message`` in ``data``, or None when it is not one."""
    try:
        return pb.message_pb2.Message.FromString(data)
    except Exception:
        return None


def typed(wrapper: Any, is_request: bool) -> Any:
    """The typed payload message of ``wrapper`` (its Protocol and Action name the type)."""
    assert wrapper.PayloadEncoding == TYPED, f"payload came as JSON fallback: {wrapper}"
    suffix = "Request" if is_request else "Response"
    cls = getattr(pb.MODULES[wrapper.Protocol], f"{wrapper.Action}{suffix}")
    return cls.FromString(wrapper.Payload)


def wire_name(enum_type: Any, number: int) -> str:
    """The OCPP string of an enum number, from its ``(ocppgw_pb.v1.json_value)`` option."""
    options = enum_type.values_by_number[number].GetOptions()
    text: str = options.Extensions[pb.options_pb2.json_value]
    return text


def to_json(msg: Any) -> dict[str, Any]:
    """A typed payload as OCPP JSON, read by the example backend (docs/protobuf.md's rules)."""
    out: dict[str, Any] = pb.to_json(msg)
    return out


#: handler(CALL wrapper, typed request) -> typed response, or a whole Message
#: (a CALLERROR).
Handler = Callable[[Any, Any], Any]


class ProtobufBackend(Backend):
    """
    The test backend (records everything on ``#``), answering charge point
    CALLs in protobuf only: typed ``<Action>Response`` messages in a
    CALLRESULT wrapper, published on ``ocpp/cs/<cid>/Reply/<Action>``.
    """

    def __init__(self, broker: Broker) -> None:
        self.handlers: dict[str, tuple[Handler, bool]] = {}
        super().__init__(broker)

    def on_call(self, action: str, handler: Handler, *, set_action: bool = True) -> None:
        """Answer CALLs of ``action``; ``set_action=False`` leaves the reply's Action empty."""
        self.handlers[action] = (handler, set_action)

    def _maybe_answer(self, msg: Msg) -> None:  # paho's thread
        if msg.retain or not msg.topic.startswith("ocpp/cp/"):
            return
        wrapper = parse(msg.payload)
        if wrapper is None or wrapper.MessageTypeId != CALL:
            return
        found = self.handlers.get(wrapper.Action)
        if found is None:
            return
        handler, set_action = found
        answer = handler(wrapper, typed(wrapper, True))
        if not isinstance(answer, pb.message_pb2.Message):
            answer = pb.message_pb2.Message(
                MessageTypeId=CALLRESULT,
                UniqueId=wrapper.UniqueId,
                Action=wrapper.Action if set_action else "",
                Payload=answer.SerializeToString(),
            )
        self.publish(
            f"ocpp/cs/{topic_value(wrapper.ChargePointId)}/Reply/{wrapper.Action}",
            answer.SerializeToString(),
            wait=False,  # paho's network thread: the PUBACK cannot arrive meanwhile
        )

    async def message(self, topic: str, timeout: float = WAIT, **fields: Any) -> Any:
        """The first protobuf Message on ``topic`` whose fields include ``fields``."""

        def match(m: Msg) -> bool:
            wrapper = parse(m.payload) if m.topic == topic else None
            return wrapper is not None and all(getattr(wrapper, k) == v for k, v in fields.items())

        found = await self.wait_for(match, f"protobuf on {topic} with {fields}", timeout)
        return parse(found.payload)

    def publish_call(self, cid: str, unique_id: str, request: Any, protocol: str = "") -> None:
        """Publish a typed request as a protobuf CALL for charge point ``cid``."""
        action = type(request).__name__.removesuffix("Request")
        wrapper = pb.message_pb2.Message(
            MessageTypeId=CALL,
            UniqueId=unique_id,
            Action=action,
            Payload=request.SerializeToString(),
            Protocol=protocol,
        )
        self.publish(f"ocpp/cs/{cid}/Call/{action}", wrapper.SerializeToString())

    def check_clean(self, cid: str) -> None:
        """Nothing went to the error topic of ``cid`` and no answer failed."""
        errors = self.messages(lambda m: m.topic == f"ocpp/cp/Error/{cid}")
        assert errors == [], [parse(m.payload) or m for m in errors]
        assert self.errors == [], self.errors


@pytest.fixture
def pb_backend(broker: Broker) -> Iterator[ProtobufBackend]:
    """A backend on the test broker that speaks only protobuf."""
    b = ProtobufBackend(broker)
    try:
        yield b
    finally:
        b.close()


def check_upstream(wrapper: Any, type_id: int, cid: str, version: str, action: str) -> None:
    """The metadata the gateway puts on every upstream message of a charge point."""
    assert wrapper.MessageTypeId == type_id
    assert wrapper.Action == action
    assert wrapper.Protocol == version
    assert wrapper.ChargePointId == cid
    assert RFC3339_UTC.fullmatch(wrapper.Timestamp), wrapper.Timestamp
    assert wrapper.PayloadEncoding == TYPED
    assert wrapper.Origin == ""
    assert not wrapper.Late


async def until(
    condition: Callable[[], object],
    what: str,
    backend: Backend | None = None,
    timeout: float = WAIT,
) -> None:
    """Wait up to ``timeout`` s for ``condition``; the failure shows the broker's traffic."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        seen = f"; {backend.describe()}" if backend is not None else ""
        raise AssertionError(f"{what} did not happen within {timeout:g} s{seen}") from None


# --- charge point CALLs answered by the protobuf backend ---

METER_VALUES_16 = {
    "connectorId": 1,
    "transactionId": 4242,
    "meterValue": [
        {
            "timestamp": NOW,
            "sampledValue": [
                {
                    "value": "1234.5",
                    "context": "Sample.Periodic",
                    "format": "Raw",
                    "measurand": "Energy.Active.Import.Register",
                    "location": "Outlet",
                    "unit": "kWh",
                },
                {"value": "230.1", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
                {"value": "16.2", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                {"value": "42"},
            ],
        },
        {
            "timestamp": "2026-01-02T03:05:05+01:00",
            "sampledValue": [
                {"value": "1240.0", "measurand": "Energy.Active.Import.Register", "unit": "kWh"}
            ],
        },
    ],
}

METER_VALUES_201 = {
    "evseId": 1,
    "meterValue": [
        {
            "timestamp": NOW,
            "sampledValue": [
                {
                    "value": 1234.5,
                    "context": "Sample.Periodic",
                    "measurand": "Energy.Active.Import.Register",
                    "location": "Outlet",
                    "unitOfMeasure": {"unit": "kWh", "multiplier": 3},
                },
                {
                    "value": 230.1,
                    "measurand": "Voltage",
                    "phase": "L1-N",
                    "unitOfMeasure": {"unit": "V"},
                },
                {"value": 16.25, "measurand": "Current.Import", "phase": "L1"},
                {"value": 0},
            ],
        }
    ],
}


def answer_16(backend: ProtobufBackend) -> None:
    """Typed 1.6 answers to BootNotification, Heartbeat, StatusNotification, MeterValues."""
    backend.on_call(
        "BootNotification",
        lambda w, req: pb.v16_pb2.BootNotificationResponse(
            status=pb.v16_pb2.BOOT_NOTIFICATION_RESPONSE_STATUS_ACCEPTED,
            currentTime=NOW,
            interval=317,
        ),
    )
    # No Action on this reply: the gateway takes it from the pending CALL.
    backend.on_call(
        "Heartbeat", lambda w, req: pb.v16_pb2.HeartbeatResponse(currentTime=NOW), set_action=False
    )
    backend.on_call("StatusNotification", lambda w, req: pb.v16_pb2.StatusNotificationResponse())
    backend.on_call("MeterValues", lambda w, req: pb.v16_pb2.MeterValuesResponse())


def answer_201(backend: ProtobufBackend) -> None:
    """Typed 2.0.1 answers to BootNotification, Heartbeat, StatusNotification, MeterValues."""
    backend.on_call(
        "BootNotification",
        lambda w, req: pb.v201_pb2.BootNotificationResponse(
            currentTime=NOW,
            interval=299,
            status=pb.v201_pb2.REGISTRATION_STATUS_ACCEPTED,
            statusInfo=pb.v201_pb2.StatusInfoType(reasonCode="Welcome", additionalInfo="pb"),
        ),
    )
    backend.on_call(
        "Heartbeat", lambda w, req: pb.v201_pb2.HeartbeatResponse(currentTime=NOW), set_action=False
    )
    backend.on_call("StatusNotification", lambda w, req: pb.v201_pb2.StatusNotificationResponse())
    backend.on_call("MeterValues", lambda w, req: pb.v201_pb2.MeterValuesResponse())


async def exchange(
    backend: ProtobufBackend,
    cp: Any,
    cid: str,
    version: str,
    request: Any,
    unique_id: str,
    expected_result: dict[str, Any],
) -> Any:
    """
    One charge point CALL through the protobuf backend: checks the upstream
    wrapper and its typed payload against the frame the charge point sent, and
    the CALLRESULT the charge point got; returns the typed request.
    """
    action = type(request).__name__
    await cp.call(request, suppress=False, unique_id=unique_id)
    assert cp.conn.received_for(unique_id) == [3, unique_id, expected_result]
    wrapper = await backend.message(f"ocpp/cp/{cid}/{action}", UniqueId=unique_id)
    check_upstream(wrapper, CALL, cid, version, action)
    payload = typed(wrapper, True)
    assert to_json(payload) == cp.conn.sent_for(unique_id)[3]
    return payload


@run_async
async def test_ocpp16_calls_answered_by_protobuf_backend(gateway, pb_backend):
    """1.6 Boot/Heartbeat/Status/MeterValues go up as typed protobuf; typed answers come back."""
    gw = gateway(PROTOBUF_BOTH_WAYS)
    cid, v = "it-pb16-up", "ocpp1.6"
    answer_16(pb_backend)
    async with charge_point(ChargePoint16, gw.url(cid), cid, v) as cp:
        boot = await exchange(
            pb_backend,
            cp,
            cid,
            v,
            call16.BootNotification(
                charge_point_vendor="ACME", charge_point_model="X1", firmware_version="1.2.3"
            ),
            "pb16-boot",
            {"status": "Accepted", "currentTime": NOW, "interval": 317},
        )
        assert (boot.chargePointVendor, boot.chargePointModel) == ("ACME", "X1")
        await exchange(pb_backend, cp, cid, v, call16.Heartbeat(), "pb16-hb", {"currentTime": NOW})
        status = await exchange(
            pb_backend,
            cp,
            cid,
            v,
            call16.StatusNotification(
                connector_id=2, error_code="NoError", status="Charging", timestamp=NOW
            ),
            "pb16-status",
            {},
        )
        assert status.status == pb.v16_pb2.STATUS_NOTIFICATION_REQUEST_STATUS_CHARGING
        assert status.errorCode == pb.v16_pb2.ERROR_CODE_NO_ERROR
        meter = await exchange(
            pb_backend,
            cp,
            cid,
            v,
            call16.MeterValues(
                connector_id=1,
                transaction_id=4242,
                meter_value=METER_VALUES_16["meterValue"],
            ),
            "pb16-meter",
            {},
        )
    assert cp.conn.sent_for("pb16-meter")[3] == METER_VALUES_16
    energy, voltage, current, bare = meter.meterValue[0].sampledValue
    assert energy.WhichOneof("measurand_choice") == "measurand"
    assert energy.measurand == pb.v16_pb2.MEASURAND_ENERGY_ACTIVE_IMPORT_REGISTER
    assert energy.value == "1234.5"
    assert energy.unit == pb.v16_pb2.METER_VALUE_SAMPLED_VALUE_UNIT_K_WH
    assert voltage.WhichOneof("phase_choice") == "phase"
    assert voltage.phase == pb.v16_pb2.PHASE_L1_N
    assert wire_name(pb.v16_pb2.PhaseEnum.DESCRIPTOR, voltage.phase) == "L1-N"
    assert current.phase == pb.v16_pb2.PHASE_L1
    assert bare.WhichOneof("measurand_choice") is None
    assert meter.meterValue[1].timestamp == "2026-01-02T03:05:05+01:00"  # as sent
    pb_backend.check_clean(cid)


@run_async
async def test_ocpp201_calls_answered_by_protobuf_backend(gateway, pb_backend):
    """2.0.1 Boot/Heartbeat/Status/MeterValues go up as typed protobuf; typed answers come back."""
    gw = gateway(PROTOBUF_BOTH_WAYS)
    cid, v = "it-pb201-up", "ocpp2.0.1"
    answer_201(pb_backend)
    async with charge_point(ChargePoint201, gw.url(cid), cid, v) as cp:
        boot = await exchange(
            pb_backend,
            cp,
            cid,
            v,
            call201.BootNotification(
                charging_station={"model": "X2", "vendor_name": "ACME", "serial_number": "S-1"},
                reason="PowerUp",
            ),
            "pb201-boot",
            {
                "currentTime": NOW,
                "interval": 299,
                "status": "Accepted",
                "statusInfo": {"reasonCode": "Welcome", "additionalInfo": "pb"},
            },
        )
        assert boot.reason == pb.v201_pb2.BOOT_REASON_POWER_UP
        assert boot.chargingStation.vendorName == "ACME"
        await exchange(
            pb_backend, cp, cid, v, call201.Heartbeat(), "pb201-hb", {"currentTime": NOW}
        )
        status = await exchange(
            pb_backend,
            cp,
            cid,
            v,
            call201.StatusNotification(
                timestamp=NOW, connector_status="Occupied", evse_id=1, connector_id=2
            ),
            "pb201-status",
            {},
        )
        assert status.connectorStatus == pb.v201_pb2.CONNECTOR_STATUS_OCCUPIED
        assert (status.evseId, status.connectorId) == (1, 2)
        meter = await exchange(
            pb_backend,
            cp,
            cid,
            v,
            call201.MeterValues(evse_id=1, meter_value=METER_VALUES_201["meterValue"]),
            "pb201-meter",
            {},
        )
    assert cp.conn.sent_for("pb201-meter")[3] == METER_VALUES_201
    energy, voltage, current, zero = meter.meterValue[0].sampledValue
    assert energy.measurand == pb.v201_pb2.MEASURAND_ENERGY_ACTIVE_IMPORT_REGISTER
    assert wire_name(pb.v201_pb2.MeasurandEnumType.DESCRIPTOR, energy.measurand) == (
        "Energy.Active.Import.Register"
    )
    assert energy.value == 1234.5
    assert (energy.unitOfMeasure.unit, energy.unitOfMeasure.multiplier) == ("kWh", 3)
    assert voltage.phase == pb.v201_pb2.PHASE_L1_N
    assert voltage.value == 230.1
    assert current.phase == pb.v201_pb2.PHASE_L1
    assert zero.WhichOneof("value_choice") == "value"  # 0 is present, not unset
    pb_backend.check_clean(cid)


# --- backend CALLs to the charge point ---


class Handlers16(ChargePoint16):
    """A 1.6 charge point that accepts RemoteStartTransaction and ChangeConfiguration."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.remote_starts: list[dict[str, Any]] = []
        self.configurations: list[tuple[str, str]] = []

    @on(Action16.remote_start_transaction)
    def on_remote_start(self, id_tag: str, **kwargs: Any) -> Any:
        self.remote_starts.append({"id_tag": id_tag, **kwargs})
        return result16.RemoteStartTransaction(status="Accepted")

    @on(Action16.change_configuration)
    def on_change_configuration(self, key: str, value: str, **kwargs: Any) -> Any:
        self.configurations.append((key, value))
        return result16.ChangeConfiguration(status="RebootRequired")


class Handlers201(ChargePoint201):
    """A 2.0.1 station that accepts RequestStartTransaction and answers SetVariables."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_starts: list[dict[str, Any]] = []
        self.set_variables: list[list[dict[str, Any]]] = []

    @on(Action201.request_start_transaction)
    def on_request_start(
        self, id_token: dict[str, Any], remote_start_id: int, **kwargs: Any
    ) -> Any:
        self.request_starts.append(
            {"id_token": id_token, "remote_start_id": remote_start_id, **kwargs}
        )
        return result201.RequestStartTransaction(status="Accepted", transaction_id="TX-PB-77")

    @on(Action201.set_variables)
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **kwargs: Any) -> Any:
        self.set_variables.append(set_variable_data)
        results = []
        for i, datum in enumerate(set_variable_data):
            results.append(
                {
                    "attribute_status": "Accepted" if i == 0 else "UnknownComponent",
                    "component": datum["component"],
                    "variable": datum["variable"],
                }
            )
        return result201.SetVariables(set_variable_result=results)


async def check_reply(
    backend: ProtobufBackend, cp: Any, cid: str, version: str, unique_id: str, action: str
) -> Any:
    """The charge point's CALLRESULT on the reply topic, as protobuf; returns the typed payload."""
    reply = await backend.message(f"ocpp/cp/Reply/{cid}", UniqueId=unique_id)
    check_upstream(reply, CALLRESULT, cid, version, action)
    payload = typed(reply, False)
    assert to_json(payload) == cp.conn.sent_for(unique_id)[2]
    return payload


@run_async
async def test_ocpp16_protobuf_backend_calls_reach_charge_point(gateway, pb_backend):
    """1.6 protobuf CALLs reach the handlers; CALLRESULTs go up as typed protobuf with Action."""
    gw = gateway(PROTOBUF_BOTH_WAYS)
    cid, v = "it-pb16-down", "ocpp1.6"
    answer_16(pb_backend)
    async with charge_point(Handlers16, gw.url(cid), cid, v) as cp:
        # Answered through the downstream topic: the subscription is live.
        await cp.call(call16.BootNotification(charge_point_vendor="ACME", charge_point_model="X1"))
        pb_backend.publish_call(
            cid,
            "pb16-remote-start",
            pb.v16_pb2.RemoteStartTransactionRequest(connectorId=2, idTag="TAG-PB16"),
            protocol=v,
        )
        # Queued behind the first; Protocol left empty, as a backend may.
        pb_backend.publish_call(
            cid,
            "pb16-change-conf",
            pb.v16_pb2.ChangeConfigurationRequest(key="HeartbeatInterval", value="120"),
        )
        await until(
            lambda: cp.configurations, "ChangeConfiguration reaching the handler", pb_backend
        )
        assert cp.remote_starts == [{"id_tag": "TAG-PB16", "connector_id": 2}]
        assert cp.configurations == [("HeartbeatInterval", "120")]
        assert cp.conn.received_for("pb16-remote-start") == [
            2,
            "pb16-remote-start",
            "RemoteStartTransaction",
            {"connectorId": 2, "idTag": "TAG-PB16"},
        ]
        assert cp.conn.received_for("pb16-change-conf") == [
            2,
            "pb16-change-conf",
            "ChangeConfiguration",
            {"key": "HeartbeatInterval", "value": "120"},
        ]
        started = await check_reply(
            pb_backend, cp, cid, v, "pb16-remote-start", "RemoteStartTransaction"
        )
        assert started.status == pb.v16_pb2.REMOTE_START_TRANSACTION_RESPONSE_STATUS_ACCEPTED
        changed = await check_reply(
            pb_backend, cp, cid, v, "pb16-change-conf", "ChangeConfiguration"
        )
        assert changed.status == pb.v16_pb2.CHANGE_CONFIGURATION_RESPONSE_STATUS_REBOOT_REQUIRED
    pb_backend.check_clean(cid)


@run_async
async def test_ocpp201_protobuf_backend_calls_reach_charge_point(gateway, pb_backend):
    """2.0.1 protobuf CALLs reach the handlers; the CALLRESULTs go up as typed protobuf."""
    gw = gateway(PROTOBUF_BOTH_WAYS)
    cid, v = "it-pb201-down", "ocpp2.0.1"
    answer_201(pb_backend)
    async with charge_point(Handlers201, gw.url(cid), cid, v) as cp:
        await cp.call(
            call201.BootNotification(
                charging_station={"model": "X2", "vendor_name": "ACME"}, reason="PowerUp"
            )
        )
        pb_backend.publish_call(
            cid,
            "pb201-request-start",
            pb.v201_pb2.RequestStartTransactionRequest(
                evseId=1,
                idToken=pb.v201_pb2.IdTokenType(
                    idToken="TAG-PB201", type=pb.v201_pb2.ID_TOKEN_ISO14443
                ),
                remoteStartId=77,
            ),
            protocol=v,
        )
        pb_backend.publish_call(
            cid,
            "pb201-set-variables",
            pb.v201_pb2.SetVariablesRequest(
                setVariableData=[
                    pb.v201_pb2.SetVariableDataType(
                        attributeType=pb.v201_pb2.ATTRIBUTE_ACTUAL,
                        attributeValue="120",
                        component=pb.v201_pb2.ComponentType(name="OCPPCommCtrlr"),
                        variable=pb.v201_pb2.VariableType(name="HeartbeatInterval"),
                    ),
                    pb.v201_pb2.SetVariableDataType(
                        attributeValue="x",
                        component=pb.v201_pb2.ComponentType(
                            name="Nope", evse=pb.v201_pb2.EVSEType(id=1, connectorId=2)
                        ),
                        variable=pb.v201_pb2.VariableType(name="Foo", instance="i1"),
                    ),
                ]
            ),
        )
        await until(lambda: cp.set_variables, "SetVariables reaching the handler", pb_backend)
        assert cp.request_starts == [
            {
                "id_token": {"id_token": "TAG-PB201", "type": "ISO14443"},
                "remote_start_id": 77,
                "evse_id": 1,
            }
        ]
        set_variable_data = [
            {
                "attributeType": "Actual",
                "attributeValue": "120",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            },
            {
                "attributeValue": "x",
                "component": {"name": "Nope", "evse": {"id": 1, "connectorId": 2}},
                "variable": {"name": "Foo", "instance": "i1"},
            },
        ]
        assert cp.conn.received_for("pb201-set-variables") == [
            2,
            "pb201-set-variables",
            "SetVariables",
            {"setVariableData": set_variable_data},
        ]
        started = await check_reply(
            pb_backend, cp, cid, v, "pb201-request-start", "RequestStartTransaction"
        )
        assert started.status == pb.v201_pb2.REQUEST_START_STOP_STATUS_ACCEPTED
        assert started.transactionId == "TX-PB-77"
        result = await check_reply(pb_backend, cp, cid, v, "pb201-set-variables", "SetVariables")
        accepted, unknown = result.setVariableResult
        assert accepted.attributeStatus == pb.v201_pb2.SET_VARIABLE_STATUS_ACCEPTED
        assert accepted.variable.name == "HeartbeatInterval"
        assert unknown.attributeStatus == pb.v201_pb2.SET_VARIABLE_STATUS_UNKNOWN_COMPONENT
        assert (unknown.component.evse.id, unknown.component.evse.connectorId) == (1, 2)
    pb_backend.check_clean(cid)


# --- a backend CALLERROR ---


@run_async
async def test_protobuf_callerror_with_details_reaches_charge_points(gateway, pb_backend):
    """A protobuf CALLERROR with ErrorDetails reaches 1.6 and 2.0.1 charge points as OCPP-J."""
    gw = gateway(PROTOBUF_BOTH_WAYS)
    details = {"field": "data", "limits": [1, 2], "nested": {"ok": False}}
    codes = {"ocpp1.6": pb.message_pb2.FormationViolation}
    codes["ocpp2.0.1"] = pb.message_pb2.OccurrenceConstraintViolation

    def refuse(wrapper: Any, request: Any) -> Any:
        assert request.vendorId == "ACME"
        return pb.message_pb2.Message(
            MessageTypeId=CALLERROR,
            UniqueId=wrapper.UniqueId,
            ErrorCode=codes[wrapper.Protocol],
            ErrorDescription=f"refused {request.messageId}",
            ErrorDetails=json.dumps(details).encode(),
        )

    pb_backend.on_call("DataTransfer", refuse)
    cases = [
        ("ocpp1.6", ChargePoint16, call16, FormationViolationError, "FormationViolation"),
        (
            "ocpp2.0.1",
            ChargePoint201,
            call201,
            OccurrenceConstraintViolationError,
            "OccurrenceConstraintViolation",
        ),
    ]
    for version, cls, calls, error, code in cases:
        cid = f"it-pb-callerror-{version}"
        async with charge_point(cls, gw.url(cid), cid, version) as cp:
            with pytest.raises(error) as raised:
                await cp.call(
                    calls.DataTransfer(vendor_id="ACME", message_id="m-1", data="d"),
                    suppress=False,
                    unique_id="pb-ce-1",
                )
            assert raised.value.description == "refused m-1"
            assert raised.value.details == details
            assert cp.conn.received_for("pb-ce-1") == [4, "pb-ce-1", code, "refused m-1", details]
        pb_backend.check_clean(cid)


# --- a per-action protobuf override ---


@run_async
async def test_per_action_protobuf_override(gateway, backend):
    """[upstream:MeterValues] codec = protobuf on its own topic; Heartbeat stays JSON."""
    gw = gateway(
        {
            "upstream": {"codec": "json"},
            "upstream:MeterValues": {"topic": "ocpp/meter/${cid}", "codec": "protobuf"},
        }
    )
    backend.answer("Heartbeat", {"currentTime": NOW})
    cases = [
        (
            "ocpp1.6",
            ChargePoint16,
            call16.Heartbeat(),
            call16.MeterValues(connector_id=1, meter_value=METER_VALUES_16["meterValue"]),
        ),
        (
            "ocpp2.0.1",
            ChargePoint201,
            call201.Heartbeat(),
            call201.MeterValues(evse_id=1, meter_value=METER_VALUES_201["meterValue"]),
        ),
    ]
    for version, cls, heartbeat, meter_values in cases:
        cid = f"it-pb-override-{version}"
        async with charge_point(cls, gw.url(cid), cid, version) as cp:
            await cp.call(heartbeat, suppress=False, unique_id="ov-hb")
            sending = asyncio.create_task(
                cp.call(meter_values, suppress=False, unique_id="ov-meter")
            )
            msg = await backend.wait_for(
                lambda m, cid=cid: m.topic == f"ocpp/meter/{cid}", f"on ocpp/meter/{cid}"
            )
            assert msg.json() is None, f"MeterValues came as JSON: {msg.payload!r}"
            wrapper = parse(msg.payload)
            assert wrapper is not None, f"MeterValues is not a protobuf Message: {msg!r}"
            check_upstream(wrapper, CALL, cid, version, "MeterValues")
            assert wrapper.UniqueId == "ov-meter"
            payload = typed(wrapper, True)
            assert to_json(payload) == cp.conn.sent_for("ov-meter")[3]
            sampled = payload.meterValue[0].sampledValue
            assert (
                sampled[0].measurand == pb.MODULES[version].MEASURAND_ENERGY_ACTIVE_IMPORT_REGISTER
            )
            assert sampled[1].phase == pb.MODULES[version].PHASE_L1_N
            # The answer goes through the (JSON) downstream topic as usual.
            backend.publish(
                f"ocpp/cs/{cid}/Reply/MeterValues",
                {"MessageTypeId": 3, "UniqueId": "ov-meter", "Payload": {}},
            )
            await asyncio.wait_for(sending, WAIT)

        heartbeat = await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId="ov-hb")
        assert heartbeat["Action"] == "Heartbeat"
        assert heartbeat["Protocol"] == version
        assert heartbeat["Payload"] == {}
        assert backend.messages(lambda m, cid=cid: m.topic == f"ocpp/cp/{cid}/MeterValues") == []
        on_meter_topic = backend.messages(lambda m, cid=cid: m.topic == f"ocpp/meter/{cid}")
        assert len(on_meter_topic) == 1, on_meter_topic
        assert backend.messages(lambda m, cid=cid: m.topic == f"ocpp/cp/Error/{cid}") == []


# --- invalid downstream protobuf ---

GARBAGE = [b"\x00garbage\xff\xfe", b"\x08\x80", b'{"MessageTypeId": 2}', b"\xff" * 12]


def error_envelope(msg: Msg, codec: str) -> dict[str, Any]:
    """The fields of an error envelope, read in ``codec``."""
    if codec == "json":
        env = msg.json()
        assert isinstance(env, dict), f"error envelope is not JSON: {msg!r}"
        return env
    assert msg.json() is None, f"error envelope is JSON, not protobuf: {msg!r}"
    wrapper = parse(msg.payload)
    assert wrapper is not None, f"error envelope is not a protobuf Message: {msg!r}"
    assert wrapper.ErrorCodeText == ""
    return {
        "MessageTypeId": wrapper.MessageTypeId,
        "UniqueId": wrapper.UniqueId,
        "ErrorCode": pb.message_pb2.ErrorType.Name(wrapper.ErrorCode),
        "ErrorDescription": wrapper.ErrorDescription,
        "Protocol": wrapper.Protocol,
        "ChargePointId": wrapper.ChargePointId,
        "Origin": wrapper.Origin,
        **({"Action": wrapper.Action} if wrapper.Action else {}),
    }


async def heartbeat_round_trip(ws: Any, unique_id: str) -> None:
    """A raw 1.6 Heartbeat answered through the downstream topic (answer_16)."""
    await ws.send(json.dumps([2, unique_id, "Heartbeat", {}]))
    assert await recv_frame(ws) == [3, unique_id, {"currentTime": NOW}]


async def nothing_arrives(ws: Any, seconds: float = 0.5) -> None:
    """No frame reaches the charge point within ``seconds``."""
    try:
        frame = await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return
    raise AssertionError(f"the charge point received {frame!r}")


@pytest.mark.parametrize("error_codec", ["protobuf", "json"])
@run_async
async def test_garbage_downstream_protobuf_yields_invalid(gateway, pb_backend, error_codec):
    """Garbage on a protobuf downstream topic: Invalid on the error topic in its codec, no frame."""
    gw = gateway(
        {
            "upstream": {"codec": "protobuf", "error_codec": error_codec},
            "dnstream": {"codec": "protobuf"},
        }
    )
    cid, v = f"it-pb-garbage-{error_codec}", "ocpp1.6"
    answer_16(pb_backend)
    error_topic = f"ocpp/cp/Error/{cid}"
    async with connect(gw.url(cid), [v]) as ws:
        await heartbeat_round_trip(ws, "g-hb-1")  # subscription is live
        for i, garbage in enumerate(GARBAGE):
            pb_backend.publish(f"ocpp/cs/{cid}/Call/Reset", garbage)
            await until(
                lambda n=i + 1: len(pb_backend.messages(lambda m: m.topic == error_topic)) >= n,
                f"error envelope {i + 1} on {error_topic}",
                pb_backend,
            )
        await nothing_arrives(ws)
        errors = pb_backend.messages(lambda m: m.topic == error_topic)
        assert len(errors) == len(GARBAGE), errors
        for msg in errors:
            env = error_envelope(msg, error_codec)
            assert env["MessageTypeId"] == 4
            assert env["ErrorCode"] == "Invalid"
            assert env["UniqueId"] == "-1"
            assert env["Origin"] == "gateway"
            assert env["ChargePointId"] == cid
            assert env["Protocol"] == v
            assert f"ocpp/cs/{cid}/Call/Reset" in env["ErrorDescription"]
            assert "Action" not in env
        # The session is unharmed.
        await heartbeat_round_trip(ws, "g-hb-2")
    assert pb_backend.errors == []


@run_async
async def test_garbage_typed_payload_yields_invalid_for_that_call(gateway, pb_backend):
    """A readable protobuf CALL with a garbage Payload: Invalid naming its UniqueId and Action."""
    gw = gateway(PROTOBUF_BOTH_WAYS)
    cid, v = "it-pb-garbage-payload", "ocpp1.6"
    answer_16(pb_backend)
    async with connect(gw.url(cid), [v]) as ws:
        await heartbeat_round_trip(ws, "gp-hb-1")
        bad = pb.message_pb2.Message(
            MessageTypeId=CALL,
            UniqueId="gp-call-1",
            Action="RemoteStartTransaction",
            Payload=b"\xff\xff\xff garbage",
        )
        pb_backend.publish(f"ocpp/cs/{cid}/Call/RemoteStartTransaction", bad.SerializeToString())
        msg = await pb_backend.wait_for(
            lambda m: m.topic == f"ocpp/cp/Error/{cid}", f"on ocpp/cp/Error/{cid}"
        )
        await nothing_arrives(ws)
        env = error_envelope(msg, "protobuf")
        assert env["ErrorCode"] == "Invalid"
        assert env["Origin"] == "gateway"
        assert "Payload" in env["ErrorDescription"]
        # The wrapper was readable: the backend must learn which CALL failed,
        # as it does for the same mistake in a JSON envelope.
        assert (env["UniqueId"], env.get("Action")) == ("gp-call-1", "RemoteStartTransaction")
