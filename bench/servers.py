"""
The baselines and helpers of the benchmark, one per subcommand:

- ``echo PORT``: a plain Autobahn (Twisted) WebSocket echo server, the
  stack's ceiling: every text frame is sent back as it came;
- ``ocppcs PORT``: a central system written on the PyPI ``ocpp`` package
  (over ``websockets``) that answers MeterValues, StatusNotification and
  Heartbeat itself, as a Python team would write one;
- ``backend MQTTPORT [json|protobuf]``: the cheap backend behind the gateway:
  it answers every charge point CALL on ``ocpp/cp/+/+`` with a CALLRESULT on
  ``ocpp/cs/<cid>/Reply/<action>`` at QoS 1.  It speaks MQTT 3.1.1 over a
  plain socket (:class:`RawMQTT`: every packet that arrived handled in one
  pass, the PUBACKs and answers sent in one ``send``), because paho's own
  loop cost about 150 us a message and, at one charge point, that is in the
  path of every round trip measured;
- ``pahobackend MQTTPORT``: the same answers through paho, and every
  ``bench/req/N`` echoed on ``bench/rep/N``: the far end of the broker
  baseline;
- ``mqttload MQTTPORT N SECONDS``: the broker baseline's load, N requests in
  flight, paho -> mosquitto -> paho backend -> mosquitto -> paho at QoS 1;
- ``tapreader MQTTPORT``: forward mode's tap consumer (issue 20): reads
  ``ocpp/tap/#`` at QoS 1 and acknowledges each message, as cheaply as the
  backend (a tap nobody reads is not what operators run, and mosquitto's
  PUBACK for a topic nobody subscribes to carries a reason code).

Each runs until killed, or (mqttload) for its bounded time.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable, Iterator
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
    # bench/city.py's transactions.
    "StartTransaction": b'{"transactionId":1,"idTagInfo":{"status":"Accepted"}}',
    "StopTransaction": b"{}",
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


def _answer_for(codec: str) -> Callable[[str, bytes], tuple[str, bytes] | None]:
    """(topic, payload) of a CALL envelope -> (topic, payload) of its CALLRESULT, or None."""
    proto: Any = None
    if codec == "protobuf":
        # As cheap as the JSON answers: read the wrapper's UniqueId only, and
        # append the rest of the answer, serialized once (a protobuf parser
        # reads two serialized messages one after the other as one message
        # with the fields of both).
        sys.path.insert(0, ".")
        from ocppgw.wire.protobuf import message_pb2
        from ocppgw.wire.protobuf.convert import payload_to_proto

        wrapper = message_pb2.Message
        tails = {}
        for action, text in _ANSWERS.items():
            data, encoding = payload_to_proto("ocpp1.6", action, False, json.loads(text))
            tails[action] = wrapper(Payload=data, PayloadEncoding=int(encoding)).SerializeToString()
        proto = (wrapper, tails)

    def answer(topic: str, payload: bytes) -> tuple[str, bytes] | None:
        _, _, cid, action = topic.split("/", 3)
        if cid == "Reply" or cid == "Error":
            return None
        if proto is None:
            unique_id = json.loads(payload)["UniqueId"]
            body = b'{"MessageTypeId":3,"UniqueId":"%s","Payload":%s}' % (
                unique_id.encode(),
                _ANSWERS[action],
            )
        else:
            wrapper, tails = proto
            unique_id = wrapper.FromString(payload).UniqueId
            body = wrapper(MessageTypeId=3, UniqueId=unique_id).SerializeToString() + tails[action]
        return f"ocpp/cs/{cid}/Reply/{action}", body

    return answer


def _packet(first: int, body: bytes) -> bytes:
    """An MQTT packet: fixed header byte, remaining length (varint), body."""
    size, length = len(body), bytearray()
    while True:
        size, digit = divmod(size, 128)
        length.append(digit | (0x80 if size else 0))
        if not size:
            return bytes([first]) + bytes(length) + body


def _field(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


class RawMQTT:
    """Just enough MQTT 3.1.1 for the bench backend: subscribe, read PUBLISH, publish at QoS 1."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.mid = 0
        # CONNECT: protocol level 4, clean session, no keepalive (§3.1).
        self.sock.sendall(_packet(0x10, _field("MQTT") + b"\x04\x02\x00\x00" + _field(client_id)))
        connack = next(self.batches())
        if not connack or connack[0][0] >> 4 != 2 or connack[0][1][1] != 0:
            raise SystemExit(f"broker refused the bench backend: {connack!r}")

    def subscribe(self, *filters: str) -> None:
        body = b"\x00\x01" + b"".join(_field(f) + b"\x01" for f in filters)
        self.sock.sendall(_packet(0x82, body))

    def publish(self, topic: str, payload: bytes) -> bytes:
        """The bytes of a QoS 1 PUBLISH (the broker's PUBACK is not waited for)."""
        self.mid = self.mid % 65535 + 1
        return _packet(0x32, _field(topic) + self.mid.to_bytes(2, "big") + payload)

    def batches(self) -> Iterator[list[tuple[int, bytes]]]:
        """(first byte, body) of the whole packets of each read; ends when the broker closes."""
        while True:
            data = self.sock.recv(256 * 1024)
            if not data:
                return
            batch, self.buffer = split_packets(self.buffer + data if self.buffer else data)
            yield batch


