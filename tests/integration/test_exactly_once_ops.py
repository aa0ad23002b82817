"""
Issue #18, the operator's paths: SIGUSR1 drains every worker of ``[gateway]
workers = N`` through the supervisor; a worker whose supervisor is gone stops
itself; a shutdown that still owes the backend error envelopes says so in its
exit status.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

from tests.integration.harness import (
    WAIT,
    Backend,
    Gateway,
    connect,
    recv_frame,
    run_async,
    wait_closed,
    wait_log,
)
from tests.integration.harness.support import (
    NOW,
    clear_cache,
    exit_status,
    own_gateway,
    presence,
    start_own_broker,
    stop_broker,
)


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie waiting to be reaped has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _kill(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


async def _gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still running after ``timeout`` s (none once they all exited)."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return left


def _workers(gateway, gateway_section: dict[str, str]) -> tuple[Gateway, list[int]]:
    """A supervisor of two workers, both up; their pids."""
    gw = gateway({"gateway": {"workers": "2", **gateway_section}})
    wait_log(gw, r"worker \d: .*MQTT connected", 2)
    wait_log(gw, r"worker \d: .*starting on", 2)
    pids = [int(p) for _, p in wait_log(gw, r"worker (\d) started \(pid (\d+)\)", 2)]
    return gw, pids


@run_async
async def test_sigusr1_with_workers_drains_each_then_the_supervisor_exits(gateway, backend):
    """SIGUSR1 to the supervisor: it stays, each worker drains (1001) and exits, then it exits 0."""
    gw, pids = _workers(gateway, {"drain_rate": "2", "shutdown_timeout": "2"})
    try:
        cids = [f"it-ops-drain-{i}" for i in range(6)]
        conns = [await connect(gw.url(cid), ["ocpp1.6"]) for cid in cids]
        holders = {(await presence(backend, cid, True)).json()["Gateway"] for cid in cids}
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(0.5)
        assert gw.proc.poll() is None, f"the supervisor died of SIGUSR1:\n{gw.log()}"
        for ws in conns:
            closed = await wait_closed(ws, timeout=WAIT)
            assert closed.rcvd is not None and closed.rcvd.code == 1001, closed
        assert await exit_status(gw.proc) == 0, gw.log()
        assert await _gone(pids, 1.0) == [], "a worker outlived its supervisor"
        log = gw.log()
        assert "starting it again" not in log, log
        assert len(re.findall(r"worker \d: .*drained", log)) == 2, log
        assert len(holders) >= 1
    finally:
        _kill(pids)


@run_async
async def test_workers_stop_when_the_supervisor_is_killed(gateway, backend):
    """SIGKILL of the supervisor: each worker notices within a few seconds and exits."""
    gw, pids = _workers(gateway, {"shutdown_timeout": "1"})
    try:
        async with connect(gw.url("it-ops-orphan"), ["ocpp1.6"]) as ws:
            await presence(backend, "it-ops-orphan", True)
            assert gw.proc is not None
            gw.proc.kill()
            gw.proc.wait(WAIT)
            left = await _gone(pids, 8.0)
            assert left == [], f"workers {left} still run without their supervisor:\n{gw.log()}"
            closed = await wait_closed(ws, timeout=WAIT)
            assert closed.rcvd is None or closed.rcvd.code in (1001, 1012), closed
        await presence(backend, "it-ops-orphan", False)
    finally:
        _kill(pids)


async def _owing_gateway(tmp_path: Path, resume: bool) -> tuple[int, str, list[dict]]:
    """
    A SIGTERM while the broker is stopped (SIGSTOP) and the charge point's
    share of the MQTT buffer is full: the Shutdown envelope of the backend's
    CALL in flight cannot be published and is owed.  ``resume``: the broker
    continues just after the SIGTERM.  The exit status, the log, and the
    Shutdown envelopes the backend got.
    """
    broker = start_own_broker(tmp_path / "mosquitto")
    backend = Backend(broker)
    # max_buffer = 2: two publishes waiting for the broker fill the charge
    # point's share (strict = false lets it send two CALLs at once).
    extra = {
        "gateway": {"shutdown_timeout": "4", "strict": "false"},
        "mqtt": {"max_buffer": "2"},
        "local": {"heartbeat": "false"},
    }
    cid = f"it-ops-owed-{int(resume)}"
    backend.answer("Heartbeat", {"currentTime": NOW})
    try:
        with own_gateway(tmp_path / "gw", broker, extra) as gw:
            async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
                await presence(backend, cid, True)
                backend.publish(*clear_cache(cid, "owed-call"))
                assert (await recv_frame(ws))[1] == "owed-call"
                broker.proc.send_signal(signal.SIGSTOP)
                try:
                    await ws.send('[2,"hb-1","Heartbeat",{}]')
                    await ws.send('[2,"hb-2","Heartbeat",{}]')  # the share is full
                    await asyncio.sleep(0.3)
                    assert gw.proc is not None
                    gw.proc.send_signal(signal.SIGTERM)
                    await asyncio.sleep(0.3)
                finally:
                    if resume:
                        broker.proc.send_signal(signal.SIGCONT)
                status = await exit_status(gw.proc)
            log = gw.log()
        if resume:
            await asyncio.sleep(0.5)
        shutdowns = [
            m.json()
            for m in backend.about(cid)
            if m.topic == f"ocpp/cp/Error/{cid}" and m.json().get("UniqueId") == "owed-call"
        ]
        return status, log, shutdowns
    finally:
        broker.proc.send_signal(signal.SIGCONT)
        backend.close()
        stop_broker(broker)


@run_async
async def test_owed_shutdown_envelope_is_paid_before_exit(tmp_path: Path):
    """A Shutdown envelope owed at SIGTERM is published once the broker resumes; then exit 0."""
    status, log, shutdowns = await _owing_gateway(tmp_path, resume=True)
    assert [e["ErrorCode"] for e in shutdowns] == ["Shutdown"], (shutdowns, log)
    assert status == 0, log


@run_async
async def test_owed_shutdown_envelope_never_paid_is_counted(tmp_path: Path):
    """A Shutdown envelope still owed at the deadline: one line with its count, exit not 0."""
    status, log, shutdowns = await _owing_gateway(tmp_path, resume=False)
    assert status != 0, log
    lines = [line for line in log.splitlines() if "error envelopes not published" in line]
    assert len(lines) == 1, log
    assert re.search(r"and [1-9]\d* error envelopes not published", lines[0]), lines
    assert shutdowns == []
