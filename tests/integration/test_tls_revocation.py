"""
Certificate revocation on a profile 3 listener (``tls_crl``, issue 24): the
real gateway, certificates and CRLs made at run time, real TLS clients, a
real mosquitto.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from tests.certs import CA, Issued
from tests.integration.harness import START_TIMEOUT, TWISTD
from tests.integration.harness.admin import TOKEN, http
from tests.integration.harness.security import (
    Backend,
    Broker,
    Gateway,
    client_tls,
    free_port,
    heartbeat,
    raw_request,
    start_broker,
    start_gateway,
    stop,
    wait_for,
    ws_connect,
)


@dataclass
class Setup:
    gw: Gateway
    ca: CA
    ca_file: Path
    crl_file: Path
    dir: Path
    port: int
    admin: str
    revoked: Issued


def listener_ini(d: Path, port: int, ca: CA, crl: Path, expired: str = "refuse") -> str:
    server = ca.issue("localhost", server=True, dns=("localhost",)).write(d, "server")
    return f"""
[listener:p3]
endpoint = tcp:{port}:interface=127.0.0.1
security_profile = 3
tls_cert = {server[0]}
tls_key = {server[1]}
tls_ca = {ca.write(d / "ca.pem")}
tls_crl = {crl}
tls_crl_expired = {expired}
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = start_broker(tmp_path_factory.mktemp("crl-broker"))
    backend = Backend(broker.port)
    try:
        yield broker
    finally:
        backend.close()
        stop(broker.proc)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, broker: Broker) -> Iterator[Setup]:
    d = tmp_path_factory.mktemp("crl")
    ca = CA()
    revoked = ca.issue("CP-R")
    crl = d / "ca.crl"
    crl.write_bytes(ca.crl((revoked.cert,), der=True))
    port, admin = free_port(), free_port()
    ini = listener_ini(d, port, ca, crl) + f"""
[admin]
endpoint = tcp:{admin}:interface=127.0.0.1
token = {TOKEN}
[mqtt]
broker = mqtt://127.0.0.1:{broker.port}
"""
    gw = start_gateway(d / "gw", ini, port)
    try:
        yield Setup(gw, ca, d / "ca.pem", crl, d, port, f"http://127.0.0.1:{admin}", revoked)
    finally:
        stop(gw.proc)
    log = gw.log()
    assert "Traceback" not in log and "Unhandled" not in log, log


def tls_for(setup: Setup, issued: Issued, stem: str) -> ssl.SSLContext:
    return client_tls(setup.ca_file, issued.write(setup.dir, stem))


def connect(setup: Setup, identity: str, issued: Issued) -> object:
    return ws_connect(f"wss://127.0.0.1:{setup.port}/ocpp/{identity}",
                      ssl_context=tls_for(setup, issued, identity), server_hostname="localhost")


def refused_by_tls(setup: Setup, identity: str, issued: Issued) -> bool:
    """True when the TLS handshake fails (an alert), with no HTTP response at all."""
    try:
        response = raw_request(setup.port, f"/ocpp/{identity}",
                               ssl_context=tls_for(setup, issued, identity))
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    return response == b""


def refused_count(setup: Setup, reason: str) -> float:
    status, text, _ = http("GET", setup.admin + "/metrics")
    assert status == 200
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "ocppgw_handshakes_refused_total" and s.labels == {"reason": reason}:
                return float(s.value)
    return 0.0


def sighup(setup: Setup, after: str) -> None:
    """SIGHUP the gateway and wait until its log says ``after`` once more."""
    count = setup.gw.log().count(after)
    assert setup.gw.proc is not None
    os.kill(setup.gw.proc.pid, signal.SIGHUP)
    wait_for(lambda: setup.gw.log().count(after) > count, f"{after!r} after SIGHUP")


def closed_with(ws: object, code: int) -> bool:
    """True when the gateway closes ``ws`` with ``code`` (within the wait)."""
    try:
        while True:
            ws.recv(timeout=8)  # type: ignore[attr-defined]
    except ConnectionClosed as e:
        return e.rcvd is not None and e.rcvd.code == code
    except TimeoutError:
        return False


def test_revoked_certificate_refused_counted_logged_once(setup: Setup) -> None:
    """
    A certificate the CRL (DER) revokes fails the TLS handshake, each refusal
    counts as ``TLS revoked``, and the log names its serial once.
    """
    before = refused_count(setup, "TLS revoked")
    assert refused_by_tls(setup, "CP-R", setup.revoked)
    assert refused_by_tls(setup, "CP-R", setup.revoked)
    wait_for(lambda: refused_count(setup, "TLS revoked") == before + 2, "two revoked refusals")
    serial = f"serial {setup.revoked.cert.serial_number:X}"
    assert setup.gw.log().count(serial) == 1, setup.gw.log()


