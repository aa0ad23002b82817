"""
On top of :mod:`tests.integration.harness`: a mosquitto that a test owns
and can stop and restart on the same port, a gateway on such a broker, a
test backend that reconnects quickly (optionally with a persistent
session), presence waits, a raw WebSocket handshake done by hand, and
downstream CALLs whose answers are counted.

Every wait is bounded, like the harness's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import ClientConnection

from tests.integration.harness import (
    STOP_TIMEOUT,
    WAIT,
    Backend,
    Broker,
    Gateway,
    Msg,
    Sections,
    accepts,
    connect,
    launch_broker,
    start_broker,
    start_gateway,
    stop_process,
    topic_value,
)

#: The log lines that mean the gateway hit a bug (as in conftest.py).
BUG_MARKERS = ("Traceback (most recent call last)", "Unhandled Error")

NOW = "2026-01-02T03:04:05.000Z"


class PrintingProcess:
    """A process whose combined stdout and stderr is read line by line as it runs."""

    def __init__(
        self, argv: list[str], cwd: Path, env: dict[str, str] | None = None, group: bool = False
    ) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            text=True,
            start_new_session=group,  # a process group of its own, as a terminal's job
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def output(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def wait_line(self, prefix: str, timeout: float = WAIT) -> str:
        """The first line of output starting with ``prefix``, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = [line for line in self.output() if line.startswith(prefix)]
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"the process printed no {prefix!r}: {self.output()}")


# --- a broker the test owns ---


def start_own_broker(
    directory: Path, persistent: bool = False, extra: Sequence[str] = ()
) -> Broker:
    """A broker this test owns (see :func:`harness.start_broker`)."""
    return start_broker(directory, persistent, extra)


def restart_broker(broker: Broker) -> None:
    """Start ``broker`` again after a stop: same port, same configuration, same log."""
    assert broker.proc.poll() is not None, "restart_broker: the broker is still running"
    broker.proc = launch_broker(broker.log_path.parent, broker.port).proc


def stop_broker(broker: Broker) -> None:
    """Stop ``broker`` (SIGTERM, bounded) and make sure its port is closed."""
    stop_process(broker.proc)
    assert not accepts(broker.port), f"port {broker.port} still accepts after the broker stopped"


@contextlib.contextmanager
def own_gateway(
    directory: Path, broker: Broker, extra: Sections | None = None
) -> Iterator[Gateway]:
    """
    A gateway on ``broker`` (not the session broker of ``conftest``), stopped
    on exit; like the ``gateway`` fixture, a bug marker in its log fails.
    """
    gw = start_gateway(directory, broker, extra)
    try:
        yield gw
    except BaseException:
        print(f"--- gateway {gw.name} log ---\n{gw.log()}")
        raise
    finally:
        gw.stop()
    log = gw.log()
    assert not any(marker in log for marker in BUG_MARKERS), (
        f"gateway {gw.name} logged an internal error:\n{log}"
    )


# --- a backend that survives broker restarts ---


class ReconnectingBackend(Backend):
    """
    The harness backend, reconnecting within half a second of the broker
    coming back (paho's ``loop_start`` thread; ``Backend._on_connect``
    subscribes to ``#`` again on every connect).  ``persistent``: a session
    that the broker keeps (clean session off, a fixed client id), so that
    messages published while it reconnects are queued for it.
    """

    keepalive = 5

    def _prepare(self, client: paho.Client) -> None:
        client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]

    def is_connected(self) -> bool:
        return bool(self.client.is_connected())


# --- presence ---


def presence_topic(cid: str) -> str:
    return f"ocpp/presence/{topic_value(cid)}"


async def presence(
    backend: Backend,
    cid: str,
    online: bool,
    gateway: str | None = None,
    timeout: float = WAIT,
    after: float = 0.0,
) -> Msg:
    """
    The first live (not retained) presence message of ``cid`` saying
    ``online`` (from ``gateway``, if given) that arrived after ``after``
    (a ``time.monotonic()``).
    """

    def match(m: Msg) -> bool:
        body = m.json()
        return (
            m.topic == presence_topic(cid)
            and not m.retain
            and m.arrived >= after
            and isinstance(body, dict)
            and body.get("Online") is online
            and (gateway is None or body.get("Gateway") == gateway)
        )

    state = "online" if online else "offline"
    return await backend.wait_for(match, f"saying {cid} is {state} ({gateway})", timeout)


