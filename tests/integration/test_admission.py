"""
Admission control of a listener (``max_handshake_rate``, ``max_handshake_burst``):
handshakes beyond the rate get HTTP 503 with a Retry-After and are counted in
``ocppgw_handshakes_throttled_total``; charge points under the rate never do.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

from websockets.exceptions import InvalidStatus

from tests.integration.harness import Gateway, connect, run_async
from tests.integration.harness.admin import admin_gateway
from tests.integration.test_admin_metrics import scrape, value

RATE = {"listener:ws": {"max_handshake_rate": "4", "max_handshake_burst": "4"}}


async def _handshake(url: str) -> tuple[int, str | None]:
    """The status of one handshake (101 if accepted) and its Retry-After header."""
    try:
        async with connect(url, ["ocpp1.6"]):
            return 101, None
    except InvalidStatus as e:
        return e.response.status_code, e.response.headers.get("Retry-After")


@run_async
async def test_handshakes_beyond_the_rate_get_503_with_retry_after(
    gateway: Callable[..., Gateway],
) -> None:
    """
    30 handshakes at once against a rate of 4/s and a burst of 4: at most
    the burst plus what the rate refills in the meantime get 101, the rest
    503 with a Retry-After of whole seconds (at least 1), and each 503 is
    counted in ocppgw_handshakes_throttled_total{listener="ws"}.
    """
    gw, admin = admin_gateway(gateway, RATE)
    started = time.monotonic()
    answers = await asyncio.gather(*(_handshake(gw.url(f"it-adm-storm-{i}")) for i in range(30)))
    took = time.monotonic() - started
    accepted = [a for a in answers if a[0] == 101]
    refused = [a for a in answers if a[0] != 101]
    # The harness's probe of the port took a token too.
    assert 1 <= len(accepted) <= 4 + 4 * took + 1, (took, answers)
    assert refused and all(status == 503 for status, _ in refused), answers
    waits = [int(wait) for _, wait in refused if wait is not None]
    assert len(waits) == len(refused), answers
    assert min(waits) >= 1
    # The later ones are told to wait longer: the bucket serves 4 a second.
    assert max(waits) >= len(refused) // 4, waits
    samples = scrape(admin)
    assert value(samples, "ocppgw_handshakes_throttled_total", listener="ws") == len(refused)


@run_async
async def test_charge_points_under_the_rate_never_get_503(
    gateway: Callable[..., Gateway],
) -> None:
    """
    Charge points connecting at 3 a second (under the rate of 4/s, burst 4),
    each staying connected, are all accepted: none gets a 503, and nothing is
    counted as throttled.
    """
    gw, admin = admin_gateway(gateway, RATE)
    held = []
    try:
        for i in range(15):
            ws = await connect(gw.url(f"it-adm-under-{i}"), ["ocpp1.6"])
            held.append(ws)
            await asyncio.sleep(1 / 3)
    except InvalidStatus as e:
        raise AssertionError(f"charge point {len(held)} refused: {e.response.status_code}") from e
    finally:
        for ws in held:
            await ws.close()
    assert len(held) == 15
    assert value(scrape(admin), "ocppgw_handshakes_throttled_total", listener="ws") == 0


@run_async
async def test_handshakes_waiting_for_a_busy_gateway_get_503_not_a_reset(
    gateway: Callable[..., Gateway],
) -> None:
    """
    40 charge points that connect and send their upgrade while the gateway
    is stopped (SIGSTOP: the kernel queues the connections and their
    requests, as for a gateway busy in a storm), then let go: each gets 101
    or 503 with a Retry-After, none a reset or a close without an answer;
    the 503s are counted.
    """
    gw, admin = admin_gateway(gateway, RATE)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGSTOP)
    try:
        pending = [
            asyncio.ensure_future(_handshake(gw.url(f"it-adm-busy-{i}"))) for i in range(40)
        ]
        await asyncio.sleep(1.0)
    finally:
        gw.proc.send_signal(signal.SIGCONT)
    answers = await asyncio.gather(*pending)
    refused = [a for a in answers if a[0] != 101]
    assert refused and all(status == 503 and wait for status, wait in refused), answers
    assert sum(1 for status, _ in answers if status == 101) <= 4 + 4 * 2, answers
    assert value(scrape(admin), "ocppgw_handshakes_throttled_total", listener="ws") == len(refused)
