"""
The gateway as a process among others on a broker: retained presence of
charge points and instances, the MQTT last will, a charge point moving from
one instance to another, a broker outage, and an orderly SIGTERM shutdown.
"""

from __future__ import annotations

import asyncio
import signal
import time

from websockets.protocol import State

from tests.integration.harness import (
    WAIT,
    connect,
    recv_frame,
    run_async,
    settle,
    topic_value,
    wait_closed,
)
from tests.integration.harness.support import (
    NOW,
    ReconnectingBackend,
    exit_status,
    no_frame,
    own_gateway,
    presence,
    presence_topic,
    restart_broker,
    retained,
    seconds_ago,
    start_own_broker,
    stop_broker,
)


def _gateway_topic(name: str) -> str:
    return f"ocpp/gateway/{topic_value(name)}"


# --- presence ---


@run_async
async def test_presence_online_then_offline_retained(gateway, backend, broker):
    """(Dis)connect publishes retained presence: Online, Gateway, Protocol, RemoteAddress, Since."""
    gw = gateway()
    cid = "it-inst-presence"
    status = retained(broker, _gateway_topic(gw.name))
    assert status is not None, "no retained gateway presence"
    assert status["Online"] is True and status["Gateway"] == gw.name, status
    assert abs(seconds_ago(status["Since"])) < 30, status

    async with connect(gw.url(cid), ["ocpp2.0.1"]) as ws:
        port = ws.local_address[1]
        body = (await presence(backend, cid, True)).json()
        assert body["ChargePointId"] == cid and body["Gateway"] == gw.name, body
        assert body["Protocol"] == "ocpp2.0.1", body
        assert "127.0.0.1" in body["RemoteAddress"] and str(port) in body["RemoteAddress"], body
        assert abs(seconds_ago(body["Since"])) < 5, body
        assert retained(broker, presence_topic(cid)) == body, "the online presence is not retained"
    body = (await presence(backend, cid, False)).json()
    assert body["ChargePointId"] == cid and body["Gateway"] == gw.name, body
    assert body["Protocol"] == "ocpp2.0.1", body
    assert abs(seconds_ago(body["Since"])) < 5, body
    assert retained(broker, presence_topic(cid)) == body, "the offline presence is not retained"


@run_async
async def test_last_will_marks_killed_gateway_offline(gateway, backend, broker):
    """SIGKILL: the broker publishes the last will, retained ocpp/gateway/<id> Online false."""
    gw = gateway({"mqtt": {"keepalive": "5"}})
    topic = _gateway_topic(gw.name)
    assert (retained(broker, topic) or {}).get("Online") is True
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert await exit_status(gw.proc) == -signal.SIGKILL
    msg = await backend.wait_for(
        lambda m: m.topic == topic and (m.json() or {}).get("Online") is False,
        f"on {topic} saying Online false",
        timeout=15,
    )
    print(f"last will after {msg.arrived - killed:.1f} s")
    assert msg.json()["Gateway"] == gw.name, msg
    assert (retained(broker, topic) or {}).get("Online") is False, "the last will is not retained"


# --- two instances ---


async def _move(gateway, backend, cid: str, ttl: str = "60"):
    """Connect ``cid`` to a first instance, then to a second; return both and the timings."""
    a = gateway({"dnstream": {"offline_ttl": ttl}})
    b = gateway({"dnstream": {"offline_ttl": ttl}})
    assert a.name != b.name
    old = await connect(a.url(cid), ["ocpp1.6"])
    await presence(backend, cid, True, gateway=a.name)
    await settle(0.05)  # a later Since, at millisecond resolution
    started = time.monotonic()
    new = await connect(b.url(cid), ["ocpp1.6"])
    return a, b, old, new, started


@run_async
async def test_takeover_across_instances_closes_old_within_1s(gateway, backend):
    """Connecting an identity to instance B closes its connection on instance A within 1 s."""
    cid = "it-inst-takeover"
    _, b, old, new, started = await _move(gateway, backend, cid)
    try:
        closed = await wait_closed(old, timeout=5)
        elapsed = time.monotonic() - started
        await presence(backend, cid, True, gateway=b.name)
        assert closed.rcvd is not None and closed.rcvd.reason == "replaced", closed
        assert elapsed < 1.5, f"A closed {elapsed:.2f} s after the connect to B"
        assert new.state is State.OPEN
    finally:
        await old.close()
        await new.close()


@run_async
async def test_takeover_across_instances_leaves_presence_online(gateway, backend, broker):
    """After a move from instance A to B, the retained presence says online on B."""
    cid = "it-inst-takeover-presence"
    _, b, old, new, _ = await _move(gateway, backend, cid)
    try:
        await wait_closed(old, timeout=5)
        await settle(1)
        body = retained(broker, presence_topic(cid))
        assert body is not None and body["Online"] is True and body["Gateway"] == b.name, (
            f"the charge point is connected to {b.name}, but its retained presence is {body}"
        )
    finally:
        await old.close()
        await new.close()