def retained(broker: Broker, topic: str, timeout: float = WAIT) -> Any:
    """
    The retained message on ``topic`` as a fresh subscriber gets it (parsed
    JSON), or None when there is none.
    """
    got: list[bytes] = []
    done = threading.Event()
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"it-retained-{uuid.uuid4().hex[:12]}",
        protocol=paho.MQTTv311,
    )

    def on_connect(c: paho.Client, *args: Any) -> None:
        c.subscribe(topic, qos=1)

    def on_subscribe(c: paho.Client, *args: Any) -> None:
        # The broker sends the retained messages right after the SUBACK.
        threading.Timer(0.3, done.set).start()

    def on_message(c: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.retain:
            got.append(bytes(message.payload))
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", broker.port, keepalive=30)
    client.loop_start()
    try:
        assert done.wait(timeout), f"could not read the retained message on {topic}"
    finally:
        client.disconnect()
        client.loop_stop()
    return json.loads(got[-1]) if got else None


def parse_time(text: str) -> datetime:
    """An RFC 3339 UTC time as the gateway writes it (``...Z``)."""
    assert isinstance(text, str) and text.endswith("Z"), f"not an RFC 3339 UTC time: {text!r}"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds_ago(text: str) -> float:
    return (datetime.now(UTC) - parse_time(text)).total_seconds()


# --- processes ---


def kill_embedded_broker(mqtt_port: int) -> None:
    """
    SIGKILL the embedded mosquitto listening on ``mqtt_port``, if it still runs: it is
    in a process group of its own, so a test that kills its gateway's group on failure
    would leave it behind.
    """
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().split(b"\0")
            if not argv[0].endswith(b"mosquitto") or b"-c" not in argv:
                continue
            conf = Path(argv[argv.index(b"-c") + 1].decode())
            if f"listener {mqtt_port} " in conf.read_text():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)


async def exit_status(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """The exit status of ``proc`` once it exits, waiting up to ``timeout`` s."""
    try:
        return await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the gateway did not exit within {timeout:g} s") from None


# --- backend CALLs ---


def clear_cache(cid: str, unique_id: str) -> tuple[str, dict[str, Any]]:
    """The topic and envelope of a backend ClearCache CALL for ``cid``."""
    return f"ocpp/cs/{topic_value(cid)}/Call/ClearCache", {
        "MessageTypeId": 2,
        "UniqueId": unique_id,
        "Action": "ClearCache",
        "Payload": {},
    }


# --- raw charge points ---


async def no_frame(ws: ClientConnection, seconds: float = 0.7) -> None:
    """Assert that ``ws`` receives no frame for ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            frame = await ws.recv()
    except TimeoutError:
        return
    raise AssertionError(f"expected no frame, got {frame!r}")


async def raw_handshake(
    port: int, cid: str, version: str = "ocpp1.6"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """
    A WebSocket upgrade done by hand on a plain TCP connection; returns the
    streams after the 101 response.  The caller then never answers pings.
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
    writer.write(
        (
            f"GET /ocpp/{cid} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {version}\r\n"
            "\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 101"), f"upgrade refused: {head!r}"
    return reader, writer


# --- downstream CALLs and their answers, counted ---


@contextlib.asynccontextmanager
async def answering(url: str) -> AsyncIterator[Any]:
    """A 1.6 charge point that answers every CALL Accepted until its connection closes."""
    ws = await connect(url, ["ocpp1.6"])

    async def answer() -> None:
        with contextlib.suppress(Exception):
            async for text in ws:
                frame = json.loads(text)
                if frame[0] == 2:
                    await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))

    task = asyncio.create_task(answer())
    try:
        yield ws
    finally:
        await asyncio.wait_for(ws.close(), 5)
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def command(backend: Backend, cid: str, unique_id: str) -> None:
    backend.publish(
        f"ocpp/cs/{cid}/Call/ClearCache",
        {"MessageTypeId": 2, "UniqueId": unique_id, "Action": "ClearCache", "Payload": {}},
        wait=False,
    )


def answers(backend: Backend, cid: str) -> dict[str, list[str]]:
    """
    Every answer envelope about ``cid``'s downstream CALLs: UniqueId -> kinds.
    A charge point's answer after its CALL was already answered Timeout or
    Shutdown is published marked ``"Late": true`` (docs/topics.md) and is
    not an answer of its own, as the soak's ledger counts it
    (tests/soak/ledger.py); an unmarked second answer still is.
    """
    found: dict[str, list[str]] = {}
    for m in backend.messages(
        lambda m: m.topic in (f"ocpp/cp/Reply/{cid}", f"ocpp/cp/Error/{cid}")
    ):
        env = m.json()
        if isinstance(env, dict) and env.get("Late") is not True:
            kind = env.get("ErrorCode") or "CALLRESULT"
            found.setdefault(str(env.get("UniqueId")), []).append(kind)
    return found


def exactly_once(backend: Backend, cid: str, sent: list[str]) -> Counter[str]:
    """Assert one answer per CALL sent; return how many of each kind."""
    got = answers(backend, cid)
    twice = {u: k for u, k in got.items() if len(k) > 1}
    none = [u for u in sent if u not in got]
    assert not twice and not none, (
        f"answered twice: {twice}; never answered: {none}; {backend.describe(40)}"
    )
    return Counter(k[0] for k in got.values())
