"""
The broker connection never blocks the reactor: with the broker's address a
black hole (SYNs unanswered), charge points still connect and get their
locally answered Heartbeats.

The black hole is an iptables rule that DROPs SYNs to one free port of
127.0.0.9 (``make install`` installs iptables), removed at teardown.  Where
iptables cannot be used (not root, no netfilter), it is a listening socket
with a backlog of 0 whose accept queue is full: the kernel then drops further
SYNs instead of answering them, so a connect hangs just the same.  Either way
the fixture first checks that a connect really hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Broker, connect, recv_frame, run_async, start_gateway
from tests.integration.harness.support import BUG_MARKERS

_HOST = "127.0.0.9"


def _hangs(port: int) -> bool:
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect((_HOST, port))
    except TimeoutError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


@contextlib.contextmanager
def _iptables_drop(port: int) -> Iterator[bool]:
    rule = ["INPUT", "-p", "tcp", "-d", _HOST, "--dport", str(port), "--syn", "-j", "DROP"]
    iptables = shutil.which("iptables")
    added = (
        iptables is not None
        and subprocess.run([iptables, "-I", *rule], capture_output=True).returncode == 0
    )
    try:
        yield added
    finally:
        if added:
            subprocess.run([str(iptables), "-D", *rule], check=True)


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port of 127.0.0.9 whose SYNs go unanswered."""
    with socket.socket() as holder:
        holder.bind((_HOST, 0))
        port = holder.getsockname()[1]
        with _iptables_drop(port) as dropped:
            fill: list[socket.socket] = []
            if not dropped:
                # A full accept queue: Linux drops the SYNs it cannot queue.
                holder.listen(0)
                fill.append(socket.create_connection((_HOST, port), timeout=1))
            try:
                assert _hangs(port), f"a connect to {_HOST}:{port} does not hang"
                yield port
            finally:
                for s in fill:
                    s.close()


@run_async
async def test_black_holed_broker_does_not_freeze_charge_points(
    black_hole: int, broker: Broker, tmp_path: Path
) -> None:
    """With the broker black-holed, handshakes and local Heartbeats take under 1 s throughout."""
    gw = start_gateway(
        tmp_path,
        broker,
        {
            "mqtt": {
                "broker": f"mqtt://{_HOST}:{black_hole}",
                "reconnect_min": "0.2",
                "reconnect_max": "0.5",
            },
            "local": {"heartbeat": "true"},
        },
        mqtt_connected=False,
    )
    try:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 11 and n < 200:
            n += 1
            try:
                async with asyncio.timeout(1.0):
                    ws = await connect(gw.url(f"it-bh-{n}"), ["ocpp1.6"])
            except TimeoutError:
                raise AssertionError(f"handshake {n} took over 1 s") from None
            async with ws:
                await ws.send(f'[2,"hb{n}","Heartbeat",{{}}]')
                answer = await recv_frame(ws, timeout=1.0)
                assert answer[:2] == [3, f"hb{n}"] and "currentTime" in answer[2], answer
            await asyncio.sleep(0.1)
        log = gw.log()
        # The gateway kept trying the broker all along (and never got through).
        assert log.count("unreachable") >= 2, log
        assert "MQTT connected" not in log, log
        assert not any(marker in log for marker in BUG_MARKERS), log
    finally:
        gw.stop()
