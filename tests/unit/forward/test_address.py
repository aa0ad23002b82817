"""Forward mode's URL, peer and Authorization rules (ocppgw.forward.address)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ocppgw.forward.address import (
    CredentialsFileError,
    authorization,
    peer_of,
    read_credentials,
    upstream_url,
)

TEMPLATE = "wss://csms.example.com/ocpp/${cid}?x=1"


def test_unreserved_characters_are_kept() -> None:
    """RFC 3986 §2.3: A-Z a-z 0-9 - . _ ~ go into the URL as they are."""
    assert upstream_url(TEMPLATE, "Ab9-._~") == "wss://csms.example.com/ocpp/Ab9-._~?x=1"


def test_every_other_byte_is_percent_encoded() -> None:
    """'/', '?', '#', '%', ':', space and non-ASCII (as UTF-8) are percent-encoded (§2.1)."""
    assert upstream_url(TEMPLATE, "a/b?c#d%e:f g") == (
        "wss://csms.example.com/ocpp/a%2Fb%3Fc%23d%25e%3Af%20g?x=1"
    )
    assert upstream_url("ws://h/${cid}", "é") == "ws://h/%C3%A9"


def test_peer_is_host_and_port() -> None:
    """The tap's Peer: host:port, the scheme's default port when none is given."""
    assert peer_of("wss://csms.example.com/ocpp/${cid}") == "csms.example.com:443"
    assert peer_of("ws://10.0.0.1/ocpp/${cid}") == "10.0.0.1:80"
    assert peer_of("ws://[::1]:9000/${cid}") == "[::1]:9000"


def test_passthrough_forwards_the_charge_points_header_over_wss() -> None:
    """passthrough over wss://: the charge point's own header, or none when it sent none."""
    assert authorization("passthrough", "wss://h/a", False, "a", "Basic eA==", {}) == "Basic eA=="
    assert authorization("passthrough", "wss://h/a", False, "a", None, {}) is None


def test_plain_ws_sends_no_credentials_unless_allowed() -> None:
    """Over ws:// nothing is forwarded unless allow_plain_auth."""
    assert authorization("passthrough", "ws://h/a", False, "a", "Basic eA==", {}) is None
    assert authorization("passthrough", "ws://h/a", True, "a", "Basic eA==", {}) == "Basic eA=="


def test_none_sends_nothing() -> None:
    """auth = none: never an Authorization header."""
    assert authorization("none", "wss://h/a", True, "a", "Basic eA==", {}) is None


def test_credentials_are_basic_from_the_file() -> None:
    """auth = credentials: HTTP Basic of the file's user and password; an unlisted identity none."""
    users = {"CP1": ("user1", "pw:1")}
    header = authorization("credentials", "wss://h/a", False, "CP1", "Basic eA==", users)
    assert header == "Basic " + base64.b64encode(b"user1:pw:1").decode()
    assert authorization("credentials", "wss://h/a", False, "CP2", None, users) is None


def test_credentials_file(tmp_path: Path) -> None:
    """Lines of identity, user, password; comments and blank lines skipped."""
    path = tmp_path / "users"
    path.write_text("# comment\n\nCP1 user1 pw1\nCP2  user2\tpw2\n")
    assert read_credentials(str(path)) == {"CP1": ("user1", "pw1"), "CP2": ("user2", "pw2")}


def test_a_bad_credentials_line_is_named(tmp_path: Path) -> None:
    """A line of another shape: an error naming the file and line."""
    path = tmp_path / "users"
    path.write_text("CP1 user1 pw1\nCP2 user2\n")
    with pytest.raises(CredentialsFileError, match=r"users line 2: expected 'identity user"):
        read_credentials(str(path))
    with pytest.raises(CredentialsFileError, match="cannot read"):
        read_credentials(str(tmp_path / "missing"))
