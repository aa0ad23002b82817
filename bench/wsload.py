"""
The load generator: OCPP 1.6 charge points as cheap raw-asyncio WebSocket clients.

It is the same for every server under test (gateway, Autobahn echo, ``ocpp``
central system), and cheap on purpose: the handshake is a written HTTP
request, frames are built by hand with a zero masking key (RFC 6455 §5.3
allows any key; zero leaves the payload as it is, so nothing is XORed in
Python), and a reply is matched to its CALL by its unique id.  Each
connection has one CALL in flight (OCPP-J), cycling MeterValues,
StatusNotification and Heartbeat, all schema-valid.  A CALLRESULT counts as
a round trip, a CALLERROR as a failure (and the echo server's copy of the
CALL as a round trip, since that is all it does).

Modes (one per process, results as one JSON line on stdout):

- ``closed``: each connection sends its next CALL when the last is answered;
- ``open``: each connection is due to send at a fixed rate; latency is from
  the time a CALL was due, so a CALL that waited behind a slow one counts
  its wait (no coordinated omission);
- ``idle``: open N connections, print ``HELD``, wait for a line on stdin.

``--deflate``: each charge point offers permessage-deflate as Python
``websockets`` does (``client_max_window_bits``), must get it, sends each
CALL deflated on its own (window 9, as the gateway asks) and inflates the
deflated answers: compression used both ways.

Every run is bounded: ``--warmup`` plus ``--seconds`` of measuring, then a
hard deadline; connections are spread over source addresses 127.0.0.x so
that 10,000 of them do not exhaust one address's ephemeral ports.

    python bench/wsload.py --port 8080 --conns 100 --seconds 5 [--mode closed]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import struct
import sys
import time
import zlib
from typing import Any

_PAYLOADS = [
    (
        "MeterValues",
        '{"connectorId":1,"meterValue":[{"timestamp":"2024-01-01T00:00:00Z","sampledValue":'
        '[{"value":"1234","measurand":"Energy.Active.Import.Register","unit":"Wh"}]}]}',
    ),
    ("StatusNotification", '{"connectorId":1,"errorCode":"NoError","status":"Available"}'),
    ("Heartbeat", "{}"),
]


def frame(text: bytes, opcode: int = 1, rsv1: bool = False) -> bytes:
    """A client frame: FIN, masked with the zero key (RFC 6455 §5.2); RSV1: deflated."""
    n = len(text)
    first = 0x80 | opcode | (0x40 if rsv1 else 0)
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + b"\0\0\0\0" + text


def deflated(text: bytes) -> bytes:
    """``text`` deflated on its own with window 9 (RFC 7692 §7.2.1: the tail dropped)."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -9, 1)
    return (deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]


def inflated(data: bytes) -> bytes:
    """A deflated message of the server's, inflated on its own (no context takeover)."""
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")


