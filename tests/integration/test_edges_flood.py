"""
One charge point cannot starve the others: the per-connection message rate
(``[listener:NAME] max_message_rate``, ``max_message_burst``), the close of a
connection that floods for long, and each charge point's share of the MQTT
buffer while the broker is away.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.integration.harness import connect, recv_frame, run_async, wait_closed
from tests.integration.harness.support import (
    ReconnectingBackend,
    own_gateway,
    presence,
    restart_broker,
    start_own_broker,
    stop_broker,
)


def _heartbeats(backend, cid: str) -> list:
    return backend.messages(lambda m: m.topic == f"ocpp/cp/{cid}/Heartbeat" and not m.retain)


@run_async
async def test_flooder_is_limited_and_others_keep_working(gateway, backend):
    """CALLs beyond rate and burst get GenericError naming the limit, unpublished; others work."""
    rate, burst, sent = 5, 10, 60
    gw = gateway(
        {
            "listener:ws": {"max_message_rate": str(rate), "max_message_burst": str(burst)},
            "local": {"heartbeat": "true"},
        }
    )
    backend.answer("StatusNotification", {})
    flood, calm = "it-edge-flooder", "it-edge-calm"
    async with (
        connect(gw.url(flood), ["ocpp1.6"]) as fws,
        connect(gw.url(calm), ["ocpp1.6"]) as cws,
    ):
        await presence(backend, calm, True)
        started = time.monotonic()
        for n in range(sent):
            await fws.send(f'[2,"f{n}","Heartbeat",{{}}]')
        answers = [await recv_frame(fws) for _ in range(sent)]
        elapsed = time.monotonic() - started
        for n in range(3):
            await cws.send(
                f'[2,"c{n}","StatusNotification",{{"connectorId":1,"errorCode":"NoError",'
                f'"status":"Available"}}]'
            )
            assert await recv_frame(cws) == [3, f"c{n}", {}]
        refused = [a for a in answers if a[0] == 4]
        assert refused, "no CALL was refused"
        assert all(a[2] == "GenericError" and "max_message_rate" in a[3] for a in refused), refused
        allowed = burst + rate * elapsed + 1
        await asyncio.sleep(0.3)
        published = len(_heartbeats(backend, flood))
        assert published == sent - len(refused), "a refused CALL was published"
        assert published <= allowed, f"{published} published, the limit allows {allowed:.0f}"


@run_async
async def test_flood_above_ten_times_the_rate_is_closed_1008(gateway):
    """A connection above ten times max_message_rate for 10 s is closed with 1008."""
    gw = gateway({"listener:ws": {"max_message_rate": "2", "max_message_burst": "2"}})
    async with connect(gw.url("it-edge-flood-1008"), ["ocpp1.6"]) as ws:
        started = time.monotonic()

        async def flood() -> None:
            while True:
                await ws.send('[3,"nobody",{}]')  # 50/s: 25 times the rate
                await asyncio.sleep(0.02)

        task = asyncio.create_task(flood())
        try:
            closed = await wait_closed(ws, timeout=14)
        finally:
            task.cancel()
        took = time.monotonic() - started
        assert closed.rcvd is not None and closed.rcvd.code == 1008, closed
        assert 9.5 <= took <= 13, f"closed after {took:.1f} s"


@run_async
async def test_flood_cannot_take_the_mqtt_buffer_of_others(tmp_path: Path):
    """Broker away, one charge point floods: another's CALL waits in the buffer, not refused."""
    broker = start_own_broker(tmp_path / "mosquitto")
    backend = ReconnectingBackend(broker)
    extra = {
        "mqtt": {"max_buffer": "40", "reconnect_max": "1"},
        "local": {"heartbeat": "true"},
        "listener:ws": {"max_message_rate": "0"},
        "upstream": {"awaiting_timeout": "20"},
    }
    try:
        backend.answer("StatusNotification", {})
        with own_gateway(tmp_path / "gw", broker, extra) as gw:
            async with (
                connect(gw.url("it-edge-buf-flood"), ["ocpp1.6"]) as fws,
                connect(gw.url("it-edge-buf-calm"), ["ocpp1.6"]) as cws,
            ):
                await presence(backend, "it-edge-buf-calm", True)
                await asyncio.to_thread(stop_broker, broker)
                for n in range(60):
                    await fws.send(f'[2,"f{n}","Heartbeat",{{}}]')
                for _ in range(60):
                    await recv_frame(fws)
                await cws.send(
                    '[2,"calm-1","StatusNotification",{"connectorId":1,"errorCode":"NoError",'
                    '"status":"Available"}]'
                )
                await asyncio.sleep(0.5)
                await asyncio.to_thread(restart_broker, broker)
                answer = await recv_frame(cws, timeout=15)
                assert answer == [3, "calm-1", {}], f"the calm charge point got {answer}"
    finally:
        backend.close()
        stop_broker(broker)
