"""
Admission over the real Autobahn handshake: rate limits (429), no downgrade
(A00.FR.005), trusted proxies, profile 3 behind a TLS-offloading proxy, and
which identities are accepted.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from ocppgw.config import ListenerConfig
from ocppgw.listener.admission import Gatekeeper
from ocppgw.listener.credentials import Credentials, make_entry, write_file
from ocppgw.listener.factory import OCPPServerFactory
from ocppgw.listener.proxy import parse_networks
from ocppgw.listener.ratelimit import LoginLimiter
from ocppgw.listener.tls import ForwardedCertificates
from tests.certs import CA
from tests.clocks import Clocks

VERSIONS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")
PASSWORD = b"0123456789abcdef"


class _Transport(StringTransport):
    def unregisterProducer(self) -> None:
        self.producer = None


def basic(user: str, password: bytes) -> str:
    return "Basic " + base64.b64encode(user.encode() + b":" + password).decode()


class Harness:
    def __init__(self, listener: ListenerConfig, credentials: Credentials | None,
                 limiter: LoginLimiter | None = None,
                 forwarded: ForwardedCertificates | None = None) -> None:
        self.opened: list[tuple[str, str]] = []
        self.factory = OCPPServerFactory(
            listener, VERSIONS, credentials, self.open_session, lambda s: None,
            gatekeeper=Gatekeeper(listener, credentials, limiter, forwarded),
        )

    def open_session(self, identity: str, version: str, connection: Any) -> object:
        self.opened.append((identity, connection.peer))
        return object()

    def request(self, path: str, headers: dict[str, str] | None = None,
                peer: str = "192.0.2.10") -> bytes:
        proto = self.factory.buildProtocol(IPv4Address("TCP", peer, 5555))
        transport = _Transport(peerAddress=IPv4Address("TCP", peer, 5555))
        proto.makeConnection(transport)
        lines = [
            f"GET {path} HTTP/1.1", "Host: localhost", "Upgrade: websocket",
            "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: ocpp1.6",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        proto.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())
        return bytes(transport.value())


def listener(profile: int, **kw: Any) -> ListenerConfig:
    return ListenerConfig("t", "tcp:0", "/ocpp", profile, None, 65536, 10.0, **kw)


@pytest.fixture
def credentials(tmp_path: Path) -> Credentials:
    path = tmp_path / "creds"
    write_file(str(path), {
        "CP1": make_entry("CP1", PASSWORD),
        "CP2": make_entry("CP2", PASSWORD, profile=2),
        "CP3": make_entry("CP3", PASSWORD, profile=3, serial="SN-0003"),
    })
    return Credentials(str(path))


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_rate_limit_answers_429_before_checking_the_password(
    credentials: Credentials, clocks: Clocks
) -> None:
    """After max failures from an address, even the right password gets 429 + Retry-After."""
    clock = clocks.new()
    h = Harness(listener(1), credentials, LoginLimiter(clock, 3, 100, 60.0, 1000))
    for _ in range(3):
        assert status(h.request("/ocpp/CP1", {"Authorization": basic("CP1", b"wrong")})) == 401
    response = h.request("/ocpp/CP1", {"Authorization": basic("CP1", PASSWORD)})
    assert status(response) == 429
    assert b"Retry-After: 20" in response
    # Another address is not limited, and the limit lifts with time.
    ok = h.request("/ocpp/CP1", {"Authorization": basic("CP1", PASSWORD)}, peer="192.0.2.11")
    assert status(ok) == 101
    clock.advance(20)
    assert status(h.request("/ocpp/CP1", {"Authorization": basic("CP1", PASSWORD)})) == 101


def test_rate_limit_per_identity(credentials: Credentials, clocks: Clocks) -> None:
    """Failures for one identity from many addresses limit that identity only."""
    h = Harness(listener(1), credentials, LoginLimiter(clocks.new(), 100, 2, 60.0, 1000))
    for n in range(2):
        h.request("/ocpp/CP1", {"Authorization": basic("CP1", b"x")}, peer=f"198.51.100.{n}")
    limited = h.request("/ocpp/CP1", {"Authorization": basic("CP1", PASSWORD)}, peer="203.0.113.1")
    assert status(limited) == 429
    other = h.request("/ocpp/CP2", {"Authorization": basic("CP2", PASSWORD)}, peer="203.0.113.1")
    assert status(other) != 429


@pytest.mark.parametrize("profile, identity", [(1, "CP2"), (1, "CP3"), (0, "CP1"), (0, "CP2")])
def test_no_downgrade(credentials: Credentials, profile: int, identity: str) -> None:
    """An identity registered at a higher profile than the listener's gets 403 (A00.FR.005)."""
    h = Harness(listener(profile), credentials)
    response = h.request(f"/ocpp/{identity}", {"Authorization": basic(identity, PASSWORD)})
    assert status(response) == 403 and b"registered at security profile" in response
    assert h.opened == []


