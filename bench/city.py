"""
``make bench-city``: a city's charge points on one host (issue 23).

50,000 OCPP 1.6 charge points connect over source addresses across
127.0.0.0/8 to one gateway with ``workers = 4`` (each process may open
20,000 files here, so the gateway and the load are both several processes),
with the listener's default admission control; the bench backend answers
over MQTT (``servers.py backend``, through mosquitto).  Half of the charge
points negotiate permessage-deflate and use it both ways.

Each charge point lives as a city's would, with jitter: BootNotification
once connected, a Heartbeat every 60 s, a transaction about every half hour
(StatusNotification Preparing, StartTransaction, StatusNotification
Charging, MeterValues every 60 s while it lasts, StopTransaction,
StatusNotification Finishing and Available), half of them in a transaction
at the start; WebSocket pings answered.  One CALL in flight each (OCPP-J).

Phases: connect all (answering 503s as told by ``Retry-After``); a steady
window; then a reconnect storm in the middle of a second window: 10,000 of
them drop their connections at once and come back (503s honoured), boot and
go on.  For each window: the gateway's CPU (share of all cores), p50, p99
and max round trip of the charge points' CALLs, CALLERRORs and timeouts,
and the error envelopes the gateway published (``ocppgw_gateway_errors_total``
from ``/metrics``, which must stay 0); RSS per charge point once all are
connected; for the storm, the time until all 10,000 are back and booted.

Writes ``bench/results/city-<date>.json``, ``bench/results/city.md`` and
``bench/results/city.png``.  Bounded: every phase has a deadline; about ten
minutes in all.  ``--cps 2000 --loaders 2 --storm 400 --steady 20`` is a
small run to develop it on.

    .venv/bin/python bench/city.py [--cps 50000] [--loaders 5] [--storm 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

PY = sys.executable
TWISTD = str(Path(PY).parent / "twistd")
TOKEN = "city-bench-token"
NOW = "2026-12-01T00:00:00Z"

#: Seconds between Heartbeats, and between MeterValues in a transaction.
HEARTBEAT, METER = 60.0, 60.0
#: A transaction about every half hour: charging 10-20 min, idle 10-20 min.
CHARGING, IDLE = (600.0, 1200.0), (600.0, 1200.0)
#: Seconds a CALL may wait for its answer before it counts as a timeout.
CALL_TIMEOUT = 30.0


# --- the load: one process holds a share of the charge points ---------------


def _status(status: str) -> str:
    return f'{{"connectorId":1,"errorCode":"NoError","status":"{status}"}}'


_BOOT = '{"chargePointVendor":"City","chargePointModel":"Bench"}'
_START = f'{{"connectorId":1,"idTag":"TAG1","meterStart":0,"timestamp":"{NOW}"}}'
_STOP = f'{{"transactionId":1,"meterStop":15000,"timestamp":"{NOW}"}}'
_METER = (
    '{"connectorId":1,"transactionId":1,"meterValue":[{"timestamp":"' + NOW + '",'
    '"sampledValue":[{"value":"1234","measurand":"Energy.Active.Import.Register","unit":"Wh"}]}]}'
)


class Loader:
    """The charge points of one load process, and what they measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        #: index -> its client now
        self.clients: dict[int, Any] = {}
        self.label = "connect"
        #: label -> [(second since start, latency in ms)]
        self.latencies: dict[str, list[tuple[int, float]]] = {}
        self.errors: dict[str, int] = {}
        self.timeouts: dict[str, int] = {}
        self.refusals = 0
        self.deflated = 0
        self.began = time.monotonic()
        #: index -> the asyncio event that tells it to drop its connection
        self.drop: dict[int, asyncio.Event] = {}
        self.storm_started = 0.0
        self.storm_back: list[float] = []

    async def connect(self, i: int) -> Any:
        """Charge point ``i`` connected (503s answered as told) and booted; its client."""
        loop = asyncio.get_running_loop()
        args = self.args
        from wsload import source

        while True:
            _, client = await asyncio.wait_for(
                loop.create_connection(
                    partial(CityClient, f"/ocpp/CITY{i}", f"127.0.0.1:{args.port}", i % 2 == 1),
                    "127.0.0.1",
                    args.port,
                    local_addr=(source(i), 0),
                ),
                60,
            )
            if await asyncio.wait_for(client.open, 60):
                break
            wait = _retry_after(client.head)
            client.transport.abort()
            if wait is None:
                raise SystemExit(f"charge point {i} refused: {client.head[:120]!r}")
            self.refusals += 1
            await asyncio.sleep(wait)
        await self.call(client, i, "BootNotification", _BOOT)
        self.clients[i] = client
        return client

    async def call(self, client: Any, i: int, action: str, payload: str) -> None:
        """One CALL and its answer, timed under the current label."""
        label = self.label
        started = time.monotonic()
        try:
            kind = await asyncio.wait_for(
                client.call(f"{i}-{started:.6f}", action, payload), CALL_TIMEOUT
            )
        except TimeoutError:
            self.timeouts[label] = self.timeouts.get(label, 0) + 1
            return
        if kind != 3:
            self.errors[label] = self.errors.get(label, 0) + 1
            return
        second = int(started - self.began)
        self.latencies.setdefault(label, []).append(
            (second, round((time.monotonic() - started) * 1000, 3))
        )

    async def life(self, i: int, client: Any, rng: random.Random) -> None:
        """Charge point ``i``, connected as ``client``: its day, connected again after a drop."""
        drop = self.drop[i] = asyncio.Event()
        now = time.monotonic()
        heartbeat = now + rng.uniform(0, HEARTBEAT)
        charging = rng.random() < 0.5
        # The next start or stop of a transaction; the next MeterValues.
        change = now + rng.uniform(0, (CHARGING if charging else IDLE)[1])
        meter = now + rng.uniform(0, METER)
        while True:
            due = min(heartbeat, change, meter if charging else change)
            try:
                await asyncio.wait_for(drop.wait(), max(0.0, due - time.monotonic()))
            except TimeoutError:
                pass
            if drop.is_set():
                # The storm: the connection dropped between CALLs, then back.
                client.transport.abort()
                drop.clear()
                client = await self.connect(i)
                self.storm_back.append(time.monotonic())
                continue
            if client.closed:
                raise SystemExit(f"charge point {i} lost its connection")
            now = time.monotonic()
            if now >= heartbeat:
                await self.call(client, i, "Heartbeat", "{}")
                heartbeat += HEARTBEAT * rng.uniform(0.95, 1.05)
            elif now >= change and not charging:
                for action, payload in (
                    ("StatusNotification", _status("Preparing")),
                    ("StartTransaction", _START),
                    ("StatusNotification", _status("Charging")),
                ):
                    await self.call(client, i, action, payload)
                charging, change = True, now + rng.uniform(*CHARGING)
                meter = now + METER * rng.uniform(0.95, 1.05)
            elif now >= change:
                for action, payload in (
                    ("StopTransaction", _STOP),
                    ("StatusNotification", _status("Finishing")),
                    ("StatusNotification", _status("Available")),
                ):
                    await self.call(client, i, action, payload)
                charging, change = False, now + rng.uniform(*IDLE)
            elif charging and now >= meter:
                await self.call(client, i, "MeterValues", _METER)
                meter += METER * rng.uniform(0.95, 1.05)

    def report(self) -> dict[str, Any]:
        return {
            "latencies": self.latencies,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "refusals": self.refusals,
            "storm_back": [t - self.storm_started for t in self.storm_back],
            "connected": len(self.clients),
            "deflating": sum(1 for c in self.clients.values() if c.deflate),
            "deflated_answers": sum(c.deflated_in for c in self.clients.values()),
        }


