"""
Security profiles 2 and 3 end to end: the real gateway with wss listeners,
certificates made at run time, real TLS clients, a real mosquitto.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ocppgw.listener.credentials import make_entry, write_file
from tests.certs import CA
from tests.integration.harness.security import (
    Backend,
    Broker,
    Gateway,
    basic,
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

PASSWORD = "profile-two-password"


@dataclass
class Setup:
    gw: Gateway
    backend: Backend
    ca: CA
    ca_file: Path
    dir: Path
    p1: int
    p2: int
    p3: int
    rsa: tuple[Path, Path]
    ecdsa: tuple[Path, Path]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    d = tmp_path_factory.mktemp("tls")
    broker: Broker = start_broker(d / "broker")
    ca = CA()
    ca_file = ca.write(d / "ca.pem")
    rsa_files = ca.issue("localhost", kind="rsa", server=True, dns=("localhost",)).write(d, "rsa")
    ec_files = ca.issue("localhost", kind="ecdsa", server=True, dns=("localhost",)).write(d, "ec")
    write_file(str(d / "creds"), {
        "CP-P1": make_entry("CP-P1", PASSWORD.encode(), 1),
        "CP-P2": make_entry("CP-P2", PASSWORD.encode(), 2),
        "CP-P2b": make_entry("CP-P2b", PASSWORD.encode(), 2),
    })
    p1, p2, p3 = free_port(), free_port(), free_port()
    ini = f"""
[listener:p2]
endpoint = tcp:{p2}:interface=127.0.0.1
security_profile = 2
tls_cert = {rsa_files[0]} {ec_files[0]}
tls_key = {rsa_files[1]} {ec_files[1]}
[listener:p3]
endpoint = tcp:{p3}:interface=127.0.0.1
security_profile = 3
tls_cert = {ec_files[0]}
tls_key = {ec_files[1]}
tls_ca = {ca_file}
cpo_name = ACME
[listener:p1]
endpoint = tcp:{p1}:interface=127.0.0.1
security_profile = 1
[auth]
credentials = {d / "creds"}
[mqtt]
broker = mqtt://127.0.0.1:{broker.port}
"""
    backend = Backend(broker.port)
    try:
        gw = start_gateway(d / "gw", ini, p2)
        try:
            yield Setup(gw, backend, ca, ca_file, d, p1, p2, p3, rsa_files, ec_files)
        finally:
            stop(gw.proc)
    finally:
        # Also when the gateway did not start: nothing of the module is left running.
        backend.close()
        stop(broker.proc)
    log = gw.log()
    assert "Traceback" not in log and "Unhandled" not in log, log


@pytest.fixture(autouse=True)
def _log_on_failure(setup: Setup, request: pytest.FixtureRequest) -> None:
    """The module's gateway log goes with a failed test's report (conftest.py)."""
    request.node._ocppgw_gateways = [setup.gw]


def served_certificate(port: int, ctx: ssl.SSLContext) -> x509.Certificate:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return x509.load_der_x509_certificate(der)


def refused_by_tls(port: int, ctx: ssl.SSLContext, identity: str) -> bool:
    """True when the TLS handshake fails (an alert), with no HTTP response at all."""
    try:
        response = raw_request(port, f"/ocpp/{identity}", ssl_context=ctx)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    return response == b""


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_profile_2_serves_rsa_and_ecdsa(setup: Setup) -> None:
    """The profile 2 listener serves its ECDSA or RSA certificate by the suites offered."""
    ec_cert = served_certificate(setup.p2, client_tls(setup.ca_file,
                                                      ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
    assert isinstance(ec_cert.public_key(), ec.EllipticCurvePublicKey)
    rsa_cert = served_certificate(setup.p2, client_tls(setup.ca_file,
                                                       ciphers="ECDHE-RSA-AES256-GCM-SHA384"))
    assert isinstance(rsa_cert.public_key(), rsa.RSAPublicKey)


def test_profile_2_refuses_old_tls_and_weak_suites(setup: Setup) -> None:
    """TLS 1.1 and a CBC suite are refused in the handshake (A00.FR.312/317)."""
    old = client_tls(setup.ca_file)
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    cbc = client_tls(setup.ca_file, ciphers="ECDHE-RSA-AES128-SHA:@SECLEVEL=0")
    for ctx in (old, cbc):
        with pytest.raises(ssl.SSLError):
            served_certificate(setup.p2, ctx)


def test_profile_2_basic_auth_over_tls(setup: Setup) -> None:
    """Right password over wss: round trips work; wrong password: 401 before the upgrade."""
    ctx = client_tls(setup.ca_file)
    url = f"wss://127.0.0.1:{setup.p2}/ocpp/CP-P2"
    with ws_connect(url, basic("CP-P2", PASSWORD), ctx, server_hostname="localhost") as ws:
        assert "currentTime" in heartbeat(ws)
    response = raw_request(setup.p2, "/ocpp/CP-P2b", basic("CP-P2b", "wrong"), ctx)
    assert status(response) == 401
    assert setup.backend.topics("CP-P2b") == []


def test_plain_connection_to_tls_listener_fails(setup: Setup) -> None:
    """A plain ws:// request to a profile 2 listener gets no HTTP answer."""
    try:
        response = raw_request(setup.p2, "/ocpp/CP-P2b", basic("CP-P2b", PASSWORD))
    except ConnectionResetError:
        response = b""
    assert not response.startswith(b"HTTP/1.1 101")


