"""
The gateway's MQTT connection over TLS: a mosquitto with a certificate made
at run time for "localhost" only; the broker's hostname is verified.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import CA
from tests.integration.harness.security import (
    Backend,
    Broker,
    free_port,
    start_broker,
    start_gateway,
    stop,
)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Path, Backend]]:
    d = tmp_path_factory.mktemp("mqtts")
    ca = CA()
    ca_file = ca.write(d / "ca.pem")
    server = ca.issue("localhost", kind="rsa", server=True, dns=("localhost",)).write(d, "broker")
    broker = start_broker(d / "broker", tls=server)
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.check_hostname = False  # the test backend connects by IP
    backend = Backend(broker.port, tls=ctx)
    try:
        yield broker, ca_file, backend
    finally:
        backend.close()
        stop(broker.proc)


def gateway_ini(broker_url: str, ca_file: Path, port: int) -> str:
    return (f"[listener:ws]\nendpoint = tcp:{port}:interface=127.0.0.1\n"
            f"[mqtt]\nbroker = {broker_url}\ntls_ca = {ca_file}\n")


def test_right_hostname_connects(tls_broker: tuple[Broker, Path, Backend],
                                 tmp_path: Path) -> None:
    """mqtts://localhost matches the broker's certificate: connected, presence published."""
    broker, ca_file, backend = tls_broker
    port = free_port()
    gw = start_gateway(tmp_path, gateway_ini(f"mqtts://localhost:{broker.port}", ca_file, port),
                       port)
    try:
        gw.wait_log("MQTT connected")
        deadline = time.monotonic() + 10
        while not backend.payloads(f"ocpp/gateway/{gw.name}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.payloads(f"ocpp/gateway/{gw.name}")[0]["Online"] is True
    finally:
        stop(gw.proc)


@pytest.mark.parametrize("host, why", [
    ("127.0.0.1", "not valid for '127.0.0.1'"),
    ("localhost", "certificate verify failed"),
])
def test_wrong_hostname_or_ca_is_refused(tls_broker: tuple[Broker, Path, Backend],
                                         tmp_path: Path, host: str, why: str) -> None:
    """A broker certificate not valid for the configured host, or from another CA: no connection."""
    broker, ca_file, backend = tls_broker
    if host == "localhost":
        ca_file = CA("another").write(tmp_path / "other-ca.pem")
    port = free_port()
    gw = start_gateway(tmp_path, gateway_ini(f"mqtts://{host}:{broker.port}", ca_file, port),
                       port, wait_mqtt=False)
    try:
        gw.wait_log(why)
        time.sleep(1.0)  # a retry or two
        assert "MQTT connected" not in gw.log()
        assert backend.payloads(f"ocpp/gateway/{gw.name}") == []
        assert gw.proc.poll() is None
        assert "Traceback" not in gw.log()
    finally:
        stop(gw.proc)
