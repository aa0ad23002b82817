"""
Security profile 1: HTTP Basic against a credentials file made with the real
``ocppgw-passwd`` command.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from tests.integration.harness import (
    OCPPGW_PASSWD,
    Backend,
    Gateway,
    basic_auth,
    connect,
    recv_frame,
    run_async,
    settle,
    wait_log,
)

PASSWORD = "correct-horse-battery-0123"
AUTH_KEY_HEX = "00112233445566778899AABBCCDDEEFF00112233"
NOW = "2026-01-02T03:04:05.000Z"


def passwd(credentials: Path, *args: str, stdin: str = "") -> None:
    """Run ``ocppgw-passwd --file credentials ARGS`` and require success."""
    done = subprocess.run(
        [str(OCPPGW_PASSWD), "--file", str(credentials), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"ocppgw-passwd {args} failed: {done.stderr}"


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A credentials file with three identities, made with ocppgw-passwd."""
    credentials = tmp_path_factory.mktemp("auth") / "credentials"
    passwd(credentials, "set", "it-sp-CP1", stdin=PASSWORD + "\n")
    passwd(credentials, "set", "it-sp-other", stdin="another-password-4567\n")
    passwd(credentials, "set", "it-sp-CP16", "--hex", AUTH_KEY_HEX)
    text = credentials.read_text()
    assert text.count("sha256$") == 3, text
    assert PASSWORD not in text
    return credentials


@pytest.fixture
def secured(gateway, credentials: Path) -> Gateway:
    """A gateway with security_profile 1 and the identities of ``credentials``."""
    return gateway(
        {"listener:ws": {"security_profile": "1"}, "auth": {"credentials": str(credentials)}}
    )


async def _heartbeat(ws, backend: Backend, cid: str, unique_id: str) -> dict:
    """A Heartbeat round trip through the backend; returns the CALL envelope."""
    backend.answer("Heartbeat", {"currentTime": NOW}, cid=cid)
    await ws.send(f'[2,"{unique_id}","Heartbeat",{{}}]')
    assert await recv_frame(ws) == [3, unique_id, {"currentTime": NOW}]
    return await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId=unique_id)


async def _refused(url: str, **kw) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, ["ocpp1.6"], **kw):
            pass
    return refused.value


@run_async
async def test_right_password_connects(secured, backend):
    """The identity with its password (Basic auth in the URL) connects and is bridged."""
    url = secured.url("it-sp-CP1").replace("ws://", f"ws://it-sp-CP1:{PASSWORD}@")
    async with connect(url, ["ocpp1.6"]) as ws:
        assert ws.subprotocol == "ocpp1.6"
        env = await _heartbeat(ws, backend, "it-sp-CP1", "sp-ok")
    assert env["ChargePointId"] == "it-sp-CP1"


@run_async
async def test_refused_credentials_get_401_and_publish_nothing(secured, backend):
    """Wrong, missing or foreign credentials get 401 with WWW-Authenticate; nothing is published."""
    cid = "it-sp-CP1"
    attempts = {
        "wrong password": basic_auth(cid.encode(), b"not-the-password"),
        "no credentials": {},
        "another identity's credentials": basic_auth(b"it-sp-other", b"another-password-4567"),
        "not Basic": {"Authorization": "Bearer " + PASSWORD},
    }
    for why, headers in attempts.items():
        e = await _refused(secured.url(cid), additional_headers=headers)
        assert e.response.status_code == 401, f"{why}: {e.response.status_code}"
        challenge = e.response.headers.get("WWW-Authenticate", "")
        assert challenge.lower().startswith("basic"), f"{why}: WWW-Authenticate {challenge!r}"

    # Anything the refused handshakes published would come before this
    # charge point's CALL: the gateway has one MQTT connection, kept in order.
    headers = basic_auth(b"it-sp-other", b"another-password-4567")
    async with connect(secured.url("it-sp-other"), ["ocpp1.6"], additional_headers=headers) as ws:
        await _heartbeat(ws, backend, "it-sp-other", "sp-barrier")
    await settle()
    assert backend.about(cid) == [], backend.describe()


@run_async
async def test_hex_authorization_key_as_raw_bytes(secured, backend):
    """A 1.6 AuthorizationKey set with --hex works sent as its 20 raw bytes (and as hex text)."""
    cid = "it-sp-CP16"
    key = bytes.fromhex(AUTH_KEY_HEX)
    assert len(key) == 20
    headers = basic_auth(cid.encode(), key)
    async with connect(secured.url(cid), ["ocpp1.6"], additional_headers=headers) as ws:
        env = await _heartbeat(ws, backend, cid, "sp-raw-key")
    assert env["ChargePointId"] == cid

    # auth.py: a presented password is also tried hex-decoded.
    headers = basic_auth(cid.encode(), AUTH_KEY_HEX.encode())
    async with connect(secured.url(cid), ["ocpp1.6"], additional_headers=headers) as ws:
        await _heartbeat(ws, backend, cid, "sp-hex-key")

    wrong = bytes(20)
    e = await _refused(secured.url(cid), additional_headers=basic_auth(cid.encode(), wrong))
    assert e.response.status_code == 401


def test_weak_entries_counted_at_start_and_reload(gateway, tmp_path: Path) -> None:
    """ocppgw-passwd refuses a 15-byte key and a short password unless --weak; the gateway
    logs how many weak entries it loaded at start and again after SIGHUP, and they log in."""
    creds = tmp_path / "credentials"
    for args, stdin in ((("--hex", "00" * 15), ""), ((), "short-pw\n")):
        refused = subprocess.run(
            [str(OCPPGW_PASSWD), "--file", str(creds), "set", "it-weak-CP", *args],
            input=stdin, capture_output=True, text=True, timeout=30,
        )
        assert refused.returncode == 2, refused
        assert "--weak" in refused.stderr and "--generate" in refused.stderr, refused.stderr
    passwd(creds, "set", "it-weak-CP", "--weak", stdin="short-pw\n")
    passwd(creds, "set", "it-strong-CP", "--generate")
    gw = gateway({"listener:ws": {"security_profile": "1"}, "auth": {"credentials": str(creds)}})
    wait_log(gw, r"credentials loaded: 2 identities, 1 weak", 1)

    passwd(creds, "set", "it-weak-16", "--hex", "00" * 15, "--weak")
    assert gw.proc is not None
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_log(gw, r"credentials loaded: 3 identities, 2 weak", 1)

    async def login() -> None:
        headers = basic_auth(b"it-weak-CP", b"short-pw")
        async with connect(gw.url("it-weak-CP"), ["ocpp1.6"], additional_headers=headers) as ws:
            assert ws.subprotocol == "ocpp1.6"

    run_async(login)()
