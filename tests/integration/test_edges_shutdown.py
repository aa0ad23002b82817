"""
Closing and shutdown: SIGTERM answers every downstream CALL and waits for the
backend's answers to upstream ones; ``shutdown_close`` picks how charge points
are let go; the exit status says whether every publish was acknowledged; the
embedded broker is in its own process group and stops last; SIGUSR1 drains.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

from tests.integration.harness import (
    MOSQUITTO,
    WAIT,
    Gateway,
    accepts,
    connect,
    free_port,
    read_log,
    recv_frame,
    run_async,
    start_gateway,
    wait_closed,
)
from tests.integration.harness.support import (
    NOW,
    clear_cache,
    exit_status,
    kill_embedded_broker,
    own_gateway,
    presence,
    start_own_broker,
    stop_broker,
)


@run_async
async def test_sigterm_answers_downstream_and_waits_for_upstream(gateway, backend):
    """SIGTERM: backend CALLs queued or in flight get Shutdown; an upstream CALL gets its answer."""
    gw = gateway({"gateway": {"shutdown_timeout": "5"}, "local": {"heartbeat": "false"}})
    cid = "it-edge-sigterm"
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await presence(backend, cid, True)
        backend.publish(*clear_cache(cid, "in-flight"))
        backend.publish(*clear_cache(cid, "queued"))
        assert (await recv_frame(ws))[1] == "in-flight"
        await ws.send('[2,"up-1","Heartbeat",{}]')
        up = await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId="up-1")
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        for uid in ("in-flight", "queued"):
            env = await backend.envelope(f"ocpp/cp/Error/{cid}", UniqueId=uid)
            assert env["ErrorCode"] == "Shutdown", env
        # A CALL arriving now is refused too, and said so.
        backend.publish(*clear_cache(cid, "late"))
        env = await backend.envelope(f"ocpp/cp/Error/{cid}", UniqueId="late")
        assert env["ErrorCode"] == "Shutdown", env
        # The backend answers the upstream CALL after the SIGTERM: it still arrives.
        backend.publish(
            f"ocpp/cs/{cid}/Reply/Heartbeat",
            {"MessageTypeId": 3, "UniqueId": up["UniqueId"], "Payload": {"currentTime": NOW}},
        )
        assert await recv_frame(ws) == [3, "up-1", {"currentTime": NOW}]
        closed = await wait_closed(ws)
        assert closed.rcvd is not None and closed.rcvd.code == 1001, closed
    assert await exit_status(gw.proc) == 0, gw.log()


@run_async
async def test_shutdown_close_modes(gateway, backend):
    """shutdown_close = service-restart closes with 1012; abort drops TCP without a close frame."""
    for mode, expect in (("service-restart", 1012), ("abort", None)):
        gw = gateway({"gateway": {"shutdown_close": mode}})
        cid = f"it-edge-close-{mode}"
        async with connect(gw.url(cid), ["ocpp2.0.1"]) as ws:
            await presence(backend, cid, True)
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            closed = await wait_closed(ws)
            code = closed.rcvd.code if closed.rcvd is not None else None
            assert code == expect, f"{mode}: {closed}"
        assert await exit_status(gw.proc) == 0, gw.log()
        await presence(backend, cid, False, gateway=gw.name)


@run_async
async def test_exit_status_not_zero_with_unacknowledged_publishes(backend, tmp_path: Path):
    """A publish the broker never acknowledged: the exit status is not 0."""
    broker = start_own_broker(tmp_path / "mosquitto")
    extra = {"gateway": {"shutdown_timeout": "1"}, "local": {"heartbeat": "false"}}
    try:
        with own_gateway(tmp_path / "gw", broker, extra) as gw:
            async with connect(gw.url("it-edge-unacked"), ["ocpp1.6"]) as ws:
                await asyncio.to_thread(stop_broker, broker)
                await ws.send('[2,"lost","Heartbeat",{}]')
                await asyncio.sleep(0.3)
                assert gw.proc is not None
                gw.proc.send_signal(signal.SIGTERM)
                status = await exit_status(gw.proc)
            assert status != 0, f"exit status {status} with a publish never acknowledged"
            assert "not acknowledged" in gw.log()
    finally:
        stop_broker(broker)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _start_embedded(directory: Path, broker) -> tuple[Gateway, int]:
    """A gateway with an embedded broker, in a session of its own like a terminal's job."""
    mqtt_port = free_port()
    mqtt = {"broker": "embedded", "embedded_port": str(mqtt_port), "mosquitto": MOSQUITTO}
    gw = start_gateway(
        directory, broker, {"gateway": {"shutdown_timeout": "2"}, "mqtt": mqtt}, new_session=True
    )
    return gw, mqtt_port