def test_same_profile_is_fine(credentials: Credentials) -> None:
    """A profile 1 identity on a profile 1 listener upgrades."""
    h = Harness(listener(1), credentials)
    assert status(h.request("/ocpp/CP1", {"Authorization": basic("CP1", PASSWORD)})) == 101


def test_profile_2_needs_tls(credentials: Credentials) -> None:
    """Profile 2 over plain TCP, not from a trusted TLS-offloading proxy: 403."""
    h = Harness(listener(2, trusted_proxies=parse_networks("10.0.0.0/8")), credentials)
    headers = {"Authorization": basic("CP2", PASSWORD), "X-Forwarded-Proto": "https"}
    assert status(h.request("/ocpp/CP2", headers, peer="192.0.2.1")) == 403
    assert status(h.request("/ocpp/CP2", headers, peer="10.0.0.1")) == 101


def test_forwarded_address_from_trusted_proxy_only(
    credentials: Credentials, clocks: Clocks
) -> None:
    """X-Forwarded-For sets the remote address (presence, limits) only from trusted proxies."""
    clock = clocks.new()
    h = Harness(listener(1, trusted_proxies=parse_networks("10.0.0.0/8")), credentials,
                LoginLimiter(clock, 1, 100, 60.0, 1000))
    auth = {"Authorization": basic("CP1", PASSWORD), "X-Forwarded-For": "198.51.100.7"}
    h.request("/ocpp/CP1", auth, peer="10.0.0.1")
    h.request("/ocpp/CP1", auth, peer="192.0.2.50")
    assert h.opened == [("CP1", "tcp4:198.51.100.7"), ("CP1", "tcp4:192.0.2.50:5555")]
    # Limits count the forwarded address, not the proxy's.
    bad = {"Authorization": basic("CP1", b"x"), "X-Forwarded-For": "198.51.100.8"}
    assert status(h.request("/ocpp/CP1", bad, peer="10.0.0.1")) == 401
    bad_again = h.request("/ocpp/CP1", {**bad, "Authorization": basic("CP1", PASSWORD)},
                          peer="10.0.0.1")
    assert status(bad_again) == 429
    assert status(h.request("/ocpp/CP1", auth, peer="10.0.0.1")) == 101


