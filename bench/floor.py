"""
The floor: the least a Twisted WebSocket <-> MQTT bridge does per CALL.

Not a gateway, and not for use: a reference for ``make bench``, to tell the
cost of the wire work itself from the cost of the gateway's rules.  Per CALL
it does what the gateway's wire work is, on the same reactor
(:class:`ocppgw.loop.GatewayReactor`):

- read the WebSocket frame, unmask it, ``json.loads`` it;
- check the payload with a compiled jsonschema-rs validator;
- ``json.dumps`` the gateway's envelope fields and publish them at QoS 1 on
  ``ocpp/cp/<cid>/<action>``, keeping the packet id until its PUBACK;
- read the backend's PUBLISH of ``ocpp/cs/<cid>/Reply/<action>``, PUBACK it,
  ``json.loads`` the envelope, check the answer's payload, and send the
  CALLRESULT frame.

And nothing else: no handshake checks (any path, ``ocpp1.6`` always), no
error paths (a bad frame is dropped), no one-CALL-in-flight rule, no
timeouts, rate limit, records, metrics, presence or reconnection.

    python bench/floor.py PORT MQTTPORT
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ocppgw import loop

loop.install()

import jsonschema_rs  # noqa: E402
import ocpp  # noqa: E402
from servers import _field, _packet, split_packets  # noqa: E402  (bench/, beside this file)
from twisted.internet import protocol, reactor  # noqa: E402

from ocppgw.ocpp.timestamps import rfc3339  # noqa: E402

_ACTIONS = ("MeterValues", "StatusNotification", "Heartbeat", "BootNotification")
_SCHEMAS = Path(os.path.dirname(ocpp.__file__)) / "v16" / "schemas"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


def _check(name: str) -> Any:
    schema = json.loads((_SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))
    schema.pop("$schema", None)
    return jsonschema_rs.validator_for(schema).is_valid


_REQUEST = {a: _check(a) for a in _ACTIONS}
_RESPONSE = {a: _check(f"{a}Response") for a in _ACTIONS}
_decode = json.JSONDecoder().decode
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_charge_points: dict[str, ChargePoint] = {}


class Broker(protocol.Protocol):
    """MQTT 3.1.1: CONNECT, one SUBSCRIBE, QoS 1 PUBLISH both ways with their PUBACKs."""

    def __init__(self) -> None:
        self.buffer = b""
        self.mid = 0
        self.unacknowledged: set[int] = set()

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
        # CONNECT (§3.1): level 4, clean session, no keepalive; one SUBSCRIBE.
        self.transport.write(
            _packet(0x10, _field("MQTT") + b"\x04\x02\x00\x00" + _field("bench-floor"))
        )
        self.transport.write(_packet(0x82, b"\x00\x01" + _field("ocpp/cs/+/Reply/+") + b"\x01"))

    def publish(self, topic: str, payload: bytes) -> None:
        self.mid = self.mid % 65535 + 1
        self.transport.write(_packet(0x32, _field(topic) + self.mid.to_bytes(2, "big") + payload))
        self.unacknowledged.add(self.mid)

    def dataReceived(self, data: bytes) -> None:
        packets, self.buffer = split_packets(self.buffer + data if self.buffer else data)
        acks = []
        for first, body in packets:
            if first >> 4 == 4:  # PUBACK
                self.unacknowledged.discard(int.from_bytes(body[:2], "big"))
            elif first >> 4 == 3:  # PUBLISH
                n = int.from_bytes(body[:2], "big")
                topic, rest = body[2 : 2 + n].decode(), body[2 + n :]
                if (first >> 1) & 3:
                    acks.append(b"\x40\x02" + rest[:2])
                    rest = rest[2:]
                _, _, cid, _, action = topic.split("/")
                envelope = _decode(rest.decode())
                cp = _charge_points.get(cid)
                if cp is not None and _RESPONSE[action](envelope["Payload"]):
                    cp.send(_encode([3, envelope["UniqueId"], envelope["Payload"]]).encode())
        if acks:
            self.transport.write(b"".join(acks))


broker: Broker | None = None


class ChargePoint(protocol.Protocol):
    """One WebSocket connection: the upgrade, then masked text frames."""

    def __init__(self) -> None:
        self.buffer = b""
        self.open = False
        self.identity = ""

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        if not self.open:
            if b"\r\n\r\n" not in buf:
                self.buffer = buf
                return
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            self.identity = lines[0].split()[1].rsplit(b"/", 1)[1].decode()
            key = next(
                line.split(b":", 1)[1].strip()
                for line in lines
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n"
                b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
            )
            self.open = True
            _charge_points[self.identity] = self
        while len(buf) >= 6:
            n, start = buf[1] & 0x7F, 6
            if n == 126:
                n, start = int.from_bytes(buf[2:4], "big"), 8
            if len(buf) < start + n:
                break
            mask, payload = buf[start - 4 : start], buf[start : start + n]
            key = (mask * ((n + 3) // 4))[:n]
            text = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
                n, "little"
            )
            buf = buf[start + n :]
            self.frame(text)
        self.buffer = buf

    def frame(self, text: bytes) -> None:
        message = _decode(text.decode())
        check = _REQUEST.get(message[2])
        if message[0] != 2 or check is None or not check(message[3]) or broker is None:
            return
        envelope = {
            "MessageTypeId": 2,
            "UniqueId": message[1],
            "Action": message[2],
            "Payload": message[3],
            "Protocol": "ocpp1.6",
            "ChargePointId": self.identity,
            "Timestamp": rfc3339(time.time()),
        }
        broker.publish(f"ocpp/cp/{self.identity}/{message[2]}", _encode(envelope).encode())

    def send(self, text: bytes) -> None:
        n = len(text)
        head = bytes((0x81, n)) if n < 126 else b"\x81\x7e" + n.to_bytes(2, "big")
        self.transport.write(head + text)

    def connectionLost(self, reason: Any = None) -> None:
        if _charge_points.get(self.identity) is self:
            del _charge_points[self.identity]


def main(port: int, mqtt_port: int) -> None:
    def connected(p: Broker) -> None:
        global broker
        broker = p
        server = protocol.ServerFactory()
        server.protocol = ChargePoint
        reactor.listenTCP(port, server, backlog=4096, interface="127.0.0.1")  # type: ignore[attr-defined]

    from twisted.internet.endpoints import TCP4ClientEndpoint

    client = protocol.ClientFactory()
    client.protocol = Broker
    TCP4ClientEndpoint(reactor, "127.0.0.1", mqtt_port).connect(client).addCallback(connected)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
