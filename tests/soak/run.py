"""
The soak's moving parts: mosquitto with persistence on, two ``twistd ocppgw``
instances, a paho backend, charge points on raw ``websockets`` connections
(1.6 and 2.0.1, in this one asyncio process), and the fault injector that
plays :func:`tests.soak.faults.schedule`.  Every process is stopped in a
``finally``; every wait is bounded; only free loopback ports.

What each side does:

- a charge point sends a DataTransfer CALL every 2-8 s (one in flight; the
  data names the charge point and the UniqueId), answers every CALL it gets
  (a DataTransfer result echoing the data), and after a drop reconnects to
  either instance;
- the backend answers every charge point CALL (echoing its data) and sends
  about five DataTransfer CALLs a second to random charge points, UniqueIds
  ``bk-<n>``, the data naming the charge point and the UniqueId, and one
  within 0.3 s of 30% of the charge points' (re)connections (racing the
  gateway's new subscription); a ``duplicate`` fault makes it publish a
  plain copy of the next few.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import websockets
from paho.mqtt.enums import CallbackAPIVersion
from websockets.exceptions import ConnectionClosed

from tests.integration.harness import (
    START_TIMEOUT,
    TWISTD,
    Broker,
    accepts,
    free_port,
    launch_broker,
    read_log,
    render_ini,
    start_broker,
    stop_process,
)
from tests.soak import ledger
from tests.soak.faults import Fault, schedule
from tests.soak.ledger import Event, RssSample

#: The soak INI's timings: short, so that settling is quick.
KEEPALIVE = 5  # [mqtt] keepalive (the least the gateway takes); a SIGSTOP of 1-2 x this
AWAITING_TIMEOUT = 5  # [upstream] and [dnstream] awaiting_timeout
OFFLINE_TTL = 5  # [dnstream] offline_ttl
SHUTDOWN_TIMEOUT = 3  # [gateway] shutdown_timeout
#: The quiet period after the faults: every timer above has run out by then.
SETTLE = 4 * max(AWAITING_TIMEOUT, OFFLINE_TTL)
COMMANDS_PER_SECOND = 5.0
#: The share of (re)connections followed by a command within 0.3 s.
CONNECT_COMMAND = 0.3
CALL_INTERVAL = (2.0, 8.0)
RSS_EVERY = 2.0


@dataclass
class Instance:
    name: str  # "a" or "b"
    port: int
    directory: Path
    config: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    lives: int = 0

    @property
    def gateway_id(self) -> str:
        return f"soak-{self.name}"

    def spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(TWISTD), "-n", "--pidfile=", "ocppgw", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        self.lives += 1


@dataclass
class ChargePoint:
    index: int
    cid: str
    version: str
    ws: Any = None
    calls: int = 0
    in_flight: str | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)


class Soak:
    def __init__(
        self,
        workdir: Path,
        seed: int,
        seconds: float,
        charge_points: int,
        settle: float = SETTLE,
        out: Any = print,
    ) -> None:
        self.workdir = workdir
        self.seed = seed
        self.seconds = seconds
        self.settle = settle
        self.print = out
        self.faults = schedule(seed, seconds, KEEPALIVE)
        self.rng = random.Random(seed ^ 0x5EED)  # the charge points' and backend's choices
        self.events: list[Event] = []
        self.samples: list[RssSample] = []
        self.t0 = time.monotonic()
        self.t0_wall = time.strftime("%H:%M:%S", time.gmtime())
        self.cps = [
            ChargePoint(i, f"soak{i:03d}", "ocpp1.6" if i % 2 == 0 else "ocpp2.0.1")
            for i in range(charge_points)
        ]
        self.by_cid = {cp.cid: cp for cp in self.cps}
        self.instances: dict[str, Instance] = {}
        self.broker: Broker | None = None
        # backend state (paho thread and asyncio thread)
        self.backend: paho.Client | None = None
        self.backend_lock = threading.Lock()
        self.seen: set[tuple[str, bytes]] = set()
        self.held: list[tuple[str, dict[str, Any]]] = []
        self.unacked: list[tuple[Any, str, str]] = []  # commands awaiting their PUBACK
        self.paused = False
        self.copies_left = 0
        self.copy_delay = 0.0
        self.next_command = 0
        self.other: Counter[str] = Counter()
        # phases
        self.calls_stop = False
        self.stopping = False

    # --- recording ---

    def rec(self, kind: str, cid: str = "", uid: str = "", code: str = "", note: str = "") -> None:
        self.events.append(Event(time.monotonic(), kind, cid, uid, code, note))

    def say(self, text: str) -> None:
        self.print(f"[soak {time.monotonic() - self.t0:7.1f}s] {text}", flush=True)

    # --- processes ---

    def start_processes(self) -> None:
        self.broker = start_broker(self.workdir / "mosquitto", persistent=True)
        self.rec("broker.start", note=f"pid {self.broker.proc.pid}")
        for name in ("a", "b"):
            directory = self.workdir / f"gw-{name}"
            directory.mkdir(parents=True, exist_ok=True)
            inst = Instance(
                name, free_port(), directory, directory / "ocppgw.ini", directory / "gateway.log"
            )
            sections = {
                "gateway": {
                    "id": inst.gateway_id,
                    "shutdown_timeout": str(SHUTDOWN_TIMEOUT),
                    # Every life of the instance keeps its journal here.
                    "journal": str(directory / "journal"),
                },
                "listener:ws": {"endpoint": f"tcp:{inst.port}:interface=127.0.0.1"},
                "mqtt": {
                    "broker": self.broker.url,
                    "keepalive": str(KEEPALIVE),
                    "reconnect_min": "0.2",
                    "reconnect_max": "2",
                },
                "upstream": {"awaiting_timeout": str(AWAITING_TIMEOUT)},
                "dnstream": {
                    "awaiting_timeout": str(AWAITING_TIMEOUT),
                    "offline_ttl": str(OFFLINE_TTL),
                },
                "admin": {"endpoint": ""},
            }
            inst.config.write_text(render_ini(sections), encoding="utf-8")
            inst.spawn()
            self.instances[name] = inst
            self._wait_started(inst)

    def _wait_started(self, inst: Instance) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        assert inst.proc is not None
        while not ("MQTT connected" in read_log(inst.log_path) and accepts(inst.port)):
            if inst.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"instance {inst.name} did not start:\n{read_log(inst.log_path)[-4000:]}"
                )
            time.sleep(0.05)
        self.rec("gw.start", inst.name, note=f"pid {inst.proc.pid}")

    async def _restart(self, inst: Instance) -> None:
        inst.spawn()
        assert inst.proc is not None
        self.rec("gw.start", inst.name, note=f"pid {inst.proc.pid} life {inst.lives}")
        deadline = time.monotonic() + START_TIMEOUT
        while not accepts(inst.port):
            if inst.proc.poll() is not None or time.monotonic() > deadline:
                self.rec("gw.exit", inst.name, code=str(inst.proc.poll()), note="start failed")
                return
            await asyncio.sleep(0.05)

    async def _wait_exit(self, inst: Instance, timeout: float) -> str:
        assert inst.proc is not None
        deadline = time.monotonic() + timeout
        while inst.proc.poll() is None:
            if time.monotonic() > deadline:
                inst.proc.kill()
                await asyncio.to_thread(inst.proc.wait, 10)
                return "hung (SIGKILLed)"
            await asyncio.sleep(0.05)
        return str(inst.proc.returncode)

    def stop_everything(self) -> list[str]:
        """Stop what is still running (final SIGTERM of the instances); what is left behind."""
        for inst in self.instances.values():
            if inst.proc is not None and inst.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    inst.proc.send_signal(signal.SIGCONT)
                stop_process(inst.proc)
                self.rec("gw.exit", inst.name, code=str(inst.proc.returncode), note="final")
        if self.backend is not None:
            self.backend.disconnect()
            self.backend.loop_stop()
        if self.broker is not None:
            stop_process(self.broker.proc)
        return left_behind(self.workdir, self._procs())

    def _procs(self) -> list[subprocess.Popen[bytes]]:
        procs = [i.proc for i in self.instances.values() if i.proc is not None]
        return procs + ([self.broker.proc] if self.broker else [])

    async def sample_rss(self) -> None:
        while not self.stopping:
            for inst in self.instances.values():
                if inst.proc is not None and inst.proc.poll() is None:
                    kib = rss_kib(inst.proc.pid)
                    if kib:
                        self.samples.append(
                            RssSample(time.monotonic(), inst.name, inst.proc.pid, kib)
                        )
            await asyncio.sleep(RSS_EVERY)

    # --- the backend (paho thread for receiving, asyncio thread for commands) ---

    def start_backend(self) -> None:
        assert self.broker is not None
        connected = threading.Event()
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"soak-backend-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311,
            clean_session=False,  # the broker queues what arrives while it reconnects
        )
        client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]

        def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
            if not reason.is_failure:
                c.subscribe("ocpp/cp/#", qos=1)
                # Who holds what, in the broker's order: the timeline of a
                # violation shows what the instances read of its identity.
                c.subscribe("ocpp/presence/#", qos=1)
                c.subscribe("ocpp/gateway/#", qos=1)
                self.rec("backend.connected")
                connected.set()

        client.on_connect = on_connect
        client.on_message = self._on_message
        client.connect("127.0.0.1", self.broker.port, keepalive=5)
        client.loop_start()
        self.backend = client
        if not connected.wait(START_TIMEOUT):
            raise AssertionError("the soak backend could not connect")
        time.sleep(0.3)  # the SUBACK

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        payload = bytes(message.payload)
        key = (message.topic, payload)
        with self.backend_lock:
            if key in self.seen:  # an MQTT redelivery of a message already read
                self.other["MQTT redeliveries to the backend"] += 1
                return
            self.seen.add(key)
        if message.topic.startswith(("ocpp/presence/", "ocpp/gateway/")):
            self._presence(message.topic, payload, bool(message.retain))
            return
        try:
            env = json.loads(payload)
        except ValueError:
            self.other["not JSON"] += 1
            return
        if not isinstance(env, dict):
            return
        parts = message.topic.split("/")
        uid = str(env.get("UniqueId"))
        mtype = env.get("MessageTypeId")
        if len(parts) >= 4 and parts[2] in ("Reply", "Error"):
            cid = str(env.get("ChargePointId", parts[3]))
            if uid.startswith("bk-") or mtype == 3:
                flags = []
                if env.get("Late"):
                    flags.append("late")
                if env.get("Duplicate"):
                    flags.append("duplicate")
                if mtype == 3:
                    data = (env.get("Payload") or {}).get("data")
                    if data != f"{cid}|{uid}":
                        flags.append("mismatch")
                code = "result" if mtype == 3 else str(env.get("ErrorCode"))
                self.rec("dn.answer", cid, uid, code, " ".join(flags))
            else:
                self.other[f"envelope for a charge point CALL: {env.get('ErrorCode')}"] += 1
            return
        if mtype == 2:
            cid = str(env.get("ChargePointId"))
            with self.backend_lock:
                if self.paused:
                    self.held.append((cid, env))
                    return
            self._answer(cid, env)

    def _presence(self, topic: str, payload: bytes, retained: bool) -> None:
        """A presence message as the broker routed it: recorded, not judged."""
        try:
            body = json.loads(payload) if payload else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        state = "empty" if not payload else ("online" if body.get("Online") else "offline")
        keys = ("Gateway", "Run", "Seq", "CorrectedBy", "Handover")
        note = " ".join(f"{k}={body[k]}" for k in keys if k in body)
        note += " retained" if retained else ""
        if topic.startswith("ocpp/gateway/"):
            self.rec("backend.gateway", "", "", state, note)
        else:
            self.rec("presence", topic.rsplit("/", 1)[-1], "", state, note)

    async def pubacks(self) -> None:
        """Record ``dn.puback`` for each command the broker acknowledged (polled: no lock)."""
        while True:
            waiting = []
            for info, cid, uid in self.unacked:
                if info.is_published():
                    self.rec("dn.puback", cid, uid)
                else:
                    waiting.append((info, cid, uid))
            self.unacked = waiting
            await asyncio.sleep(0.2)

    def _answer(self, cid: str, env: dict[str, Any]) -> None:
        assert self.backend is not None
        data = (env.get("Payload") or {}).get("data")
        body = {
            "MessageTypeId": 3,
            "UniqueId": env.get("UniqueId"),
            "Payload": {"status": "Accepted", "data": data},
        }
        self.backend.publish(f"ocpp/cs/{cid}/Reply/{env.get('Action')}", json.dumps(body), qos=1)
        self.other["charge point CALLs answered by the backend"] += 1

    async def commands(self) -> None:
        """About COMMANDS_PER_SECOND commands a second, each to a charge point drawn at random."""
        while not self.calls_stop:
            await asyncio.sleep(self.rng.expovariate(COMMANDS_PER_SECOND))
            self.command(self.rng.choice(self.cps))

    def command(self, cp: ChargePoint) -> None:
        """Publish a DataTransfer CALL for ``cp`` (not while paused, stopping or disconnected)."""
        assert self.backend is not None
        if self.calls_stop or self.paused or not self.backend.is_connected():
            return
        uid = f"bk-{self.next_command}"
        self.next_command += 1
        body = json.dumps(
            {
                "MessageTypeId": 2,
                "UniqueId": uid,
                "Action": "DataTransfer",
                "Payload": {"vendorId": "soak", "data": f"{cp.cid}|{uid}"},
            }
        )
        topic = f"ocpp/cs/{cp.cid}/Call/DataTransfer"
        self.rec("dn.sent", cp.cid, uid, "DataTransfer")
        # Not under backend_lock: paho calls back with its own locks held (a deadlock).
        self.unacked.append((self.backend.publish(topic, body, qos=1), cp.cid, uid))
        if self.copies_left > 0:
            self.copies_left -= 1
            asyncio.get_running_loop().call_later(
                self.rng.uniform(0, self.copy_delay), self._copy, cp.cid, uid, topic, body
            )

    def _copy(self, cid: str, uid: str, topic: str, body: str) -> None:
        assert self.backend is not None
        if self.backend.is_connected():
            self.rec("dn.copy", cid, uid)
            self.backend.publish(topic, body, qos=1)

    def _resume_backend(self) -> None:
        with self.backend_lock:
            self.paused = False
            held, self.held = self.held, []
        for cid, env in held:
            self._answer(cid, env)
        self.rec("backend.resumed", note=f"{len(held)} held CALLs answered late")

    # --- the charge points ---

    async def charge_point(self, cp: ChargePoint) -> None:
        rng = random.Random(f"{self.seed}-{cp.cid}")
        await asyncio.sleep(rng.uniform(0, 3))  # spread the first connections
        while not self.stopping:
            inst = self.instances[rng.choice("ab")]
            try:
                ws = await websockets.connect(
                    f"ws://127.0.0.1:{inst.port}/ocpp/{cp.cid}",
                    subprotocols=[cp.version],  # type: ignore[list-item]
                    open_timeout=5,
                    close_timeout=1,
                    ping_interval=None,
                    proxy=None,
                )
            except (OSError, TimeoutError, websockets.InvalidHandshake):
                await asyncio.sleep(rng.uniform(0.2, 1.0))
                continue
            cp.ws = ws
            self.rec("cp.open", cp.cid, note=inst.name)
            if rng.random() < CONNECT_COMMAND:
                # as a backend that greets a charge point coming online: a command
                # that races the gateway's new subscription (issue 18, path 16)
                asyncio.get_running_loop().call_later(rng.uniform(0, 0.3), self.command, cp)
            sender = asyncio.create_task(self._sender(cp, ws, rng))
            code = ""
            try:
                async for text in ws:
                    await self._received(cp, ws, text)
            except ConnectionClosed:
                pass
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await sender
                if cp.in_flight is not None:
                    self.rec("up.closed", cp.cid, cp.in_flight)
                    cp.in_flight = None
                    cp.answered.set()
                cp.ws = None
                code = str(ws.close_code)
                self.rec("cp.close", cp.cid, code=code, note=inst.name)
            await asyncio.sleep(rng.uniform(0.1, 1.0))

    async def _sender(self, cp: ChargePoint, ws: Any, rng: random.Random) -> None:
        while not self.calls_stop:
            await asyncio.sleep(rng.uniform(*CALL_INTERVAL))
            if self.calls_stop:
                return
            cp.calls += 1
            uid = f"c{cp.index}.{cp.calls}"
            cp.in_flight = uid
            cp.answered.clear()
            self.rec("up.call", cp.cid, uid)
            frame = [2, uid, "DataTransfer", {"vendorId": "soak", "data": f"{cp.cid}|{uid}"}]
            await ws.send(json.dumps(frame))
            await cp.answered.wait()

    async def _received(self, cp: ChargePoint, ws: Any, text: Any) -> None:
        try:
            frame = json.loads(text)
            mtype, uid = frame[0], str(frame[1])
        except (ValueError, TypeError, IndexError, KeyError):
            self.rec("cp.garbage", cp.cid, note=repr(text)[:80])
            return
        if mtype == 2:
            payload = frame[3] if len(frame) > 3 and isinstance(frame[3], dict) else {}
            data = payload.get("data")
            named = data.split("|")[0] if isinstance(data, str) else ""
            self.rec("dn.delivered", cp.cid, uid, str(frame[2]), named)
            answer = [3, uid, {"status": "Accepted", "data": data}]
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps(answer))
        elif mtype in (3, 4):
            if mtype == 3:
                data = frame[2].get("data") if isinstance(frame[2], dict) else None
                note = "" if data == f"{cp.cid}|{uid}" else "mismatch"
                self.rec("up.answer", cp.cid, uid, "result", note)
            else:
                self.rec("up.answer", cp.cid, uid, str(frame[2]), str(frame[3])[:60])
            if uid == cp.in_flight:
                cp.in_flight = None
                cp.answered.set()

    def reset_connections(self, share: float) -> int:
        """RST (SO_LINGER 0, then abort) a ``share`` of the open charge point connections."""
        open_cps = [cp for cp in self.cps if cp.ws is not None]
        chosen = self.rng.sample(open_cps, int(len(open_cps) * share))
        for cp in chosen:
            transport = cp.ws.transport
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return len(chosen)

    # --- faults ---

    async def inject(self, start: float) -> None:
        for fault in self.faults:
            delay = start + fault.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.rec("fault", code=fault.kind, note=fault.describe())
            self.say(f"fault {fault.describe()}")
            try:
                note = await self.apply(fault)
            except Exception as e:  # the soak goes on; the timeline says it
                note = f"failed: {e!r}"
            self.rec("fault.end", code=fault.kind, note=note)

    async def apply(self, fault: Fault) -> str:
        inst = self.instances.get(fault.instance)
        if fault.kind == "sigkill":
            assert inst is not None and inst.proc is not None
            inst.proc.send_signal(signal.SIGKILL)
            code = await self._wait_exit(inst, 10)
            self.rec("gw.exit", inst.name, code=code, note="SIGKILL")
            await asyncio.sleep(fault.down)
            await self._restart(inst)
            return f"restarted {inst.name}"
        if fault.kind == "sigterm":
            assert inst is not None and inst.proc is not None
            inst.proc.send_signal(signal.SIGTERM)
            code = await self._wait_exit(inst, SHUTDOWN_TIMEOUT + 10)
            self.rec("gw.exit", inst.name, code=code, note="SIGTERM")
            await asyncio.sleep(fault.down)
            await self._restart(inst)
            return f"exit status {code}, restarted {inst.name}"
        if fault.kind == "sigstop":
            assert inst is not None and inst.proc is not None
            inst.proc.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(fault.seconds)
            finally:
                inst.proc.send_signal(signal.SIGCONT)
            return f"SIGCONT {inst.name}"
        if fault.kind == "broker_restart":
            broker = self.broker
            assert broker is not None
            await asyncio.to_thread(stop_process, broker.proc)
            self.rec("broker.stop", code=str(broker.proc.returncode))
            await asyncio.sleep(fault.down)
            broker.proc = (
                await asyncio.to_thread(launch_broker, broker.log_path.parent, broker.port)
            ).proc
            self.rec("broker.start", note=f"pid {broker.proc.pid}")
            return "broker back"
        if fault.kind == "tcp_reset":
            return f"{self.reset_connections(fault.share)} connections reset"
        if fault.kind == "backend_pause":
            with self.backend_lock:
                self.paused = True
            try:
                await asyncio.sleep(fault.seconds)
            finally:
                self._resume_backend()
            return "backend resumed"
        if fault.kind == "duplicate":
            self.copies_left = fault.count
            self.copy_delay = fault.delay
            return f"the next {fault.count} commands get a copy"
        raise AssertionError(f"unknown fault {fault.kind}")

    # --- the run ---

    async def main(self) -> tuple[float, float]:
        tasks = [asyncio.create_task(self.charge_point(cp)) for cp in self.cps]
        tasks.append(asyncio.create_task(self.sample_rss()))
        tasks.append(asyncio.create_task(self.pubacks()))
        await asyncio.sleep(3)  # the charge points connect
        start = time.monotonic()
        self.rec("phase", note="faults start")
        commander = asyncio.create_task(self.commands())
        progress = asyncio.create_task(self._progress())
        injector = asyncio.create_task(self.inject(start))
        await asyncio.sleep(max(0.0, start + self.seconds - time.monotonic()))
        await injector  # the last fault runs to its end (an instance restarted, the broker back)
        self.calls_stop = True
        await commander
        self.rec("phase", note="settle start")
        self.say(f"faults over; settling for {self.settle:g} s")
        await asyncio.sleep(self.settle)
        end = time.monotonic()
        self.rec("phase", note="settle end")
        self.stopping = True
        progress.cancel()
        for cp in self.cps:
            if cp.ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(cp.ws.close(), 2)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, progress, return_exceptions=True)
        return start, end

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(30)
            c = ledger.counts(self.events)
            self.say(
                f"{c['upstream CALLs']['sent']} charge point CALLs, "
                f"{c['downstream CALLs']['sent']} commands, "
                f"{sum(c['faults'].values())} faults so far"
            )


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def left_behind(workdir: Path, procs: list[subprocess.Popen[bytes]]) -> list[str]:
    """The soak's processes still running: those it started, and any naming ``workdir``."""
    left = [f"pid {p.pid} {p.args!r}" for p in procs if p.poll() is None]
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(") ")[-1][:1]
        except OSError:
            continue
        if (
            str(workdir) in cmdline
            and state != "Z"
            and not any(str(p.pid) == entry.name for p in procs)
        ):
            left.append(f"pid {entry.name} {cmdline.strip()}")
    return left


