"""
``make bench``'s fleet-scale rows (issue 23), run by bench/run.py (alone with
``--only fleet``):

- compression: round trips/s and CPU per round trip at 100 connections with
  permessage-deflate used both ways (``wsload.py --deflate``) against the
  same gateway without it, in interleaved rounds; and RSS per idle charge
  point at 10,000 with compression negotiated and used both ways against
  the uncompressed figure of the same run (``compression_rss.py``);
- admission: 1,000 connected charge points in an open loop (one listener,
  no admission control) while 10,000 others storm a second listener of the
  same gateway (security profile 1, HTTP Basic, each booting, the given
  ``max_handshake_rate`` and ``max_handshake_burst``), against the same
  loop without the storm: the loop's p99 with and without, and the time for
  every storm charge point to connect and boot against the time the rate
  implies.  The storm's clients honour ``Retry-After`` and run at a lower
  priority than the loop's on the load core, so the loop's figures are the
  gateway's doing.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable

#: Charge points in the loop, and their CALLs per second in all (open loop).
LOOP_CONNS, LOOP_RATE = 1_000, 1_000
#: Storm charge points.
STORM = 10_000


def compression_rounds(b: Any, repeat: int = 3) -> list[dict[str, Any]]:
    """The gateway at 100 connections without and with deflate, ``repeat`` rounds."""
    from run import LOAD_CORE, _line

    runs: list[dict[str, Any]] = []
    with b.broker() as (mport, broker):
        backend = b.spawn(
            LOAD_CORE, [PY, str(HERE / "servers.py"), "backend", str(mport)], "backend"
        )
        time.sleep(0.5)
        for attempt in range(repeat):
            for variant in ("plain", "deflate"):
                with b.gateway(mport) as (port, proc):
                    r = b.ws(
                        port,
                        100,
                        proc,
                        [broker, backend],
                        prefix=f"{variant}{attempt}-",
                        deflate=variant == "deflate",
                    )
                runs.append({"server": "gateway", "variant": variant, "attempt": attempt, **r})
                print(_line(runs[-1]), flush=True)
        from handshake_storm import stop

        stop(backend)
    return runs


def compression_memory(b: Any, n: int = 10_000) -> dict[str, Any]:
    """RSS per idle charge point at ``n``, deflate used both ways and not (compression_rss.py)."""
    figures = b.work / "compression_rss.json"
    argv = [PY, str(HERE / "compression_rss.py"), "--n", str(n), "--json", str(figures)]
    subprocess.run(argv, check=True, timeout=600, stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(figures.read_text())
    print(f"compression memory: {result}", flush=True)
    return result


def _storm_client(*args: Any) -> None:
    """A storm client process: on the load core, below the loop's priority."""
    from handshake_storm import client
    from run import LOAD_CORE

    os.sched_setaffinity(0, {int(LOAD_CORE)})
    os.nice(10)
    client(*args)


def admission(b: Any, rate: int, burst: int, n: int = STORM) -> dict[str, Any]:
    """The loop's p99 without and with a storm of ``n`` at ``rate``/``burst``; the storm's times."""
    from handshake_storm import PASSWORD, free_port, stop
    from run import LOAD_CORE

    from ocppgw.listener.credentials import make_entry, write_file

    identities = [f"STORM{i:06d}" for i in range(n)]
    creds = b.work / f"storm-creds-{n}"
    if not creds.exists():
        write_file(str(creds), {i: make_entry(i, PASSWORD) for i in identities})
    implied = n / rate
    seconds = implied * 1.2 + 6
    out: dict[str, Any] = {"rate": rate, "burst": burst, "n": n, "implied_s": implied}
    for storming in (False, True):
        with b.broker() as (mport, broker):
            backend = b.spawn(
                LOAD_CORE, [PY, str(HERE / "servers.py"), "backend", str(mport)], "backend"
            )
            time.sleep(0.5)
            sport = free_port()
            extra = (
                f"[listener:storm]\nendpoint = tcp:{sport}:interface=127.0.0.1:backlog=4096\n"
                "security_profile = 1\nhandshake_timeout = 60\nping_interval = 0\n"
                f"max_handshake_rate = {rate}\nmax_handshake_burst = {burst}\n"
                f"[auth]\ncredentials = {creds}\n"
            )
            with b.gateway(mport, extra) as (port, proc):
                argv = [PY, str(HERE / "wsload.py"), "--port", str(port), "--mode", "open"]
                argv += ["--conns", str(LOOP_CONNS), "--rate", str(LOOP_RATE)]
                argv += ["--seconds", f"{seconds:.0f}", "--warmup", "2", "--prefix", "LOOP"]
                storm: dict[str, Any] = {}
                started = (
                    partial(_start_storm, identities, sport, seconds, storm) if storming else None
                )
                r = b.load(argv, proc, [broker, backend], timeout=seconds + 120, on_start=started)
                if storming:
                    r.update(_end_storm(storm))
            stop(backend)
        out["storm" if storming else "quiet"] = r
        print(
            f"admission rate {rate}/s burst {burst}, {'storm' if storming else 'quiet'}: "
            f"loop p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms max {r['max_ms']:.0f} ms, "
            f"fail {r['failures']}"
            + (
                f"; storm connected {r['all_connected_s']:.2f} s, booted {r['all_booted_s']:.2f} s "
                f"(implied {implied:.1f} s), {r['storm_failures']} failed, "
                f"{r['storm_503s']} 503s"
                if storming
                else ""
            ),
            flush=True,
        )
    out["p99_ratio"] = out["storm"]["p99_ms"] / out["quiet"]["p99_ms"]
    return out


