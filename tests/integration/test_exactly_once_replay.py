"""
Issue #18, found by the fault soak, with real mosquitto and real gateway
processes: a restarted instance resumes its MQTT session, which replays the
commands queued for the old run's charge points with the old run's will (or
goodbye) among them; and a command routed while a charge point connects,
before its instance's presence is known.  Every command gets one answer.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter

from tests.integration.harness import Backend, connect, run_async, settle
from tests.integration.harness.support import (
    answering,
    command,
    exactly_once,
    exit_status,
    own_gateway,
    presence,
    start_own_broker,
    stop_broker,
)


async def gone(backend: Backend, name: str) -> None:
    await backend.wait_for(
        lambda m: m.topic == f"ocpp/gateway/{name}" and (m.json() or {}).get("Online") is False,
        f"gateway {name} offline",
    )


@run_async
async def test_killed_instance_restarts_replay_answered_once(tmp_path):
    """Commands after a killed instance's will: the peer answers Offline, the new run does not."""
    broker = start_own_broker(tmp_path / "mosquitto")
    backend = Backend(broker)
    try:
        with own_gateway(tmp_path / "a", broker), own_gateway(tmp_path / "b", broker) as b:
            cid = "it-replay-killed"
            async with answering(b.url(cid)):
                await presence(backend, cid, True, gateway=b.name)
                assert b.proc is not None
                b.proc.send_signal(signal.SIGKILL)
                await gone(backend, b.name)
            sent = [f"k{n}" for n in range(10)]
            for unique_id in sent:
                command(backend, cid, unique_id)
            await settle(1)
            with own_gateway(tmp_path / "b2", broker, {"gateway": {"id": b.name}}):
                await settle(3)  # the session replayed, the retained presence read
            kinds = exactly_once(backend, cid, sent)
            assert kinds == Counter({"Offline": len(sent)}), kinds
    finally:
        backend.close()
        stop_broker(broker)


@run_async
async def test_stopped_instance_restarts_replay_answered_once(tmp_path):
    """Commands after a SIGTERM's goodbye (charge point in grace): one Offline each, the peer's."""
    broker = start_own_broker(tmp_path / "mosquitto")
    backend = Backend(broker)
    try:
        with own_gateway(tmp_path / "a", broker), own_gateway(tmp_path / "b", broker) as b:
            cid = "it-replay-stopped"
            async with answering(b.url(cid)):
                await presence(backend, cid, True, gateway=b.name)
            await presence(backend, cid, False, gateway=b.name)  # in its grace period
            assert b.proc is not None
            b.proc.send_signal(signal.SIGTERM)
            assert await exit_status(b.proc) == 0, b.log()
            sent = [f"t{n}" for n in range(10)]
            for unique_id in sent:
                command(backend, cid, unique_id)
            await settle(1)
            with own_gateway(tmp_path / "b2", broker, {"gateway": {"id": b.name}}):
                await settle(3)
            kinds = exactly_once(backend, cid, sent)
            assert kinds == Counter({"Offline": len(sent)}), kinds
    finally:
        backend.close()
        stop_broker(broker)


@run_async
async def test_command_racing_a_connect_answered_once(tmp_path):
    """A command published as its charge point connects: delivered, never also Offline."""
    broker = start_own_broker(tmp_path / "mosquitto")
    backend = Backend(broker)
    try:
        with own_gateway(tmp_path / "a", broker), own_gateway(tmp_path / "b", broker) as b:
            connections = []
            sent: dict[str, str] = {}
            for n in range(30):
                cid = f"it-replay-race{n}"
                ws = await connect(b.url(cid), ["ocpp1.6"])
                command(backend, cid, f"r{n}")  # within milliseconds of the connect
                sent[cid] = f"r{n}"
                connections.append(ws)
            for ws in connections:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
            await settle(1.5)
            for ws in connections:
                await asyncio.wait_for(ws.close(), 5)
            for cid, unique_id in sent.items():
                kinds = exactly_once(backend, cid, [unique_id])
                assert kinds == Counter({"CALLRESULT": 1}), (cid, kinds)
    finally:
        backend.close()
        stop_broker(broker)


@run_async
async def test_instance_stalled_past_its_will_answered_once(tmp_path):
    """
    SIGSTOP of the charge point's instance past 1.5 x keepalive: the broker
    fires its will, and the peer answers Offline what is routed until the
    instance is back; the resumed session replays those commands too.  Each
    command gets one answer: the instance's, or the peer's.
    """
    broker = start_own_broker(tmp_path / "mosquitto")
    backend = Backend(broker)
    fast = {"mqtt": {"keepalive": "5"}}
    try:
        with own_gateway(tmp_path / "a", broker, fast), own_gateway(
            tmp_path / "b", broker, fast
        ) as b:
            cid = "it-replay-stalled"
            async with answering(b.url(cid)):
                await presence(backend, cid, True, gateway=b.name)
                assert b.proc is not None
                sent = [f"z{n}" for n in range(56)]
                b.proc.send_signal(signal.SIGSTOP)
                try:
                    for unique_id in sent:  # 14 s: past the will (fired 7.5 to 10 s in)
                        command(backend, cid, unique_id)
                        await asyncio.sleep(0.25)
                finally:
                    b.proc.send_signal(signal.SIGCONT)
                await settle(4)
            kinds = exactly_once(backend, cid, sent)
            assert kinds["Offline"] > 0, kinds  # the will fired: the peer answered some
    finally:
        backend.close()
        stop_broker(broker)
