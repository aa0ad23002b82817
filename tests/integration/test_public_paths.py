"""
With ``OCPPGW_SPEEDUPS=off`` a running gateway touches no private name of
paho, Autobahn, automat, json, prometheus-client or Twisted's reactor; with the speed-ups on,
the same traps catch each speed-up (so the traps work).

The gateway process loads ``tests/integration/private_traps/sitecustomize.py``
(through PYTHONPATH), which records every private name code of ``ocppgw``
reads, sets or calls, while a charge point boots through the backend, the
admin API sends it a CALL, ``/metrics`` and the gateway view are read, and
the gateway stops.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

from tests.integration.harness import Backend, Gateway, charge_point
from tests.integration.harness.admin import admin_gateway, ahttp

TRAPS = Path(__file__).parent / "private_traps"
LIBRARIES = ("paho", "autobahn", "automat", "json", "prometheus-client", "twisted")


class Answering(ChargePoint16):
    """Accepts every ChangeAvailability."""

    @on(Action.change_availability)
    def on_change(self, connector_id: int, type: str) -> Any:
        return call_result.ChangeAvailability(status="Accepted")


async def _exercise(gateway: Callable[..., Gateway], backend: Backend) -> Gateway:
    """A boot through the backend, a CALL from the API, /metrics and the gateway view."""
    gw, url = admin_gateway(gateway)
    backend.answer(
        "BootNotification",
        {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 300},
    )
    async with charge_point(Answering, gw.url("traps-1"), "traps-1", "ocpp1.6") as cp:
        boot = await cp.call(call.BootNotification(charge_point_model="m", charge_point_vendor="v"))
        assert boot.status == "Accepted"
        for _ in range(20):  # the steady state, where the frame speed-up takes over
            await cp.call(call.Heartbeat())
        status, body = await ahttp(
            "POST",
            url + "/api/v1/chargepoints/traps-1/calls",
            {"action": "ChangeAvailability", "payload": {"connectorId": 0, "type": "Operative"}},
        )
        assert (status, body["payload"]) == (200, {"status": "Accepted"}), body
    status, text = await ahttp("GET", url + "/metrics")
    assert status == 200 and "ocppgw_speedup_enabled" in text, text[:500]
    status, view = await ahttp("GET", url + "/api/v1/gateway")
    assert status == 200 and "speedups" in view, view
    return gw


def _traced(
    speedups: str, gateway: Callable[..., Gateway], backend: Backend, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> list[str]:
    log = tmp_path / "traps.txt"
    monkeypatch.setenv("OCPPGW_SPEEDUPS", speedups)
    monkeypatch.setenv("OCPPGW_PRIVATE_TRAPS", str(log))
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TRAPS), path]) if path else str(TRAPS))
    backend.answer("Heartbeat", {"currentTime": "2026-01-01T00:00:00Z"})
    asyncio.run(_exercise(gateway, backend)).stop()  # its shutdown too
    lines = log.read_text(encoding="utf-8").splitlines()
    armed = {line.split()[1] for line in lines if line.startswith("armed ")}
    assert armed == set(LIBRARIES), lines[:20]
    return [line for line in lines if line.startswith("touched ")]


def test_speedups_off_touch_no_private_name(
    gateway: Callable[..., Gateway], backend: Backend, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OCPPGW_SPEEDUPS=off: a whole run of the gateway reads, sets or calls no private name."""
    touched = _traced("off", gateway, backend, tmp_path, monkeypatch)
    assert touched == []


def test_speedups_on_are_caught_by_the_same_traps(
    gateway: Callable[..., Gateway], backend: Backend, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the speed-ups on, the traps see each library's private names used (they work)."""
    touched = _traced("on", gateway, backend, tmp_path, monkeypatch)
    libraries = {line.split()[1] for line in touched}
    assert libraries == set(LIBRARIES), "\n".join(touched[:40])
