"""
For the security integration tests: a mosquitto (plain or
TLS), the real gateway run by ``twistd``, a test backend on paho that answers
Heartbeats, and raw or ``websockets`` charge points.

Every wait is bounded; every process started here is stopped by its fixture.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from websockets.sync.client import ClientConnection, connect

from tests.integration import harness

# Re-exported: the security tests take these from here.
from tests.integration.harness import Broker as Broker
from tests.integration.harness import Gateway as Gateway
from tests.integration.harness import accepts as accepts
from tests.integration.harness import free_port as free_port

#: Stops a process the tests started (re-exported under its old name).
stop = harness.stop_process
WAIT = 10.0


def wait_for(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_broker(directory: Path, tls: tuple[Path, Path] | None = None) -> Broker:
    """The harness's mosquitto on a free loopback port; with ``tls`` (cert, key), TLS only."""
    extra = []
    if tls is not None:
        extra += [f"certfile {tls[0]}", f"keyfile {tls[1]}", "tls_version tlsv1.2"]
    if os.geteuid() == 0:
        # Started as root, mosquitto drops to "mosquitto", who cannot read pytest's tmp.
        extra.append("user root")
    return harness.start_broker(directory, extra=extra)


def start_gateway(directory: Path, ini: str, port: int, wait_mqtt: bool = True) -> Gateway:
    """``twistd ocppgw`` with the INI text ``ini`` whose first listener is on ``port``."""
    name = f"sec-{uuid.uuid4().hex[:10]}"
    # No admin API unless the test asks for one: its default TCP port is fixed,
    # and another gateway on this machine may hold it.
    admin = "" if "[admin]" in ini else "[admin]\nendpoint =\n"
    head = f"[gateway]\nid = {name}\njournal = {directory / 'journal'}\n"
    return harness.launch_gateway(directory, head + admin + ini, port, name, wait_mqtt)


@dataclass
class Backend:
    """A paho client on the broker: records everything, answers Heartbeats."""

    port: int
    tls: ssl.SSLContext | None = None
    host: str = "127.0.0.1"
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"be-{uuid.uuid4().hex}")
        if self.tls is not None:
            self.client.tls_set_context(self.tls)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(self.host, self.port)
        self.client.subscribe("#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(WAIT), "backend could not subscribe on mosquitto"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload)))
        parts = message.topic.split("/")
        if len(parts) == 4 and parts[:2] == ["ocpp", "cp"] and parts[3] == "Heartbeat":
            body = json.loads(message.payload)
            reply = {
                "MessageTypeId": 3,
                "UniqueId": body["UniqueId"],
                "Payload": {"currentTime": "2026-01-01T00:00:00Z"},
            }
            client.publish(f"ocpp/cs/{parts[2]}/Reply/Heartbeat", json.dumps(reply), qos=1)

    def topics(self, needle: str) -> list[str]:
        """Every topic received that contains ``needle``."""
        with self.lock:
            return [t for t, _ in self.messages if needle in t]

    def payloads(self, topic: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p in self.messages if t == topic and p]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def basic(identity: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def ws_connect(
    url: str,
    headers: dict[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    protocol: str = "ocpp1.6",
    **kw: Any,
) -> ClientConnection:
    """A websockets (sync) client speaking ``protocol``."""
    return connect(
        url,
        subprotocols=[protocol],  # type: ignore[list-item]
        additional_headers=headers or {},
        ssl=ssl_context,
        open_timeout=WAIT,
        close_timeout=2,
        legacy=True,
        **kw,
    )


def heartbeat(ws: ClientConnection, timeout: float = WAIT) -> Any:
    """One Heartbeat round trip through gateway, broker and backend; its payload."""
    uid = uuid.uuid4().hex[:20]
    ws.send(json.dumps([2, uid, "Heartbeat", {}]))
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame[0] == 3 and frame[1] == uid:
            return frame[2]


def raw_request(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    source: str | None = None,
    server_hostname: str = "localhost",
) -> bytes:
    """Send one upgrade request and return the response head (b'' if closed first)."""
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=WAIT, source_address=(source, 0) if source else None
    )
    try:
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname)
        lines = [
            f"GET {path} HTTP/1.1",
            "Host: localhost",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Protocol: ocpp1.6",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


def client_tls(
    ca: Path, cert: tuple[Path, Path] | None = None, ciphers: str | None = None
) -> ssl.SSLContext:
    """A client context trusting ``ca``, optionally with a client certificate."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    if ciphers is not None:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
    return ctx
