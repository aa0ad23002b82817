"""A [forward:NAME]'s checks at start (ocppgw.forward.forwarder)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from ocppgw.config import parse
from ocppgw.forward.address import CredentialsFileError
from ocppgw.forward.forwarder import Forwarder
from tests.certs import CA

BASE = "[listener:ws]\nendpoint = tcp:0\nforward = csms\n[forward:csms]\n"


def config(text: str):  # type: ignore[no-untyped-def]
    (forward,) = parse(BASE + text).forwards
    return forward


def test_plain_credentials_are_said_once_at_start() -> None:
    """allow_plain_auth over ws:// (auth not none): a warning line naming the peer."""
    text = "url = ws://csms:9000/${cid}\nallow_plain_auth = true\n"
    plain = Forwarder(config(text), Clock(), None)
    warning = plain.plain_auth_warning()
    assert warning is not None and "csms:9000" in warning and "allow_plain_auth" in warning
    none = config("url = ws://csms/${cid}\nallow_plain_auth = true\nauth = none\n")
    assert Forwarder(none, Clock(), None).plain_auth_warning() is None
    secure = config("url = wss://csms/${cid}\nallow_plain_auth = true\n")
    assert Forwarder(secure, Clock(), None).plain_auth_warning() is None


def test_a_bad_credentials_file_stops_the_start(tmp_path: Path) -> None:
    """auth = credentials with a malformed file: the error names the file and line."""
    users = tmp_path / "users"
    users.write_text("CP1 only-two\n")
    forward = replace(
        config("url = wss://csms/${cid}\n"), auth="credentials", credentials=str(users)
    )
    with pytest.raises(CredentialsFileError, match="line 1"):
        Forwarder(forward, Clock(), None)


def test_tls_files_are_read_at_start(tmp_path: Path) -> None:
    """A CA bundle and a client certificate are loaded at start; an unreadable one raises."""
    ca = CA()
    cert, key = ca.issue("gateway").write(tmp_path, "client")
    bundle = ca.write(tmp_path / "ca.pem")
    good = replace(config("url = wss://csms/${cid}\n"), tls_ca=str(bundle))
    good = replace(good, tls_cert=str(cert), tls_key=str(key))
    assert Forwarder(good, Clock(), None).peer == "csms:443"
    (tmp_path / "bad.pem").write_text("not a certificate")
    bad = replace(good, tls_ca=str(tmp_path / "bad.pem"))
    with pytest.raises(ValueError, match="no PEM certificate"):
        Forwarder(bad, Clock(), None)
