# -*- test-case-name: tests.unit.router.test_protobuf_profile -*-
"""
A CSMS backend on MQTT that speaks the ocppgw protobuf profile, built from
proto/ and docs/protobuf.md alone: it imports only protoc's output, never the
gateway's Python package.

Compile the .proto files first (from any directory), then run it::

    python -m grpc_tools.protoc -I /path/to/ocppgw/proto --python_out=pb \\
        /path/to/ocppgw/proto/ocppgw_pb/v1/*.proto
    PYTHONPATH=pb python examples/protobuf_backend.py --port 1883

It answers the charge points' BootNotification, Heartbeat, StatusNotification,
Authorize, MeterValues and transaction messages of every OCPP version with
typed payloads, and prints what it receives.  :func:`to_json` and
:func:`from_json` are the mapping of docs/protobuf.md ("How payloads are
mapped") written against the descriptors, so they cover every action.
tests.integration.test_protobuf_example runs it as a process.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from ocppgw_pb.v1 import message_pb2, options_pb2, v16_pb2, v21_pb2, v201_pb2

#: The typed payload messages of each OCPP version (the wrapper's Protocol).
MODULES: dict[str, Any] = {"ocpp1.6": v16_pb2, "ocpp2.0.1": v201_pb2, "ocpp2.1": v21_pb2}
TYPED = message_pb2.PAYLOAD_ENCODING_TYPED
JSON = message_pb2.PAYLOAD_ENCODING_JSON
_INT_TYPES = (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64)


def payload_class(protocol: str, action: str, is_request: bool) -> Any:
    """``<Action>Request`` or ``<Action>Response`` of ``protocol``, or None if it has none."""
    module = MODULES.get(protocol)
    name = action + ("Request" if is_request else "Response")
    return None if module is None else getattr(module, name, None)


# -- typed message -> OCPP JSON -------------------------------------------------


@cache
def _enum_strings(enum: EnumDescriptor) -> dict[int, str]:
    """Enum number -> the OCPP string, from each value's (ocppgw_pb.v1.json_value)."""
    return {
        v.number: v.GetOptions().Extensions[options_pb2.json_value]
        for v in enum.values
        if v.number != 0
    }


@cache
def _enum_numbers(enum: EnumDescriptor) -> dict[str, int]:
    return {s: n for n, s in _enum_strings(enum).items()}


def _alternative(desc: Descriptor, name: str) -> tuple[str, str] | None:
    """(the property, the suffix) if ``name`` is a ``_raw``/``_text``/``_empty`` field."""
    for suffix in ("_raw", "_text", "_empty"):
        base = name.removesuffix(suffix)
        if base != name and base in desc.fields_by_name:
            return base, suffix
    return None


def _value(fd: FieldDescriptor, value: Any) -> Any:
    if fd.type == fd.TYPE_MESSAGE:
        return to_json(value)
    if fd.type == fd.TYPE_ENUM:
        return _enum_strings(fd.enum_type)[value]
    if fd.type == fd.TYPE_BYTES:  # free-form content: JSON text
        return json.loads(value)
    return value


def to_json(msg: Any) -> dict[str, Any]:
    """A typed payload as its OCPP JSON object (docs/protobuf.md, the reading rules)."""
    out: dict[str, Any] = {}
    desc = msg.DESCRIPTOR
    for fd, value in msg.ListFields():
        alt = _alternative(desc, fd.name)
        if alt is None:
            out[fd.name] = [_value(fd, v) for v in value] if _repeated(fd) else _value(fd, value)
        elif alt[1] == "_raw":  # an enum string the .proto does not list
            out[alt[0]] = value
        elif alt[1] == "_text":  # a number a double cannot hold: its exact decimal text
            out[alt[0]] = json.loads(value)
        elif value:  # _empty: a present, empty list
            out[alt[0]] = []
    for fd in desc.fields:
        # proto3 writes no empty list and no scalar at its default: a required
        # one that is unset is [] / "" / 0 / false.
        if fd.name not in out and fd.GetOptions().Extensions[options_pb2.required]:
            if _repeated(fd):
                out[fd.name] = []
            elif fd.containing_oneof is None and fd.type != fd.TYPE_MESSAGE:
                out[fd.name] = fd.default_value
    return out


