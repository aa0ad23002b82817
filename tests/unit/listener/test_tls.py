"""
The listener's TLS context (A00.FR.312/317/320) and the profile 3 certificate
checks, with in-memory handshakes between pyOpenSSL connections: no sockets.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from ocppgw.listener.tls import (
    ForwardedCertificates,
    ServerTLS,
    TLSConfigError,
    check_subject,
    server_context,
)
from ocppgw.mqtt.tls import BrokerTLSError, _VerifiedSSLSocket, mqtt_client_context
from tests.certs import CA, Issued
from tests.clocks import Clocks


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


@pytest.fixture
def pairs(ca: CA, tmp_path: Path) -> list[tuple[str, str]]:
    rsa = ca.issue("gw.test", kind="rsa", server=True, dns=("gw.test",))
    ecdsa = ca.issue("gw.test", kind="ecdsa", server=True, dns=("gw.test",))
    return [tuple(map(str, rsa.write(tmp_path, "rsa"))),  # type: ignore[misc]
            tuple(map(str, ecdsa.write(tmp_path, "ecdsa")))]


def handshake(server: SSL.Context, client: SSL.Context) -> tuple[SSL.Connection, SSL.Connection]:
    """Run a TLS handshake in memory; raises SSL.Error when it fails."""
    s, c = SSL.Connection(server, None), SSL.Connection(client, None)
    s.set_accept_state()
    c.set_connect_state()
    for _ in range(20):
        done = 0
        for conn in (c, s):
            try:
                conn.do_handshake()
                done += 1
            except SSL.WantReadError:
                pass
        for a, b in ((c, s), (s, c)):
            try:
                b.bio_write(a.bio_read(65536))
            except SSL.WantReadError:
                pass
        if done == 2:
            return s, c
    raise AssertionError("handshake did not finish")


def client_context(ciphers: str | None = None, max_version: int | None = None,
                   cert: Issued | None = None, tmp: Path | None = None) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if max_version is not None:
        ctx.set_min_proto_version(SSL.TLS1_VERSION)
        ctx.set_max_proto_version(max_version)
        ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    if ciphers is not None:
        ctx.set_cipher_list(ciphers.encode())
    if cert is not None and tmp is not None:
        c, k = cert.write(tmp, "client")
        ctx.use_certificate_chain_file(str(c))
        ctx.use_privatekey_file(str(k))
    return ctx


def served_key(client: SSL.Connection) -> str:
    cert = client.get_peer_certificate(as_cryptography=True)
    assert cert is not None
    return "ECDSA" if isinstance(cert.public_key(), ec.EllipticCurvePublicKey) else "RSA"


def test_serves_rsa_and_ecdsa(pairs: list[tuple[str, str]]) -> None:
    """One context serves the ECDSA certificate to ECDSA suites and RSA to RSA suites."""
    server = server_context("t", pairs, None)
    _, c = handshake(server, client_context("ECDHE-ECDSA-AES128-GCM-SHA256", SSL.TLS1_2_VERSION))
    assert served_key(c) == "ECDSA"
    assert c.get_cipher_name() == "ECDHE-ECDSA-AES128-GCM-SHA256"
    _, c = handshake(server, client_context("ECDHE-RSA-AES256-GCM-SHA384", SSL.TLS1_2_VERSION))
    assert served_key(c) == "RSA"
    _, c = handshake(server, client_context("AES128-GCM-SHA256", SSL.TLS1_2_VERSION))
    assert c.get_cipher_name() == "AES128-GCM-SHA256"
    _, c = handshake(server, client_context())
    assert c.get_protocol_version_name() == "TLSv1.3"


@pytest.mark.parametrize("ciphers, version", [
    ("ECDHE-RSA-AES128-SHA", SSL.TLS1_2_VERSION),  # CBC: not in A00.FR.317
    ("ECDHE-ECDSA-CHACHA20-POLY1305", SSL.TLS1_2_VERSION),
    ("DEFAULT", SSL.TLS1_1_VERSION),  # TLS < 1.2 (A00.FR.312)
])
def test_refuses_other_suites_and_old_tls(pairs: list[tuple[str, str]], ciphers: str,
                                          version: int) -> None:
    """Suites outside A00.FR.317 and TLS older than 1.2 fail the handshake."""
    server = server_context("t", pairs, None)
    ctx = client_context(max_version=version)
    ctx.set_cipher_list(ciphers.encode() + b":@SECLEVEL=0")
    with pytest.raises(SSL.Error):
        handshake(server, ctx)


def test_no_compression(pairs: list[tuple[str, str]]) -> None:
    """OP_NO_COMPRESSION is set on the context (A00.FR.320)."""
    server = server_context("t", pairs, None)
    assert server.set_options(0) & SSL.OP_NO_COMPRESSION


def test_configuration_errors(ca: CA, pairs: list[tuple[str, str]], tmp_path: Path) -> None:
    """Two certificates of one kind, a key of another certificate, a missing file: named."""
    other = ca.issue("x", kind="rsa", server=True).write(tmp_path, "other")
    with pytest.raises(TLSConfigError, match="both RSA"):
        server_context("t", [pairs[0], (str(other[0]), str(other[1]))], None)
    with pytest.raises(TLSConfigError, match="not a readable private key"):
        server_context("t", [(pairs[0][0], str(other[1]))], None)
    with pytest.raises(TLSConfigError, match="cannot read /nonexistent"):
        server_context("t", [("/nonexistent", pairs[0][1])], None)


def test_client_certificate_required_and_verified(ca: CA, pairs: list[tuple[str, str]],
                                                  tmp_path: Path) -> None:
    """Profile 3: no, untrusted or expired client certificate fails; a good one passes."""
    ca_file = str(ca.write(tmp_path / "ca.pem"))
    server = server_context("t", pairs, ca_file)
    s, _ = handshake(server, client_context(cert=ca.issue("CP1"), tmp=tmp_path))
    assert s.get_peer_certificate(as_cryptography=True) is not None
    for bad in (None, CA("rogue").issue("CP1"), ca.issue("CP1", expired=True)):
        with pytest.raises(SSL.Error):
            handshake(server, client_context(cert=bad, tmp=tmp_path))


def test_reload_takes_new_files_for_new_connections(ca: CA, pairs: list[tuple[str, str]],
                                                    tmp_path: Path) -> None:
    """reload() reads the files again; a connection made before keeps its context."""
    tls = ServerTLS("t", [pairs[1][0]], [pairs[1][1]])
    before = tls.serverConnectionForTLS(None)
    new = ca.issue("renewed.test", server=True)
    Path(pairs[1][0]).write_bytes(new.cert_pem())
    Path(pairs[1][1]).write_bytes(new.key_pem())
    tls.reload()
    after = tls.serverConnectionForTLS(None)
    assert after.get_context() is not before.get_context()
    _, c = handshake(after.get_context(), client_context())
    cert = c.get_peer_certificate(as_cryptography=True)
    assert cert is not None and "renewed.test" in cert.subject.rfc4514_string()
    Path(pairs[1][1]).write_text("garbage")
    with pytest.raises(TLSConfigError):
        tls.reload()
    assert tls.serverConnectionForTLS(None).get_context() is after.get_context()


def test_check_subject(ca: CA) -> None:
    """CN must equal the expected value, O must hold cpo_name when set (A00.FR.404/405)."""
    cert = ca.issue("CP1", o="ACME").cert
    assert check_subject(cert, "CP1", None) is None
    assert check_subject(cert, "CP1", "ACME") is None
    assert "CN 'CP1' is not 'CP2'" in (check_subject(cert, "CP2", None) or "")
    assert "CPO name 'Other'" in (check_subject(cert, "CP1", "Other") or "")
    assert check_subject(ca.issue("CP1").cert, "CP1", "ACME") is not None


def test_forwarded_certificates(ca: CA, tmp_path: Path, clocks: Clocks) -> None:
    """A forwarded PEM verifies against tls_ca at the clock's time; bad ones say why."""
    clock = clocks.new()
    good = ca.issue("CP1")
    clock.advance(good.cert.not_valid_before_utc.timestamp() + 3600)
    forwarded = ForwardedCertificates(str(ca.write(tmp_path / "ca.pem")), clock)
    leaf, why = forwarded.verify(good.cert_pem().decode())
    assert why is None and isinstance(leaf, x509.Certificate)
    for bad, reason in ((CA("rogue").issue("CP1").cert_pem().decode(), "rejected"),
                        ("-----BEGIN CERTIFICATE-----\nxx\n", "not readable")):
        leaf, why = forwarded.verify(bad)
        assert leaf is None and reason in (why or "")
    clock.advance(365 * 86400)
    leaf, why = forwarded.verify(good.cert_pem().decode())
    assert leaf is None and "expired" in (why or "")


