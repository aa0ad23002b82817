"""
The gateway connects as soon as its broker listens (issue 22, point 4),
with the speed-up ``paho_internals`` and on the public path
(``OCPPGW_SPEEDUPS=off``) alike: with the embedded broker its online
presence is published within 2 s of the gateway starting its services; a
broker that is down at start is reported "refused" (not as a timeout) and
connected to within one second of it listening.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.subscribe as subscribe
import pytest

from tests.integration.harness import (
    START_TIMEOUT,
    TWISTD,
    WAIT,
    Broker,
    Gateway,
    free_port,
    launch_broker,
    render_ini,
    start_gateway,
)
from tests.integration.harness.support import stop_broker

SPEEDUPS = pytest.mark.parametrize("speedups", ["on", "off"])


def _online_presence(port: int, topic: str, found: dict[str, float | bytes]) -> None:
    """Connect (again while refused) and record when ``topic`` first says Online."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            message = subscribe.simple(topic, hostname="127.0.0.1", port=port, keepalive=10)
        except OSError:
            time.sleep(0.02)  # the embedded broker does not listen yet
            continue
        if json.loads(message.payload).get("Online") is True:
            found["at"] = time.monotonic()
            found["payload"] = message.payload
            return


@SPEEDUPS
def test_embedded_broker_presence_within_2_s(tmp_path: Path, monkeypatch, speedups) -> None:
    """
    The embedded broker: the gateway's online presence is out within 2 s of
    the gateway starting its services (its log's "starting embedded mosquitto"),
    and no refused connection is logged: it connects once mosquitto listens.
    """
    if speedups == "off":
        monkeypatch.setenv("OCPPGW_SPEEDUPS", "off")
    port, mqtt_port = free_port(), free_port()
    name = f"it-{uuid.uuid4().hex[:12]}"
    config = tmp_path / "ocppgw.ini"
    config.write_text(
        render_ini(
            {
                "gateway": {"id": name, "journal": str(tmp_path / "journal")},
                "listener:ws": {"endpoint": f"tcp:{port}:interface=127.0.0.1"},
                "mqtt": {"broker": "embedded", "embedded_port": str(mqtt_port)},
                "admin": {"endpoint": ""},
            }
        ),
        encoding="utf-8",
    )
    found: dict[str, float | bytes] = {}
    watcher = threading.Thread(
        target=_online_presence, args=(mqtt_port, f"ocpp/gateway/{name}", found), daemon=True
    )
    watcher.start()
    gw = Gateway(name, port, config, tmp_path / "gateway.log")
    with open(gw.log_path, "wb") as log:
        gw.proc = subprocess.Popen(
            [str(TWISTD), "-n", "--pidfile=", "ocppgw", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "starting embedded mosquitto" not in gw.log():
            assert gw.proc.poll() is None and time.monotonic() < deadline, gw.log()
            time.sleep(0.01)
        started = time.monotonic()
        watcher.join(WAIT)
        assert "at" in found, f"no online presence on ocpp/gateway/{name}:\n{gw.log()}"
        took = float(found["at"]) - started
        assert took < 2.0, f"online presence {took:.2f} s after start:\n{gw.log()}"
        # It connected once mosquitto listened: no refusal, no timeout to report.
        log = gw.log()
        assert "refused the connection" not in log and "unreachable" not in log, log
    finally:
        gw.stop()


@SPEEDUPS
def test_broker_up_3_s_late_is_connected_within_1_s(tmp_path: Path, monkeypatch, speedups) -> None:
    """Broker down at start, up 3 s later: "refused" meanwhile, connected 1 s after it listens."""
    if speedups == "off":
        monkeypatch.setenv("OCPPGW_SPEEDUPS", "off")
    directory = tmp_path / "broker"
    directory.mkdir()
    port = free_port()
    (directory / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
    )
    absent = Broker(port, None, directory / "mosquitto.log")  # type: ignore[arg-type]
    gw = start_gateway(tmp_path / "gw", absent, mqtt_connected=False)
    broker = None
    try:
        time.sleep(3.0)
        assert "MQTT connected" not in gw.log()
        broker = launch_broker(directory, port)
        listening = time.monotonic()
        deadline = listening + WAIT
        while "MQTT connected" not in gw.log():
            assert time.monotonic() < deadline, gw.log()
            time.sleep(0.02)
        took = time.monotonic() - listening
        assert took < 1.0, f"connected {took:.2f} s after the broker listened:\n{gw.log()}"
        log = gw.log()
        assert "refused the connection" in log, log
        assert "unreachable" not in log and "no connection within" not in log, log
    finally:
        gw.stop()
        if broker is not None:
            stop_broker(broker)
