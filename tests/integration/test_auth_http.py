"""
The HTTP authentication callout (``[auth] http_url``, issue 25) end to end:
a real gateway asks a real HTTP service the test starts; real ``ocpp``
charge points connect through it.  Allow, deny, timeouts and 5xx with each
``http_on_error``, ``versions``, the cache in a reconnect storm, SIGHUP.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from websockets.exceptions import InvalidStatus

from ocppgw.listener.credentials import make_entry, write_file
from tests.certs import CA
from tests.integration.harness import basic_auth, charge_point, connect, run_async, wait_closed
from tests.integration.harness.admin import admin_gateway, http
from tests.integration.harness.authservice import AuthService
from tests.integration.harness.security import client_tls, raw_request
from tests.integration.harness.support import NOW

PASSWORD = b"station-password-0001"


def by_password(ask: dict[str, Any]) -> tuple[int, Any, float]:
    """Allow the right password; "ver-" identities may speak 2.0.1 only; "slow-" never answer
    in time; "fail-" get a 500."""
    identity = ask["identity"]
    if identity.startswith("it-ah-slow"):
        return 200, {"result": "allow"}, 3.0
    if identity.startswith("it-ah-fail"):
        return 500, b"oops", 0.0
    if ask["password"] != PASSWORD.decode():
        return 200, {"result": "deny", "reason": "wrong password for the test"}, 0.0
    if identity.startswith("it-ah-ver"):
        return 200, {"result": "allow", "versions": ["ocpp2.0.1"]}, 0.0
    return 200, {"result": "allow"}, 0.0


@pytest.fixture
def service() -> Iterator[AuthService]:
    """The operator's authentication service, on a free port."""
    s = AuthService(by_password)
    yield s
    s.stop()


def sections(service: AuthService, **auth: str) -> dict[str, dict[str, str]]:
    return {
        "listener:ws": {"security_profile": "1"},
        "auth": {"http_url": service.url, "http_timeout": "1", **auth},
    }


async def refused(url: str, password: bytes, offer: str = "ocpp1.6") -> int:
    """The HTTP status of a refused handshake."""
    identity = url.rsplit("/", 1)[1].encode()
    with pytest.raises(InvalidStatus) as e:
        async with connect(url, [offer], additional_headers=basic_auth(identity, password)):
            pass
    return e.value.response.status_code


@run_async
async def test_allow_and_deny(gateway, backend, service, tmp_path: Path):
    """The service's allow admits a real 1.6 charge point (the request carries identity,
    Basic credentials, address, listener, offers and the http_headers); its deny is the 401
    of a wrong password and counts towards the failed-login limit (then 429, unasked).
    Neither the service's token nor any password shows up in the gateway's log."""
    headers = tmp_path / "headers"
    headers.write_text("Authorization: Bearer service-token\n")
    gw = gateway(
        sections(service, http_headers=str(headers), max_failures_per_identity="2")
    )
    cid = "it-ah-ok"
    backend.answer("Heartbeat", {"currentTime": NOW}, cid=cid)
    auth = basic_auth(cid.encode(), PASSWORD)
    async with charge_point(
        ChargePoint16, gw.url(cid), cid, "ocpp1.6", additional_headers=auth
    ) as cp:
        result = await cp.call(call16.Heartbeat(), suppress=False)
        assert result.current_time == NOW
    (ask,) = service.requests
    assert ask == {
        "identity": cid,
        "username": cid,
        "password": PASSWORD.decode(),
        "certificate": None,
        "remote_address": "127.0.0.1",
        "listener": "ws",
        "subprotocols": ["ocpp1.6"],
    }, ask
    assert service.headers[0]["Authorization"] == "Bearer service-token"
    assert service.headers[0]["Content-Type"] == "application/json"

    denied = "it-ah-denied"
    for n in range(2):
        assert await refused(gw.url(denied), f"wrong-{n}".encode()) == 401
    assert await refused(gw.url(denied), PASSWORD) == 429
    assert service.count() == 3  # the 429 asked nobody
    assert "wrong password for the test" in gw.log()
    # Secrets stay inside (issue 24): neither the service's token nor a
    # charge point's password is in the gateway's log.
    log = gw.log()
    for secret in ("service-token", PASSWORD.decode(), "wrong-0", "wrong-1"):
        assert secret not in log, (secret, log)