def test_mqtt_context(ca: CA, tmp_path: Path) -> None:
    """The MQTT context needs TLS 1.2+, verifies the chain and checks names itself."""
    ctx = mqtt_client_context(str(ca.write(tmp_path / "ca.pem")), None, None)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.sslsocket_class is _VerifiedSSLSocket and not ctx.check_hostname
    with pytest.raises(BrokerTLSError):
        mqtt_client_context(str(tmp_path / "missing.pem"), None, None)


def _config(tmp_path: Path, listener: str) -> object:
    from ocppgw.config import parse

    (tmp_path / "creds").write_text("")
    return parse(
        f"[listener:a]\nendpoint = tcp:0\n{listener}[auth]\ncredentials = creds\n"
        "[mqtt]\nbroker = mqtt://127.0.0.1:1\n[validation]\nmode = off\n",
        base_dir=str(tmp_path),
    )


def test_build_names_the_listener_for_bad_tls_files(pairs: list[tuple[str, str]],
                                                   tmp_path: Path, clocks: Clocks) -> None:
    """A key that does not fit its certificate stops the start, naming section and keys."""
    from twisted.internet.testing import MemoryReactorClock

    from ocppgw.assemble import build
    from ocppgw.config import ConfigError

    config = _config(tmp_path, f"security_profile = 2\ntls_cert = {pairs[0][0]}\n"
                               f"tls_key = {pairs[1][1]}\n")
    with pytest.raises(ConfigError, match=r"\[listener:a\] tls_cert/tls_key/tls_ca: .*key"):
        build(config, clocks.add(MemoryReactorClock()))  # type: ignore[arg-type]


def test_service_reload_keeps_the_old_context_on_error(pairs: list[tuple[str, str]],
                                                       tmp_path: Path, clocks: Clocks) -> None:
    """GatewayService.reload (SIGHUP) re-reads certificates; a broken file keeps the old one."""
    from twisted.internet.testing import MemoryReactorClock

    from ocppgw.assemble import build

    config = _config(tmp_path, f"security_profile = 2\ntls_cert = {pairs[1][0]}\n"
                               f"tls_key = {pairs[1][1]}\n")
    service = build(config, clocks.add(MemoryReactorClock()))  # type: ignore[arg-type]
    names = [str(item) for item in service.reloadable]
    assert names == ["credentials", "[listener:a] certificates"]
    tls = service.listeners[0].factory.tls  # type: ignore[attr-defined]
    before = tls.serverConnectionForTLS(None).get_context()
    service.reload()
    reloaded = tls.serverConnectionForTLS(None).get_context()
    assert reloaded is not before
    Path(pairs[1][1]).write_text("not a key")
    service.reload()
    assert tls.serverConnectionForTLS(None).get_context() is reloaded
