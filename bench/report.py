"""
The report of a ``make bench`` run: the JSON, the README table, the targets
of the performance issue as ratios, the py-spy summary and the PNG plots.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

#: Where a sample's time goes: the innermost frame whose file matches wins.
_PLACES = [
    ("idle (epoll wait)", ("epoll", "doPoll")),
    ("paho", ("paho/",)),
    ("autobahn", ("autobahn/", "txaio/")),
    ("validation", ("jsonschema", "ocppgw/ocpp/validation", "ocppgw/ocpp/fastvalidation")),
    ("json", ("json/",)),
    ("protobuf", ("google/protobuf", "ocppgw/wire/protobuf")),
    ("flight recorder", ("ocppgw/admin/flight", "ocppgw/admin/redact")),
    ("router + codecs", ("ocppgw/router/", "ocppgw/wire/")),
    ("session", ("ocppgw/session/",)),
    ("connection", ("ocppgw/connection",)),
    ("ocppgw other", ("ocppgw/",)),
    ("twisted", ("twisted/",)),
]


def summarise_profile(raw: str) -> str:
    """py-spy's collapsed stacks as percentages of samples by place, and the top functions."""
    places: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaves[frames[-1]] += count
        for frame in reversed(frames):
            place = next((name for name, keys in _PLACES if any(k in frame for k in keys)), None)
            if place is not None:
                places[place] += count
                break
        else:
            places["other"] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples"]
    lines += [f"{n / total:6.1%}  {place}" for place, n in places.most_common()]
    lines.append("top functions (self):")
    lines += [f"{n / total:6.1%}  {leaf}" for leaf, n in leaves.most_common(15)]
    return "\n".join(lines)


def _by(
    runs: list[dict[str, Any]], server: str, conns: int, variant: str = ""
) -> list[dict[str, Any]]:
    return [
        r for r in runs if r["server"] == server and r["conns"] == conns and r["variant"] == variant
    ]