@run_async
async def test_takeover_across_instances_call_handled_once(gateway, backend):
    """After a move from A to B, a backend CALL is delivered by B and not failed Offline by A."""
    cid = "it-inst-takeover-call"
    ttl = 2
    _, b, old, new, _ = await _move(gateway, backend, cid, ttl=str(ttl))
    try:
        await wait_closed(old, timeout=5)
        await presence(backend, cid, True, gateway=b.name)
        backend.publish(
            f"ocpp/cs/{cid}/Call/ClearCache",
            {"MessageTypeId": 2, "UniqueId": "mv-1", "Action": "ClearCache", "Payload": {}},
        )
        assert await recv_frame(new) == [2, "mv-1", "ClearCache", {}]
        await new.send('[3,"mv-1",{"status":"Accepted"}]')
        await backend.envelope(f"ocpp/cp/Reply/{cid}", UniqueId="mv-1")
        await settle(ttl + 1.5)  # past A's offline_ttl
        errors = backend.messages(
            lambda m: (
                m.topic == f"ocpp/cp/Error/{cid}" and (m.json() or {}).get("UniqueId") == "mv-1"
            )
        )
        assert not errors, f"a CALL that B delivered and that was answered got {errors}"
    finally:
        await old.close()
        await new.close()


# --- broker outage ---


@run_async
async def test_broker_outage_keeps_websocket_and_delivers_calls(tmp_path):
    """Broker down: the WebSocket stays open; a CALL sent meanwhile is published and answered."""
    broker = start_own_broker(tmp_path / "mosquitto", persistent=True)
    backend = None
    try:
        backend = ReconnectingBackend(broker, persistent=True)
        backend.answer("Heartbeat", {"currentTime": NOW})
        extra = {"mqtt": {"reconnect_max": "1"}, "upstream": {"awaiting_timeout": "15"}}
        with own_gateway(tmp_path / "gw", broker, extra) as gw:
            cid = "it-inst-outage"
            async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
                await presence(backend, cid, True)
                await ws.send('[2,"before","Heartbeat",{}]')
                assert await recv_frame(ws) == [3, "before", {"currentTime": NOW}]

                await asyncio.to_thread(stop_broker, broker)
                await ws.send('[2,"during","Heartbeat",{}]')
                await no_frame(ws, 2.5)  # no CALLERROR, no close
                assert ws.state is State.OPEN

                await asyncio.to_thread(restart_broker, broker)
                assert await recv_frame(ws, timeout=10) == [3, "during", {"currentTime": NOW}]
                env = await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId="during")
                assert env["ChargePointId"] == cid

                # Both directions work again: the downstream subscription is back.
                backend.publish(
                    f"ocpp/cs/{cid}/Call/ClearCache",
                    {
                        "MessageTypeId": 2,
                        "UniqueId": "after",
                        "Action": "ClearCache",
                        "Payload": {},
                    },
                )
                assert await recv_frame(ws) == [2, "after", "ClearCache", {}]
                await ws.send('[3,"after",{"status":"Accepted"}]')
                await backend.envelope(f"ocpp/cp/Reply/{cid}", UniqueId="after")
    finally:
        if backend is not None:
            backend.close()
        stop_broker(broker)


# --- shutdown ---


@run_async
async def test_sigterm_orderly_shutdown(gateway, backend, broker):
    """SIGTERM: stop accepting, offline presence, close 1001, gateway offline, exit status 0."""
    gw = gateway()
    assert gw.proc is not None
    cids = ["it-inst-sigterm-1", "it-inst-sigterm-2"]
    conns = [await connect(gw.url(cid), ["ocpp2.0.1"]) for cid in cids]
    try:
        for cid in cids:
            await presence(backend, cid, True)
        gw.proc.send_signal(signal.SIGTERM)
        for ws in conns:
            closed = await wait_closed(ws)
            assert closed.rcvd is not None and closed.rcvd.code == 1001, closed
        # Closed by then: the listener stopped accepting before the charge points were closed.
        try:
            late = await connect(gw.url("it-inst-sigterm-late"), ["ocpp2.0.1"])
        except OSError:
            pass
        else:
            await late.close()
            raise AssertionError("a new connection was accepted after SIGTERM")
        for cid in cids:
            body = (await presence(backend, cid, False, gateway=gw.name)).json()
            assert body["ChargePointId"] == cid
        await backend.wait_for(
            lambda m: (
                m.topic == _gateway_topic(gw.name) and (m.json() or {}).get("Online") is False
            ),
            "saying the gateway is offline",
        )
        assert await exit_status(gw.proc) == 0, gw.log()
        assert (retained(broker, _gateway_topic(gw.name)) or {}).get("Online") is False
        log = gw.log()
        assert "not acknowledged" not in log, log
    finally:
        for ws in conns:
            await asyncio.wait_for(ws.close(), WAIT)