@run_async
async def test_ctrl_c_reaches_only_the_gateway_and_broker_stops_last(tmp_path: Path, broker):
    """Ctrl-C to the job's process group: mosquitto is not in it, is not restarted, stops last."""
    gw, mqtt_port = _start_embedded(tmp_path / "gw", broker)
    proc, log = gw.proc, gw.log_path
    assert proc is not None
    try:
        (mosquitto,) = _children(proc.pid)
        assert os.getpgid(mosquitto) != os.getpgid(proc.pid), "mosquitto shares the job's group"
        os.killpg(os.getpgid(proc.pid), signal.SIGINT)  # what the terminal does on Ctrl-C
        assert await exit_status(proc) == 0, read_log(log)
        assert not accepts(mqtt_port), "the embedded broker outlived the gateway"
        text = read_log(log)
        assert "restarting" not in text and "not acknowledged" not in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_embedded_broker(mqtt_port)


@run_async
async def test_hung_embedded_broker_cannot_hang_shutdown(tmp_path: Path, broker):
    """A stopped (hung) mosquitto is killed after the stop timeout; the gateway exits."""
    gw, _ = _start_embedded(tmp_path / "gw", broker)
    proc = gw.proc
    assert proc is not None
    mosquitto = 0
    try:
        (mosquitto,) = _children(proc.pid)
        os.kill(mosquitto, signal.SIGSTOP)
        proc.send_signal(signal.SIGTERM)
        await exit_status(proc, timeout=15)
        assert (
            not os.path.exists(f"/proc/{mosquitto}/status")
            or "Z" in open(f"/proc/{mosquitto}/status").read().split("State:")[1][:4]
        ), "mosquitto still runs"
    finally:
        if proc.poll() is None:
            proc.kill()
        if mosquitto:
            try:
                os.kill(mosquitto, signal.SIGKILL)
            except OSError:
                pass


@run_async
async def test_sigusr1_drains_at_drain_rate_then_exits(gateway, backend):
    """SIGUSR1: no new connections, charge points closed at drain_rate/s with 1001, then exit 0."""
    rate, n = 4, 8
    gw = gateway({"gateway": {"drain_rate": str(rate)}})
    conns = [await connect(gw.url(f"it-edge-drain-{i}"), ["ocpp1.6"]) for i in range(n)]
    closes: list[float] = []
    lock = threading.Lock()

    async def watch(ws) -> None:
        closed = await wait_closed(ws, timeout=WAIT)
        assert closed.rcvd is not None and closed.rcvd.code == 1001, closed
        with lock:
            closes.append(time.monotonic())

    try:
        for i in range(n):
            await presence(backend, f"it-edge-drain-{i}", True)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGUSR1)
        started = time.monotonic()
        watchers = [asyncio.create_task(watch(ws)) for ws in conns]
        await asyncio.sleep(0.3)
        assert not accepts(gw.port), "the listener still accepts while draining"
        await asyncio.gather(*watchers)
        spread = max(closes) - started
        # n at rate/s: the last one no sooner than (n - 1) / rate s after the first.
        assert spread >= (n - 1) / rate - 0.3, f"all {n} closed within {spread:.2f} s"
        assert await exit_status(gw.proc) == 0, gw.log()
    finally:
        for ws in conns:
            await ws.close()