def _mid(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs) if runs else float("nan")


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Each target of the issue: what it asks, what was measured, met or not."""
    out: list[tuple[str, str, bool | None]] = []
    if "closed" in result:
        out += _closed_targets(result["closed"])
    if "open" in result:
        out += _open_target(result["open"])
    for m in result.get("memory", []):
        per = m["kib_per_conn"]
        where = f"{m['conns']:,}" + (f" on {m['workers']} workers" if m["workers"] > 1 else "")
        out.append((f"4. <= 16 KiB per idle charge point ({where})", f"{per:.1f} KiB", per <= 16))
    if "storm" in result and "all_completed_s" in result["storm"]:
        out += _storm_target(result["storm"])
    if "variants" in result:
        out += _variant_targets(result["variants"])
    return out


def _closed_targets(closed: list[dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []
    gw, echo, cs = (_mid(_by(closed, s, 100), "rate") for s in ("gateway", "echo", "ocppcs"))
    out.append(("1. rt/s at 100 >= 0.35 x echo", f"{gw / echo:.2f} x echo", gw / echo >= 0.35))
    out.append(("1. rt/s at 100 >= 2 x ocpp CS", f"{gw / cs:.2f} x ocpp CS", gw / cs >= 2))
    g1, e1 = _mid(_by(closed, "gateway", 1), "p50_ms"), _mid(_by(closed, "echo", 1), "p50_ms")
    out.append(
        (
            "2. p50 at 1 conn <= 3 x echo",
            f"{g1 / e1:.1f} x echo ({g1:.2f} vs {e1:.2f} ms)",
            g1 / e1 <= 3,
        )
    )
    return out


def _open_target(runs: list[dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    o = {r["server"]: r for r in runs}
    ratio = o["gateway"]["p99_ms"] / o["echo"]["p99_ms"]
    return [
        (
            "3. open loop p99 <= 10 x echo, none > 1 s",
            f"{ratio:.1f} x echo, oldest {o['gateway']['max_ms']:.0f} ms "
            f"at {o['gateway']['offered']:.0f}/s",
            ratio <= 10 and o["gateway"]["max_ms"] <= 1000 and o["gateway"]["failures"] == 0,
        )
    ]


def _storm_target(s: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    return [
        (
            f"5. storm: {s['n']:,} with Basic auth back and booted <= 10 s",
            f"all connected {s['all_connected_s']:.2f} s, all booted "
            f"{s['all_completed_s']:.2f} s, {s['failures']} failed, "
            f"{s['gateway_cpu_us_each']:.0f} µs gateway CPU each",
            s["completed"] == s["n"] and s["all_completed_s"] <= 10,
        )
    ]


def _variant_targets(runs: list[dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []
    pb = paired(runs, "protobuf", "rate")
    if pb:
        out.append(
            ("6. protobuf rt/s within 10% of JSON", f"{_ratios(pb)} x JSON", _median(pb) >= 0.9)
        )
    w = paired(runs, "workers2", "server_cpu_us_per_rt")
    if w:
        out.append(
            ("7. 2 workers: CPU/rt <= 1.15 x 1 worker", f"{_ratios(w)} x", _median(w) <= 1.15)
        )
    return out + recorder_target(runs)


def recorder_target(runs: list[dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    """
    Issue 21: the flight recorder's CPU per round trip (the default gateway's
    minus the recorder-off one's, in each round) as a share of the default
    gateway's: the median, each round's in brackets, and the medians in µs.
    """
    key = "server_cpu_us_per_rt"
    on = {r["attempt"]: r[key] for r in runs if r["variant"] == "workers1"}
    off = {r["attempt"]: r[key] for r in runs if r["variant"] == "recorder-off"}
    rounds = sorted(set(on) & set(off))
    if not rounds:
        return []
    shares = [(on[a] - off[a]) / on[a] for a in rounds]
    on_us, off_us = _median([on[a] for a in rounds]), _median([off[a] for a in rounds])
    return [
        (
            "21. flight recorder: CPU/rt < 10% of the gateway's",
            f"{_median(shares):.1%} ({', '.join(f'{v:.1%}' for v in shares)}); "
            f"on {on_us:.0f} µs, off {off_us:.0f} µs",
            _median(shares) < 0.10,
        )
    ]


def public_paths(result: dict[str, Any]) -> list[str]:
    """
    The price of the public paths at 100 connections: every speed-up off
    (median of the rounds), and each one off alone (one round), as CPU per
    round trip and round trips/s over the one-worker gateway's of its round.
    """
    runs = result.get("variants", [])
    rows = [
        ("every speed-up off (OCPPGW_SPEEDUPS=off)", "speedups-off"),
        *(
            (f"{v[3:]} off alone (OCPPGW_SPEEDUPS=-{v[3:]})", v)
            for v in dict.fromkeys(r["variant"] for r in runs)
            if v.startswith("no-")
        ),
    ]
    out = [
        "| public path, 100 connections | CPU per round trip | round trips/s |",
        "|---|---|---|",
    ]
    for label, variant in rows:
        cpu, rate = paired(runs, variant, "server_cpu_us_per_rt"), paired(runs, variant, "rate")
        if cpu:
            out.append(f"| {label} | {_ratios(cpu)} x on | {_ratios(rate)} x on |")
    return out if len(out) > 2 else []


def paired(runs: list[dict[str, Any]], variant: str, key: str) -> list[float]:
    """``key`` of ``variant`` over that of the one-worker JSON run of the same round, each round."""
    base = {r["attempt"]: r[key] for r in runs if r.get("variant") == "workers1"}
    return [
        r[key] / base[r["attempt"]]
        for r in runs
        if r.get("variant") == variant and r["attempt"] in base
    ]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratios(values: list[float]) -> str:
    """The median, and each round's ratio in brackets."""
    return f"{_median(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})"


