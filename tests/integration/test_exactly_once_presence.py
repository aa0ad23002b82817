"""
Issue #18, paths 5, 6, 11, 13 and 16 with real mosquitto and real gateway
processes: every downstream CALL gets exactly one answer envelope (the charge
point's CALLRESULT, or one gateway error) when an instance restarts under the
same id, the broker restarts, an instance stops on SIGTERM or is killed, and
a charge point's grace period ends.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

from tests.integration.harness import Backend, run_async, settle, start_gateway
from tests.integration.harness.support import (
    ReconnectingBackend,
    answering,
    command,
    exactly_once,
    exit_status,
    own_gateway,
    presence,
    presence_topic,
    restart_broker,
    retained,
    start_own_broker,
    stop_broker,
)


@run_async
async def test_sigterm_each_command_answered_once(tmp_path):
    """Path 13: commands during a SIGTERM get one answer each (Shutdown, Offline or a result)."""
    broker = start_own_broker(tmp_path / "mosquitto")
    backend = Backend(broker)
    try:
        with (
            own_gateway(tmp_path / "a", broker) as a,
            own_gateway(tmp_path / "b", broker) as b,
        ):
            cid = "it-eo-sigterm"
            sent: list[str] = []
            async with answering(a.url(cid)):
                await presence(backend, cid, True, gateway=a.name)
                await settle(0.3)
                for n in range(60):  # within the charge point's message burst (50)
                    if n == 15:
                        assert a.proc is not None
                        a.proc.send_signal(signal.SIGTERM)
                    sent.append(f"t{n}")
                    command(backend, cid, f"t{n}")
                    await asyncio.sleep(0.03)
                assert a.proc is not None
                assert await exit_status(a.proc) == 0, a.log()
            await settle(2)
            kinds = exactly_once(backend, cid, sent)
            assert kinds["CALLRESULT"] >= 10, kinds
            assert kinds["Offline"] >= 1, kinds  # after the goodbye: b's catch-all
            assert b.proc is not None and b.proc.poll() is None
    finally:
        backend.close()
        stop_broker(broker)


@run_async
async def test_broker_restart_no_false_offline(tmp_path):
    """Path 11: after a broker restart (both wills) a connected CP's commands are delivered once."""
    broker = start_own_broker(tmp_path / "mosquitto", persistent=True)
    backend = ReconnectingBackend(broker)
    extra = {"mqtt": {"reconnect_max": "1"}}
    try:
        with (
            own_gateway(tmp_path / "a", broker, extra) as a,
            own_gateway(tmp_path / "b", broker, extra) as b,
        ):
            cid = "it-eo-broker-restart"
            assert b.proc is not None
            async with answering(a.url(cid)):
                await presence(backend, cid, True, gateway=a.name)
                await settle(0.3)
                # b reads a's will (sent as the broker stops) only after a is
                # back: its correction is published after a's republished presence.
                b.proc.send_signal(signal.SIGSTOP)
                try:
                    await asyncio.to_thread(stop_broker, broker)
                    await settle(0.5)
                    await asyncio.to_thread(restart_broker, broker)
                    for _ in range(300):  # both connections of a, and the backend
                        if a.log().count("MQTT connected") >= 4 and backend.is_connected():
                            break
                        await asyncio.sleep(0.1)
                    await settle(1)
                finally:
                    b.proc.send_signal(signal.SIGCONT)
                for _ in range(300):
                    if b.log().count("MQTT connected") >= 4:
                        break
                    await asyncio.sleep(0.1)
                await settle(2)
                sent = [f"r{n}" for n in range(30)]
                for unique_id in sent:
                    command(backend, cid, unique_id)
                    await asyncio.sleep(0.02)
                await settle(2)
                kinds = exactly_once(backend, cid, sent)
                assert kinds == Counter({"CALLRESULT": len(sent)}), kinds
                body = retained(broker, presence_topic(cid))
                assert body is not None and body["Online"] is True, body
                assert body["Gateway"] == a.name, body
    finally:
        backend.close()
        stop_broker(broker)


