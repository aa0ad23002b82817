"""
The WebSocket handshake: the real Autobahn protocol over a StringTransport.

Each test writes an HTTP upgrade request and reads the HTTP response, so the
status codes, headers and subprotocol are those a charge point would see.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import StringTransport

from ocppgw.config import ListenerConfig
from ocppgw.listener import Refused
from ocppgw.listener.credentials import Credentials, make_entry, parse_basic, write_file
from ocppgw.listener.factory import OCPPServerFactory, choose_version, identity_from_uri

VERSIONS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")


def listener(profile: int = 0, default_version: str | None = None) -> ListenerConfig:
    return ListenerConfig("t", "tcp:0", "/ocpp", profile, default_version, 65536, 10.0)


class _Transport(StringTransport):
    def unregisterProducer(self) -> None:
        self.producer = None


class Harness:
    def __init__(self, profile: int = 0, credentials: Credentials | None = None,
                 default_version: str | None = None) -> None:
        self.opened: list[tuple[str, str]] = []
        self.factory = OCPPServerFactory(
            listener(profile, default_version), VERSIONS, credentials,
            self.open_session, lambda session: None,
        )

    def open_session(self, identity: str, version: str, connection: Any) -> object:
        self.opened.append((identity, version))
        return object()

    def request(self, path: str, protocols: str | None = "ocpp1.6",
                headers: dict[str, str] | None = None, piece: int = 0) -> bytes:
        """The response to this request, written whole or ``piece`` bytes at a time."""
        proto = self.factory.buildProtocol(("127.0.0.1", 5555))
        transport = _Transport()
        proto.makeConnection(transport)
        lines = [
            f"GET {path} HTTP/1.1",
            "Host: localhost:8080",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
        if protocols is not None:
            lines.append(f"Sec-WebSocket-Protocol: {protocols}")
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        for start in range(0, len(data), piece or len(data)):
            proto.dataReceived(data[start : start + (piece or len(data))])
        return bytes(transport.value())


def basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


@pytest.fixture
def credentials(tmp_path: Path) -> Credentials:
    path = tmp_path / "creds"
    write_file(str(path), {
        "CP1": make_entry("CP1", b"0123456789abcdef"),
        "KEY16": make_entry("KEY16", bytes.fromhex("00112233445566778899AABBCCDDEEFF00112233")),
        "a:b": make_entry("a:b", b"secret-secret-16"),
    })
    return Credentials(str(path))


def test_accepts_and_negotiates_first_offer() -> None:
    """The first offered subprotocol that is supported is chosen; the session opens."""
    h = Harness()
    response = h.request("/ocpp/CP%201", "ocpp9, ocpp2.0.1, ocpp1.6")
    assert response.startswith(b"HTTP/1.1 101")
    assert b"Sec-WebSocket-Protocol: ocpp2.0.1" in response
    assert h.opened == [("CP 1", "ocpp2.0.1")]


@pytest.mark.parametrize("path, status", [
    ("/ocpp/", b"400"),
    ("/ocpp/" + "x" * 49, b"400"),
    ("/ocpp/a%2Fb", b"400"),
    ("/ocpp/a/b", b"400"),
    ("/ocpp/a+b", b"400"),
    ("/ocpp/a%23b", b"400"),
    ("/ocpp/a%00b", b"400"),
    ("/ocpp/%ff", b"400"),
    ("/other/CP1", b"404"),
])
def test_bad_identities(path: str, status: bytes) -> None:
    """Unusable identities get 400 and another path 404, before any upgrade."""
    h = Harness()
    response = h.request(path)
    assert response.startswith(b"HTTP/1.1 " + status), response[:80]
    assert h.opened == []


def test_48_characters_is_fine() -> None:
    """An identity of exactly 48 characters is accepted (2.0.1 Part 4 §3.1.1)."""
    assert Harness().request("/ocpp/" + "x" * 48).startswith(b"HTTP/1.1 101")


def test_no_subprotocol_offered() -> None:
    """No (or an empty) Sec-WebSocket-Protocol: 400, unless there is a default_version."""
    assert Harness().request("/ocpp/CP1", None).startswith(b"HTTP/1.1 400")
    assert Harness().request("/ocpp/CP1", "").startswith(b"HTTP/1.1 400")
    h = Harness(default_version="ocpp1.6")
    for header in (None, ""):
        response = h.request("/ocpp/CP1", header)
        assert response.startswith(b"HTTP/1.1 101"), response[:60]
        assert b"Sec-WebSocket-Protocol" not in response.partition(b"\r\n\r\n")[0]
    assert h.opened == [("CP1", "ocpp1.6")] * 2


def test_empty_subprotocol_tokens_are_skipped() -> None:
    """`Sec-WebSocket-Protocol: , ,ocpp2.0.1` offers ocpp2.0.1 (RFC 7230 §7 empty elements)."""
    h = Harness()
    response = h.request("/ocpp/CP1", ", ,ocpp2.0.1,")
    assert response.startswith(b"HTTP/1.1 101"), response[:80]
    assert b"Sec-WebSocket-Protocol: ocpp2.0.1" in response
    assert h.opened == [("CP1", "ocpp2.0.1")]


def test_empty_subprotocol_tokens_are_skipped_in_a_head_read_in_pieces() -> None:
    """The head is read whole before the empty tokens are skipped: one byte at a time too."""
    h = Harness()
    for piece in (1, 7):
        response = h.request("/ocpp/CP1", ", ,ocpp2.0.1,", piece=piece)
        assert b"Sec-WebSocket-Protocol: ocpp2.0.1" in response
    assert h.opened == [("CP1", "ocpp2.0.1")] * 2


def test_unknown_subprotocol_completes_then_closes() -> None:
    """No matching offer: 101 without a subprotocol, then a close frame (OCPP-J §3.2)."""
    h = Harness()
    response = h.request("/ocpp/CP1", "ocpp9.9")
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert b"Sec-WebSocket-Protocol" not in head
    assert rest[:1] == b"\x88"  # FIN + close opcode
    assert h.opened == []


def test_basic_auth(credentials: Credentials) -> None:
    """Profile 1: right password upgrades; wrong or missing gets 401 with a challenge."""
    h = Harness(1, credentials)
    ok = h.request("/ocpp/CP1", headers={"Authorization": basic(b"CP1", b"0123456789abcdef")})
    assert ok.startswith(b"HTTP/1.1 101")
    for headers in ({}, {"Authorization": basic(b"CP1", b"wrong")},
                    {"Authorization": basic(b"CP2", b"0123456789abcdef")},
                    {"Authorization": "Bearer x"}):
        response = h.request("/ocpp/CP1", headers=headers)
        assert response.startswith(b"HTTP/1.1 401"), headers
        assert b'WWW-Authenticate: Basic realm="ocppgw"' in response
    assert h.opened == [("CP1", "ocpp1.6")]


def test_authorization_key_raw_bytes(credentials: Credentials) -> None:
    """A 1.6 AuthorizationKey works as raw bytes (OCPP-J 1.6 §6.2.2) and as hex text."""
    h = Harness(1, credentials)
    raw = bytes.fromhex("00112233445566778899AABBCCDDEEFF00112233")
    for password in (raw, b"00112233445566778899AABBCCDDEEFF00112233"):
        response = h.request("/ocpp/KEY16", headers={"Authorization": basic(b"KEY16", password)})
        assert response.startswith(b"HTTP/1.1 101")


def test_identity_with_colon(credentials: Credentials) -> None:
    """The Basic credentials are split on the known identity, not the first colon."""
    h = Harness(1, credentials)
    response = h.request("/ocpp/a:b", headers={"Authorization": basic(b"a:b", b"secret-secret-16")})
    assert response.startswith(b"HTTP/1.1 101")
    assert parse_basic(basic(b"a:b", b"x:y"), "a:b") == b"x:y"


def test_pure_helpers() -> None:
    """identity_from_uri ignores the query; choose_version returns None on no match."""
    assert identity_from_uri("/ocpp/CP1?x=1", "/ocpp") == "CP1"
    assert choose_version(["x"], VERSIONS, None) is None
    with pytest.raises(Refused):
        choose_version([], VERSIONS, None)