class TestOffloadedProfile3:
    """Profile 3 behind a trusted TLS-offloading proxy: the forwarded certificate is checked."""

    @pytest.fixture
    def setup(self, tmp_path: Path, credentials: Credentials, clocks: Clocks) -> tuple[CA, Any]:
        ca = CA()
        clock = clocks.new()
        clock.advance(ca.cert.not_valid_before_utc.timestamp() + 7200)
        forwarded = ForwardedCertificates(str(ca.write(tmp_path / "ca.pem")), clock)

        def make(**kw: Any) -> Harness:
            config = listener(3, trusted_proxies=parse_networks("10.0.0.0/8"),
                              tls_ca=str(tmp_path / "ca.pem"), **kw)
            return Harness(config, credentials, LoginLimiter(clock, 50, 50, 60.0, 100),
                           forwarded)

        return ca, make

    @staticmethod
    def headers(pem: bytes) -> dict[str, str]:
        return {"X-Forwarded-Proto": "https", "X-Client-Cert": quote(pem.decode())}

    def test_good_certificate(self, setup: tuple[CA, Any]) -> None:
        """A certificate from tls_ca whose CN is the identity and O the CPO upgrades."""
        ca, make = setup
        h = make(cpo_name="ACME")
        cert = ca.issue("CP9", o="ACME").cert_pem()
        assert status(h.request("/ocpp/CP9", self.headers(cert), peer="10.0.0.1")) == 101

    @pytest.mark.parametrize("case", ["cn", "o", "untrusted", "expired", "missing", "direct"])
    def test_refused(self, setup: tuple[CA, Any], case: str) -> None:
        """Wrong CN or O, untrusted, expired, missing, or not from the proxy: 403."""
        ca, make = setup
        h = make(cpo_name="ACME")
        pem = {
            "cn": ca.issue("CP8", o="ACME"),
            "o": ca.issue("CP9", o="Other"),
            "untrusted": CA("rogue").issue("CP9", o="ACME"),
            "expired": ca.issue("CP9", o="ACME", expired=True),
        }.get(case, ca.issue("CP9", o="ACME")).cert_pem()
        headers = {} if case == "missing" else self.headers(pem)
        if case == "missing":
            headers = {"X-Forwarded-Proto": "https"}
        peer = "192.0.2.1" if case == "direct" else "10.0.0.1"
        response = h.request("/ocpp/CP9", headers, peer=peer)
        assert status(response) == 403, response
        assert h.opened == []

    def test_serial_mode(self, setup: tuple[CA, Any]) -> None:
        """cert_identity = serial: the CN must be the serial recorded for the identity."""
        ca, make = setup
        h = make(cert_identity="serial")
        good = ca.issue("SN-0003").cert_pem()
        assert status(h.request("/ocpp/CP3", self.headers(good), peer="10.0.0.1")) == 101
        wrong = ca.issue("CP3").cert_pem()
        assert status(h.request("/ocpp/CP3", self.headers(wrong), peer="10.0.0.1")) == 403
        # CP1 has no serial recorded: refused.
        assert status(h.request("/ocpp/CP1", self.headers(ca.issue("CP1").cert_pem()),
                                peer="10.0.0.1")) == 403


@pytest.mark.parametrize("path, accepted", [
    ("/ocpp/%252F", True),          # the identity is the text "%2F"
    ("/ocpp/CP%2F1", False),        # "/" would add a topic level
    ("/ocpp/CP%2B1", False),        # MQTT wildcard
    ("/ocpp/CP%00", False),         # NUL
    ("/ocpp/" + quote("Café"), True),                   # NFC
    ("/ocpp/" + quote("Cafe\u0301"), False),            # NFD: same text, other bytes
    ("/ocpp/" + quote("\u05e2\u05de\u05d3\u05d4-1"), True),  # Hebrew letters (RTL)
    ("/ocpp/" + quote("CP\u202e1"), False),             # RIGHT-TO-LEFT OVERRIDE
    ("/ocpp/" + quote("CP\u200d1"), False),             # ZERO WIDTH JOINER
    ("/ocpp/" + quote("CP\u00a01"), False),             # NO-BREAK SPACE
    ("/ocpp/" + quote("CP 1"), True),
    ("/ocpp/" + quote("⚡🔌"), True),                    # emoji
])
def test_identity_characters(path: str, accepted: bool) -> None:
    """Printable NFC Unicode is accepted; wildcards, invisible and bidi characters are not."""
    h = Harness(listener(0), None)
    response = h.request(path)
    assert status(response) == (101 if accepted else 400), response[:120]