def split_packets(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(first byte, body) of each whole MQTT packet at the start of ``buffer``, and the rest."""
    pos, end, batch = 0, len(buffer), []
    while pos + 2 <= end:
        size, shift, i = 0, 0, pos + 1
        while i < end:
            byte = buffer[i]
            size |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        else:
            break  # the length is not all here
        if i + size > end:
            break
        batch.append((buffer[pos], buffer[i : i + size]))
        pos = i + size
    return batch, buffer[pos:]


def backend(port: int, codec: str) -> None:
    mqtt = RawMQTT(port, f"bench-backend-{port}")
    mqtt.subscribe("ocpp/cp/+/+")
    answer = _answer_for(codec)
    for batch in mqtt.batches():
        out: list[bytes] = []
        for first, body in batch:
            if first >> 4 != 3:
                continue  # SUBACK, and the broker's PUBACKs of our answers
            n = int.from_bytes(body[:2], "big")
            topic = body[2 : 2 + n].decode()
            rest = body[2 + n :]
            if (first >> 1) & 3:
                out.append(b"\x40\x02" + rest[:2])  # PUBACK (§3.4)
                rest = rest[2:]
            reply = answer(topic, rest)
            if reply is not None:
                out.append(mqtt.publish(*reply))
        if out:
            mqtt.sock.sendall(b"".join(out))


def tapreader(port: int) -> None:
    mqtt = RawMQTT(port, f"bench-tap-{port}")
    mqtt.subscribe("ocpp/tap/#")
    for batch in mqtt.batches():
        out = []
        for first, body in batch:
            if first >> 4 == 3 and (first >> 1) & 3:
                n = int.from_bytes(body[:2], "big")
                out.append(b"\x40\x02" + body[2 + n : 4 + n])  # PUBACK (§3.4)
        if out:
            mqtt.sock.sendall(b"".join(out))


def pahobackend(port: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-backend-{port}")
    client.max_inflight_messages_set(65535)
    client.max_queued_messages_set(0)
    answer = _answer_for("json")

    def on_connect(c: paho.Client, *a: Any) -> None:
        c.subscribe([("ocpp/cp/+/+", 1), ("bench/req/+", 1)])

    def on_message(c: paho.Client, userdata: Any, m: paho.MQTTMessage) -> None:
        topic = m.topic
        if topic.startswith("bench/req/"):
            c.publish("bench/rep/" + topic[10:], m.payload, qos=1)
            return
        reply = answer(topic, bytes(m.payload))
        if reply is not None:
            c.publish(*reply, qos=1)

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
    elif what == "tapreader":
        tapreader(int(rest[0]))
    elif what == "pahobackend":
        pahobackend(int(rest[0]))
    elif what == "mqttload":
        mqttload(int(rest[0]), int(rest[1]), float(rest[2]))
    else:
        raise SystemExit(f"unknown subcommand {what!r}")
