"""
Reconnect storm: N charge points (default 10,000) connect at once to a real
gateway (security profile 1, HTTP Basic against a credentials file of N
identities, a real mosquitto); how fast are they all back, and (``--boot``)
all booted: each sends a BootNotification right after the upgrade, which the
gateway validates and publishes, the bench backend (``servers.py backend``)
answers over MQTT, and the charge point counts as booted when the
CALLRESULT arrives (a CALLERROR or no answer is a failure)?

The clients are cheap on purpose: asyncio protocols sending the raw HTTP
upgrade request and reading the response head, spread over a few processes,
each with a bound on handshakes in flight (real charge points are spread over
many hosts; one loopback host must not become the bottleneck).  Every
connection stays open until all are done, so at the end N are connected at
once.  A handshake answered 503 (admission control, ``max_handshake_rate``)
is tried again after its ``Retry-After``, as a charge point would, without
holding a place among those in flight while it waits.  Everything is bounded:
a deadline on the whole storm, timeouts on each handshake, and the gateway
and broker are stopped on the way out.  The gateway here runs without
admission control (``max_handshake_rate = 0``): the figure is its capacity.

    .venv/bin/python bench/handshake_storm.py [--n 10000] [--procs 2]

Prints the figures and writes them to bench/results/handshake_storm.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocppgw.listener.credentials import make_entry, write_file  # noqa: E402

TWISTD = ROOT / ".venv" / "bin" / "twistd"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PASSWORD = b"storm-password-0123456789"


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


#: OCPP 1.6 BootNotification CALL, as a client frame masked with the zero key (RFC 6455 §5.3).
_BOOT = b'[2,"boot","BootNotification",{"chargePointVendor":"Bench","chargePointModel":"Storm"}]'
BOOT_FRAME = bytes([0x81, 0x80 | len(_BOOT)]) + b"\0\0\0\0" + _BOOT


def request(identity: str, port: int) -> bytes:
    token = base64.b64encode(identity.encode() + b":" + PASSWORD).decode()
    return (
        f"GET /ocpp/{identity} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
        f"Authorization: Basic {token}\r\n\r\n"
    ).encode()


def source_address(identity: str) -> str:
    """A loopback source address for ``identity``: 250 charge points an address."""
    n = int("".join(c for c in identity if c.isdigit()) or "0") % 62_500
    return f"127.{101 + n // 250 // 250}.{1 + n // 250 % 250}.{1 + n % 250}"


def retry_after(head: bytes) -> int | None:
    """The Retry-After seconds of a 503 response head; None for any other."""
    if not head.startswith(b"HTTP/1.1 503"):
        return None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            return max(1, int(value.strip()))
    return 1


class _Upgrade(asyncio.Protocol):
    """One charge point: sends the upgrade request, waits for the response head."""

    def __init__(
        self,
        payload: bytes,
        answered: asyncio.Future[bool | int],
        boot: bytes | None = None,
        booted: asyncio.Future[bool] | None = None,
    ) -> None:
        self.payload = payload
        self.answered = answered
        self.boot = boot
        self.booted = booted
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.payload)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.answered.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            ok = self.buffer.startswith(b"HTTP/1.1 101")
            retry = retry_after(self.buffer[:end]) if not ok else None
            # 503: the number of seconds to wait before trying again.
            self.answered.set_result(retry if retry is not None else ok)
            self.buffer = self.buffer[end + 4 :]
            if ok and self.boot is not None and self.transport is not None:
                self.transport.write(self.boot)
        if self.booted is None or self.booted.done() or len(self.buffer) < 2:
            return
        # The server's frames are unmasked (RFC 6455 §5.1): the answer is the first text frame.
        n, at = self.buffer[1] & 0x7F, 2
        if n == 126:
            if len(self.buffer) < 4:
                return
            n, at = int.from_bytes(self.buffer[2:4], "big"), 4
        if len(self.buffer) < at + n:
            return
        if self.buffer[0] & 0x0F == 1:
            self.booted.set_result(self.buffer[at : at + 3] == b"[3,")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_result(False)
        if self.booted is not None and not self.booted.done():
            self.booted.set_result(False)


async def storm(
    identities: list[str],
    port: int,
    start_at: float,
    concurrency: int,
    deadline: float,
    release: Any,
    results: Any,
    boot: bool = False,
) -> None:
    """
    Handshake (and with ``boot``, boot) every identity; put (completion
    times, latencies, failures) on ``results``, then hold the connections
    until ``release`` is set.
    """
    loop = asyncio.get_running_loop()
    done: list[float] = []
    latencies: list[float] = []
    failures = 0
    transports: list[asyncio.BaseTransport] = []
    gate = asyncio.Semaphore(concurrency)
    connected: list[float] = []
    refusals = [0]

    async def one(identity: str) -> None:
        t0 = time.time()
        while True:
            wait = await attempt(identity, t0)
            if wait is None:
                return
            refusals[0] += 1
            await asyncio.sleep(wait)

    async def attempt(identity: str, t0: float) -> int | None:
        """One handshake (and boot); the seconds to wait on a 503, else None."""
        nonlocal failures
        async with gate:
            answered: asyncio.Future[bool | int] = loop.create_future()
            booted: asyncio.Future[bool] | None = loop.create_future() if boot else None
            try:
                transport, _ = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _Upgrade(
                            request(identity, port), answered, BOOT_FRAME if boot else None, booted
                        ),
                        "127.0.0.1",
                        port,
                        # Spread over 127.0.0.0/8: retries leave TIME_WAITs behind.
                        local_addr=(source_address(identity), 0),
                    ),
                    max(0.1, deadline - t0),
                )
                ok = await asyncio.wait_for(answered, max(0.1, deadline - time.time()))
                if ok is not True and ok is not False:
                    transport.close()
                    if time.time() + ok > deadline:
                        failures += 1
                        return None
                    return ok
                if ok:
                    connected.append(time.time())
                if ok and booted is not None:
                    ok = await asyncio.wait_for(booted, max(0.1, deadline - time.time()))
            except (TimeoutError, OSError):
                failures += 1
                return None
            if ok:
                t1 = time.time()
                done.append(t1)
                latencies.append(t1 - t0)
                transports.append(transport)
            else:
                failures += 1
                transport.close()
            return None

    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(one(i) for i in identities))
    results.put((done, latencies, failures, connected, refusals[0]))
    # Hold every connection until all client processes are done.
    while not release.is_set() and time.time() < deadline + 5:
        await asyncio.sleep(0.05)
    for t in transports:
        t.close()


def client(
    identities: list[str],
    port: int,
    start_at: float,
    concurrency: int,
    deadline: float,
    release: Any,
    results: Any,
    boot: bool = False,
) -> None:
    raise_fd_limit(len(identities) + 256)
    asyncio.run(storm(identities, port, start_at, concurrency, deadline, release, results, boot))


def in_process_rate(creds: Path, identities: list[str], seconds: float = 2.0) -> float:
    """
    Handshakes/s of the WebSocket layer with Basic auth alone: the real
    Autobahn protocol and admission checks over an in-memory transport, no
    sockets and no MQTT (the session opener is a no-op).
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from ocppgw.config import ListenerConfig
    from ocppgw.listener.admission import Gatekeeper
    from ocppgw.listener.credentials import Credentials
    from ocppgw.listener.factory import OCPPServerFactory
    from ocppgw.listener.ratelimit import LoginLimiter

    listener = ListenerConfig("bench", "tcp:0", "/ocpp", 1, None, 65536, 10.0)
    credentials = Credentials(str(creds))
    limiter = LoginLimiter(Clock(), 20, 10, 60.0, 100_000)
    factory = OCPPServerFactory(
        listener,
        ("ocpp1.6",),
        credentials,
        lambda *a: object(),
        lambda s: None,
        gatekeeper=Gatekeeper(listener, credentials, limiter),
    )
    address = IPv4Address("TCP", "127.0.0.1", 5555)
    requests = [request(i, 1) for i in identities]
    count = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for payload in requests[:1000]:
            proto = factory.buildProtocol(address)
            transport = StringTransport(peerAddress=address)
            proto.makeConnection(transport)
            proto.dataReceived(payload)
            if not transport.value().startswith(b"HTTP/1.1 101"):
                raise SystemExit(f"in-process handshake failed: {transport.value()[:80]!r}")
            count += 1
    return count / (time.perf_counter() - t0)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="charge points (default 10000)")
    parser.add_argument("--procs", type=int, default=2, help="client processes (default 2)")
    parser.add_argument(
        "--concurrency", type=int, default=250, help="handshakes in flight per client process"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on the whole storm")
    parser.add_argument("--keep", action="store_true", help="keep the temporary logs")
    parser.add_argument("--profile", help="write the gateway's cProfile stats to this file")
    parser.add_argument(
        "--boot", action="store_true", help="each sends a BootNotification, answered by a backend"
    )
    parser.add_argument(
        "--spy", help="write a py-spy profile of the gateway during the storm (raw) to this file"
    )
    parser.add_argument(
        "--spy-flag",
        dest="spy_flags",
        action="append",
        default=[],
        help="a flag for py-spy record, e.g. --spy-flag=--native (time in C: the collector)",
    )
    parser.add_argument(
        "--ini",
        action="append",
        default=[],
        metavar="SECTION:KEY=VALUE",
        help="a key of a section the storm does not write, e.g. recorder:per_station=0",
    )
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "handshake_storm.txt"))
    args = parser.parse_args()
    n = args.n
    extra: dict[str, list[str]] = {}
    for item in args.ini:
        section, _, line = item.partition(":")
        if not section or "=" not in line:
            parser.error(f"--ini {item!r}: expected SECTION:KEY=VALUE")
        extra.setdefault(section, []).append(line)
    limit = raise_fd_limit(n + 1024)
    if limit < n + 256:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {limit} is too low for {n} connections")

    work = Path(tempfile.mkdtemp(prefix="ocppgw-storm-"))
    identities = [f"STORM{i:06d}" for i in range(n)]
    t = time.perf_counter()
    write_file(str(work / "creds"), {i: make_entry(i, PASSWORD) for i in identities})
    print(f"credentials for {n} identities written in {time.perf_counter() - t:.2f} s")
    layer_rate = in_process_rate(work / "creds", identities)
    print(f"in-process WebSocket handshake + Basic auth: {layer_rate:.0f}/s")
    mport, gport = free_port(), free_port()
    (work / "mosquitto.conf").write_text(
        f"listener {mport} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "set_tcp_nodelay true\nmax_queued_messages 100000\nmax_inflight_messages 0\n"
    )
    (work / "ocppgw.ini").write_text(
        f"[gateway]\nid = storm\n[listener:ws]\n"
        f"endpoint = tcp:{gport}:interface=127.0.0.1:backlog=4096\n"
        f"security_profile = 1\nhandshake_timeout = 60\nping_interval = 0\n"
        # The capacity: no admission control (bench/admission_storm.py measures it).
        "max_handshake_rate = 0\n"
        f"[auth]\ncredentials = {work / 'creds'}\n"
        f"[mqtt]\nbroker = mqtt://127.0.0.1:{mport}\n"
        f"[admin]\nendpoint = tcp:{free_port()}:interface=127.0.0.1\n"
        + "".join(f"[{section}]\n" + "\n".join(lines) + "\n" for section, lines in extra.items())
    )
    broker_log = open(work / "mosquitto.log", "wb")
    gateway_log = open(work / "gateway.log", "wb")
    broker = subprocess.Popen(
        [MOSQUITTO, "-c", str(work / "mosquitto.conf")], stdout=broker_log, stderr=subprocess.STDOUT
    )
    gateway = None
    backend = None
    spy: subprocess.Popen[bytes] | None = None
    procs: list[mp.Process] = []
    try:
        wait_port(mport, broker, "mosquitto")
        if args.boot:
            backend = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "servers.py"), "backend", str(mport)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
        profile = (
            ["--profile", args.profile, "--profiler", "cprofile", "--savestats"]
            if args.profile
            else []
        )
        gateway = subprocess.Popen(
            [
                str(TWISTD),
                "-n",
                "--pidfile=",
                *profile,
                "ocppgw",
                "--config",
                str(work / "ocppgw.ini"),
            ],
            stdout=gateway_log,
            stderr=subprocess.STDOUT,
            cwd=work,
        )
        wait_port(gport, gateway, "gateway")
        time.sleep(1.0)  # MQTT connect
        rss_before = rss_kb(gateway.pid)
        cpu_before = cpu_seconds(gateway.pid)
        broker_cpu_before = cpu_seconds(broker.pid)
        if args.spy:
            spied = ["-p", str(gateway.pid), "-r", "250", "-f", "raw", "-o", args.spy]
            # py-spy reads native stacks only while the process is paused.
            spied += args.spy_flags if "--native" in args.spy_flags else ["--nonblocking"]
            spy = subprocess.Popen(
                [str(TWISTD.parent / "py-spy"), "record", *spied],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            time.sleep(0.5)  # attached before the storm begins
        ctx = mp.get_context("fork")
        release = ctx.Event()
        results = ctx.Queue()
        start_at = time.time() + 1.0
        deadline = start_at + args.timeout
        for k in range(args.procs):
            p = ctx.Process(
                target=client,
                args=(
                    identities[k :: args.procs],
                    gport,
                    start_at,
                    args.concurrency,
                    deadline,
                    release,
                    results,
                    args.boot,
                ),
            )
            p.start()
            procs.append(p)
        collected = []
        for _ in procs:
            collected.append(results.get(timeout=args.timeout + 30))
            if len(collected) == len(procs):
                release.set()
        rss_after = rss_kb(gateway.pid)
        gateway_cpu = cpu_seconds(gateway.pid) - cpu_before
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            spy.wait(30)
        broker_cpu = cpu_seconds(broker.pid) - broker_cpu_before
        for p in procs:
            p.join(30)
        done = sorted(t for c in collected for t in c[0])
        latencies = sorted(x for c in collected for x in c[1])
        failures = sum(c[2] for c in collected)
        upgraded = sorted(t for c in collected for t in c[3])
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        if backend is not None:
            stop(backend)
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
        if gateway is not None:
            stop(gateway)
        stop(broker)
        broker_log.close()
        gateway_log.close()

    ok = len(done)
    all_back = done[-1] - start_at if ok else float("nan")
    all_connected = upgraded[-1] - start_at if upgraded else float("nan")
    rate = ok / all_back if ok else 0.0
    what = "handshake + boot" if args.boot else "handshake"
    per_second: dict[int, int] = {}
    for x in done:
        per_second[int(x - start_at)] = per_second.get(int(x - start_at), 0) + 1
    peak = max(per_second.values()) if per_second else 0
    lines = [
        f"handshake storm: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {platform.node()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"charge points: {n} (security profile 1, HTTP Basic), client processes: {args.procs}, "
        f"in flight per process: {args.concurrency}",
        f"WebSocket handshake + Basic auth alone (in-process, no sockets, no MQTT): "
        f"{layer_rate:.0f} handshakes/s",
        "end to end (sockets, session, MQTT subscribe and presence publish, logging):",
        f"connected: {len(upgraded)}, "
        + (f"booted (BootNotification answered through the backend): {ok}, " if args.boot else "")
        + f"failed: {failures}",
        f"time until all connected: {all_connected:.2f} s",
        *([f"time until all booted: {all_back:.2f} s"] if args.boot else []),
        f"average rate: {rate:.0f} {'boots' if args.boot else 'handshakes'}/s; "
        f"peak 1-second window: {peak}/s",
        ("handshake + boot latency: " if args.boot else "handshake latency: ")
        + (
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p99 {latencies[int(0.99 * (len(latencies) - 1))] * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms"
            if latencies
            else "n/a"
        ),
        f"CPU during the storm: gateway {gateway_cpu:.2f} s "
        f"({gateway_cpu / max(ok, 1) * 1e6:.0f} us a {what}), "
        f"mosquitto {broker_cpu:.2f} s",
        f"gateway RSS: {rss_before / 1024:.0f} MiB idle, {rss_after / 1024:.0f} MiB "
        f"with {ok} connected",
    ]
    if args.keep:
        lines.append(f"logs: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    if args.json:
        figures = {
            "n": n,
            "boot": args.boot,
            "connected": len(upgraded),
            "completed": ok,
            "failures": failures,
            "all_connected_s": all_connected,
            "all_completed_s": all_back,
            "gateway_cpu_us_each": gateway_cpu / max(ok, 1) * 1e6,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
        }
        Path(args.json).write_text(json.dumps(figures) + "\n")
    return 0 if ok == n else 1


if __name__ == "__main__":
    sys.exit(main())
