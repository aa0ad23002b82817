"""
``[gateway] workers = 2``: two processes share the listening socket, each an
instance of its own on the broker, supervised by the first.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

from ocppgw import speedups
from ocppgw.router.offline import OFFLINE_WAIT
from tests.integration.harness import (
    Gateway,
    connect,
    recv_frame,
    run_async,
    wait_closed,
    wait_log,
)
from tests.integration.harness.support import presence


def _workers(gateway) -> Gateway:
    gw = gateway({"gateway": {"workers": "2"}})
    wait_log(gw, r"worker \d: .*MQTT connected", 2)
    wait_log(gw, r"worker \d: .*starting on", 2)
    return gw


async def _boot(gw: Gateway, cid: str) -> list:
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await ws.send(
            f'[2,"{cid}-b","BootNotification",{{"chargePointVendor":"V","chargePointModel":"M"}}]'
        )
        return await recv_frame(ws)


@run_async
async def test_two_workers_share_the_port(gateway, backend):
    """Charge points spread over both workers; every CALL is published once and answered once."""
    gw = _workers(gateway)
    backend.answer(
        "BootNotification",
        {"status": "Accepted", "currentTime": "2024-01-01T00:00:00Z", "interval": 60},
    )
    cids = [f"it-wk-{i}" for i in range(12)]
    answers = await asyncio.gather(*(_boot(gw, cid) for cid in cids))
    assert all(a[0] == 3 and a[2]["status"] == "Accepted" for a in answers), answers
    gateways = set()
    for cid in cids:
        gateways.add((await presence(backend, cid, True)).json()["Gateway"])
        calls = [m for m in backend.about(cid) if m.topic == f"ocpp/cp/{cid}/BootNotification"]
        assert len(calls) == 1, calls
    assert gateways == {f"{gw.name}-w0", f"{gw.name}-w1"}, gateways


def test_workers_run_on_the_gateways_reactor(gateway):
    """
    The supervisor runs on the reactor of ocppgw.loop (the speed-up's, unless
    speed-ups are off: Twisted's epoll reactor) and starts its workers on it too.
    """
    gw = _workers(gateway)
    fast = speedups.wanted()
    if fast:
        assert "reactor class: ocppgw.loop_fast.GatewayReactor" in gw.log()
    else:
        assert "reactor class: twisted.internet.epollreactor.EPollReactor" in gw.log()
    pids = [int(p) for p in wait_log(gw, r"worker \d started \(pid (\d+)\)", 2)]
    for pid in pids:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        assert (b"--reactor=ocppgw" in argv) == fast, argv


@run_async
async def test_takeover_between_workers(gateway, backend):
    """A reconnection replaces the connection it finds, also when that is on the other worker."""
    gw = _workers(gateway)
    cid = "it-wk-takeover"
    current = await connect(gw.url(cid), ["ocpp1.6"])
    holder = (await presence(backend, cid, True)).json()["Gateway"]
    for _ in range(20):  # the kernel picks the worker: go on until one crossed over
        after = time.monotonic()
        newer = await connect(gw.url(cid), ["ocpp1.6"])
        now_holder = (await presence(backend, cid, True, after=after)).json()["Gateway"]
        closed = await wait_closed(current)
        assert closed.rcvd is not None and closed.rcvd.reason == "replaced", closed
        current = newer
        if now_holder != holder:
            break
    else:
        raise AssertionError("20 connections all landed on one worker")
    await current.close()


@run_async
async def test_killed_worker_is_restarted(gateway, backend):
    """A worker killed with SIGKILL is started again and takes connections."""
    gw = _workers(gateway)
    pid = int(wait_log(gw, r"worker 0 started \(pid (\d+)\)", 1)[0])
    os.kill(pid, signal.SIGKILL)
    wait_log(gw, r"worker 0 started \(pid \d+\)", 2)
    wait_log(gw, r"worker 0: .*MQTT connected", 2)
    backend.answer(
        "BootNotification",
        {"status": "Accepted", "currentTime": "2024-01-01T00:00:00Z", "interval": 60},
    )
    answers = await asyncio.gather(*(_boot(gw, f"it-wk-restart-{i}") for i in range(6)))
    assert all(a[0] == 3 for a in answers), answers


@run_async
async def test_json_log_of_every_process_and_a_clean_stop_exits_0(gateway, backend):
    """
    workers = 2, log_format = json: a charge point boots and is connected
    when SIGTERM stops the supervisor; the supervisor exits 0 (a clean stop),
    and every line it wrote (stdout and stderr) is one JSON object, its
    workers' events with the field "worker" (0 or 1) and no "worker N:" prefix.
    """
    gw = gateway({"gateway": {"workers": "2", "log_format": "json"}})
    # Each worker connected to the broker, so its reactor runs and the stop
    # signals are its own (a worker logs MQTT connected more than once: CI
    # saw two lines of worker 0 let SIGTERM reach worker 1 before they were).
    for worker in (0, 1):
        wait_log(gw, rf'MQTT connected[^\n]*"worker": {worker}', 1)
    wait_log(gw, r'starting on[^\n]*"worker": \d', 2)
    backend.answer(
        "BootNotification",
        {"status": "Accepted", "currentTime": "2024-01-01T00:00:00Z", "interval": 60},
    )
    async with connect(gw.url("it-wk-json"), ["ocpp1.6"]) as ws:
        await ws.send(
            '[2,"b1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
        )
        answer = await recv_frame(ws)
        assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
        # The other worker's catch-all may have had the answer before the
        # charge point's presence: it holds its copy OFFLINE_WAIT for one,
        # then passes it on to the holder.  A stop meanwhile would leave that
        # publish unacknowledged (CI saw it: an incomplete stop, exit 143),
        # which is not what this test is about: wait until it is done.
        await asyncio.sleep(OFFLINE_WAIT + 0.5)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        await wait_closed(ws)
    status = await asyncio.to_thread(gw.proc.wait, 30)
    log = gw.log()
    assert status == 0, log
    records = []
    for line in log.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\nlog:\n{log}") from None
    assert all(isinstance(r, dict) and "text" in r for r in records), log
    assert {r["worker"] for r in records if "worker" in r} == {0, 1}, log
    assert not [r for r in records if "worker" in r and r["text"].startswith("worker ")], log
    assert any(r.get("worker") is not None and "shutting down" in r["text"] for r in records), log