@pytest.mark.parametrize("on_error", ["deny", "file"])
@run_async
async def test_timeout_and_5xx_per_on_error(gateway, service, tmp_path: Path, on_error: str):
    """A service that times out or answers 500: deny refuses (401); file decides by the
    credentials file (its password admits, another is refused)."""
    creds = tmp_path / "creds"
    write_file(str(creds), {
        cid: make_entry(cid, PASSWORD) for cid in ("it-ah-slow-1", "it-ah-fail-1")
    })
    gw = gateway(sections(service, http_on_error=on_error, credentials=str(creds)))
    for cid in ("it-ah-slow-1", "it-ah-fail-1"):
        if on_error == "deny":
            assert await refused(gw.url(cid), PASSWORD) == 401
        else:
            auth = basic_auth(cid.encode(), PASSWORD)
            async with connect(gw.url(cid), ["ocpp1.6"], additional_headers=auth) as ws:
                assert ws.subprotocol == "ocpp1.6"
            assert await refused(gw.url(cid), b"not-the-file-password") == 401
    assert gw.log().count("authentication service:") >= 2


@run_async
async def test_versions_narrow_the_subprotocol(gateway, backend, service):
    """An allow with versions ["ocpp2.0.1"]: a 2.0.1 charge point offering 1.6 first speaks
    2.0.1; an offer of 1.6 alone completes without a subprotocol and is closed at once."""
    gw = gateway(sections(service))
    cid = "it-ah-ver-1"
    auth = basic_auth(cid.encode(), PASSWORD)
    async with connect(gw.url(cid), ["ocpp1.6", "ocpp2.0.1"], additional_headers=auth) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
    backend.answer("Heartbeat", {"currentTime": NOW}, cid=cid)
    async with charge_point(
        ChargePoint201, gw.url(cid), cid, "ocpp2.0.1", additional_headers=auth
    ) as cp:
        result = await cp.call(call201.Heartbeat(), suppress=False)
        assert result.current_time == NOW
    async with connect(gw.url(cid), ["ocpp1.6"], additional_headers=auth) as ws:
        assert ws.subprotocol is None
        closed = await wait_closed(ws)
        assert closed.rcvd is not None and closed.rcvd.code == 1002, closed


@run_async
async def test_reconnect_storm_is_cached(gateway, service):
    """1,000 handshakes of 100 identities (the first 500 five at a time per identity) make
    exactly 100 requests; the metrics count them; SIGHUP clears the cache.  (The storm
    is the cache's, not admission control's: max_handshake_rate is off.)"""
    extra = sections(service)
    extra["listener:ws"]["max_handshake_rate"] = "0"
    gw, admin = admin_gateway(gateway, extra)
    identities = [f"it-ah-storm-{n}" for n in range(100)]
    gate = asyncio.Semaphore(100)

    async def login(cid: str) -> None:
        async with gate:
            auth = basic_auth(cid.encode(), PASSWORD)
            async with connect(gw.url(cid), ["ocpp1.6"], additional_headers=auth) as ws:
                assert ws.subprotocol == "ocpp1.6"

    # Five concurrent handshakes per identity share its one request ...
    await asyncio.gather(*(login(cid) for cid in identities for _ in range(5)))
    # ... and five more rounds are answered from the cache.
    for _ in range(5):
        await asyncio.gather(*(login(cid) for cid in identities))
    assert service.count() == 100, service.count()
    status, text, _ = http("GET", admin + "/metrics")
    assert status == 200
    assert 'ocppgw_auth_http_total{result="allow"} 100.0' in text, text
    hits = [line for line in text.splitlines() if 'result="cache_hit"' in line]
    assert hits and float(hits[0].rsplit(" ", 1)[1]) >= 500, hits

    assert gw.proc is not None
    os.kill(gw.proc.pid, signal.SIGHUP)
    gw.wait_log("reloaded [auth] http_url cache")
    await login(identities[0])
    assert service.count() == 101


def test_profile_3_sends_the_certificate(gateway, service, tmp_path: Path):
    """Profile 3: a certificate that passes the gateway's checks is sent to the service
    (subject, serial, SHA-256 fingerprint) with no password; the service's deny is a 403."""
    ca = CA()
    ca_file = ca.write(tmp_path / "ca.pem")
    server = ca.issue("localhost", server=True, dns=("localhost",)).write(tmp_path, "server")
    gw = gateway({
        "listener:ws": {
            "security_profile": "3", "tls_cert": str(server[0]), "tls_key": str(server[1]),
            "tls_ca": str(ca_file),
        },
        "auth": {"http_url": service.url, "http_timeout": "1"},
    })
    cid = "it-ah-p3"
    files = ca.issue(cid, o="ACME").write(tmp_path, "client")
    response = raw_request(gw.port, f"/ocpp/{cid}", ssl_context=client_tls(ca_file, files))
    assert response.startswith(b"HTTP/1.1 403"), response  # by_password: no password, deny
    (ask,) = service.requests
    certificate = x509.load_pem_x509_certificate(files[0].read_bytes())
    assert (ask["username"], ask["password"]) == (None, None), ask
    assert ask["certificate"] == {
        "subject": certificate.subject.rfc4514_string(),
        "serial": format(certificate.serial_number, "x"),
        "fingerprint": certificate.fingerprint(hashes.SHA256()).hex(),
    }, ask