def _client_class() -> Any:
    from wsload import Client

    class City(Client):  # type: ignore[misc,valid-type]
        """wsload's charge point, keeping the response head (a 503's Retry-After)."""

        head = b""

        def data_received(self, data: bytes) -> None:
            if not self.open.done():
                joined = self.buffer + data
                end = joined.find(b"\r\n\r\n")
                if end >= 0:
                    self.head = joined[:end]
            super().data_received(data)

    return City


CityClient = _client_class()


def _retry_after(head: bytes) -> float | None:
    if not head.startswith(b"HTTP/1.1 503"):
        return None
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            return float(value.strip())
    return 1.0


async def load(args: argparse.Namespace) -> None:
    """A load process: commands on stdin, answers on stdout (one line each)."""
    loader = Loader(args)
    loop = asyncio.get_running_loop()
    rng = random.Random(args.first)
    gate = asyncio.Semaphore(100)

    async def one(i: int) -> None:
        async with gate:
            client = await loader.connect(i)
        # Connected under the gate; then its life goes on outside it.
        lives.append(asyncio.create_task(loader.life(i, client, random.Random(rng.random()))))

    lives: list[asyncio.Task[None]] = []
    await asyncio.wait_for(
        asyncio.gather(*(one(i) for i in range(args.first, args.first + args.count))),
        args.connect_timeout,
    )
    print(json.dumps({"connected": len(loader.clients), "refusals": loader.refusals}), flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "stop":
            break
        if line[0] == "label":
            loader.label = line[1]
            print("{}", flush=True)
        elif line[0] == "storm":
            loader.storm_started = time.monotonic()
            for i in range(args.first, args.first + int(line[1])):
                loader.drop[i].set()
            print("{}", flush=True)
        elif line[0] == "report":
            for task in lives:
                if task.done():
                    task.result()  # a charge point that failed ends the run, named
            print(json.dumps(loader.report()), flush=True)
    os._exit(0)


# --- the controller ----------------------------------------------------------


def cpu_of(pids: list[int]) -> float:
    from run import cpu_of as cpu

    return float(cpu(pids))


def host_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every core so far (/proc/stat)."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def metric(admin: str, name: str) -> dict[str, float]:
    """Every sample of ``name`` on the gateway's /metrics, by its code label, workers summed."""
    request = urllib.request.Request(admin + "/metrics")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=30) as r:
        text = r.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            code = labels.split('code="', 1)[1].split('"', 1)[0] if 'code="' in labels else ""
            found[code] = found.get(code, 0.0) + float(value)
    return found