class Client(asyncio.Protocol):
    """One charge point: handshake, then frames; one waiter for the CALL in flight."""

    def __init__(self, path: str, host: str, deflate: bool = False) -> None:
        offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
            f"{offer if deflate else ''}\r\n"
        ).encode()
        self.deflate = deflate
        #: Text frames that came deflated (RSV1).
        self.deflated_in = 0
        self.buffer = b""
        self.open: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.waiting: str | None = None
        self.reply: asyncio.Future[int] | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.open.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            agreed = not self.deflate or b"permessage-deflate" in head
            self.open.set_result(self.buffer.startswith(b"HTTP/1.1 101") and agreed)
            self.buffer = self.buffer[end + 4 :]
        buf = self.buffer
        while len(buf) >= 2:
            opcode, rsv1, n = buf[0] & 0x0F, buf[0] & 0x40, buf[1] & 0x7F
            at = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, at = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, at = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < at + n:
                break
            payload, buf = buf[at : at + n], buf[at + n :]
            if opcode == 1:
                if rsv1:
                    self.deflated_in += 1
                    payload = inflated(payload)
                self._text(payload)
            elif opcode == 9:
                self.transport.write(frame(payload, 10))
            elif opcode == 8:
                self.transport.close()
        self.buffer = buf

    def _text(self, payload: bytes) -> None:
        message = json.loads(payload)
        if self.reply is None or self.reply.done() or message[1] != self.waiting:
            return
        self.reply.set_result(int(message[0]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.open.done():
            self.open.set_result(False)
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(-1)

    def call(self, unique_id: str, action: str, payload: str) -> asyncio.Future[int]:
        self.waiting = unique_id
        self.reply = asyncio.get_running_loop().create_future()
        text = f'[2,"{unique_id}","{action}",{payload}]'.encode()
        if self.deflate:
            self.transport.write(frame(deflated(text), rsv1=True))
        else:
            self.transport.write(frame(text))
        return self.reply


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.ok = 0
        self.failed = 0
        self.latencies: list[float] = []
        #: The second of the measuring window each latency began in.
        self.seconds: list[int] = []
        self.started = 0.0
        self.oldest = 0.0


def source(i: int) -> str:
    """Spread connections over 127.0.0.0/8 (one address per 250)."""
    return f"127.0.{1 + i // 250 // 250}.{1 + i // 250 % 250}"


async def connect_all(args: argparse.Namespace) -> list[Client]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(200)
    clients: list[Client] = []

    async def one(i: int) -> None:
        i += args.first
        async with gate:
            path = f"{args.path}/{args.prefix}{i}"
            _, client = await loop.create_connection(
                lambda: Client(path, f"127.0.0.1:{args.port}", args.deflate),
                "127.0.0.1",
                args.port,
                local_addr=(source(i), 0),
            )
            if not await asyncio.wait_for(client.open, 30):
                raise SystemExit(f"handshake {i} refused: {client.buffer[:200]!r}")
            clients.append(client)

    await asyncio.wait_for(
        asyncio.gather(*(one(i) for i in range(args.conns))), args.connect_timeout
    )
    return clients


async def drive(
    client: Client, index: int, stats: Stats, args: argparse.Namespace, stop: float
) -> None:
    loop = asyncio.get_running_loop()
    ok_types = (2, 3) if args.echo else (3,)
    period = args.conns / args.rate if args.mode == "open" else 0.0
    due = loop.time() + (index % max(args.conns, 1)) * (period / max(args.conns, 1))
    n = 0
    while loop.time() < stop and not client.closed:
        if period:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        action, payload = _PAYLOADS[n % 3]
        started = due if period else loop.time()
        try:
            kind = await asyncio.wait_for(client.call(f"{index}-{n}", action, payload), 10)
        except TimeoutError:
            kind = -2
        n += 1
        if period:
            due += period
        if not stats.measuring:
            continue
        latency = loop.time() - started
        if kind in ok_types:
            stats.ok += 1
            stats.latencies.append(latency)
            stats.seconds.append(int(started - stats.started))
            stats.oldest = max(stats.oldest, latency)
        else:
            stats.failed += 1


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    clients = await connect_all(args)
    if args.mode == "idle":
        print("HELD", flush=True)
        await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline), 120
        )
        return {"mode": "idle", "conns": len(clients)}
    loop = asyncio.get_running_loop()
    stats = Stats()
    stop = loop.time() + args.warmup + args.seconds
    tasks = [asyncio.create_task(drive(c, i, stats, args, stop)) for i, c in enumerate(clients)]
    await asyncio.sleep(args.warmup)
    print("MEASURE_START", flush=True)
    cpu0, t0 = time.process_time(), loop.time()
    stats.measuring = True
    stats.started = t0
    await asyncio.sleep(args.seconds)
    stats.measuring = False
    elapsed, cpu = loop.time() - t0, time.process_time() - cpu0
    print("MEASURE_END", flush=True)
    await asyncio.wait_for(asyncio.gather(*tasks), 15)
    for c in clients:
        c.transport.close()
    lat = stats.latencies
    return {
        "mode": args.mode,
        "conns": len(clients),
        "seconds": elapsed,
        "round_trips": stats.ok,
        "failures": stats.failed,
        "rate": stats.ok / elapsed,
        "p50_ms": percentile(lat, 0.50) * 1e3,
        "p90_ms": percentile(lat, 0.90) * 1e3,
        "p99_ms": percentile(lat, 0.99) * 1e3,
        "max_ms": stats.oldest * 1e3,
        "loadgen_cpu_s": cpu,
        "deflated_answers": sum(c.deflated_in for c in clients),
        "p99_by_second_ms": _by_second(stats, 0.99),
    }


def _by_second(stats: Stats, q: float) -> list[float]:
    """The ``q`` percentile of the latencies of each second of the window, in ms."""
    by: dict[int, list[float]] = {}
    for second, latency in zip(stats.seconds, stats.latencies, strict=True):
        by.setdefault(second, []).append(latency)
    return [round(percentile(by[s], q) * 1e3, 2) for s in sorted(by)]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/ocpp")
    p.add_argument("--prefix", default="BENCH")
    p.add_argument("--conns", type=int, default=100)
    p.add_argument(
        "--first", type=int, default=0, help="index of the first charge point (several loaders)"
    )
    p.add_argument("--mode", choices=["closed", "open", "idle"], default="closed")
    p.add_argument("--rate", type=float, default=1000.0, help="open loop: CALLs/s in all")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connect-timeout", type=float, default=90.0)
    p.add_argument("--echo", action="store_true", help="the server echoes: a copy is an answer")
    p.add_argument("--deflate", action="store_true", help="permessage-deflate used both ways")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = asyncio.run(main(arguments))
    print(json.dumps(result), flush=True)
    os._exit(0)
