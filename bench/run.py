"""
``make bench``: the gateway beside its baselines, in one run, with one load generator.

Every server under test is pinned to core 0 (``taskset``); the load generator
(:mod:`wsload`), the backend, mosquitto and this script to core 1, except in
the broker baseline, where mosquitto is the server under test.  The CPU of
every process is read from ``/proc`` at the start and end of each measuring
window, so the report says both the server's CPU per round trip and how busy
the other core was (the check that the load side is not the bottleneck).

Runs (``--quick``: only the first three, 2 charge points, 1 second):

1. closed loop at 1, 100 and 1,000 connections: Autobahn echo, the ``ocpp``
   package central system, the gateway (CALL -> MQTT -> backend -> MQTT ->
   CALLRESULT, validation all, JSON envelope, QoS 1);
2. closed loop at 100: the gateway with MQTT 3.1.1, with the protobuf
   profile, with ``workers = 2``, with every speed-up off
   (``OCPPGW_SPEEDUPS=off``), with the flight recorder off, each right
   after the plain one-worker gateway, three rounds; then a round with each
   speed-up off alone; paho -> mosquitto -> paho at QoS 1 (``--only
   variants [--variants recorder-off] [--rounds N]``: this part alone);
3. open loop at half the gateway's peak, 1,000 connections: gateway and echo;
4. memory: 10,000 idle charge points on one gateway process;
5. reconnect storm (``handshake_storm.py``, 10,000 with Basic auth), the
   gateway's capacity: no admission control;
6. a py-spy profile of the gateway at 100 connections;
7. forward mode (issue 20, docs/forward.md) at 100 connections: the ``ocpp``
   package central system reached directly, then through the gateway in
   forward mode (tap on, the central system on core 1), the same without
   the tap (the relay alone), then the gateway in MQTT mode, three rounds
   (``--forward``: only these, into ``bench/results/forward-latest.md``);
8. the fleet rows (``fleet.py``, issue 23): compression's round trips and
   memory beside the uncompressed figures, and a storm of 10,000 against
   1,000 charge points in an open loop at the default admission rate
   (``--only fleet`` runs these alone, into ``bench/results/fleet.md``;
   ``--admission RATE:BURST`` measures other rates too).

Writes ``bench/results/<date>.json``, ``bench/results/latest.md`` and the PNG
plots ``bench/results/*.png``.  Bounded: each run has a deadline, and all of
them take about seven minutes here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import fleet  # noqa: E402
from handshake_storm import cpu_seconds, free_port, raise_fd_limit, rss_kb, stop, wait_port  # noqa: E402

from ocppgw.mqtt.broker import data_directory, find_mosquitto, mosquitto_config  # noqa: E402

PY = sys.executable
TWISTD = str(Path(PY).parent / "twistd")
SERVER_CORE, LOAD_CORE = "0", "1"


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv]


def family(pid: int) -> list[int]:
    """``pid`` and its children (a supervisor's workers)."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


class Bench:
    def __init__(self, work: Path, quick: bool) -> None:
        self.work = work
        self.quick = quick
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self,
        core: str,
        argv: list[str],
        name: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> Any:
        log = open(self.work / f"{name}.log", "ab")
        proc = subprocess.Popen(
            pinned(core, argv), stdout=log, stderr=subprocess.STDOUT, cwd=self.work, env=env
        )
        self.procs.append(proc)
        if port is not None:
            wait_port(port, proc, name)
        return proc

    @contextmanager
    def broker(self, core: str = LOAD_CORE) -> Iterator[tuple[int, Any]]:
        port = free_port()
        conf = self.work / f"mosquitto-{port}.conf"
        data = data_directory()  # the embedded broker's configuration, as a gateway runs it
        conf.write_text(mosquitto_config("127.0.0.1", port, data))
        proc = self.spawn(core, [find_mosquitto(), "-c", str(conf)], f"mosquitto-{port}", port)
        try:
            yield port, proc
        finally:
            stop(proc)
            shutil.rmtree(data, ignore_errors=True)

    @contextmanager
    def gateway(
        self,
        mport: int,
        extra: str = "",
        codec: str = "json",
        workers: int = 1,
        speedups: str = "",
        admin_extra: str = "",
        forward: str = "",
        tap: bool = True,
        listener: str = "",
    ) -> Iterator[tuple[int, Any]]:
        """
        The gateway; ``speedups``: its ``OCPPGW_SPEEDUPS`` (``off``, ``-NAME``);
        ``extra``: lines after ``[mqtt] broker`` (more sections too),
        ``admin_extra``: lines of ``[admin]``; ``forward``: a central system's
        URL its listener forwards to (``tap``: with the tap on);
        ``listener``: more ``[listener:ws]`` lines.
        """
        port = free_port()
        if forward:
            extra += f"\n[forward:csms]\nurl = {forward}\n" + ("" if tap else "tap_topic =\n")
        # The admin API as operators run it (with workers, the supervisor's).
        admin = f"tcp:{free_port()}:interface=127.0.0.1"
        ini = self.work / f"gw-{port}.ini"
        ini.write_text(
            f"[gateway]\nid = bench{port}\nworkers = {workers}\n"
            f"[listener:ws]\nendpoint = tcp:{port}:interface=127.0.0.1:backlog=4096\n"
            # A closed loop sends far above a charge point's rate: the limiter
            # runs (its cost is measured) but never refuses.
            "max_message_rate = 1000000\nmax_message_burst = 1000000\n"
            # Every handshake at once, as fast as it comes (admission control
            # is measured on its own: the fleet rows).
            "max_handshake_rate = 0\n"
            f"{listener}"
            + ("forward = csms\n" if forward else "")
            + f"[admin]\nendpoint = {admin}\n{admin_extra}\n"
            f"[mqtt]\nbroker = mqtt://127.0.0.1:{mport}\n{extra}\n"
            f"[upstream]\ncodec = {codec}\n[dnstream]\ncodec = {codec}\n"
            "[validation]\nmode = all\n"
        )
        core = SERVER_CORE if workers == 1 else f"{SERVER_CORE},{LOAD_CORE}"
        argv = [TWISTD, "-n", "--pidfile=", f"--logfile={self.work}/gw-{port}.log", "ocppgw"]
        env = {**os.environ, "OCPPGW_SPEEDUPS": speedups} if speedups else None
        proc = self.spawn(core, [*argv, "--config", str(ini)], f"gw-{port}", port, env)
        log = self.work / f"gw-{port}.log"
        deadline = time.monotonic() + 20
        while log.read_text(errors="replace").count("MQTT connected") < workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"gateway did not connect to MQTT:\n{log.read_text()}")
            time.sleep(0.05)
        time.sleep(0.2 * workers)
        try:
            yield port, proc
        finally:
            stop(proc)

    @contextmanager
    def baseline(self, kind: str) -> Iterator[tuple[int, Any]]:
        port = free_port()
        proc = self.spawn(SERVER_CORE, [PY, str(HERE / "servers.py"), kind, str(port)], kind, port)
        try:
            yield port, proc
        finally:
            stop(proc)

    @contextmanager
    def floor(self, mport: int) -> Iterator[tuple[int, Any]]:
        """bench/floor.py: the wire work of a round trip alone, behind the same backend."""
        port = free_port()
        argv = [PY, str(HERE / "floor.py"), str(port), str(mport)]
        proc = self.spawn(SERVER_CORE, argv, "floor", port)
        try:
            yield port, proc
        finally:
            stop(proc)

    def load(
        self,
        argv: list[str],
        server: Any,
        others: list[Any],
        timeout: float = 120,
        on_start: Any = None,
    ) -> dict[str, Any]:
        """
        Run a load process; CPU of the server and the rest over its measuring
        window; ``on_start()`` is called when the window opens.
        """
        load = subprocess.Popen(
            pinned(LOAD_CORE, argv),
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            stderr=open(self.work / "load.log", "ab"),
        )
        spids = family(server.pid)
        opids = [p.pid for p in others]
        deadline = time.monotonic() + timeout
        marks: dict[str, tuple[float, float, float, float]] = {}
        result: dict[str, Any] = {}
        assert load.stdout is not None
        for raw in load.stdout:
            line = raw.decode().strip()
            if line in ("MEASURE_START", "MEASURE_END"):
                # the load process's own CPU is in its result; this is the rest of core 1.
                marks[line] = (time.monotonic(), cpu_of(spids), cpu_of(opids), 0.0)
                if line == "MEASURE_START" and on_start is not None:
                    on_start()
            elif line.startswith("{"):
                result = json.loads(line)
            if time.monotonic() > deadline:
                load.kill()
                raise SystemExit(f"load {argv} ran past {timeout} s")
        load.wait(10)
        if not result or "MEASURE_END" not in marks:
            raise SystemExit(f"load {argv} gave no result; see {self.work}/load.log")
        (t0, s0, o0, _), (t1, s1, o1, _) = marks["MEASURE_START"], marks["MEASURE_END"]
        wall = t1 - t0
        result["server_cpu_s"] = s1 - s0
        result["server_core_busy"] = (s1 - s0) / wall
        result["load_core_busy"] = (o1 - o0 + result["loadgen_cpu_s"]) / wall
        rt = max(result["round_trips"], 1)
        result["server_cpu_us_per_rt"] = (s1 - s0) / rt * 1e6
        return result

    def ws(
        self, port: int, conns: int, server: Any, others: list[Any], **kw: Any
    ) -> dict[str, Any]:
        seconds = 1.0 if self.quick else kw.pop("seconds", 5.0)
        argv = [PY, str(HERE / "wsload.py"), "--port", str(port), "--conns", str(conns)]
        argv += ["--seconds", str(seconds), "--warmup", "0.5" if self.quick else "1"]
        for key, value in kw.items():
            if value is False:
                continue
            flag = f"--{key.replace('_', '-')}"
            argv += [flag] if value is True else [flag, str(value)]
        return self.load(argv, server, others)


