"""
The embedded broker is for this host (issue 24, point 3): off loopback it
runs with logins only, the gateway's (``[mqtt] username`` / ``password``)
and the backends' (``[mqtt] embedded_users``); an anonymous client is
refused, and the gateway works through it.  None of those passwords shows
up in the gateway's log (the embedded mosquitto's lines included), its
admin API or ``/metrics`` (issue 24, point 4).
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.harness import (
    WAIT,
    Backend,
    Broker,
    charge_point,
    free_port,
    run_async,
    start_gateway,
)
from tests.integration.harness.admin import http

NOW = "2026-01-02T03:04:05.000Z"
GATEWAY_LOGIN = ("ocppgw", "gateway-password-0123456789")
BACKEND_LOGIN = ("csms", "backend-password-0123456789")


class _LoggedInBackend(Backend):
    """The test backend, logged in with its line of embedded_users."""

    def _prepare(self, client: paho.Client) -> None:
        client.username_pw_set(*BACKEND_LOGIN)


def _connack(port: int, login: tuple[str, str] | None) -> Any:
    """The reason code of the embedded broker's CONNACK to a client with ``login`` (or none)."""
    answered = threading.Event()
    reasons: list[Any] = []

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        reasons.append(reason)
        answered.set()

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"it-anon-{uuid.uuid4().hex[:8]}",
        protocol=paho.MQTTv311,
    )
    if login is not None:
        client.username_pw_set(*login)
    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        assert answered.wait(WAIT), "no CONNACK from the embedded broker"
    finally:
        client.disconnect()
        client.loop_stop()
    return reasons[0]


@run_async
async def test_non_loopback_with_credentials_refuses_anonymous_and_works(tmp_path: Path) -> None:
    """
    embedded_host = 0.0.0.0 with the gateway's login and embedded_users: the
    embedded broker refuses an anonymous client and a wrong password ("Not
    authorized"), and a charge point's CALL reaches the backend logged in
    with its embedded_users line, whose answer reaches the charge point.
    Neither login's password nor the wrong one is in the log, the admin API
    or /metrics.
    """
    mqtt_port = free_port()
    (tmp_path / "users").write_text(f"# the backends\n{' '.join(BACKEND_LOGIN)}\n")
    # The embedded mosquitto's lines go into the gateway's log.
    embedded = Broker(mqtt_port, None, tmp_path / "gateway.log")  # type: ignore[arg-type]
    mqtt = {
        "broker": "embedded",
        "embedded_host": "0.0.0.0",
        "embedded_port": str(mqtt_port),
        "username": GATEWAY_LOGIN[0],
        "password": GATEWAY_LOGIN[1],
        "embedded_users": "users",
    }
    admin_port = free_port()
    admin = {"endpoint": f"tcp:{admin_port}:interface=127.0.0.1", "token": "it-admin-token"}
    gw = start_gateway(tmp_path, embedded, {"mqtt": mqtt, "admin": admin})
    backend = None
    outputs: list[str] = []
    try:
        for login in (None, (BACKEND_LOGIN[0], "not-the-password")):
            reason = _connack(mqtt_port, login)
            assert reason.is_failure and str(reason) == "Not authorized", (login, str(reason))
        assert not _connack(mqtt_port, BACKEND_LOGIN).is_failure

        backend = _LoggedInBackend(embedded)
        backend.answer("Heartbeat", {"currentTime": NOW})
        cid = "it-embedded-login"
        async with charge_point(ChargePoint16, gw.url(cid), cid, "ocpp1.6") as cp:
            result = await cp.call(call16.Heartbeat())
        assert result.current_time == NOW
        env = await backend.envelope(f"ocpp/cp/{cid}/Heartbeat")
        assert (env["Action"], env["ChargePointId"]) == ("Heartbeat", cid)
        assert "Traceback" not in gw.log(), gw.log()
        for path in ("/api/v1/gateway", f"/api/v1/chargepoints/{cid}", "/metrics"):
            status, body, _ = http("GET", f"http://127.0.0.1:{admin_port}{path}",
                                   token="it-admin-token")
            assert status == 200, (path, status, body)
            outputs.append(repr(body))
    finally:
        if backend is not None:
            backend.close()
        gw.stop()
    outputs.append(gw.log())
    everything = "\n".join(outputs)
    for secret in (GATEWAY_LOGIN[1], BACKEND_LOGIN[1], "not-the-password"):
        assert secret not in everything, f"{secret} in the output:\n{everything}"
