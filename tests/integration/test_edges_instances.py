"""
Instances and takeover: a charge point that moves while its old instance
still holds it, instances whose clocks disagree, an instance killed without a
goodbye, and a broker restarted without the gateway's session.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.integration.harness import (
    STOP_TIMEOUT,
    WAIT,
    connect,
    recv_frame,
    run_async,
    settle,
    topic_value,
    wait_closed,
)
from tests.integration.harness.support import (
    clear_cache,
    own_gateway,
    presence,
    presence_topic,
    restart_broker,
    retained,
    start_own_broker,
    stop_broker,
)


def _errors(backend, cid: str, uid: str) -> list:
    return backend.messages(
        lambda m: m.topic == f"ocpp/cp/Error/{cid}" and (m.json() or {}).get("UniqueId") == uid
    )


@run_async
async def test_reconnect_elsewhere_during_grace_lets_go_at_once(gateway, backend):
    """A in its grace period lets go when B gets the charge point: held CALLs Replaced."""
    ttl = 4
    a = gateway({"dnstream": {"offline_ttl": str(ttl)}})
    b = gateway({"dnstream": {"offline_ttl": str(ttl)}})
    cid = "it-edge-grace-move"
    async with connect(a.url(cid), ["ocpp1.6"]):
        await presence(backend, cid, True, gateway=a.name)
    await presence(backend, cid, False, gateway=a.name)
    backend.publish(*clear_cache(cid, "held-1"))
    await settle(0.3)  # A holds it, queued for a reconnection
    moved = time.monotonic()
    async with connect(b.url(cid), ["ocpp1.6"]) as ws:
        await presence(backend, cid, True, gateway=b.name)
        env = await backend.envelope(f"ocpp/cp/Error/{cid}", timeout=2, UniqueId="held-1")
        assert env["ErrorCode"] == "Replaced", env
        assert time.monotonic() - moved < 2, "A held on until its grace period ended"
        backend.publish(*clear_cache(cid, "after-1"))
        assert await recv_frame(ws) == [2, "after-1", "ClearCache", {}]
        await ws.send('[3,"after-1",{"status":"Accepted"}]')
        await backend.envelope(f"ocpp/cp/Reply/{cid}", UniqueId="after-1")
        await settle(ttl + 1)  # past A's offline_ttl
        assert not _errors(backend, cid, "after-1"), "A answered a CALL that B delivered"


_SKEW = """
import time as _time

_real = _time.time
_time.time = lambda: _real() - 300.0  # this host's clock is five minutes behind
"""


@run_async
async def test_newer_connection_wins_with_a_clock_five_minutes_behind(
    gateway, backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The newer connection wins though its instance's clock is five minutes behind."""
    a = gateway()
    skew = tmp_path / "skew"
    skew.mkdir()
    (skew / "sitecustomize.py").write_text(_SKEW)
    monkeypatch.setenv("PYTHONPATH", str(skew))
    b = gateway()
    monkeypatch.delenv("PYTHONPATH")
    cid = "it-edge-skew"
    old = await connect(a.url(cid), ["ocpp1.6"])
    try:
        await presence(backend, cid, True, gateway=a.name)
        body = (await presence(backend, cid, True, gateway=a.name)).json()
        async with connect(b.url(cid), ["ocpp1.6"]) as new:
            newer = (await presence(backend, cid, True, gateway=b.name)).json()
            assert newer["Since"] < body["Since"], "the skewed clock is not behind"
            closed = await wait_closed(old, timeout=3)
            assert closed.rcvd is not None and closed.rcvd.reason == "replaced", closed
            await settle(0.5)
            assert new.state.name == "OPEN", "the newer connection was closed"
    finally:
        await old.close()


@run_async
async def test_killed_instance_charge_points_are_offline(gateway, backend, broker):
    """SIGKILL of A: once its will fires, B answers CALLs Offline and corrects the presence."""
    keepalive = 5
    a = gateway({"mqtt": {"keepalive": str(keepalive)}})
    gateway()  # B
    cid = "it-edge-killed"
    ws = await connect(a.url(cid), ["ocpp1.6"])
    try:
        await presence(backend, cid, True, gateway=a.name)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await asyncio.to_thread(a.proc.wait, STOP_TIMEOUT)
        gw_topic = f"ocpp/gateway/{topic_value(a.name)}"
        await backend.wait_for(
            lambda m: m.topic == gw_topic and (m.json() or {}).get("Online") is False,
            "A's last will",
            timeout=keepalive * 1.5 + 2,
        )
        backend.publish(*clear_cache(cid, "killed-1"))
        env = await backend.envelope(f"ocpp/cp/Error/{cid}", timeout=WAIT, UniqueId="killed-1")
        took = time.monotonic() - killed
        assert env["ErrorCode"] == "Offline", env
        assert took < keepalive * 1.5 + 2, f"answered {took:.1f} s after the kill"
        await backend.wait_for(
            lambda m: m.topic == presence_topic(cid) and (m.json() or {}).get("Online") is False,
            "a corrected presence",
        )
        assert (retained(broker, presence_topic(cid)) or {}).get("Online") is False
    finally:
        await ws.close()


@run_async
async def test_broker_restart_without_session_republishes_presence(backend, tmp_path: Path):
    """A broker restarted without sessions gets every presence (charge points, gateway) again."""
    broker = start_own_broker(tmp_path / "mosquitto")
    try:
        with own_gateway(tmp_path / "gw", broker, {"mqtt": {"reconnect_max": "1"}}) as gw:
            cid = "it-edge-restart"
            async with connect(gw.url(cid), ["ocpp2.0.1"]):
                await asyncio.to_thread(stop_broker, broker)
                await asyncio.to_thread(restart_broker, broker)
                deadline = time.monotonic() + WAIT
                while "MQTT connected" not in gw.log().split("MQTT connection lost")[-1]:
                    assert time.monotonic() < deadline, gw.log()
                    await asyncio.sleep(0.05)
                await settle(0.5)
                body = retained(broker, presence_topic(cid))
                assert body is not None and body["Online"] is True, body
                gw_body = retained(broker, f"ocpp/gateway/{topic_value(gw.name)}")
                assert gw_body is not None and gw_body["Online"] is True, gw_body
    finally:
        stop_broker(broker)