def table(result: dict[str, Any]) -> str:
    rows = [
        "| server under test | conns | round trips/s | failures | server CPU per round trip "
        "| p50 | p99 | load core busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {
        "echo": "Autobahn echo",
        "ocppcs": "`ocpp` package central system",
        "gateway": "ocppgw",
        "paho-mosquitto-paho": "paho → mosquitto → paho (QoS 1)",
        "floor": "floor: the wire work alone, no rules (`bench/floor.py`)",
    }
    runs = result.get("closed", []) + result.get("variants", []) + result.get("compression", [])
    for r in runs + result.get("open", []) + result.get("forward", []):
        name = names[r["server"]] + (f" ({r['variant']})" if r["variant"] else "")
        if r["variant"] not in ("", "open") or r in result.get("forward", []):
            name += f", round {r['attempt'] + 1}"
        rows.append(
            f"| {name} | {r['conns']} | {r['rate']:,.0f} | {r['failures']} | "
            f"{r['server_cpu_us_per_rt']:.0f} µs | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
            f"{r['load_core_busy']:.0%} |"
        )
    return "\n".join(rows)


def forward_lines(result: dict[str, Any]) -> list[str]:
    """Forward mode (issue 20) beside the central system reached directly, and MQTT mode."""
    runs = result.get("forward", [])
    if not runs:
        return []
    rounds = sorted({r["attempt"] for r in runs})

    def of(variant: str, key: str) -> dict[int, float]:
        return {r["attempt"]: r[key] for r in runs if r["variant"] == variant}

    direct, forwarded, mqtt = of("direct", "rate"), of("forward", "rate"), of("mqtt", "rate")
    fcpu, mcpu = of("forward", "server_cpu_us_per_rt"), of("mqtt", "server_cpu_us_per_rt")
    rcpu = of("relay", "server_cpu_us_per_rt")
    pcpu = of("relay-public", "server_cpu_us_per_rt")
    rate = [forwarded[a] / direct[a] for a in rounds if a in forwarded and a in direct]
    cpu = [fcpu[a] / mcpu[a] for a in rounds if a in fcpu and a in mcpu]
    alone = [rcpu[a] / mcpu[a] for a in rounds if a in rcpu and a in mcpu]
    public = [pcpu[a] / rcpu[a] for a in rounds if a in pcpu and a in rcpu]
    out = [
        "| forward mode, 100 connections (median of rounds) | measured |",
        "|---|---|",
        f"| round trips/s: `ocpp` central system direct | {_median(list(direct.values())):,.0f} |",
        f"| round trips/s: through ocppgw forward mode, tap on | "
        f"{_median(list(forwarded.values())):,.0f} |",
        f"| forwarded / direct round trips/s | {_ratios(rate)} |",
        f"| round trips/s: ocppgw MQTT mode | {_median(list(mqtt.values())):,.0f} |",
        f"| gateway CPU per round trip, forward mode | {_median(list(fcpu.values())):.0f} µs |",
        f"| gateway CPU per round trip, MQTT mode | {_median(list(mcpu.values())):.0f} µs |",
        f"| forward / MQTT mode CPU per round trip | {_ratios(cpu)} |",
        f"| gateway CPU per round trip, the relay alone (tap off) | "
        f"{_median(list(rcpu.values())):.0f} µs |",
        f"| relay alone / MQTT mode CPU per round trip (target: at most 1) | {_ratios(alone)} |",
    ]
    if public:
        out.append(
            "| relay alone, `autobahn_client_frames` off / on, CPU per round trip | "
            f"{_ratios(public)} |"
        )
    return out