def test_sighup_closes_revoked_connection_keeps_others(setup: Setup) -> None:
    """
    A CRL rewritten on disk (PEM) and reloaded by SIGHUP closes the connected
    charge point whose certificate it now revokes with 1008; the other
    connected charge point keeps working.
    """
    doomed, kept = setup.ca.issue("CP-D"), setup.ca.issue("CP-K")
    with connect(setup, "CP-D", doomed) as d_ws, connect(setup, "CP-K", kept) as k_ws:
        assert "currentTime" in heartbeat(d_ws) and "currentTime" in heartbeat(k_ws)
        setup.crl_file.write_bytes(setup.ca.crl((setup.revoked.cert, doomed.cert)))
        sighup(setup, "reloaded [listener:p3] tls_crl")
        assert closed_with(d_ws, 1008)
        assert "currentTime" in heartbeat(k_ws)
    assert refused_by_tls(setup, "CP-D", doomed)


def test_changed_crl_read_at_next_handshake(setup: Setup) -> None:
    """
    Without SIGHUP, a CRL file that changed is read at the next handshake: a
    connected charge point it revokes is closed with 1008, the newcomer is served.
    """
    gone = setup.ca.issue("CP-G")
    with connect(setup, "CP-G", gone) as g_ws:
        assert "currentTime" in heartbeat(g_ws)
        time.sleep(0.01)  # a new mtime
        setup.crl_file.write_bytes(setup.ca.crl((setup.revoked.cert, gone.cert)))
        with connect(setup, "CP-N", setup.ca.issue("CP-N")) as n_ws:
            assert closed_with(g_ws, 1008)
            assert "currentTime" in heartbeat(n_ws)
    assert "tls_crl: re-read after a file changed" in setup.gw.log()


def test_renewed_certificate_accepted(setup: Setup) -> None:
    """
    A renewed certificate (new key and serial, same identity and CA) is
    accepted at once while the old one stays revoked.
    """
    renewed = setup.ca.issue("CP-R")
    assert renewed.cert.serial_number != setup.revoked.cert.serial_number
    with connect(setup, "CP-R", renewed) as ws:
        assert "currentTime" in heartbeat(ws)
    assert refused_by_tls(setup, "CP-R", setup.revoked)


def test_expired_crl_on_reload_keeps_previous(setup: Setup) -> None:
    """
    With ``refuse``, an expired CRL on SIGHUP is not used: an error line says
    so and the previous lists still refuse the revoked certificate.
    """
    setup.crl_file.write_bytes(setup.ca.crl((), expired=True))
    sighup(setup, "reload of [listener:p3] tls_crl failed, keeping the old one")
    assert refused_by_tls(setup, "CP-R", setup.revoked)


def test_expired_crl_refuse_does_not_start(tmp_path: Path, broker: Broker) -> None:
    """
    With ``tls_crl_expired = refuse`` an expired CRL stops the start: a
    non-zero exit and one line naming tls_crl, the file and "expired".
    """
    ca = CA()
    crl = tmp_path / "old.crl"
    crl.write_bytes(ca.crl((), expired=True))
    ini = "[gateway]\nid = crl-refuse\n[admin]\nendpoint =\n" + listener_ini(
        tmp_path, free_port(), ca, crl
    ) + f"[mqtt]\nbroker = mqtt://127.0.0.1:{broker.port}\n"
    config = tmp_path / "ocppgw.ini"
    config.write_text(ini)
    done = subprocess.run(
        [str(TWISTD), "-n", "--pidfile=", "ocppgw", "--config", str(config)],
        capture_output=True, text=True, timeout=START_TIMEOUT, cwd=tmp_path,
    )
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "tls_crl" in line]
    assert len(lines) == 1 and "expired" in lines[0] and str(crl) in lines[0], done


def test_expired_crl_warn_starts(tmp_path: Path, broker: Broker) -> None:
    """
    With ``tls_crl_expired = warn`` the gateway starts, warns, and a good
    certificate connects.
    """
    ca = CA()
    crl = tmp_path / "old.crl"
    crl.write_bytes(ca.crl((), expired=True))
    port = free_port()
    ini = listener_ini(tmp_path, port, ca, crl, "warn") + (
        f"[mqtt]\nbroker = mqtt://127.0.0.1:{broker.port}\n"
    )
    gw = start_gateway(tmp_path / "gw", ini, port)
    try:
        assert "used anyway (tls_crl_expired = warn)" in gw.log()
        good = ca.issue("CP-W").write(tmp_path, "cp-w")
        with ws_connect(f"wss://127.0.0.1:{port}/ocpp/CP-W",
                        ssl_context=client_tls(tmp_path / "ca.pem", good),
                        server_hostname="localhost") as ws:
            assert "currentTime" in heartbeat(ws)
    finally:
        stop(gw.proc)