@run_async
async def test_restart_same_id_peer_does_not_answer_offline(tmp_path):
    """Path 5: a new run under the same id, the will of the old run read after its presence."""
    broker = start_own_broker(tmp_path / "mosquitto")
    backend = Backend(broker)
    ttl = {"dnstream": {"offline_ttl": "1"}}
    try:
        with own_gateway(tmp_path / "peer", broker, ttl) as peer:
            assert peer.proc is not None
            with own_gateway(tmp_path / "old", broker, {**ttl, "mqtt": {"keepalive": "60"}}) as old:
                cid = "it-eo-same-id"
                async with answering(old.url(cid)):
                    await presence(backend, cid, True, gateway=old.name)
                    assert old.proc is not None
                    # Frozen: the broker has not noticed; the new run takes its
                    # client id over, which publishes the old run's will.  The
                    # peer reads that will only after the new run's presence.
                    old.proc.send_signal(signal.SIGSTOP)
                    peer.proc.send_signal(signal.SIGSTOP)
                    frozen = time.monotonic()
                    try:
                        new_extra = {**ttl, "gateway": {"id": old.name}}
                        with own_gateway(tmp_path / "new", broker, new_extra) as new:
                            async with answering(new.url(cid)):
                                await presence(backend, cid, True, gateway=old.name, after=frozen)
                                peer.proc.send_signal(signal.SIGCONT)
                                await settle(2)  # past offline_ttl
                                sent = [f"s{n}" for n in range(30)]
                                for unique_id in sent:
                                    command(backend, cid, unique_id)
                                    await asyncio.sleep(0.02)
                                await settle(1.5)
                                kinds = exactly_once(backend, cid, sent)
                                assert kinds == Counter({"CALLRESULT": len(sent)}), kinds
                                body = retained(broker, presence_topic(cid))
                                assert body is not None and body["Online"] is True, body
                    finally:
                        peer.proc.send_signal(signal.SIGCONT)
                        old.proc.send_signal(signal.SIGKILL)
                        old.proc.send_signal(signal.SIGCONT)
    finally:
        backend.close()
        stop_broker(broker)


@run_async
async def test_grace_end_clears_retained_presence(tmp_path):
    """Path 6: when the grace period ends, the charge point's retained presence is gone."""
    broker = start_own_broker(tmp_path / "mosquitto")
    backend = Backend(broker)
    try:
        with own_gateway(tmp_path / "a", broker, {"dnstream": {"offline_ttl": "1"}}) as a:
            cid = "it-eo-grace-end"
            async with answering(a.url(cid)):
                await presence(backend, cid, True, gateway=a.name)
            await presence(backend, cid, False, gateway=a.name)
            assert retained(broker, presence_topic(cid)) is not None
            await settle(2)
            assert retained(broker, presence_topic(cid)) is None
    finally:
        backend.close()
        stop_broker(broker)


@run_async
async def test_killed_instance_charge_point_moves_nothing_lost(tmp_path):
    """Path 16: an instance killed, its charge point at the other at once: one answer each."""
    broker = start_own_broker(tmp_path / "mosquitto")
    backend = Backend(broker)
    try:
        with (
            own_gateway(tmp_path / "a", broker) as a,
            own_gateway(tmp_path / "b", broker) as b,
        ):
            cid = "it-eo-killed"
            async with answering(a.url(cid)):
                await presence(backend, cid, True, gateway=a.name)
                await settle(0.3)
                assert a.proc is not None
                a.proc.send_signal(signal.SIGKILL)
                await backend.wait_for(
                    lambda m: (
                        m.topic == f"ocpp/gateway/{a.name}"
                        and (m.json() or {}).get("Online") is False
                    ),
                    "saying the killed gateway is gone",
                )
            sent: list[str] = []
            # Commands while the charge point connects to b and b subscribes
            # for it: before, Offline (b's catch-all); after, b delivers.

            async def commands() -> None:
                for n in range(40):
                    sent.append(f"k{n}")
                    command(backend, cid, f"k{n}")
                    await asyncio.sleep(0.005)

            streaming = asyncio.create_task(commands())
            async with answering(b.url(cid)):
                await streaming
                await settle(2)
            kinds = exactly_once(backend, cid, sent)
            assert set(kinds) <= {"CALLRESULT", "Offline", "Disconnected", "Replaced"}, kinds
    finally:
        backend.close()
        stop_broker(broker)


@run_async
async def test_starting_instance_reads_presence_before_answering(tmp_path):
    """
    Path 12: commands while another instance starts: it never answers Offline
    for ours.  (On loopback without a replayed session this passed before the
    fix too; the unit tests show the race.)
    """
    broker = start_own_broker(tmp_path / "mosquitto")
    backend = Backend(broker)
    try:
        with own_gateway(tmp_path / "a", broker) as a:
            cid = "it-eo-starting"
            async with answering(a.url(cid)):
                await presence(backend, cid, True, gateway=a.name)
                sent: list[str] = []

                async def commands() -> None:
                    for n in range(45):
                        sent.append(f"p{n}")
                        command(backend, cid, f"p{n}")
                        await asyncio.sleep(0.05)

                streaming = asyncio.create_task(commands())
                await settle(0.2)
                # Started off the event loop, so that the commands keep coming.
                b = await asyncio.to_thread(start_gateway, tmp_path / "b", broker)
                try:
                    await streaming
                    await settle(1.5)
                finally:
                    b.stop()
                kinds = exactly_once(backend, cid, sent)
                assert kinds == Counter({"CALLRESULT": len(sent)}), kinds
    finally:
        backend.close()
        stop_broker(broker)
