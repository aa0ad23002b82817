"""
The reconnect storm (``handshake_storm.py --boot``) on two source trees in
turn, A B A B ..., so that the shared machine's noise hits both alike: the
gateway's CPU per handshake of each, and B over A per round and as the
median.  Right before each storm, the same fixed pure-Python workload (JSON
texts encoded and parsed, :func:`baseline`) is timed in this process: the
storm's CPU per handshake over that time is a second figure, less moved by
how busy the shared machine was at the time.

Each tree must hold ``bench/handshake_storm.py`` (copy it into an older
tree) and a ``.venv`` (a link to this one); it runs with ``PYTHONPATH`` set
to it.  A and B may be the same tree with different keys (``--a-ini``,
``--b-ini``: e.g. ``recorder:per_station=0``).  Run it through the bench
lock:

    flock /tmp/ocppgw-bench.lock .venv/bin/python bench/storm_ab.py \\
        --a /tmp/before --b . [--rounds 3] [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def baseline(rounds: int = 20_000) -> float:
    """Microseconds of CPU for one round of a fixed workload (the median of five)."""
    text = json.dumps({"connectorId": 1, "status": "Available", "values": list(range(20))})
    times = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(rounds):
            json.loads(json.dumps(json.loads(text)))
        times.append((time.process_time() - started) / rounds * 1e6)
    return statistics.median(times)


def storm(tree: Path, n: int, work: Path, name: str, ini: list[str]) -> dict[str, Any]:
    figures, out = work / f"{name}.json", work / f"{name}.txt"
    argv = [sys.executable, str(tree / "bench" / "handshake_storm.py"), "--n", str(n), "--boot"]
    argv += [f"--ini={item}" for item in ini]
    argv += ["--json", str(figures), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(argv, check=True, timeout=300, stdout=subprocess.DEVNULL, env=env)
    result: dict[str, Any] = json.loads(figures.read_text())
    result["report"] = out.read_text()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="tree A (before)")
    parser.add_argument("--b", required=True, help="tree B (after)")
    parser.add_argument(
        "--a-ini", action="append", default=[], help="SECTION:KEY=VALUE for A's gateway"
    )
    parser.add_argument(
        "--b-ini", action="append", default=[], help="SECTION:KEY=VALUE for B's gateway"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--json", help="also write every storm's figures to this file")
    args = parser.parse_args()
    trees = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
    for name, tree in trees.items():
        if not (tree / "bench" / "handshake_storm.py").is_file():
            parser.error(f"tree {name} ({tree}) has no bench/handshake_storm.py")
    work = Path(tempfile.mkdtemp(prefix="ocppgw-storm-ab-"))
    runs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    for r in range(args.rounds):
        for name, tree in trees.items():
            unit = baseline()
            ini = args.a_ini if name == "A" else args.b_ini
            result = storm(tree, args.n, work, f"{name}{r}", ini)
            result["baseline_us"] = unit
            result["relative"] = result["gateway_cpu_us_each"] / unit
            runs[name].append(result)
            print(
                f"round {r + 1} {name}: {result['gateway_cpu_us_each']:.0f} us gateway CPU "
                f"a handshake + boot, {result['completed']}/{result['n']} booted in "
                f"{result['all_completed_s']:.2f} s; baseline {unit:.2f} us, "
                f"storm = {result['relative']:.1f} baselines",
                flush=True,
            )
    for key, label in (
        ("gateway_cpu_us_each", "CPU per handshake (us)"),
        ("relative", "CPU per handshake over the baseline"),
    ):
        ratios = [b[key] / a[key] for a, b in zip(runs["A"], runs["B"], strict=True)]
        print(
            f"{label}: A median {statistics.median(x[key] for x in runs['A']):.2f}, "
            f"B median {statistics.median(x[key] for x in runs['B']):.2f}, B/A per round "
            f"{', '.join(f'{x:.2f}' for x in ratios)}, median {statistics.median(ratios):.2f}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"trees": {k: str(v) for k, v in trees.items()}, **runs})
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