def _repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


# -- OCPP JSON -> typed message -------------------------------------------------


class Untyped(ValueError):
    """A payload the typed message cannot carry exactly: send it as JSON."""


def _scalar(fd: FieldDescriptor, value: Any) -> Any:
    if fd.type == fd.TYPE_ENUM:
        number = _enum_numbers(fd.enum_type).get(value) if isinstance(value, str) else None
        if number is None:
            raise Untyped(f"{fd.name}: {value!r} is not a value of {fd.enum_type.name}")
        return number
    if fd.type == fd.TYPE_BYTES:
        return json.dumps(value, separators=(",", ":")).encode()
    if fd.type in _INT_TYPES:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if type(value) is not int or not -(2**63) <= value < 2**63:
            raise Untyped(f"{fd.name}: {value!r} is not a 64-bit integer")
        return value
    if fd.type == fd.TYPE_DOUBLE:
        if type(value) not in (int, float):
            raise Untyped(f"{fd.name}: {value!r} is not a number")
        return float(value)
    if (fd.type == fd.TYPE_BOOL) != isinstance(value, bool) or (
        fd.type == fd.TYPE_STRING and not isinstance(value, str)
    ):
        raise Untyped(f"{fd.name}: {value!r} has the wrong type")
    return value


def _fill(msg: Any, obj: Any) -> None:
    if not isinstance(obj, dict):
        raise Untyped(f"{msg.DESCRIPTOR.name}: {obj!r} is not an object")
    fields = msg.DESCRIPTOR.fields_by_name
    for key, value in obj.items():
        fd = fields.get(key)
        if fd is None or _alternative(msg.DESCRIPTOR, key) is not None:
            raise Untyped(f"{msg.DESCRIPTOR.name} has no property {key!r}")
        if _repeated(fd):
            if not isinstance(value, list):
                raise Untyped(f"{key} is not a list")
            if not value and key + "_empty" in fields:
                setattr(msg, key + "_empty", True)
            container = getattr(msg, key)
            for item in value:
                if fd.type == fd.TYPE_MESSAGE:
                    _fill(container.add(), item)
                else:
                    container.append(_scalar(fd, item))
        elif fd.type == fd.TYPE_MESSAGE:
            getattr(msg, key).SetInParent()
            _fill(getattr(msg, key), value)
        elif fd.type == fd.TYPE_ENUM and isinstance(value, str) and key + "_raw" in fields:
            number = _enum_numbers(fd.enum_type).get(value)
            setattr(msg, key, number) if number is not None else setattr(msg, key + "_raw", value)
        elif fd.type == fd.TYPE_DOUBLE and type(value) is int and float(value) != value:
            setattr(msg, key + "_text", str(value))  # beyond 2**53: keep every digit
        else:
            setattr(msg, key, _scalar(fd, value))


def from_json(cls: Any, obj: dict[str, Any]) -> Any:
    """The typed message ``cls`` carrying ``obj``; :class:`Untyped` if it cannot."""
    msg = cls()
    _fill(msg, obj)
    return msg


# -- the wrapper -------------------------------------------------------------------


def read_payload(wrapper: Any, is_request: bool) -> dict[str, Any]:
    """The OCPP JSON payload of a CALL, SEND or CALLRESULT wrapper."""
    if wrapper.PayloadEncoding == JSON:
        payload: dict[str, Any] = json.loads(wrapper.Payload)
        return payload
    cls = payload_class(wrapper.Protocol, wrapper.Action, is_request)
    # No bytes is the typed message with every field unset, not "{}".
    return to_json(cls.FromString(wrapper.Payload))


