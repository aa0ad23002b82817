"""
The pieces the integration tests share: a real mosquitto, the real gateway run
by ``twistd``, a test backend on paho-mqtt, and charge points that are real
OCPP-J clients (the PyPI ``ocpp`` package over ``websockets``, or a raw
``websockets`` connection when a test needs to know the exact bytes).

Every wait is bounded; a timeout is an ``AssertionError`` that says what was
awaited and what arrived instead.  The fixtures are in ``conftest.py``.

The package is the one harness of the integration tests (and the soak):
this module the basics, :mod:`.support` brokers a test owns and restarts,
presence and counted answers, :mod:`.security` TLS brokers and gateways,
:mod:`.admin` the admin endpoint, :mod:`.rabbitmq` a RabbitMQ cluster.  Tests
import it as ``tests.integration.harness``; no test imports another.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import websockets
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[3]
_VENV_BIN = ROOT / ".venv" / "bin"
BIN = _VENV_BIN if (_VENV_BIN / "twistd").exists() else Path(sys.executable).parent
TWISTD = BIN / "twistd"
OCPPGW_PASSWD = BIN / "ocppgw-passwd"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

#: Bound on one whole async test body.
TEST_TIMEOUT = 30.0
#: Bound on one expected event (a message on the broker, a frame, a close).
WAIT = 8.0
#: Bound on starting or stopping a process.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def _port_share() -> range:
    """
    The ports :func:`free_port` hands out in this process: those below the
    kernel's ephemeral range (``ip_local_port_range``, from which every
    outgoing connection takes its source port, and ``bind`` to port 0 its
    port), from 20000, split evenly between the pytest-xdist workers.
    """
    try:
        lowest = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        lowest = 32768
    ports = range(20000, max(lowest, 20000 + 4096))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = len(ports) // max(count, 1)
    return ports[index * size : (index + 1) * size]


#: This process's ports (:func:`_port_share`) and the next one to try, from a
#: place of its own (two runs of one test do not begin on the same port).
_PORTS = _port_share()
_NEXT = [random.randrange(len(_PORTS))]


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now, and that no
    one else takes before the test's gateway or broker binds it: none of the
    thousands of connections the tests open takes it as its source port (it
    is below the ephemeral range), the other xdist workers pick from other
    ports, and this process hands each port once in a round of its share.
    (A port from ``bind(("127.0.0.1", 0))`` was taken by another connection
    before the gateway listened on it: "Address already in use" in CI.)
    """
    for _ in range(len(_PORTS)):
        port = _PORTS[_NEXT[0] % len(_PORTS)]
        _NEXT[0] += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {_PORTS}")


