# -*- test-case-name: tests.integration.test_backend_example -*-
"""
A small CSMS backend on MQTT for the gateway's default topics and JSON
envelopes: it answers the charge points' BootNotification, Heartbeat,
StatusNotification, Authorize and MeterValues of every OCPP version,
Start/StopTransaction of 1.6 and TransactionEvent of 2.0.1 and 2.1, and
prints each exchange.  It needs only paho-mqtt, never the gateway's package::

    python examples/backend.py --port 1883

``make demo`` runs it next to the gateway and its embedded broker; it waits
for the broker to come up and follows it through restarts.  Each exchange is
two lines: ``> CID VERSION ACTION PAYLOAD`` for what the charge point sent and
``< CID VERSION ACTION PAYLOAD`` for the answer.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

#: The upstream CALL topic, [upstream] topic = ocpp/cp/${cid}/${action}.  The
#: reply and error topics (ocpp/cp/Reply/${cid}, ocpp/cp/Error/${cid}) match too:
#: only CALLs are answered.
SUBSCRIPTION = "ocpp/cp/+/+"

_transaction_ids = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _boot(_: dict[str, Any]) -> dict[str, Any]:
    return {"status": "Accepted", "currentTime": _now(), "interval": 300}


def _start_transaction(_: dict[str, Any]) -> dict[str, Any]:
    return {"transactionId": next(_transaction_ids), "idTagInfo": {"status": "Accepted"}}


#: An answer: the CALLRESULT payload for a CALL payload.
Answer = Callable[[dict[str, Any]], dict[str, Any]]

_EVERY_VERSION: dict[str, Answer] = {
    "BootNotification": _boot,
    "Heartbeat": lambda _: {"currentTime": _now()},
    "StatusNotification": lambda _: {},
    "MeterValues": lambda _: {},
}
_V16: dict[str, Answer] = {
    **_EVERY_VERSION,
    "Authorize": lambda _: {"idTagInfo": {"status": "Accepted"}},
    "StartTransaction": _start_transaction,
    "StopTransaction": lambda _: {"idTagInfo": {"status": "Accepted"}},
}
_V2X: dict[str, Answer] = {
    **_EVERY_VERSION,
    "Authorize": lambda _: {"idTokenInfo": {"status": "Accepted"}},
    "TransactionEvent": lambda _: {},
}
#: The answer to each charge point CALL this backend handles, per envelope Protocol.
ANSWERS: dict[str, dict[str, Answer]] = {"ocpp1.6": _V16, "ocpp2.0.1": _V2X, "ocpp2.1": _V2X}


def topic_value(value: str) -> str:
    """``value`` as the gateway puts it in a topic: / + # % and NUL percent-encoded."""
    return "".join(f"%{ord(c):02X}" if c in "/+#%\0" else c for c in value)


def handle(data: bytes) -> tuple[str, bytes] | None:
    """The (topic, envelope) answering one upstream envelope, if this backend answers it."""
    try:
        msg = json.loads(data)
    except ValueError:
        return None  # another codec on this topic
    if not isinstance(msg, dict) or msg.get("MessageTypeId") != 2 or msg.get("Answered"):
        return None  # results, errors, SENDs, and CALLs the gateway answered itself
    cid, protocol, action = msg["ChargePointId"], msg["Protocol"], msg["Action"]
    request = msg.get("Payload", {})
    print(f"> {cid} {protocol} {action} {json.dumps(request)}", flush=True)
    answer = ANSWERS.get(protocol, {}).get(action)
    if answer is None:
        print(f"  {cid} {protocol} {action}: not answered by this example", flush=True)
        return None
    payload = answer(request)
    print(f"< {cid} {protocol} {action} {json.dumps(payload)}", flush=True)
    reply = {"MessageTypeId": 3, "UniqueId": msg["UniqueId"], "Payload": payload}
    # [dnstream] topic = ocpp/cs/${cid}/+/+: the gateway takes any two levels.
    return f"ocpp/cs/{topic_value(cid)}/Reply/{action}", json.dumps(reply).encode()


def main(argv: list[str] | None = None) -> None:
    """Answer on the broker until interrupted."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--client-id", default="ocppgw-example-backend")
    args = parser.parse_args(argv)

    def on_connect(client: mqtt.Client, *_: object) -> None:
        print(f"connected to {args.host}:{args.port}", flush=True)
        client.subscribe(SUBSCRIPTION, qos=1)  # again on every reconnect

    def on_subscribe(*_: object) -> None:
        print(f"subscribed to {SUBSCRIPTION}", flush=True)

    def on_message(client: mqtt.Client, _: object, m: mqtt.MQTTMessage) -> None:
        answer = handle(bytes(m.payload))
        if answer is not None:
            client.publish(*answer, qos=1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    print(f"waiting for the broker on {args.host}:{args.port}", flush=True)
    client.connect_async(args.host, args.port)
    try:
        # The broker may not be up yet (make demo starts it with the gateway).
        client.loop_forever(retry_first_connection=True)
    except KeyboardInterrupt:
        client.disconnect()


if __name__ == "__main__":
    main()