class Loaders:
    """The load processes, told the same thing at once."""

    def __init__(self, procs: list[subprocess.Popen[bytes]]) -> None:
        self.procs = procs

    def tell(self, *words: str) -> list[dict[str, Any]]:
        """Each its answer (none to ``stop``)."""
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write((" ".join(words) + "\n").encode())
            p.stdin.flush()
        return [self.answer(p) for p in self.procs] if words != ("stop",) else []

    @staticmethod
    def answer(p: subprocess.Popen[bytes], timeout: float = 600) -> dict[str, Any]:
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"a load process ended (status {p.wait(timeout)})")
        result: dict[str, Any] = json.loads(line)
        return result


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def window(reports: list[dict[str, Any]], label: str) -> dict[str, Any]:
    lat = sorted(x for r in reports for _, x in r["latencies"].get(label, []))
    return {
        "calls": len(lat),
        "p50_ms": percentile(lat, 0.5),
        "p99_ms": percentile(lat, 0.99),
        "max_ms": lat[-1] if lat else float("nan"),
        "callerrors": sum(r["errors"].get(label, 0) for r in reports),
        "timeouts": sum(r["timeouts"].get(label, 0) for r in reports),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--cps", type=int, default=50_000)
    parser.add_argument("--loaders", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--storm", type=int, default=10_000)
    parser.add_argument("--steady", type=float, default=150.0, help="seconds of each window")
    parser.add_argument("--out", default=str(HERE / "results"))
    # A load process (started by the controller).
    parser.add_argument("--loader", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--connect-timeout", type=float, default=300, help=argparse.SUPPRESS)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.loader:
        asyncio.run(load(args))
        return 0
    return controller(args)


def controller(args: argparse.Namespace) -> int:
    from handshake_storm import free_port, rss_kb, stop, wait_port
    from run import Bench, family

    per = -(-args.cps // args.loaders)
    if per > 19_000:
        raise SystemExit(f"{per} charge points a load process: over its 20,000 files")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ocppgw-city-"))
    b = Bench(work, False)
    began = time.monotonic()
    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_average_at_start": os.getloadavg(),
        },
        "cps": args.cps,
        "workers": args.workers,
        "loaders": args.loaders,
        "storm": args.storm,
    }
    loaders: list[subprocess.Popen[bytes]] = []
    try:
        with b.broker() as (mport, _broker):
            backend = b.spawn(
                "0,1", [PY, str(HERE / "servers.py"), "backend", str(mport)], "backend"
            )
            port, aport = free_port(), free_port()
            admin = f"http://127.0.0.1:{aport}"
            ini = work / "city.ini"
            ini.write_text(
                f"[gateway]\nid = city{port}\nworkers = {args.workers}\n"
                f"journal = {work / 'journal'}\n"
                f"[listener:ws]\nendpoint = tcp:{port}:interface=127.0.0.1:backlog=4096\n"
                f"[admin]\nendpoint = tcp:{aport}:interface=127.0.0.1\ntoken = {TOKEN}\n"
                f"[mqtt]\nbroker = mqtt://127.0.0.1:{mport}\n"
            )
            argv = [TWISTD, "-n", "--pidfile=", f"--logfile={work}/gw.log", "ocppgw"]
            gateway = b.spawn("0,1", [*argv, "--config", str(ini)], "gw", port)
            deadline = time.monotonic() + 30
            while (work / "gw.log").read_text(errors="replace").count(
                "MQTT connected"
            ) < args.workers:
                if time.monotonic() > deadline:
                    raise SystemExit(f"gateway did not connect:\n{(work / 'gw.log').read_text()}")
                time.sleep(0.2)
            wait_port(aport, gateway, "admin")
            time.sleep(1)
            pids = family(gateway.pid)
            rss_before = sum(rss_kb(p) for p in pids)
            errors_before = metric(admin, "ocppgw_gateway_errors_total")
            t0 = time.monotonic()
            for k in range(args.loaders):
                first, count = k * per, min(per, args.cps - k * per)
                cmd = [PY, str(Path(__file__).resolve()), "--loader", "--port", str(port)]
                cmd += ["--first", str(first), "--count", str(count)]
                loaders.append(
                    subprocess.Popen(
                        cmd,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=open(work / f"loader{k}.log", "ab"),
                    )
                )
            group = Loaders(loaders)
            hello = [group.answer(p) for p in loaders]
            connect_s = time.monotonic() - t0
            result["connect"] = {
                "seconds": connect_s,
                "connected": sum(h["connected"] for h in hello),
                "refusals_503": sum(h["refusals"] for h in hello),
            }
            print(f"connected: {result['connect']}", flush=True)
            time.sleep(5)
            result["rss_kib"] = {"before": rss_before, "after": sum(rss_kb(p) for p in pids)}
            result["rss_kib_per_cp"] = (result["rss_kib"]["after"] - rss_before) / args.cps
            cpu_series: list[tuple[float, float]] = []

            def measure(label: str, seconds: float, at: float | None = None) -> dict[str, Any]:
                group.tell("label", label)
                others = [p.pid for p in loaders], [p.pid for p in b.procs if p is not gateway]
                l0, o0, h0 = cpu_of(others[0]), cpu_of(others[1]), host_busy()
                c0, w0 = cpu_of(pids), time.monotonic()
                last = (w0, c0)
                stormed = False
                while time.monotonic() - w0 < seconds:
                    time.sleep(1)
                    now, cpu = time.monotonic(), cpu_of(pids)
                    cpu_series.append((now - t0, (cpu - last[1]) / (now - last[0])))
                    last = (now, cpu)
                    if at is not None and not stormed and now - w0 >= at:
                        group.tell("storm", str(args.storm // args.loaders))
                        stormed = True
                        result["storm_at_s"] = now - t0
                wall, cpu = time.monotonic() - w0, cpu_of(pids) - c0
                cores = os.cpu_count() or 1
                h1 = host_busy()
                return {
                    "seconds": wall,
                    "gateway_cpu_share": cpu / wall / cores,
                    "load_cpu_share": (cpu_of(others[0]) - l0) / wall / cores,
                    "broker_backend_cpu_share": (cpu_of(others[1]) - o0) / wall / cores,
                    "host_busy": (h1[0] - h0[0]) / (h1[1] - h0[1]),
                }

            result["steady"] = measure("steady", args.steady)
            result["stormy"] = measure("storm", args.steady, at=args.steady / 6)
            reports = group.tell("report")
            group.tell("stop")
            for name in ("steady", "stormy"):
                result[name].update(window(reports, "steady" if name == "steady" else "storm"))
            back = sorted(t for r in reports for t in r["storm_back"])
            result["storm_back"] = {
                "back": len(back),
                "all_back_s": back[-1] if back else float("nan"),
                "p50_s": percentile(back, 0.5),
            }
            errors = metric(admin, "ocppgw_gateway_errors_total")
            result["error_envelopes_by_code"] = {
                code: n - errors_before.get(code, 0.0)
                for code, n in errors.items()
                if n != errors_before.get(code, 0.0)
            }
            result["error_envelopes"] = sum(result["error_envelopes_by_code"].values())
            result["refusals_503"] = sum(r["refusals"] for r in reports)
            result["cpu_series"] = cpu_series
            result["latency_series"] = _per_second(reports)
            stop(backend)
            stop(gateway)
    finally:
        for p in loaders:
            if p.poll() is None:
                p.kill()
        for p in b.procs:
            stop(p)
    result["bench_seconds"] = time.monotonic() - began
    write(result, out)
    return 0


def _per_second(reports: list[dict[str, Any]]) -> list[tuple[int, float, float, int]]:
    """(second, p50, p99, calls) of every second of the run, all charge points together."""
    by: dict[int, list[float]] = {}
    for r in reports:
        for label in ("steady", "storm"):
            for second, x in r["latencies"].get(label, []):
                by.setdefault(second, []).append(x)
    out = []
    for second in sorted(by):
        xs = sorted(by[second])
        out.append((second, percentile(xs, 0.5), percentile(xs, 0.99), len(xs)))
    return out


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def write(result: dict[str, Any], out: Path) -> None:
    stamp = result["date"].replace(":", "")
    (out / f"city-{stamp}.json").write_text(json.dumps(result, default=str) + "\n")
    m = result["machine"]
    rows = [
        f"# make bench-city, {result['date']}",
        "",
        f"{result['cps']:,} charge points (half with permessage-deflate), gateway "
        f"`workers = {result['workers']}`, {result['loaders']} load processes, "
        f"backend over MQTT (mosquitto); {m['cpus']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}; the load, "
        "broker and backend share the same cores.",
        "",
        f"Connected and booted in {result['connect']['seconds']:.0f} s "
        f"({result['connect']['refusals_503']:,} 503s from admission control, each "
        f"retried after its Retry-After); gateway RSS {result['rss_kib']['before'] / 1024:.0f} "
        f"-> {result['rss_kib']['after'] / 1024:.0f} MiB: "
        f"**{result['rss_kib_per_cp']:.1f} KiB per charge point**.",
        "",
        "| window | seconds | gateway CPU (share of all cores) | load / broker + backend CPU "
        "| host busy | CALLs | p50 | p99 | max | CALLERRORs | timeouts |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, title in (("steady", "steady"), ("stormy", f"{result['storm']:,} reconnect")):
        w = result[name]
        rows.append(
            f"| {title} | {w['seconds']:.0f} | {w['gateway_cpu_share']:.0%} | "
            f"{w.get('load_cpu_share', float('nan')):.0%} / "
            f"{w.get('broker_backend_cpu_share', float('nan')):.0%} | "
            f"{w.get('host_busy', float('nan')):.0%} | {w['calls']:,} | "
            f"{w['p50_ms']:.1f} ms | {w['p99_ms']:.1f} ms | {w['max_ms']:.0f} ms | "
            f"{w['callerrors']} | {w['timeouts']} |"
        )
    s = result["storm_back"]
    rows += [
        "",
        f"Reconnect storm: {s['back']:,} of {result['storm']:,} back and booted, the last "
        f"{s['all_back_s']:.1f} s after they dropped (median {s['p50_s']:.1f} s).  "
        f"Error envelopes the gateway published over the whole run: "
        f"**{result['error_envelopes']:.0f}** {result['error_envelopes_by_code'] or ''}.",
        "",
        f"bench time: {result['bench_seconds']:.0f} s.  Plot: `city.png`.",
    ]
    (out / "city.md").write_text("\n".join(rows) + "\n")
    plot(result, out)


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    series = result["latency_series"]
    top.plot([s[0] for s in series], [s[2] for s in series], label="p99")
    top.plot([s[0] for s in series], [s[1] for s in series], label="p50")
    top.set_yscale("log")
    top.set_ylabel("round trip (ms)")
    top.legend()
    cores = result["machine"]["cpus"] or 1
    cpu = result["cpu_series"]
    bottom.plot([c[0] for c in cpu], [100 * c[1] / cores for c in cpu])
    bottom.set_ylabel("gateway CPU (% of all cores)")
    bottom.set_xlabel("seconds since the first connect")
    if "storm_at_s" in result:
        for ax in (top, bottom):
            ax.axvline(result["storm_at_s"], color="red", linestyle=":")
    top.set_title(
        f"{result['cps']:,} charge points, {result['storm']:,} reconnecting at the red line"
    )
    fig.tight_layout()
    fig.savefig(out / "city.png", dpi=90)


if __name__ == "__main__":
    raise SystemExit(main())
