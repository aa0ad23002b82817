"""
Gateway RSS per idle charge point, with permessage-deflate and without: N
charge points (default 10,000) connect to a real gateway (security profile
0, a real mosquitto, the bench backend of ``servers.py`` answering), each
sends one BootNotification and reads its CALLRESULT, then all stay connected
and idle; the gateway's RSS (``VmRSS``) after, minus before, over N.

With ``--compression on`` each charge point offers ``permessage-deflate;
client_max_window_bits`` (what Python ``websockets`` offers by default), sends
its BootNotification deflated (RSV1) and counts the answers that came back
deflated: the figure is for compression used both ways (issue 23's target:
at most 24 KiB per idle charge point at 10,000).  ``--compression off`` is the
uncompressed figure beside it.  ``--ini KEY=VALUE`` sets listener keys (e.g.
``compression_mem_level=4``) to measure other tunings.

Not run by the tests.  Bounded: timeouts on each step, the gateway and the
broker stopped on the way out.

    .venv/bin/python bench/compression_rss.py [--n 10000] [--compression on|off|both]

Prints one line per variant and writes them to bench/results/compression_rss.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from handshake_storm import (  # type: ignore[import-not-found]
    MOSQUITTO,
    ROOT,
    TWISTD,
    free_port,
    raise_fd_limit,
    rss_kb,
    stop,
    wait_port,
)

_BOOT = b'[2,"boot","BootNotification",{"chargePointVendor":"Bench","chargePointModel":"Idle"}]'
#: Seconds for each charge point's upgrade and Boot round trip.
STEP_TIMEOUT = 60.0


def _frame(payload: bytes, rsv1: bool) -> bytes:
    """A text frame masked with the zero key (RFC 6455 §5.3), RSV1 for a deflated one."""
    first = 0xC1 if rsv1 else 0x81
    n = len(payload)
    head = bytes((first, 0x80 | n)) if n <= 125 else bytes((first, 0xFE)) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


def boot_frame(compressed: bool) -> bytes:
    if not compressed:
        return _frame(_BOOT, False)
    # Window 9: what the gateway asks of a client offering client_max_window_bits.
    deflate = zlib.compressobj(6, zlib.DEFLATED, -9)
    return _frame((deflate.compress(_BOOT) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4], True)


async def one(port: int, n: int, compressed: bool, kept: list[asyncio.StreamWriter]) -> bool:
    """Charge point ``n``: upgrade, Boot, answer read; True when the answer was deflated."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    writer.write(
        (
            f"GET /ocpp/idle-{n} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
            f"{offer if compressed else ''}\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"charge point {n}: {head[:80]!r}")
    writer.write(boot_frame(compressed))
    first, length = await reader.readexactly(2)
    size = length & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    await reader.readexactly(size)
    kept.append(writer)
    return bool(first & 0x40)


async def connect_all(port: int, n: int, compressed: bool, kept: list[asyncio.StreamWriter]) -> int:
    """All ``n`` charge points, 200 at once; how many answers came back deflated."""
    gate = asyncio.Semaphore(200)

    async def bounded(i: int) -> bool:
        async with gate:
            return await asyncio.wait_for(one(port, i, compressed, kept), STEP_TIMEOUT)

    return sum(await asyncio.gather(*(bounded(i) for i in range(n))))


def measure(n: int, compression: str, extra: list[str], work: Path) -> tuple[str, dict[str, Any]]:
    mport, gport = free_port(), free_port()
    (work / "mosquitto.conf").write_text(
        f"listener {mport} 127.0.0.1\nallow_anonymous true\npersistence false\n"
    )
    listener = "".join(f"{kv}\n" for kv in extra)
    (work / "ocppgw.ini").write_text(
        f"[gateway]\nid = rss-{compression}\njournal = {work / 'journal'}\n[listener:ws]\n"
        f"endpoint = tcp:{gport}:interface=127.0.0.1:backlog=4096\nping_interval = 0\n"
        "max_handshake_rate = 0\n"
        f"compression = {compression}\n{listener}"
        f"[mqtt]\nbroker = mqtt://127.0.0.1:{mport}\n[admin]\nendpoint =\n"
    )
    log = open(work / f"gateway-{compression}.log", "wb")
    broker = subprocess.Popen(
        [MOSQUITTO, "-c", str(work / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    backend = gateway = None
    try:
        wait_port(mport, broker, "mosquitto")
        backend = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "servers.py"), "backend", str(mport)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        gateway = subprocess.Popen(
            [str(TWISTD), "-n", "--pidfile=", "ocppgw", "--config", str(work / "ocppgw.ini")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=work,
        )
        wait_port(gport, gateway, "gateway")
        time.sleep(1.0)  # MQTT connect
        before = rss_kb(gateway.pid)
        kept: list[asyncio.StreamWriter] = []

        async def run() -> tuple[int, int]:
            deflated = await connect_all(gport, n, compression == "on", kept)
            await asyncio.sleep(3.0)  # idle: whatever is freed after a message is freed
            after = rss_kb(gateway.pid)
            for writer in kept:
                writer.close()
            return deflated, after

        deflated, after = asyncio.run(asyncio.wait_for(run(), 60 + n / 50))
        figures = {"n": n, "before_kib": before, "after_kib": after, "deflated": deflated}
        figures["kib_per_conn"] = (after - before) / n
        return (
            f"compression={compression} {' '.join(extra)} n={n}: RSS {before} -> {after} KiB, "
            f"{(after - before) / n:.1f} KiB per idle charge point; "
            f"answers deflated: {deflated}/{n}"
        ), figures
    finally:
        for proc in (gateway, backend, broker):
            if proc is not None:
                stop(proc)
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--compression", choices=("on", "off", "both"), default="both")
    parser.add_argument(
        "--ini",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [listener:ws] key, e.g. compression_mem_level=4",
    )
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    args = parser.parse_args()
    raise_fd_limit(args.n * 2 + 1000)
    lines = [f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"]
    figures: dict[str, Any] = {}
    for compression in ("off", "on") if args.compression == "both" else (args.compression,):
        with tempfile.TemporaryDirectory(prefix="ocppgw-rss-") as work:
            line, figures[compression] = measure(args.n, compression, args.ini, Path(work))
        print(line, flush=True)
        lines.append(line)
    if args.json:
        Path(args.json).write_text(json.dumps(figures) + "\n")
    out = ROOT / "bench" / "results" / "compression_rss.txt"
    out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
