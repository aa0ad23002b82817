"""
The flight recorder's memory in a real gateway (issue 21): 10,000 charge
points each send 1 KB frames beyond ``[recorder] per_station``; does the
gateway's RSS growth stay within ``max_memory`` plus 10%?

Per run, one gateway (core 0, as ``bench/run.py`` pins it) behind a real
mosquitto and the bench backend (``servers.py backend``, core 1):

1. N charge points connect and stay connected (``wsload``'s raw clients,
   core 1); the gateway's RSS once they are all held and settled: ``held``;
2. each sends ``--calls`` MeterValues CALLs of about 1 KB, one in flight,
   each answered through the backend: four records a round trip (the frame
   in, the envelope out, the answer's envelope and frame), so with
   ``per_station`` 8 and 3 calls, 12 records each, beyond per_station, and
   some 60 MB of text in all against a 16 MiB budget: the budget decides;
3. the RSS again once all are answered and settled: ``after``; growth =
   after - held; and the recorder's own metrics (bytes, records, dropped).

The same run with the recorder off (``per_station = 0``) is the baseline:
what the same traffic grows the gateway by without it (read buffers, the
allocator's arenas); the recorder's growth is the growth with it on minus
that, and it holds when within ``max_memory`` plus 10% (the whole growth
with it on is printed too).  Bounded: deadlines
on connecting, sending and each step; all processes stopped on the way out.

    .venv/bin/python bench/recorder_memory.py [--n 10000] [--max-memory 16MiB]

Prints the figures and writes them to bench/results/recorder_memory.txt
(``--json FILE``: also as JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from handshake_storm import raise_fd_limit, rss_kb, stop  # noqa: E402
from run import LOAD_CORE, PY, Bench, family, pinned  # noqa: E402

from ocppgw.config.values import size  # noqa: E402


def meter_values(index: int, n: int, at_least: int = 1024) -> str:
    """A schema-valid 1.6 MeterValues payload of at least ``at_least`` bytes."""
    values = []
    text = ""
    while len(text) < at_least - 40:
        k = len(values)
        values.append(
            f'{{"value":"{index}.{n}.{k:04d}","measurand":"Energy.Active.Import.Register",'
            '"unit":"Wh"}'
        )
        text = ",".join(values)
    return (
        '{"connectorId":1,"meterValue":[{"timestamp":"2026-12-07T12:00:00Z",'
        f'"sampledValue":[{text}]}}]}}'
    )


async def load(args: argparse.Namespace) -> None:
    """The load process: connect, say HELD, on a line send, say SENT, on a line leave."""
    import wsload

    opts = wsload.parse(["--port", str(args.port), "--conns", str(args.n), "--prefix", "REC"])
    opts.connect_timeout = 150
    clients = await wsload.connect_all(opts)
    print("HELD", flush=True)
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), 300)

    async def one(i: int, client: Any) -> tuple[int, int]:
        ok = failed = 0
        for n in range(args.calls):
            try:
                kind = await asyncio.wait_for(
                    client.call(f"{i}-{n}", "MeterValues", meter_values(i, n)), 60
                )
            except TimeoutError:
                kind = -1
            ok, failed = (ok + 1, failed) if kind == 3 else (ok, failed + 1)
        return ok, failed

    started = time.monotonic()
    done = await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
    answered = sum(d[0] for d in done)
    failed = sum(d[1] for d in done)
    print(
        json.dumps({"answered": answered, "failed": failed, "send_s": time.monotonic() - started})
    )
    print("SENT", flush=True)
    await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), 300)
    for c in clients:
        c.transport.close()


def metrics(admin_port: int) -> dict[str, float]:
    """The recorder's gauges and counter from the gateway's /metrics."""
    url = f"http://127.0.0.1:{admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("ocppgw_recorder_"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def one_run(b: Bench, args: argparse.Namespace, per_station: int) -> dict[str, Any]:
    """One gateway with ``per_station`` (0: the recorder off) under the load; its figures."""
    extra = f"[recorder]\nper_station = {per_station}\nmax_memory = {args.max_memory}"
    with b.broker() as (mport, _broker):
        backend = b.spawn(
            LOAD_CORE, [PY, str(HERE / "servers.py"), "backend", str(mport)], "backend"
        )
        time.sleep(0.5)
        with b.gateway(mport, extra, admin_extra="metrics_auth = false") as (port, proc):
            ini = (b.work / f"gw-{port}.ini").read_text()
            admin = int(ini.split("[admin]\nendpoint = tcp:", 1)[1].split(":", 1)[0])
            pids = family(proc.pid)
            argv = [PY, str(Path(__file__)), "--load", "--port", str(port)]
            argv += ["--n", str(args.n), "--calls", str(args.calls)]
            loader = subprocess.Popen(
                pinned(LOAD_CORE, argv),
                stdout=subprocess.PIPE,
                stdin=subprocess.PIPE,
                stderr=open(b.work / "load.log", "ab"),
            )
            try:
                expect(loader, "HELD", 200)
                time.sleep(args.settle)
                held = sum(rss_kb(p) for p in pids)
                loader.stdin.write(b"send\n")
                loader.stdin.flush()
                sent = json.loads(expect(loader, "{", 300))
                expect(loader, "SENT", 10)
                time.sleep(args.settle)
                after = sum(rss_kb(p) for p in pids)
                counted = metrics(admin)
                trimmed = trim(proc.pid) if args.trim else None
            finally:
                if loader.poll() is None:
                    loader.stdin.write(b"done\n")
                    loader.stdin.flush()
                    loader.wait(60)
        stop(backend)
    result = {
        "per_station": per_station,
        "max_memory": size(args.max_memory),
        "n": args.n,
        "calls": args.calls,
        "rss_held_kib": held,
        "rss_after_kib": after,
        "growth_kib": after - held,
        **sent,
        **counted,
    }
    if trimmed is not None:
        result["rss_trimmed_kib"] = trimmed
    if trimmed is not None:
        print(f"per_station {per_station}: after malloc_trim(0): {trimmed / 1024:.1f} MiB")
    print(
        f"per_station {per_station}: RSS {held / 1024:.1f} MiB held -> {after / 1024:.1f} MiB "
        f"after ({(after - held) / 1024:+.1f} MiB); answered {sent['answered']}, "
        f"failed {sent['failed']} in {sent['send_s']:.1f} s; recorder {counted}",
        flush=True,
    )
    return result


def trim(pid: int) -> int:
    """
    A diagnostic (``--trim``): the gateway's RSS after glibc's
    ``malloc_trim(0)``, called in it through gdb: what of the growth is
    memory free in the C heap but still resident.
    """
    subprocess.run(
        ["gdb", "-p", str(pid), "-batch", "-ex", "call (int) malloc_trim(0)"],
        check=True,
        timeout=60,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return rss_kb(pid)


def expect(proc: Any, start: str, timeout: float) -> str:
    """The next line of ``proc`` that starts with ``start``, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode().strip()
        if not line and proc.poll() is not None:
            raise SystemExit(f"the load process exited ({proc.returncode}) before {start!r}")
        if line.startswith(start):
            return str(line)
    raise SystemExit(f"the load process said no {start!r} within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="charge points (default 10000)")
    parser.add_argument("--calls", type=int, default=3, help="1 KB CALLs each (default 3)")
    parser.add_argument("--per-station", type=int, default=8, help="[recorder] per_station")
    parser.add_argument("--max-memory", default="16MiB", help="[recorder] max_memory")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before each RSS")
    parser.add_argument("--rounds", type=int, default=1, help="off/on pairs (median reported)")
    parser.add_argument(
        "--trim", action="store_true", help="also the RSS after malloc_trim(0) (gdb; a diagnostic)"
    )
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    parser.add_argument("--out", default=str(HERE / "results" / "recorder_memory.txt"))
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        raise_fd_limit(args.n + 256)
        asyncio.run(load(args))
        return 0
    try:
        budget = size(args.max_memory)
    except ValueError as error:
        parser.error(f"--max-memory: {error}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    if args.per_station < 1 or args.calls * 4 <= args.per_station:
        parser.error("--calls must make more records (4 a call) than --per-station (>= 1)")
    raise_fd_limit(args.n + 1024)
    b = Bench(Path(tempfile.mkdtemp(prefix="ocppgw-recmem-")), quick=False)
    pairs = []
    try:
        for _ in range(args.rounds):
            pairs.append((one_run(b, args, 0), one_run(b, args, args.per_station)))
    finally:
        for proc in b.procs:
            stop(proc)
    # The round whose recorder growth is the median is the one reported.
    pairs.sort(key=lambda pair: pair[1]["growth_kib"] - pair[0]["growth_kib"])
    off, on = pairs[len(pairs) // 2]
    each = ", ".join(f"{(n['growth_kib'] - f['growth_kib']) / 1024:.1f}" for f, n in pairs)
    bound = budget * 1.1 / 1024
    lines = [
        f"recorder memory: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {args.n} charge points, "
        f"each {args.calls} MeterValues of about 1 KB ({args.calls * 4} records) beyond "
        f"per_station {args.per_station}, max_memory {args.max_memory}",
        f"recorder off (baseline): RSS growth {off['growth_kib'] / 1024:.1f} MiB "
        f"({off['rss_held_kib'] / 1024:.0f} -> {off['rss_after_kib'] / 1024:.0f} MiB)",
        f"recorder on: RSS growth {on['growth_kib'] / 1024:.1f} MiB "
        f"({on['rss_held_kib'] / 1024:.0f} -> {on['rss_after_kib'] / 1024:.0f} MiB); "
        f"recorder bytes {on.get('ocppgw_recorder_bytes', 0) / 1024 / 1024:.1f} MiB, "
        f"records {on.get('ocppgw_recorder_records', 0):.0f}, "
        f"dropped {on.get('ocppgw_recorder_dropped_total', 0):.0f}",
        f"bound: max_memory + 10% = {bound / 1024:.1f} MiB; the recorder's growth (on minus "
        f"off) {(on['growth_kib'] - off['growth_kib']) / 1024:.1f} MiB (median; each round: "
        f"{each} MiB): "
        + ("held" if held_bound(on, off, bound) else "NOT held")
        + f" (the whole growth with it on, {on['growth_kib'] / 1024:.1f} MiB: "
        + ("within" if on["growth_kib"] <= bound else "over")
        + ")",
    ]
    if "rss_trimmed_kib" in on and "rss_trimmed_kib" in off:
        on_t, off_t = on["rss_trimmed_kib"], off["rss_trimmed_kib"]
        lines.append(
            f"after malloc_trim(0) in the gateway (a diagnostic): off {off_t / 1024:.0f} MiB, "
            f"on {on_t / 1024:.0f} MiB; the recorder's growth then "
            f"{(on_t - on['rss_held_kib'] - off_t + off['rss_held_kib']) / 1024:.1f} MiB"
        )
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).write_text(text)
    if args.json:
        rounds = [{"off": f, "on": n} for f, n in pairs]
        Path(args.json).write_text(json.dumps({"off": off, "on": on, "rounds": rounds}) + "\n")
    return 0 if held_bound(on, off, bound) else 1


def held_bound(on: dict[str, Any], off: dict[str, Any], bound_kib: float) -> bool:
    """
    Whether the recorder's RSS growth is within the bound: the growth with
    it on minus the growth of the same traffic with it off (the buffers and
    allocator arenas the traffic itself leaves, recorder or not).
    """
    return bool(on["growth_kib"] - off["growth_kib"] <= bound_kib)


if __name__ == "__main__":
    raise SystemExit(main())