def run(
    workdir: Path,
    seed: int,
    seconds: float,
    charge_points: int,
    settle: float = SETTLE,
    out: Any = print,
    show: int = 3,
) -> ledger.Report:
    """The whole soak; the report's summary lines are printed as well as returned."""
    soak = Soak(workdir, seed, seconds, charge_points, settle, out)
    out(
        f"soak: seed {seed}, {seconds:g} s of faults, {charge_points} charge points, "
        f"settle {settle:g} s, work directory {workdir}",
        flush=True,
    )
    out("soak: fault schedule:\n  " + "\n  ".join(f.describe() for f in soak.faults), flush=True)
    start = end = time.monotonic()
    left: list[str] = []
    try:
        soak.start_processes()
        soak.start_backend()
        start, end = asyncio.run(asyncio.wait_for(soak.main(), seconds + settle + 120))
    finally:
        left = soak.stop_everything()
    with open(workdir / "events.jsonl", "w", encoding="utf-8") as f:
        for e in soak.events:
            f.write(json.dumps([round(e.t - soak.t0, 3), e.kind, e.cid, e.uid, e.code, e.note]))
            f.write("\n")
    logs = {name: read_log(i.log_path) for name, i in soak.instances.items()}
    violations = ledger.check_all(soak.events, soak.samples, start, end, left)
    violations += ledger.check_logs(logs)
    summary = _summary(soak, violations, start, end, show)
    for line in summary:
        out(line, flush=True)
    return ledger.Report(seed, violations, summary)