def _start_storm(identities: list[str], port: int, seconds: float, storm: dict[str, Any]) -> None:
    """Start the storm's two client processes half a second from now."""
    ctx = mp.get_context("fork")
    release, results = ctx.Event(), ctx.Queue()
    start_at = time.time() + 0.5
    deadline = start_at + seconds
    procs = []
    for k in range(2):
        args = (identities[k::2], port, start_at, 250, deadline, release, results, True)
        p = ctx.Process(target=_storm_client, args=args)
        p.start()
        procs.append(p)
    storm.update(procs=procs, release=release, results=results, start_at=start_at)


def _end_storm(storm: dict[str, Any]) -> dict[str, Any]:
    """The storm's figures, once the loop has measured; its processes ended."""
    collected = [storm["results"].get(timeout=60) for _ in storm["procs"]]
    storm["release"].set()
    for p in storm["procs"]:
        p.join(30)
        if p.is_alive():
            p.terminate()
    start_at = storm["start_at"]
    booted = sorted(t for c in collected for t in c[0])
    connected = sorted(t for c in collected for t in c[3])
    latencies = sorted(x for c in collected for x in c[1])
    return {
        "storm_connected": len(connected),
        "storm_booted": len(booted),
        "storm_failures": sum(c[2] for c in collected),
        "storm_503s": sum(c[4] for c in collected),
        "all_connected_s": connected[-1] - start_at if connected else float("nan"),
        "all_booted_s": booted[-1] - start_at if booted else float("nan"),
        "storm_p50_s": statistics.median(latencies) if latencies else float("nan"),
    }


def _ratios(runs: list[dict[str, Any]], key: str) -> list[float]:
    """Each round's deflate figure over the plain one of the same round."""
    by = {(r["variant"], r["attempt"]): r[key] for r in runs}
    return [
        by[("deflate", a)] / by[("plain", a)]
        for a in sorted({r["attempt"] for r in runs})
        if ("deflate", a) in by and ("plain", a) in by
    ]


def _listed(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})"


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Issue 23's targets: what each asks, what was measured beside its baseline, met or not."""
    out: list[tuple[str, str, bool | None]] = []
    memory = result.get("compression_memory")
    if memory:
        on, off = memory["on"], memory["off"]
        out.append(
            (
                f"8. <= 24 KiB per idle charge point, deflate both ways ({on['n']:,})",
                f"{on['kib_per_conn']:.1f} KiB (uncompressed, same run: "
                f"{off['kib_per_conn']:.1f} KiB); answers deflated {on['deflated']:,}/{on['n']:,}",
                on["kib_per_conn"] <= 24 and on["deflated"] == on["n"],
            )
        )
    rounds = result.get("compression")
    if rounds:
        rate, cpu = _ratios(rounds, "rate"), _ratios(rounds, "server_cpu_us_per_rt")
        plain = statistics.median(r["rate"] for r in rounds if r["variant"] == "plain")
        deflate = statistics.median(r["rate"] for r in rounds if r["variant"] == "deflate")
        out.append(
            (
                "8. rt/s at 100 with deflate >= 0.8 x without",
                f"{_listed(rate)} x ({deflate:,.0f} vs {plain:,.0f} rt/s); "
                f"CPU per rt {_listed(cpu)} x",
                statistics.median(rate) >= 0.8,
            )
        )
    for a in result.get("admission", []):
        quiet, storm = a["quiet"], a["storm"]
        within = a["implied_s"] * 1.2
        out.append(
            (
                f"9. storm of {a['n']:,} at {a['rate']}/s (burst {a['burst']}): "
                f"loop p99 <= 3 x quiet",
                f"{a['p99_ratio']:.2f} x ({storm['p99_ms']:.1f} vs {quiet['p99_ms']:.1f} ms; "
                f"max {storm['max_ms']:.0f} vs {quiet['max_ms']:.0f} ms), "
                f"{storm['failures'] + quiet['failures']} loop failures",
                a["p99_ratio"] <= 3 and storm["failures"] == 0,
            )
        )
        out.append(
            (
                f"9. storm of {a['n']:,} at {a['rate']}/s: all connected and booted "
                f"<= {a['implied_s']:.1f} s + 20%",
                f"connected {storm['all_connected_s']:.1f} s, booted "
                f"{storm['all_booted_s']:.1f} s, {storm['storm_failures']} failed, "
                f"{storm['storm_503s']:,} 503s answered",
                storm["storm_booted"] == a["n"] and storm["all_booted_s"] <= within,
            )
        )
    return out


def run(b: Any, rates: list[tuple[int, int]]) -> dict[str, Any]:
    """Every fleet part: compression rounds and memory, admission at each (rate, burst)."""
    return {
        "compression": compression_rounds(b),
        "compression_memory": compression_memory(b),
        "admission": [admission(b, rate, burst) for rate, burst in rates],
    }


def write(result: dict[str, Any], out: Path) -> None:
    """``--only fleet``: the figures as JSON and bench/results/fleet.md, latest.md untouched."""
    stamp = result["date"].replace(":", "")
    (out / f"{stamp}-fleet.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    from report import table

    lines = [f"# make bench, fleet rows only (bench/run.py --only fleet), {result['date']}", ""]
    lines += [table({"closed": result.get("compression", [])}), ""]
    lines += ["| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in targets(result)]
    lines += ["", f"bench time: {result['bench_seconds']:.0f} s"]
    (out / "fleet.md").write_text("\n".join(lines) + "\n")