def accepts(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def read_log(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT)


# --- the broker ---


@dataclass
class Broker:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def log(self) -> str:
        return read_log(self.log_path)


def start_broker(directory: Path, persistent: bool = False, extra: Sequence[str] = ()) -> Broker:
    """
    A mosquitto on a free loopback port, accepting connections.  ``persistent``:
    it saves sessions, subscriptions and queued messages when stopped and loads
    them when started again, like a production broker restarted for maintenance.
    ``extra``: more lines for its configuration file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true"]
    if persistent:
        lines += ["persistence true", f"persistence_location {directory}/"]
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to its own user, which cannot
            # write its database into the test's private directory.
            lines.append("user root")
    else:
        lines.append("persistence false")
    lines += extra
    (directory / "mosquitto.conf").write_text("\n".join(lines) + "\n")
    return launch_broker(directory, port)


def launch_broker(directory: Path, port: int) -> Broker:
    """mosquitto with ``directory``/mosquitto.conf, once it accepts on ``port``."""
    log_path = directory / "mosquitto.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(directory / "mosquitto.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    broker = Broker(port, proc, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while not accepts(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise AssertionError(f"mosquitto did not start on port {port}:\n{broker.log()}")
        time.sleep(0.02)
    return broker


# --- the gateway ---


Sections = dict[str, dict[str, str]]


@dataclass
class Gateway:
    """One ``twistd ocppgw`` process."""

    name: str
    port: int
    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def url(self, identity: str, path: str = "/ocpp") -> str:
        """The WebSocket URL of charge point ``identity`` (already percent-encoded)."""
        return f"ws://127.0.0.1:{self.port}{path}/{identity}"

    def log(self) -> str:
        return read_log(self.log_path)

    def wait_log(self, text: str, timeout: float = WAIT) -> None:
        """Block until ``text`` is in the log."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the gateway log:\n{self.log()}")
            time.sleep(0.05)

    def rss_kb(self) -> int:
        """The gateway process's resident set size, from /proc."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def render_ini(sections: Sections) -> str:
    lines = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value}" for key, value in keys.items())
        lines.append("")
    return "\n".join(lines)


def start_gateway(
    directory: Path,
    broker: Broker,
    extra: Sections | None = None,
    new_session: bool = False,
    mqtt_connected: bool = True,
) -> Gateway:
    """
    The gateway with a WebSocket listener on a free loopback port and the
    sections of ``extra`` merged over the defaults; returns once the listener
    accepts connections and (unless ``mqtt_connected`` is false) the log says
    "MQTT connected".  ``new_session``: in a session and process group of its
    own, like a job in a terminal.
    """
    port = free_port()
    name = f"it-{uuid.uuid4().hex[:12]}"
    sections: Sections = {
        # The journal in the test's directory, not the machine's state directory.
        "gateway": {"id": name, "journal": str(directory / "journal")},
        "listener:ws": {"endpoint": f"tcp:{port}:interface=127.0.0.1"},
        "mqtt": {"broker": broker.url},
        # Many gateways run at once: the admin API only where a test asks for it.
        "admin": {"endpoint": ""},
    }
    for section, keys in (extra or {}).items():
        sections.setdefault(section, {}).update(keys)
    return launch_gateway(
        directory, render_ini(sections), port, name, mqtt_connected, new_session
    )


def launch_gateway(
    directory: Path,
    ini: str,
    port: int,
    name: str,
    mqtt_connected: bool = True,
    new_session: bool = False,
) -> Gateway:
    """
    ``twistd ocppgw`` on the INI text ``ini`` (gateway id ``name``), whose
    first listener is on ``port``; returns once it accepts connections there
    and (unless ``mqtt_connected`` is false) the log says "MQTT connected".
    """
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "ocppgw.ini"
    config_path.write_text(ini, encoding="utf-8")
    gw = Gateway(name, port, config_path, directory / "gateway.log")
    with open(gw.log_path, "wb") as log:
        gw.proc = subprocess.Popen(
            [str(TWISTD), "-n", "--pidfile=", "ocppgw", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=new_session,
        )
    deadline = time.monotonic() + START_TIMEOUT
    # "starting on PORT": the listener is ours, not another process that took the free port.
    while not (
        ("MQTT connected" in (text := gw.log()) or not mqtt_connected)
        and f"starting on {port}" in text
        and accepts(port)
    ):
        if gw.proc.poll() is not None or time.monotonic() > deadline:
            gw.stop()
            raise AssertionError(
                f"gateway did not start (exit status {gw.proc.returncode}); "
                f"config:\n{ini}\nlog:\n{gw.log()}"
            )
        time.sleep(0.05)
    return gw


def wait_log(gw: Gateway, pattern: str, count: int, timeout: float = WAIT) -> list[str]:
    """Block until ``pattern`` matches ``count`` times in the gateway log."""
    deadline = time.monotonic() + timeout
    while len(found := re.findall(pattern, gw.log())) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not {count} times in the log:\n{gw.log()}")
        time.sleep(0.05)
    return found


# --- the test backend ---


def topic_value(value: str) -> str:
    """``value`` as the gateway puts it in a topic (etc/ocppgw.ini: / + # % NUL encoded)."""
    return "".join(f"%{ord(c):02X}" if c in "/+#%\0" else c for c in value)


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool
    arrived: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        """The payload as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.payload)
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"Msg({self.topic!r}, {self.payload[:300]!r})"


Answerer = Callable[[dict[str, Any]], dict[str, Any]]


class Backend:
    """
    A CSMS stand-in on paho-mqtt: subscribed to ``#``, it records every
    message, publishes, and can answer charge point CALLs by Action.
    """

    #: Seconds of MQTT keepalive.
    keepalive = 30
    #: The QoS of its subscription to ``#`` (2: no copy after a lost PUBACK).
    subscribe_qos = 1

    def __init__(self, broker: Broker, persistent: bool = False) -> None:
        """``persistent``: a session the broker keeps (clean session off)."""
        self._lock = threading.Lock()
        self._messages: list[Msg] = []
        self._answerers: dict[str, tuple[Answerer, str | None]] = {}
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.errors: list[str] = []
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"it-backend-{uuid.uuid4().hex[:12]}",
            protocol=paho.MQTTv311,
            clean_session=not persistent,
        )
        self._prepare(self.client)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=self.keepalive)
        self.client.loop_start()
        if not (self._connected.wait(WAIT) and self._subscribed.wait(WAIT)):
            self.close()
            raise AssertionError(f"test backend could not subscribe to #:\n{broker.log()}")

    def _prepare(self, client: paho.Client) -> None:
        """Settings of the paho client before it connects (none here)."""

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # paho thread

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if not reason.is_failure:
            self._connected.set()
            client.subscribe("#", qos=self.subscribe_qos)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        msg = Msg(message.topic, bytes(message.payload), bool(message.retain))
        with self._lock:
            self._messages.append(msg)
        try:
            self._maybe_answer(msg)
        except Exception as e:  # recorded: a failing test shows it
            self.errors.append(f"answering {msg!r} failed: {e!r}")

    def _maybe_answer(self, msg: Msg) -> None:
        if msg.topic.startswith("ocpp/cs/") or msg.retain:
            return  # our own downstream messages
        env = msg.json()
        if not isinstance(env, dict) or env.get("MessageTypeId") != 2:
            return
        found = self._answerers.get(env.get("Action"))  # type: ignore[arg-type]
        if found is None:
            return
        answerer, only = found
        cid = env.get("ChargePointId")
        if not isinstance(cid, str) or (only is not None and cid != only):
            return
        self.publish(
            f"ocpp/cs/{topic_value(cid)}/Reply/{env['Action']}",
            {"MessageTypeId": 3, "UniqueId": env["UniqueId"], "Payload": answerer(env)},
            wait=False,  # this is paho's network thread: the PUBACK cannot arrive meanwhile
        )

    # test side

    def answer(
        self, action: str, payload: Answerer | dict[str, Any], cid: str | None = None
    ) -> None:
        """
        Answer every JSON CALL envelope of ``action`` (from charge point
        ``cid``, or any) with a CALLRESULT envelope on
        ``ocpp/cs/<cid>/Reply/<action>``; ``payload`` is the result payload,
        or a function of the CALL envelope that returns it.
        """
        fn: Answerer = payload if callable(payload) else (lambda env, p=payload: p)
        self._answerers[action] = (fn, cid)

    def publish(
        self, topic: str, payload: dict[str, Any] | list[Any] | bytes | str, wait: bool = True
    ) -> None:
        """Publish at QoS 1 (dicts and lists as compact JSON); ``wait`` for the PUBACK."""
        if isinstance(payload, dict | list):
            payload = json.dumps(payload, separators=(",", ":"))
        info = self.client.publish(topic, payload, qos=1)
        if wait:
            info.wait_for_publish(WAIT)
            assert info.is_published(), f"the broker did not acknowledge the publish on {topic}"

    def messages(self, predicate: Callable[[Msg], bool] = lambda m: True) -> list[Msg]:
        with self._lock:
            return [m for m in self._messages if predicate(m)]

    def about(self, identity: str) -> list[Msg]:
        """
        Every message published since the backend subscribed whose topic or
        payload names charge point ``identity`` (retained ones from before: not).
        """
        encoded = topic_value(identity)

        def names(m: Msg) -> bool:
            if m.retain:
                return False
            if encoded in m.topic.split("/"):
                return True
            env = m.json()
            return isinstance(env, dict) and env.get("ChargePointId") == identity

        return self.messages(names)

    def describe(self, last: int = 25) -> str:
        msgs = self.messages()
        lines = [repr(m) for m in msgs[-last:]]
        errors = [f"backend error: {e}" for e in self.errors]
        return f"{len(msgs)} message(s) on the broker, the last {len(lines)}:\n" + "\n".join(
            lines + errors
        )

    async def wait_for(
        self, predicate: Callable[[Msg], bool], what: str, timeout: float = WAIT
    ) -> Msg:
        """The first recorded message matching ``predicate``, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(predicate)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no message {what} within {timeout:g} s; {self.describe()}")
            await asyncio.sleep(0.02)

    async def envelope(self, topic: str, timeout: float = WAIT, **fields: Any) -> dict[str, Any]:
        """The first JSON envelope on ``topic`` whose fields include ``fields``."""

        def match(m: Msg) -> bool:
            env = m.json()
            return (
                m.topic == topic
                and isinstance(env, dict)
                and all(env.get(k) == v for k, v in fields.items())
            )

        msg = await self.wait_for(match, f"on {topic} with {fields}", timeout)
        env = msg.json()
        assert isinstance(env, dict)
        return env


# --- charge points ---


class RecordingConnection:
    """A ``websockets`` connection that remembers every text frame both ways."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.sent: list[str] = []
        self.received: list[str] = []

    async def send(self, message: str) -> None:
        self.sent.append(message)
        await self.ws.send(message)

    async def recv(self) -> str | bytes:
        message = await self.ws.recv()
        if isinstance(message, str):
            self.received.append(message)
        return message

    def received_for(self, unique_id: str) -> list[Any]:
        """The frame the charge point received with message id ``unique_id``."""
        for text in self.received:
            frame = json.loads(text)
            if frame[1] == unique_id:
                return frame  # type: ignore[no-any-return]
        raise AssertionError(f"no frame with id {unique_id!r} received; got {self.received}")

    def sent_for(self, unique_id: str) -> list[Any]:
        for text in self.sent:
            frame = json.loads(text)
            if frame[1] == unique_id:
                return frame  # type: ignore[no-any-return]
        raise AssertionError(f"no frame with id {unique_id!r} sent; got {self.sent}")


def connect(url: str, subprotocols: list[str] | None, **kw: Any) -> Any:
    """``websockets.connect`` with bounded open and close handshakes."""
    return websockets.connect(
        url,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        open_timeout=WAIT,
        close_timeout=2,
        ping_interval=None,
        proxy=None,
        **kw,
    )


@contextlib.asynccontextmanager
async def charge_point(
    cls: type[Any], url: str, identity: str, version: str, **kw: Any
) -> AsyncIterator[Any]:
    """
    A started ``ocpp`` ChargePoint of class ``cls`` connected to ``url``
    offering ``version``; its ``.conn`` is the :class:`RecordingConnection`.
    """
    async with connect(url, [version], **kw) as ws:
        assert ws.subprotocol == version, f"negotiated {ws.subprotocol!r}, not {version!r}"
        conn = RecordingConnection(ws)
        cp = cls(identity, conn, response_timeout=WAIT)
        cp.conn = conn
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task


async def recv_frame(ws: ClientConnection, timeout: float = WAIT) -> list[Any]:
    """The next text frame, parsed as JSON."""
    try:
        text = await asyncio.wait_for(ws.recv(), timeout)
    except TimeoutError:
        raise AssertionError(f"no frame within {timeout:g} s") from None
    assert isinstance(text, str), f"expected a text frame, got {text!r}"
    return json.loads(text)  # type: ignore[no-any-return]


async def wait_closed(ws: ClientConnection, timeout: float = WAIT) -> ConnectionClosed:
    """Wait until the server closes ``ws``; the exception says how."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as e:
        return e
    except TimeoutError:
        raise AssertionError(
            f"the gateway did not close the connection within {timeout:g} s"
        ) from None
    raise AssertionError("unreachable")


def basic_auth(username: bytes, password: bytes) -> dict[str, str]:
    """An HTTP Basic ``Authorization`` header of raw bytes (RFC 7617)."""
    return {"Authorization": "Basic " + base64.b64encode(username + b":" + password).decode()}


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body with ``asyncio.run``, bounded by :data:`TEST_TIMEOUT`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def bounded() -> None:
            await asyncio.wait_for(fn(*args, **kwargs), TEST_TIMEOUT)

        asyncio.run(bounded())

    return wrapper


async def settle(seconds: float = 0.3) -> None:
    """Give the gateway and broker time to deliver what they would have delivered."""
    await asyncio.sleep(seconds)
