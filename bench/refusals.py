"""
The gateway's CPU per connection refused by admission control (HTTP 503 with
``Retry-After``, issue 23): a real gateway with a second listener of
``max_handshake_rate = 1`` (burst 1) on the server core, and N raw
connections from the load core (500 at a time), each sending a WebSocket
upgrade request and reading until the close.  The gateway's CPU time
(``/proc``, user and system) over the round, divided by N, is the cost of one
refusal: the accept, the transport, the request read, the 503 and the close.
The few admitted (one a second) stay until their ping times out (5 s, then
2 s for the pong), which bounds the round.

With ``--queued`` each round's connections are made and their requests
sent while the gateway is stopped (SIGSTOP), so that every request head is
in when it is accepted, as when a storm finds the gateway busy; the CPU is
counted from its SIGCONT (N at most the listener's backlog, 4096).

``--profile FILE`` runs py-spy on the gateway meanwhile (raw, native frames).
Not run by the tests; bounded (timeouts, the gateway and broker stopped on
the way out).

    .venv/bin/python bench/refusals.py [--n 5000] [--rounds 2] [--queued] [--profile out.raw]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from handshake_storm import cpu_seconds, free_port, raise_fd_limit  # noqa: E402
from run import LOAD_CORE, Bench, stop  # noqa: E402

REQUEST = (
    "GET /ocpp/CP{n} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
)


async def _one(
    port: int, n: int, slots: asyncio.Semaphore, seen: dict[str, int], sent: list[int]
) -> None:
    async with slots:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST.format(n=n).encode())
            await writer.drain()
            sent.append(n)
            data = await asyncio.wait_for(reader.read(), 60)
            what = data[9:12].decode(errors="replace") or "closed"
            writer.close()
        except (TimeoutError, OSError) as e:
            what = type(e).__name__
        seen[what] = seen.get(what, 0) + 1


async def _round(port: int, n: int, gateway: int, queued: bool) -> tuple[dict[str, int], float]:
    """What the N connections were answered, and the gateway's CPU seconds for them."""
    slots, seen, sent = asyncio.Semaphore(n if queued else 500), {}, []
    if queued:
        os.kill(gateway, signal.SIGSTOP)
    try:
        tasks = [asyncio.ensure_future(_one(port, i, slots, seen, sent)) for i in range(n)]
        deadline = time.monotonic() + 60
        while queued and len(sent) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        before = cpu_seconds(gateway)
    finally:
        if queued:
            os.kill(gateway, signal.SIGCONT)
    await asyncio.gather(*tasks)
    return seen, cpu_seconds(gateway) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--queued", action="store_true", help="requests in before the accept")
    parser.add_argument("--profile", help="py-spy raw output of the gateway")
    args = parser.parse_args()
    if args.queued and not 0 < args.n <= 4096:
        parser.error("--queued needs --n from 1 to 4096 (the listener's backlog)")
    raise_fd_limit(20_000)
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    b = Bench(Path(tempfile.mkdtemp(prefix="refusals-")), False)
    try:
        with b.broker() as (mport, _broker):
            port = free_port()
            extra = (
                f"[listener:refusing]\nendpoint = tcp:{port}:interface=127.0.0.1:backlog=4096\n"
                "max_handshake_rate = 1\nmax_handshake_burst = 1\n"
                "ping_interval = 5\npong_timeout = 2\n"
            )
            with b.gateway(mport, extra) as (_port, gateway):
                spy = None
                if args.profile:
                    argv = [str(Path(sys.executable).parent / "py-spy"), "record", "--native"]
                    argv += ["-r", "500", "-f", "raw"]
                    argv += ["-o", args.profile, "-p", str(gateway.pid)]
                    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
                    time.sleep(1)
                for n in range(args.rounds):
                    began = time.monotonic()
                    seen, used = asyncio.run(_round(port, args.n, gateway.pid, args.queued))
                    took = time.monotonic() - began
                    print(
                        f"round {n}: {args.n} connections in {took:.1f} s, gateway CPU "
                        f"{used:.2f} s: {used / args.n * 1e6:.0f} us each; answers {seen}",
                        flush=True,
                    )
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(30)
    finally:
        for proc in b.procs:
            stop(proc)


if __name__ == "__main__":
    main()