def closed_loop(b: Bench, conn_counts: list[int], repeat: int) -> list[dict[str, Any]]:
    """Echo, ocpp CS, gateway and floor, interleaved so that noise hits them all alike."""
    runs: list[dict[str, Any]] = []
    with b.broker() as (mport, broker):
        backend = b.spawn(
            LOAD_CORE, [PY, str(HERE / "servers.py"), "backend", str(mport)], "backend"
        )
        time.sleep(0.5)
        for conns in conn_counts:
            for attempt in range(repeat if conns == 100 else 1):
                for server in ("echo", "ocppcs", "gateway", "floor"):
                    if server == "gateway":
                        with b.gateway(mport) as (port, proc):
                            r = b.ws(port, conns, proc, [broker, backend], prefix=f"G{attempt}-")
                    elif server == "floor":
                        with b.floor(mport) as (port, proc):
                            r = b.ws(port, conns, proc, [broker, backend], prefix=f"F{attempt}-")
                    else:
                        with b.baseline(server) as (port, proc):
                            r = b.ws(port, conns, proc, [], echo=server == "echo")
                    runs.append({"server": server, "variant": "", "attempt": attempt, **r})
                    print(_line(runs[-1]), flush=True)
        stop(backend)
    return runs


#: (variant, codec, [mqtt] lines, workers); "workers1" is the JSON one-worker
#: gateway each other variant is compared with.
#: (name, codec, [mqtt] lines, workers, OCPPGW_SPEEDUPS)
VARIANTS = (
    ("workers1", "json", "", 1, ""),
    ("mqtt311", "json", "protocol = 3.1.1", 1, ""),
    ("protobuf", "protobuf", "", 1, ""),
    ("workers2", "json", "", 2, ""),
    ("speedups-off", "json", "", 1, "off"),
    # The flight recorder off (issue 21): what it costs, the default being on.
    ("recorder-off", "json", "[recorder]\nper_station = 0", 1, ""),
)

