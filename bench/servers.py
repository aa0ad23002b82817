"""
The baselines and helpers of the benchmark, one per subcommand:

- ``echo PORT``: a plain Autobahn (Twisted) WebSocket echo server, the
  stack's ceiling: every text frame is sent back as it came;
- ``ocppcs PORT``: a central system written on the PyPI ``ocpp`` package
  (over ``websockets``) that answers MeterValues, StatusNotification and
  Heartbeat itself, as a Python team would write one;
- ``backend MQTTPORT [json|protobuf]``: the cheap backend behind the gateway:
  it answers every charge point CALL on ``ocpp/cp/+/+`` with a CALLRESULT on
  ``ocpp/cs/<cid>/Reply/<action>`` at QoS 1, and every ``bench/req/N`` with
  the same bytes on ``bench/rep/N`` (the broker baseline);
- ``mqttload MQTTPORT N SECONDS``: the broker baseline's load, N requests in
  flight, paho -> mosquitto -> backend -> mosquitto -> paho at QoS 1.

Each runs until killed, or (mqttload) for its bounded time.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

_ANSWERS = {
    "MeterValues": b"{}",
    "StatusNotification": b"{}",
    "Heartbeat": b'{"currentTime":"2024-01-01T00:00:00Z"}',
    "BootNotification": (
        b'{"status":"Accepted","currentTime":"2024-01-01T00:00:00Z","interval":300}'
    ),
}


def echo(port: int) -> None:
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet import reactor

    class Echo(WebSocketServerProtocol):  # type: ignore[misc]
        def onConnect(self, request: Any) -> str | None:
            return "ocpp1.6" if "ocpp1.6" in request.protocols else None

        def onMessage(self, payload: bytes, is_binary: bool) -> None:
            self.sendMessage(payload, is_binary)

    factory = WebSocketServerFactory(f"ws://127.0.0.1:{port}")
    factory.protocol = Echo
    factory.setProtocolOptions(autoPingInterval=0)
    reactor.listenTCP(port, factory, backlog=1024, interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


def ocppcs(port: int) -> None:
    import asyncio

    import websockets
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint, call_result
    from ocpp.v16.enums import Action

    class CentralSystem(ChargePoint):  # type: ignore[misc]
        @on(Action.meter_values)
        def meter_values(self, **kw: Any) -> Any:
            return call_result.MeterValues()

        @on(Action.status_notification)
        def status(self, **kw: Any) -> Any:
            return call_result.StatusNotification()

        @on(Action.heartbeat)
        def heartbeat(self, **kw: Any) -> Any:
            return call_result.Heartbeat(current_time="2024-01-01T00:00:00Z")

    async def handler(ws: Any) -> None:
        await CentralSystem(ws.request.path.rsplit("/", 1)[-1], ws).start()

    async def main() -> None:
        async with websockets.serve(
            handler, "127.0.0.1", port, subprotocols=["ocpp1.6"], ping_interval=None, backlog=1024
        ):
            await asyncio.Future()

    asyncio.run(main())


def backend(port: int, codec: str) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-backend-{port}")
    client.max_inflight_messages_set(65535)
    client.max_queued_messages_set(0)
    proto: Any = None
    if codec == "protobuf":
        sys.path.insert(0, ".")
        from ocppgw.ocpp.envelope import DecodeContext, Envelope
        from ocppgw.ocpp.messages import CallResult
        from ocppgw.router import codecs

        proto = (codecs.get("protobuf"), DecodeContext, Envelope, CallResult)

    def on_connect(c: paho.Client, *a: Any) -> None:
        c.subscribe([("ocpp/cp/+/+", 1), ("bench/req/+", 1)])

    def on_message(c: paho.Client, userdata: Any, m: paho.MQTTMessage) -> None:
        topic = m.topic
        if topic.startswith("bench/req/"):
            c.publish("bench/rep/" + topic[10:], m.payload, qos=1)
            return
        _, _, cid, action = topic.split("/", 3)
        if cid == "Reply" or cid == "Error":
            return
        if proto is None:
            unique_id = json.loads(m.payload)["UniqueId"]
            body = b'{"MessageTypeId":3,"UniqueId":"%s","Payload":%s}' % (
                unique_id.encode(),
                _ANSWERS[action],
            )
        else:
            codec, context, envelope, result = proto
            call = codec.decode(bytes(m.payload), context(version="ocpp1.6")).message
            answer = result(call.unique_id, json.loads(_ANSWERS[action]), action=action)
            body = codec.encode(envelope(answer, version="ocpp1.6", charge_point=cid))
        c.publish(f"ocpp/cs/{cid}/Reply/{action}", body, qos=1)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_forever()


def mqttload(port: int, n: int, seconds: float) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-mqttload-{port}")
    client.max_inflight_messages_set(65535)
    client.max_queued_messages_set(0)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    state = {"measuring": False, "ok": 0, "go": False}

    def on_connect(c: paho.Client, *a: Any) -> None:
        c.subscribe("bench/rep/+", 1)

    def on_subscribe(c: paho.Client, *a: Any) -> None:
        state["go"] = True
        for i in range(n):
            sent[str(i)] = time.perf_counter()
            c.publish(f"bench/req/{i}", b'{"x":1}', qos=1)

    def on_message(c: paho.Client, userdata: Any, m: paho.MQTTMessage) -> None:
        i = m.topic[10:]
        now = time.perf_counter()
        if state["measuring"]:
            state["ok"] += 1
            latencies.append(now - sent[i])
        sent[i] = now
        c.publish(f"bench/req/{i}", m.payload, qos=1)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=60)
    deadline = time.monotonic() + 10
    while not state["go"] and time.monotonic() < deadline:
        client.loop(0.05)
    end_warm = time.monotonic() + 1.0
    while time.monotonic() < end_warm:
        client.loop(0.01)
    print("MEASURE_START", flush=True)
    state["measuring"], t0, cpu0 = True, time.monotonic(), time.process_time()
    while time.monotonic() < t0 + seconds:
        client.loop(0.01)
    state["measuring"] = False
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    print("MEASURE_END", flush=True)
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3 if latencies else 0

    print(
        json.dumps(
            {
                "mode": "closed",
                "conns": n,
                "seconds": elapsed,
                "round_trips": state["ok"],
                "failures": 0,
                "rate": state["ok"] / elapsed,
                "p50_ms": pct(0.5),
                "p90_ms": pct(0.9),
                "p99_ms": pct(0.99),
                "max_ms": latencies[-1] * 1e3 if latencies else 0,
                "loadgen_cpu_s": cpu,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    what, rest = sys.argv[1], sys.argv[2:]
    if what == "echo":
        echo(int(rest[0]))
    elif what == "ocppcs":
        ocppcs(int(rest[0]))
    elif what == "backend":
        backend(int(rest[0]), rest[1] if len(rest) > 1 else "json")
    elif what == "mqttload":
        mqttload(int(rest[0]), int(rest[1]), float(rest[2]))
    else:
        raise SystemExit(f"unknown subcommand {what!r}")