def test_profile_3_good_certificate(setup: Setup) -> None:
    """A client certificate from tls_ca with CN = identity and O = cpo_name is admitted."""
    cert = setup.ca.issue("CP-M1", o="ACME").write(setup.dir, "cp-m1")
    ctx = client_tls(setup.ca_file, cert)
    with ws_connect(f"wss://127.0.0.1:{setup.p3}/ocpp/CP-M1", ssl_context=ctx,
                    server_hostname="localhost") as ws:
        assert "currentTime" in heartbeat(ws)
    presence = setup.backend.payloads("ocpp/presence/CP-M1")
    assert presence and presence[0]["Online"] is True


@pytest.mark.parametrize("case, why, failed_with", [
    ("missing", "peer did not return a certificate", "peer did not return a certificate"),
    ("untrusted", "unable to get local issuer certificate", "certificate verify failed"),
    ("expired", "certificate has expired", "certificate verify failed"),
])
def test_profile_3_tls_refusals(setup: Setup, case: str, why: str, failed_with: str) -> None:
    """
    Missing, untrusted or expired certificates fail the TLS handshake, logged
    with why, and the failed handshake is logged with OpenSSL's error.
    """
    identity = f"CP-bad-{case}"
    cert = None
    if case == "untrusted":
        cert = CA("rogue").issue(identity, o="ACME").write(setup.dir, identity)
    elif case == "expired":
        cert = setup.ca.issue(identity, o="ACME", expired=True).write(setup.dir, identity)
    assert refused_by_tls(setup.p3, client_tls(setup.ca_file, cert), identity)
    setup.gw.wait_log(why)  # in the handshake; the failed handshake's line when it ends

    def failed() -> bool:
        lines = re.findall(r"TLS handshake with 127\.0\.0\.1:\d+ failed: (.*)", setup.gw.log())
        return any(failed_with in line for line in lines)

    wait_for(failed, f"'TLS handshake with ... failed: ...{failed_with}...' in the gateway log")
    assert setup.backend.topics(identity) == []


@pytest.mark.parametrize("case", ["cn", "o"])
def test_profile_3_mismatch_is_403(setup: Setup, case: str) -> None:
    """A trusted certificate of another identity, or of another CPO, gets 403 before 101."""
    identity = f"CP-mm-{case}"
    subject = ("someone-else", "ACME") if case == "cn" else (identity, "Other CPO")
    cert = setup.ca.issue(subject[0], o=subject[1]).write(setup.dir, identity)
    response = raw_request(setup.p3, f"/ocpp/{identity}", ssl_context=client_tls(
        setup.ca_file, cert))
    assert status(response) == 403
    setup.gw.wait_log(f"/ocpp/{identity}: 403")
    assert setup.backend.topics(identity) == []


def test_no_downgrade_to_profile_1(setup: Setup) -> None:
    """A profile 2 identity with its right password is refused on the profile 1 listener."""
    response = raw_request(setup.p1, "/ocpp/CP-P2b", basic("CP-P2b", PASSWORD))
    assert status(response) == 403
    setup.gw.wait_log("'CP-P2b' is registered at security profile 2")
    assert setup.backend.topics("CP-P2b") == []
    ok = raw_request(setup.p1, "/ocpp/CP-P1", basic("CP-P1", PASSWORD))
    assert status(ok) == 101


def test_sighup_reloads_certificates_without_dropping(setup: Setup) -> None:
    """SIGHUP: new handshakes get the new certificate; an open connection keeps working."""
    ctx = client_tls(setup.ca_file)
    url = f"wss://127.0.0.1:{setup.p2}/ocpp/CP-P2"
    with ws_connect(url, basic("CP-P2", PASSWORD), ctx, server_hostname="localhost") as ws:
        assert "currentTime" in heartbeat(ws)
        ec_ctx = client_tls(setup.ca_file, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
        before = served_certificate(setup.p2, ec_ctx).serial_number
        renewed = setup.ca.issue("localhost", kind="ecdsa", server=True, dns=("localhost",))
        # Write the key first under a temporary name, then swap both in.
        tmp_cert, tmp_key = renewed.write(setup.dir, "renewed")
        os.replace(tmp_key, setup.ecdsa[1])
        os.replace(tmp_cert, setup.ecdsa[0])
        count = setup.gw.log().count("reloaded")
        os.kill(setup.gw.proc.pid, signal.SIGHUP)
        wait_for(lambda: setup.gw.log().count("reloaded") > count, "the reload")
        after = served_certificate(setup.p2, ec_ctx).serial_number
        assert before != after == renewed.cert.serial_number
        assert "currentTime" in heartbeat(ws)
    assert setup.gw.proc.poll() is None
    # The profile 3 listener shares the ECDSA files and got them too.
    client = setup.ca.issue("CP-M2", o="ACME").write(setup.dir, "cp-m2")
    with ws_connect(f"wss://127.0.0.1:{setup.p3}/ocpp/CP-M2",
                    ssl_context=client_tls(setup.ca_file, client),
                    server_hostname="localhost") as ws:
        assert "currentTime" in heartbeat(ws)
    assert json.dumps(setup.backend.payloads("ocpp/presence/CP-M2")[0]).count("true") >= 1