#: The speed-ups of docs/design.md, each turned off alone once after the rounds.
SPEEDUPS = (
    "autobahn_frames",
    "paho_internals",
    "json_encoder",
    "automat_index",
    "prometheus_values",
    "twisted_reactor",
)


def variants(b: Bench, repeat: int = 3, only: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """
    The gateway at 100 connections: one worker with JSON, then each variant
    (MQTT 3.1.1, protobuf, two workers, every speed-up off) right after it,
    ``repeat`` times; then one more round of one worker with each speed-up
    off alone (the price of each one's public path); and paho's ceiling.
    Targets 6 and 7 and the price of the public paths compare each variant
    with the one-worker JSON run of the same round (the median of the
    rounds' ratios), so that a burst of noise from the shared machine
    changes one round, not the figure.  ``only``: just these variants (each
    round's one-worker JSON run still first), without the single speed-ups
    and paho's ceiling (the rounds alternate which runs first).
    """
    runs: list[dict[str, Any]] = []
    singles = [("workers1", "json", "", 1, "")]
    singles += [(f"no-{name}", "json", "", 1, f"-{name}") for name in SPEEDUPS]
    plans = [(a, VARIANTS) for a in range(repeat)]
    if only:
        # Alternate which goes first, so that a machine getting busier or
        # quieter over a round does not favour one side.
        chosen = tuple(v for v in VARIANTS if v[0] == "workers1" or v[0] in only)
        plans = [(a, chosen if a % 2 == 0 else chosen[::-1]) for a in range(repeat)]
    else:
        plans.append((repeat, tuple(singles)))
    for attempt, plan in plans:
        for variant, codec, extra, workers, speedups in plan:
            with b.broker() as (mport, broker):
                backend = b.spawn(
                    LOAD_CORE,
                    [PY, str(HERE / "servers.py"), "backend", str(mport), codec],
                    "backend",
                )
                time.sleep(0.5)
                with b.gateway(mport, extra, codec, workers, speedups) as (port, proc):
                    r = b.ws(port, 100, proc, [broker, backend], prefix=f"{variant}{attempt}-")
                stop(backend)
            runs.append({"server": "gateway", "variant": variant, "attempt": attempt, **r})
            print(_line(runs[-1]), flush=True)
    if only:
        return runs
    with b.broker(SERVER_CORE) as (mport, broker):
        backend = b.spawn(
            LOAD_CORE, [PY, str(HERE / "servers.py"), "pahobackend", str(mport)], "backend"
        )
        time.sleep(0.5)
        argv = [PY, str(HERE / "servers.py"), "mqttload", str(mport), "100", "5"]
        r = b.load(argv, broker, [backend])
        stop(backend)
    runs.append({"server": "paho-mosquitto-paho", "variant": "", "attempt": 0, **r})
    print(_line(runs[-1]), flush=True)
    return runs


def open_loop(b: Bench, rate: float) -> list[dict[str, Any]]:
    """1,000 connections at ``rate`` CALLs/s in all, gateway and echo."""
    runs: list[dict[str, Any]] = []
    with b.broker() as (mport, broker):
        backend = b.spawn(
            LOAD_CORE, [PY, str(HERE / "servers.py"), "backend", str(mport)], "backend"
        )
        time.sleep(0.5)
        for server in ("echo", "gateway"):
            kw: dict[str, Any] = {"mode": "open", "rate": f"{rate:.0f}"}
            if server == "gateway":
                with b.gateway(mport) as (port, proc):
                    r = b.ws(port, 1000, proc, [broker, backend], prefix="O-", **kw)
            else:
                with b.baseline("echo") as (port, proc):
                    r = b.ws(port, 1000, proc, [], echo=True, **kw)
            runs.append({"server": server, "variant": "open", "attempt": 0, "offered": rate, **r})
            print(_line(runs[-1]), flush=True)
        stop(backend)
    return runs


def forward(b: Bench, repeat: int = 3, conns: int = 100) -> list[dict[str, Any]]:
    """
    Forward mode beside the same central system reached directly (the
    ``ocpp`` package's, :mod:`servers`), and the gateway's MQTT mode, in
    each of ``repeat`` rounds; the tap is read (``servers.py tapreader``).
    The relay alone (tap off) runs twice: with the ``autobahn_client_frames``
    speed-up and without it.
    Forwarded, the central system runs on the load core, so the server
    core's CPU per round trip is the relay's own
    (with the tap publishing every frame), to compare with MQTT mode's.
    """
    runs: list[dict[str, Any]] = []
    with b.broker() as (mport, broker):
        backend = b.spawn(
            LOAD_CORE, [PY, str(HERE / "servers.py"), "backend", str(mport)], "backend"
        )
        reader = b.spawn(
            LOAD_CORE, [PY, str(HERE / "servers.py"), "tapreader", str(mport)], "tapreader"
        )
        time.sleep(0.5)
        for attempt in range(repeat):
            with b.baseline("ocppcs") as (port, proc):
                r = b.ws(port, conns, proc, [], prefix=f"D{attempt}-")
            runs.append({"server": "ocppcs", "variant": "direct", "attempt": attempt, **r})
            print(_line(runs[-1]), flush=True)
            cs_port = free_port()
            argv = [PY, str(HERE / "servers.py"), "ocppcs", str(cs_port)]
            central = b.spawn(LOAD_CORE, argv, "ocppcs-forwarded", cs_port)
            url = f"ws://127.0.0.1:{cs_port}/ocpp/${{cid}}"
            with b.gateway(mport, forward=url) as (port, proc):
                r = b.ws(port, conns, proc, [broker, central, reader], prefix=f"W{attempt}-")
            runs.append({"server": "gateway", "variant": "forward", "attempt": attempt, **r})
            print(_line(runs[-1]), flush=True)
            # The relay alone: the same, without the tap.
            with b.gateway(mport, forward=url, tap=False) as (port, proc):
                r = b.ws(port, conns, proc, [broker, central], prefix=f"N{attempt}-")
            runs.append({"server": "gateway", "variant": "relay", "attempt": attempt, **r})
            print(_line(runs[-1]), flush=True)
            # ... and with the central system's side on Autobahn's public path.
            off = "-autobahn_client_frames"
            with b.gateway(mport, forward=url, tap=False, speedups=off) as (port, proc):
                r = b.ws(port, conns, proc, [broker, central], prefix=f"P{attempt}-")
            stop(central)
            runs.append({"server": "gateway", "variant": "relay-public", "attempt": attempt, **r})
            print(_line(runs[-1]), flush=True)
            with b.gateway(mport) as (port, proc):
                r = b.ws(port, conns, proc, [broker, backend], prefix=f"M{attempt}-")
            runs.append({"server": "gateway", "variant": "mqtt", "attempt": attempt, **r})
            print(_line(runs[-1]), flush=True)
        stop(backend)
        stop(reader)
    return runs


def fd_room(pid: int) -> int:
    """How many more files process ``pid`` may open: its soft limit minus those open."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3]) - len(os.listdir(f"/proc/{pid}/fd"))
    raise SystemExit(f"no open-files limit for {pid}")


#: Idle charge points per load process (each has the same 20,000-file limit).
_PER_LOADER = 10_000


def memory(b: Bench, n: int | None, workers: int = 1) -> dict[str, Any]:
    """
    RSS per idle charge point: ``n`` connections held open on the gateway
    (``None``: as many as one process's open-files limit leaves room for),
    spread over load processes and source addresses across 127.0.0.0/8.
    """
    with b.broker() as (mport, _broker), b.gateway(mport, workers=workers) as (port, proc):
        time.sleep(1)
        pids = family(proc.pid)
        if n is None:
            n = fd_room(proc.pid) - 2  # two to spare: the log file may be reopened
        before = sum(rss_kb(p) for p in pids)
        loads = []
        started = time.monotonic()
        for first in range(0, n, _PER_LOADER):
            argv = [PY, str(HERE / "wsload.py"), "--port", str(port), "--mode", "idle"]
            argv += ["--conns", str(min(_PER_LOADER, n - first)), "--first", str(first)]
            argv += ["--connect-timeout", "150"]
            loads.append(
                subprocess.Popen(
                    pinned(LOAD_CORE, argv), stdout=subprocess.PIPE, stdin=subprocess.PIPE
                )
            )
        try:
            for load in loads:
                assert load.stdout is not None
                line = load.stdout.readline().decode().strip()
                if line != "HELD":
                    raise SystemExit(f"idle load did not hold its share of {n}: {line!r}")
            held = time.monotonic() - started
            time.sleep(2)
            after = sum(rss_kb(p) for p in pids)
        finally:
            for load in loads:
                assert load.stdin is not None
                try:
                    load.stdin.write(b"done\n")
                    load.stdin.flush()
                except OSError:
                    pass
            for load in loads:
                try:
                    load.wait(60)
                except subprocess.TimeoutExpired:
                    load.kill()
    per = (after - before) / n
    result = {
        "conns": n,
        "workers": workers,
        "rss_idle_kib": before,
        "rss_held_kib": after,
        "kib_per_conn": per,
        "connect_s": held,
    }
    print(
        f"memory: {n} idle charge points on {workers} worker(s), {per:.1f} KiB each "
        f"({before} -> {after} KiB, connected in {held:.1f} s)",
        flush=True,
    )
    return result


def storm(b: Bench, n: int) -> dict[str, Any]:
    """The reconnect storm of handshake_storm.py, each charge point booting; its figures."""
    out, figures = b.work / "storm.txt", b.work / "storm.json"
    argv = [PY, str(HERE / "handshake_storm.py"), "--n", str(n), "--boot"]
    subprocess.run(
        [*argv, "--out", str(out), "--json", str(figures)],
        check=True,
        timeout=240,
        stdout=subprocess.DEVNULL,
    )
    text = out.read_text()
    print(text, flush=True)
    return {"n": n, "report": text, **json.loads(figures.read_text())}


def profile(b: Bench, seconds: int = 8) -> str:
    """A py-spy profile of the gateway at 100 connections, summed by where the time goes."""
    with b.broker() as (mport, _broker):
        backend = b.spawn(
            LOAD_CORE, [PY, str(HERE / "servers.py"), "backend", str(mport)], "backend"
        )
        time.sleep(0.5)
        with b.gateway(mport) as (port, proc):
            argv = [PY, str(HERE / "wsload.py"), "--port", str(port), "--conns", "100"]
            argv += ["--seconds", str(seconds + 2), "--warmup", "1"]
            load = subprocess.Popen(pinned(LOAD_CORE, argv), stdout=subprocess.DEVNULL)
            time.sleep(2)
            raw = b.work / "profile.txt"
            spy = str(Path(PY).parent / "py-spy")
            subprocess.run(
                pinned(
                    LOAD_CORE,
                    [
                        spy,
                        "record",
                        "-p",
                        str(proc.pid),
                        "-d",
                        str(seconds),
                        "-r",
                        "250",
                        "-f",
                        "raw",
                        "-o",
                        str(raw),
                        "--nonblocking",
                    ],
                ),
                check=True,
                timeout=seconds + 30,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            load.wait(60)
        stop(backend)
    from report import summarise_profile

    return summarise_profile(raw.read_text())


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['server']:>20} {r['variant']:>9} conns {r['conns']:>5}: {r['rate']:8.0f} rt/s, "
        f"fail {r['failures']}, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
        f"{r['server_cpu_us_per_rt']:.0f} us CPU/rt, server core {r['server_core_busy']:.0%}, "
        f"load core {r['load_core_busy']:.0%}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="2 charge points, 1 second, no extras")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument(
        "--only",
        choices=["variants", "profile", "fleet"],
        help="run only this part (its report: results/latest-PART.md; fleet: results/fleet.md)",
    )
    parser.add_argument(
        "--variants",
        default="",
        help="with --only variants: these variants (comma-separated names) beside workers1",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the variants")
    parser.add_argument("--forward", action="store_true", help="only forward mode's comparison")
    parser.add_argument(
        "--admission",
        action="append",
        default=[],
        metavar="RATE:BURST",
        help="the admission storm at this max_handshake_rate:max_handshake_burst "
        "(default: the gateway's defaults)",
    )
    args = parser.parse_args()
    names = {v[0] for v in VARIANTS}
    only = tuple(n for n in args.variants.split(",") if n)
    if any(n not in names for n in only):
        parser.error(f"--variants: unknown name in {args.variants!r}; known: {sorted(names)}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    from ocppgw.config.model import DEFAULT_HANDSHAKE_BURST, DEFAULT_HANDSHAKE_RATE

    rates = [tuple(int(x) for x in a.split(":", 1)) for a in args.admission] or [
        (DEFAULT_HANDSHAKE_RATE, DEFAULT_HANDSHAKE_BURST)
    ]
    raise_fd_limit(20_000)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="ocppgw-bench-"))
    b = Bench(work, args.quick)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_average_at_start": os.getloadavg(),
            "shared": "yes: other engineers ran test suites on the same 2 cores",
        },
    }
    try:
        if args.only == "variants":
            result["variants"] = variants(b, args.rounds, only)
        elif args.only == "profile":
            result["profile"] = profile(b)
        elif args.only == "fleet":
            result.update(fleet.run(b, rates))  # type: ignore[arg-type]
        elif args.forward:
            result["forward"] = forward(b)
        elif args.quick:
            result["closed"] = closed_loop(b, [2], 1)
        else:
            result["closed"] = closed_loop(b, [1, 100, 1000], 2)
            result["variants"] = variants(b, args.rounds)
            peak = max(r["rate"] for r in result["closed"] if r["server"] == "gateway")
            result["open"] = open_loop(b, peak / 2)
            result["memory"] = [
                memory(b, 10_000),
                memory(b, None),  # as many as one process may hold here
                memory(b, 50_000, workers=4),  # 4 processes: 12,500 each, under 20,000 files
            ]
            result["storm"] = storm(b, 10_000)
            result["profile"] = profile(b)
            result["forward"] = forward(b)
            result.update(fleet.run(b, rates))  # type: ignore[arg-type]
    finally:
        for proc in b.procs:
            stop(proc)
    result["bench_seconds"] = time.monotonic() - began
    if args.only == "fleet":
        fleet.write(result, out)
        print(f"fleet rows finished in {result['bench_seconds']:.0f} s; {out / 'fleet.md'}")
        return 0
    from report import write_forward, write_report

    if args.forward:
        write_forward(result, out)
    else:
        write_report(result, out, args.quick, args.only)
    print(f"bench finished in {result['bench_seconds']:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