def wrapper(
    type_id: int, unique_id: str, action: str, protocol: str, payload: dict[str, Any]
) -> bytes:
    """A serialized Message carrying ``payload``, typed when the typed form can carry it."""
    cls = payload_class(protocol, action, type_id != message_pb2.CALLRESULT)
    out = message_pb2.Message(
        MessageTypeId=type_id, UniqueId=unique_id, Action=action, Protocol=protocol
    )
    try:
        if cls is None:
            raise Untyped(f"{protocol} has no typed payload for {action}")
        out.Payload = from_json(cls, payload).SerializeToString()
    except Untyped:
        out.Payload = json.dumps(payload, separators=(",", ":")).encode()
        out.PayloadEncoding = JSON
    data: bytes = out.SerializeToString()
    return data


# -- the CSMS --------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _accepted(_: dict[str, Any]) -> dict[str, Any]:
    return {"idTagInfo": {"status": "Accepted"}}


def _accepted_token(_: dict[str, Any]) -> dict[str, Any]:
    return {"idTokenInfo": {"status": "Accepted"}}


def _boot(_: dict[str, Any]) -> dict[str, Any]:
    return {"status": "Accepted", "currentTime": _now(), "interval": 300}


#: An answer: the CALLRESULT payload for a CALL payload.
Answer = Callable[[dict[str, Any]], dict[str, Any]]

#: The answer to each charge point CALL this backend handles, per version.
_COMMON: dict[str, Answer] = {
    "BootNotification": _boot,
    "Heartbeat": lambda _: {"currentTime": _now()},
    "StatusNotification": lambda _: {},
    "MeterValues": lambda _: {},
}
ANSWERS_16: dict[str, Answer] = {
    **_COMMON,
    "Authorize": _accepted,
    "StartTransaction": lambda p: {"transactionId": 1, **_accepted(p)},
    "StopTransaction": lambda _: {},
}
ANSWERS_2X: dict[str, Answer] = {
    **_COMMON,
    "Authorize": _accepted_token,
    "TransactionEvent": lambda _: {},
}
ANSWERS: dict[str, dict[str, Answer]] = {
    "ocpp1.6": ANSWERS_16,
    "ocpp2.0.1": ANSWERS_2X,
    "ocpp2.1": ANSWERS_2X,
}


def handle(data: bytes) -> tuple[str, bytes] | None:
    """The (topic, Message) answering one upstream Message, if this backend answers it."""
    msg = message_pb2.Message.FromString(data)
    if msg.MessageTypeId != message_pb2.CALL or msg.Answered:
        return None  # results, errors, SENDs, and CALLs the gateway answered itself
    answer = ANSWERS.get(msg.Protocol, {}).get(msg.Action)
    if answer is None:
        return None
    payload = read_payload(msg, True)
    print(f"{msg.ChargePointId} {msg.Protocol} {msg.Action} {json.dumps(payload)}", flush=True)
    reply = wrapper(message_pb2.CALLRESULT, msg.UniqueId, msg.Action, msg.Protocol, answer(payload))
    # The default [dnstream] topic, ocpp/cs/${cid}/+/+, with the identity as the
    # gateway puts it in topics: / + # % and NUL percent-encoded.
    cid = "".join(f"%{ord(c):02X}" if c in "/+#%\0" else c for c in msg.ChargePointId)
    return f"ocpp/cs/{cid}/Reply/{msg.Action}", reply


def main(argv: list[str] | None = None) -> None:
    """Answer on the broker until interrupted."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--client-id", default="csms-pb")
    args = parser.parse_args(argv)

    def on_connect(client: mqtt.Client, *_: object) -> None:
        client.subscribe("ocpp/cp/+/+", qos=1)  # again on every reconnect

    def on_subscribe(*_: object) -> None:
        print("subscribed to ocpp/cp/+/+", flush=True)

    def on_message(client: mqtt.Client, _: object, m: mqtt.MQTTMessage) -> None:
        answer = handle(bytes(m.payload))
        if answer is not None:
            client.publish(*answer, qos=1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port)
    client.loop_forever()


if __name__ == "__main__":
    main()