def write_forward(result: dict[str, Any], out: Path) -> None:
    """``run.py --forward``: forward mode's comparison alone, in ``forward-latest.md``."""
    stamp = result["date"].replace(":", "")
    (out / f"{stamp}-forward.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    lines = [f"# bench/run.py --forward, {result['date']}", "", table(result), ""]
    lines += [*forward_lines(result), "", f"bench time: {result['bench_seconds']:.0f} s"]
    (out / "forward-latest.md").write_text("\n".join(lines) + "\n")


def write_report(result: dict[str, Any], out: Path, quick: bool, only: str | None = None) -> None:
    """``only``: a part alone (``bench/run.py --only``), reported in ``latest-PART.md``."""
    stamp = result["date"].replace(":", "")
    (out / f"{stamp}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    title = f"bench/run.py --only {only}" if only else "make bench"
    lines = [f"# {title}, {result['date']}", "", table(result), ""]
    if only:
        lines += ["| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in targets(result)]
        lines += ["", *public_paths(result), ""]
        if "profile" in result:
            lines += ["```", result["profile"], "```", ""]
    elif not quick:
        lines += ["| target | measured | met |", "|---|---|---|"]
        from fleet import targets as fleet_targets

        rows = targets(result) + fleet_targets(result)
        lines += [f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in rows]
        lines += ["", *public_paths(result)]
        lines += ["", *forward_lines(result)]
        lines += ["", "```", result.get("profile", ""), "```", ""]
    lines.append(f"bench time: {result['bench_seconds']:.0f} s")
    (out / (f"latest-{only}.md" if only else "latest.md")).write_text("\n".join(lines) + "\n")
    if not quick and not only:
        plots(result, out)


def plots(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    closed = result["closed"]
    labels = {"echo": "Autobahn echo", "ocppcs": "ocpp CS", "gateway": "ocppgw", "floor": "floor"}
    fig, ax = plt.subplots(figsize=(6, 4))
    for server, label in labels.items():
        xs = sorted({r["conns"] for r in closed if r["server"] == server})
        ax.plot(xs, [_mid(_by(closed, server, x), "rate") for x in xs], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("connections (closed loop)")
    ax.set_ylabel("round trips/s")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    at100 = [(labels[s], _by(closed, s, 100)) for s in labels]
    at100.append(
        ("paho→mosquitto→paho", [r for r in result.get("variants", []) if r["server"] != "gateway"])
    )
    for i, key in enumerate(("p50_ms", "p90_ms", "p99_ms")):
        axes[0].bar(
            [x + i * 0.27 for x in range(len(at100))],
            [_mid(rs, key) for _, rs in at100],
            width=0.27,
            label=key[:3],
        )
    axes[0].set_xticks(
        [x + 0.27 for x in range(len(at100))], [n for n, _ in at100], fontsize=7, rotation=15
    )
    axes[0].set_ylabel("latency at 100 connections (ms)")
    axes[0].legend()
    cpu = [(n, _mid(rs, "server_cpu_us_per_rt")) for n, rs in at100]
    gateway_variants = [r for r in result.get("variants", []) if r["server"] == "gateway"]
    cpu += [
        (
            f"ocppgw {variant}",
            _mid([r for r in gateway_variants if r["variant"] == variant], "server_cpu_us_per_rt"),
        )
        for variant in dict.fromkeys(r["variant"] for r in gateway_variants)
    ]
    axes[1].barh([n for n, _ in cpu], [c for _, c in cpu])
    axes[1].set_xlabel("server CPU per round trip (µs)")
    fig.tight_layout()
    fig.savefig(out / "latency_cpu.png", dpi=90)
    plt.close(fig)

    if result.get("memory"):
        ms = result["memory"]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        names = [
            f"{m['conns']:,}" + (f"\n{m['workers']} workers" if m["workers"] > 1 else "")
            for m in ms
        ]
        ax.bar(names, [m["kib_per_conn"] for m in ms])
        ax.axhline(16, color="red", linestyle="--", label="target: 16 KiB")
        ax.set_ylabel("RSS per idle charge point (KiB)")
        ax.set_xlabel("idle charge points held")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "memory.png", dpi=90)
        plt.close(fig)
