"""
trusted_proxies end to end: forwarded headers from 127.0.0.1 (the trusted
proxy) are believed; the same headers from 127.0.0.2 (anyone else) are not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from ocppgw.listener.credentials import make_entry, write_file
from tests.certs import CA
from tests.integration.harness.security import (
    Backend,
    Gateway,
    basic,
    free_port,
    heartbeat,
    raw_request,
    start_broker,
    start_gateway,
    stop,
    wait_for,
    ws_connect,
)

PASSWORD = "proxy-test-password"
UNTRUSTED = "127.0.0.2"


@dataclass
class Setup:
    gw: Gateway
    backend: Backend
    ca: CA
    p1: int
    p3: int


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    d: Path = tmp_path_factory.mktemp("proxy")
    broker = start_broker(d / "broker")
    ca = CA()
    ca_file = ca.write(d / "ca.pem")
    write_file(str(d / "creds"), {
        f"PX{n}": make_entry(f"PX{n}", PASSWORD.encode()) for n in range(4)
    })
    p1, p3 = free_port(), free_port()
    ini = f"""
[listener:p1]
endpoint = tcp:{p1}:interface=127.0.0.1
security_profile = 1
trusted_proxies = 127.0.0.1/32
[listener:offload3]
endpoint = tcp:{p3}:interface=127.0.0.1
security_profile = 3
trusted_proxies = 127.0.0.1/32
tls_ca = {ca_file}
client_cert_header = X-SSL-Client-Cert
[auth]
credentials = {d / "creds"}
[mqtt]
broker = mqtt://127.0.0.1:{broker.port}
"""
    backend = Backend(broker.port)
    gw = start_gateway(d / "gw", ini, p1)
    try:
        yield Setup(gw, backend, ca, p1, p3)
    finally:
        stop(gw.proc)
        backend.close()
        stop(broker.proc)


def remote_address(setup: Setup, identity: str) -> str:
    found = wait_for(lambda: setup.backend.payloads(f"ocpp/presence/{identity}"),
                     f"presence of {identity}")
    return str(found[0]["RemoteAddress"])


def test_forwarded_for_from_trusted_proxy(setup: Setup) -> None:
    """From the trusted proxy, X-Forwarded-For is the remote address in presence."""
    headers = {**basic("PX0", PASSWORD), "X-Forwarded-For": "203.0.113.1, 198.51.100.7"}
    with ws_connect(f"ws://127.0.0.1:{setup.p1}/ocpp/PX0", headers) as ws:
        assert "currentTime" in heartbeat(ws)
        assert remote_address(setup, "PX0") == "tcp4:198.51.100.7"


def test_forwarded_for_from_anyone_else_is_ignored(setup: Setup) -> None:
    """From an untrusted peer, X-Forwarded-For is ignored: the TCP peer is the address."""
    headers = {**basic("PX1", PASSWORD), "X-Forwarded-For": "198.51.100.7"}
    with ws_connect(f"ws://127.0.0.1:{setup.p1}/ocpp/PX1", headers,
                    source_address=(UNTRUSTED, 0)) as ws:
        assert "currentTime" in heartbeat(ws)
        assert remote_address(setup, "PX1").startswith(f"tcp4:{UNTRUSTED}:")


def test_offloaded_client_certificate(setup: Setup) -> None:
    """Profile 3 behind TLS offload: the forwarded certificate is checked, from the proxy only."""
    pem = quote(setup.ca.issue("PX2").cert_pem().decode())
    headers = {"X-Forwarded-Proto": "https", "X-SSL-Client-Cert": pem}
    with ws_connect(f"ws://127.0.0.1:{setup.p3}/ocpp/PX2", headers) as ws:
        assert "currentTime" in heartbeat(ws)
    spoofed = raw_request(setup.p3, "/ocpp/PX3", {**headers, "X-SSL-Client-Cert": quote(
        setup.ca.issue("PX3").cert_pem().decode())}, source=UNTRUSTED)
    assert spoofed.startswith(b"HTTP/1.1 403")
    mismatch = raw_request(setup.p3, "/ocpp/PX3", headers)
    assert mismatch.startswith(b"HTTP/1.1 403")
    setup.gw.wait_log("certificate CN 'PX2' is not 'PX3'")
    assert setup.backend.topics("PX3") == []
