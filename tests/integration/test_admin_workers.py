"""
``[gateway] workers = 2`` with ``[admin] endpoint``: the first process serves
the admin API, /metrics and /healthz for both workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import (
    BIN,
    WAIT,
    Gateway,
    charge_point,
    free_port,
    run_async,
    wait_log,
)
from tests.integration.harness.admin import TOKEN, ahttp, http, with_admin
from tests.integration.harness.support import presence

CTL = str(BIN / "ocppgw-ctl")


class Unlocking16(ChargePoint16):
    @on(Action16.unlock_connector)
    def on_unlock(self, connector_id: int) -> Any:
        return result16.UnlockConnector(status="Unlocked")


def _workers(gateway: Callable[..., Gateway]) -> tuple[Gateway, str]:
    port = free_port()
    gw = gateway(with_admin(port, {"gateway": {"workers": "2"}}))
    wait_log(gw, r"worker \d: .*MQTT connected", 2)
    wait_log(gw, r"worker \d: .*starting on", 2)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + WAIT
    while (health := http("GET", f"{url}/healthz"))[0] != 200:  # both workers' sockets up
        assert time.monotonic() < deadline, health[1]
        time.sleep(0.05)
    return gw, url


@contextlib.asynccontextmanager
async def _on_both(gw: Gateway, backend: Any) -> AsyncIterator[dict[int, str]]:
    """Charge points connected until both workers hold one: worker index -> identity."""
    held: dict[int, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        for i in range(30):  # the kernel picks the worker
            cid = f"it-adw-{i}"
            await stack.enter_async_context(charge_point(Unlocking16, gw.url(cid), cid, "ocpp1.6"))
            holder = (await presence(backend, cid, True)).json()["Gateway"]
            held.setdefault(int(holder.rsplit("-w", 1)[1]), cid)
            if len(held) == 2:
                break
        assert len(held) == 2, held
        yield held


async def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [CTL, *args], capture_output=True, text=True, timeout=30
    )


@run_async
async def test_every_route_answers_for_both_workers(gateway, backend):
    """list, show, call, kick, gateway, /metrics and /healthz answer for both workers."""
    gw, url = _workers(gateway)
    api = f"{url}/api/v1"
    async with _on_both(gw, backend) as held:
        status, listed = await ahttp("GET", f"{api}/chargepoints?identity_like=it-adw-%25")
        assert status == 200, listed
        on = {c["identity"]: c["worker"] for c in listed["chargepoints"]}
        assert set(held.values()) <= set(on), listed
        assert all(on[cid] == w for w, cid in held.items()), (on, held)
        status, page = await ahttp("GET", f"{api}/chargepoints?identity_like=it-adw-%25&limit=1")
        assert status == 200 and len(page["chargepoints"]) == 1 and page["next_cursor"], page
        for worker, cid in held.items():
            status, shown = await ahttp("GET", f"{api}/chargepoints/{cid}")
            assert status == 200 and shown["worker"] == worker, shown
            assert shown["state"] == "connected", shown
            status, answer = await ahttp(
                "POST", f"{api}/chargepoints/{cid}/calls",
                {"action": "UnlockConnector", "payload": {"connectorId": 1}, "timeout": 5},
            )
            assert (status, answer["payload"]) == (200, {"status": "Unlocked"}), answer
        status, many = await ahttp(
            "POST", f"{api}/calls",
            {"identities": [*held.values(), "it-adw-nobody"], "action": "UnlockConnector",
             "payload": {"connectorId": 1}, "timeout": 5},
        )
        assert status == 200, many
        assert {i: r["status"] for i, r in many["results"].items()} == {
            **{cid: 200 for cid in held.values()}, "it-adw-nobody": 404}, many
        status, info = await ahttp("GET", f"{api}/gateway")
        assert status == 200 and info["workers"] == 2, info
        assert [(w["worker"], w["state"], w["gateway_id"]) for w in info["worker_states"]] == [
            (0, "running", f"{gw.name}-w0"), (1, "running", f"{gw.name}-w1")], info
        assert all(isinstance(w["pid"], int) for w in info["worker_states"]), info
        status, text = await ahttp("GET", f"{url}/metrics")
        assert status == 200, text
        connected = {
            s.labels["worker"]: s.value
            for f in text_string_to_metric_families(text)
            if f.name == "ocppgw_charge_points_connected"
            for s in f.samples
        }
        assert set(connected) == {"0", "1"} and all(v >= 1 for v in connected.values()), connected
        status, health = await ahttp("GET", f"{url}/healthz")
        assert status == 200 and [w["worker"] for w in health["workers"]] == [0, 1], health
        listed_ctl = await _ctl("--url", url, "--token", TOKEN, "--json", "list")
        assert listed_ctl.returncode == 0, listed_ctl.stderr
        assert set(held.values()) <= {c["identity"] for c in json.loads(listed_ctl.stdout)}
        for cid in held.values():
            kicked = await _ctl("--url", url, "--token", TOKEN, "kick", cid)
            assert kicked.returncode == 0, kicked.stderr
            await presence(backend, cid, False)
        missing = await _ctl("--url", url, "--token", TOKEN, "show", "it-adw-nobody")
        assert missing.returncode == 1 and "404" in missing.stderr, missing


@run_async
async def test_healthz_names_a_worker_that_is_down(gateway, backend):
    """While a killed worker is restarted, /healthz answers 503 naming it, then 200 again."""
    gw, url = _workers(gateway)
    pid = int(wait_log(gw, r"worker 1 started \(pid (\d+)\)", 1)[0])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while (answer := await ahttp("GET", f"{url}/healthz"))[0] != 503:
        assert time.monotonic() < deadline, answer
        await asyncio.sleep(0.02)
    body = answer[1]
    assert any(re.match(r"worker 1\b", r) for r in body["reasons"]), body
    assert not any(r.startswith("worker 0") for r in body["reasons"]), body
    while (await ahttp("GET", f"{url}/healthz"))[0] != 200:
        assert time.monotonic() < deadline + WAIT, gw.log()
        await asyncio.sleep(0.05)
