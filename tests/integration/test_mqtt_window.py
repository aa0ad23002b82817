"""The MQTT in-flight window: messages beyond it wait in the client and still go out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.integration.harness import Backend, Gateway, connect, recv_frame, run_async

NOW = "2026-01-02T03:04:05.000Z"


@run_async
async def test_window_of_one_still_publishes_everything(
    gateway: Callable[..., Gateway], backend: Backend
) -> None:
    """With max_inflight = 1, 8 charge points x 5 CALLs all reach the backend and are answered."""
    gw = gateway({"mqtt": {"max_inflight": "1"}})
    backend.answer("Heartbeat", {"currentTime": NOW})

    async def charge_point(n: int) -> list[list[object]]:
        answers = []
        async with connect(gw.url(f"WIN{n}"), ["ocpp1.6"]) as ws:
            for i in range(5):
                await ws.send(f'[2,"w{n}-{i}","Heartbeat",{{}}]')
                answers.append(await recv_frame(ws))
        return answers

    results = await asyncio.gather(*(charge_point(n) for n in range(8)))
    for n, answers in enumerate(results):
        assert answers == [[3, f"w{n}-{i}", {"currentTime": NOW}] for i in range(5)], answers
    calls = backend.messages(lambda m: m.topic.startswith("ocpp/cp/WIN"))
    assert len(calls) == 40
