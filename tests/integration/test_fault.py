"""
Fault injection (issue 3, point 17): 20 charge points send 2,000 CALLs in all
while mosquitto is stopped and restarted under them.  Every CALL must end in
the backend's CALLRESULT or a CALLERROR: nothing may be lost.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed

from tests.integration.harness import connect
from tests.integration.harness.support import (
    NOW,
    ReconnectingBackend,
    own_gateway,
    restart_broker,
    start_own_broker,
    stop_broker,
)

CHARGE_POINTS = 20
CALLS_EACH = 100
TOTAL = CHARGE_POINTS * CALLS_EACH
#: Stop the broker once this many CALLs are resolved (~30%).
OUTAGE_AFTER = int(TOTAL * 0.3)
OUTAGE_SECONDS = 2.5
#: [upstream] awaiting_timeout: a CALL stuck in the outage resolves this fast.
AWAITING_TIMEOUT = 3
#: How long a charge point waits for one answer before it counts it lost.
ANSWER_BOUND = AWAITING_TIMEOUT + 5
#: The whole run, gateway and broker start included.
RUN_BOUND = 55

#: (action, payload) per version; the backend answers each.
REQUESTS = {
    "ocpp1.6": [
        ("Heartbeat", {}),
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    ],
    "ocpp2.0.1": [
        ("Heartbeat", {}),
        (
            "StatusNotification",
            {"timestamp": NOW, "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        ),
    ],
}


@dataclass
class Tally:
    answered: int = 0
    callerror: int = 0
    unaccounted: int = 0
    #: What each unaccounted CALL ran into, and CALLERRORs by description.
    lost: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def resolved(self) -> int:
        return self.answered + self.callerror


async def _charge_point(url: str, cid: str, version: str, tally: Tally) -> None:
    """Send CALLS_EACH CALLs one after the other, each awaiting its answer or CALLERROR."""
    n = 0
    try:
        async with connect(url, [version]) as ws:
            for n in range(CALLS_EACH):
                action, payload = REQUESTS[version][n % 2]
                unique_id = f"{cid}-{n}"
                await ws.send(json.dumps([2, unique_id, action, payload]))
                try:
                    async with asyncio.timeout(ANSWER_BOUND):
                        while True:
                            frame = json.loads(await ws.recv())
                            if frame[1] == unique_id:
                                break
                except TimeoutError:
                    tally.unaccounted += 1
                    tally.lost.append(f"{unique_id}: no answer within {ANSWER_BOUND} s")
                    continue
                if frame[0] == 3:
                    tally.answered += 1
                elif frame[0] == 4:
                    tally.callerror += 1
                    key = f"{frame[2]}: {frame[3]}"
                    tally.errors[key] = tally.errors.get(key, 0) + 1
                else:
                    tally.unaccounted += 1
                    tally.lost.append(f"{unique_id}: answered with {frame}")
            n = CALLS_EACH
    except (ConnectionClosed, OSError) as e:
        left = CALLS_EACH - n
        tally.unaccounted += left
        tally.lost.append(f"{cid}: connection lost with {left} CALLs unanswered: {e!r}")


async def _outage(broker, tally: Tally, log: list[str]) -> None:
    """Stop the broker after ~30% of the CALLs, keep it down, restart it on the same port."""
    async with asyncio.timeout(RUN_BOUND):
        while tally.resolved < OUTAGE_AFTER:
            await asyncio.sleep(0.01)
    log.append(f"broker stopped after {tally.resolved} CALLs")
    await asyncio.to_thread(stop_broker, broker)
    await asyncio.sleep(OUTAGE_SECONDS)
    await asyncio.to_thread(restart_broker, broker)
    log.append(f"broker restarted on port {broker.port} at {tally.resolved} CALLs")


def test_every_call_accounted_for_across_broker_restart(tmp_path):
    """20 CPs x 100 CALLs across a broker stop/restart: each gets a CALLRESULT or CALLERROR."""
    started = time.monotonic()
    broker = start_own_broker(tmp_path / "mosquitto")
    backend = None
    tally = Tally()
    log: list[str] = []
    try:
        backend = ReconnectingBackend(broker)
        backend.answer("Heartbeat", {"currentTime": NOW})
        backend.answer("StatusNotification", {})
        extra = {
            "upstream": {"awaiting_timeout": str(AWAITING_TIMEOUT)},
            "mqtt": {"reconnect_min": "0.2", "reconnect_max": "0.5"},
        }
        with own_gateway(tmp_path / "gw", broker, extra) as gw:

            async def run() -> None:
                versions = list(REQUESTS)
                cps = [
                    _charge_point(gw.url(cid), cid, versions[i % 2], tally)
                    for i in range(CHARGE_POINTS)
                    for cid in [f"it-fault-{i:02d}"]
                ]
                async with asyncio.timeout(RUN_BOUND):
                    await asyncio.gather(_outage(broker, tally, log), *cps)

            asyncio.run(run())
    finally:
        if backend is not None:
            backend.close()
        stop_broker(broker)
        took = time.monotonic() - started
        print(
            f"\n{TOTAL} CALLs from {CHARGE_POINTS} charge points in {took:.1f} s: "
            f"answered {tally.answered}, callerror {tally.callerror}, "
            f"unaccounted {tally.unaccounted}"
        )
        print("\n".join(log))
        for error, count in sorted(tally.errors.items()):
            print(f"  CALLERROR {error}: {count}")
        for what in tally.lost[:20]:
            print(f"  lost: {what}")
    assert log and "restarted" in log[-1], f"the outage did not happen: {log}"
    assert tally.unaccounted == 0, f"{tally.unaccounted} CALLs unaccounted for: {tally.lost[:20]}"
    assert tally.answered + tally.callerror == TOTAL
    assert tally.callerror < TOTAL // 2, "most CALLs failed: the gateway did not recover"
    # The backend heard the CALLs it answered (published upstream, not made up).
    heard = backend.messages(lambda m: m.topic.startswith("ocpp/cp/it-fault-"))
    assert len(heard) >= tally.answered, (
        f"{len(heard)} CALLs on the broker, {tally.answered} answered"
    )