def _summary(
    soak: Soak, violations: list[ledger.Violation], start: float, end: float, show: int
) -> list[str]:
    lines = [
        "",
        f"=== soak summary, seed {soak.seed} ===",
        f"timeline offsets are seconds after {soak.t0_wall} UTC (the gateway logs' clock); "
        f"every event: {soak.workdir / 'events.jsonl'}",
    ]
    for name, counter in ledger.counts(soak.events).items():
        lines.append(
            f"{name}: " + (", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none")
        )
    lines.append("other: " + ", ".join(f"{k} {v}" for k, v in sorted(soak.other.items())))
    for name, inst in sorted(soak.instances.items()):
        kib = [s.kib for s in soak.samples if s.instance == name]
        lines.append(
            f"instance {name}: {inst.lives} lives, RSS {min(kib, default=0) // 1024}-"
            f"{max(kib, default=0) // 1024} MiB over {len(kib)} samples, log {inst.log_path}"
        )
    # Indexes, so that thousands of violations cost no more than one pass each.
    firsts: dict[str, float] = {}
    for e in soak.events:
        firsts.setdefault(e.uid, e.t)
    injected = sorted((e for e in soak.events if e.kind == "fault"), key=lambda e: e.t)
    starts = [e.t for e in injected]

    def first(v: ledger.Violation) -> float:
        return firsts.get(v.uid, end) if v.uid else end

    def fault_before(t: float) -> ledger.Event | None:
        i = bisect.bisect_right(starts, t)
        return injected[i - 1] if i else None

    by: dict[str, list[ledger.Violation]] = {}
    for v in violations:
        by.setdefault(v.invariant, []).append(v)
    for invariant in ledger.INVARIANTS:
        found = by.get(invariant, [])
        lines.append(
            f"[{'FAIL' if found else 'ok'}] {invariant}"
            + (f": {len(found)} violation(s)" if found else "")
        )
    for invariant, found in by.items():
        shapes: dict[str, list[ledger.Violation]] = {}
        for v in found:
            shapes.setdefault(ledger.shape(v), []).append(v)
        for what, some in shapes.items():
            lines.append("")
            lines.append(f"--- {invariant}: {len(some)} x {what.splitlines()[0]}")
            faults = [fault_before(first(v)) for v in some]
            before = Counter(f.code if f else "none" for f in faults)
            lines.append("    after: " + ", ".join(f"{k} {n}" for k, n in before.most_common()))
            for v in some[:show]:
                fault = fault_before(first(v))
                lines.append(f"* {v.what}")
                if fault is not None:
                    lines.append(f"  last fault, {first(v) - fault.t:.2f} s before: {fault.note}")
                lines += ["    " + line for line in ledger.timeline(soak.events, v, soak.t0)]
    lines.append(
        f"=== seed {soak.seed}: {'FAILED' if violations else 'passed'} "
        f"({len(violations)} violation(s)); reproduce the schedule with "
        f"SOAK_SEED={soak.seed} ==="
    )
    return lines


__all__ = ["run"]
