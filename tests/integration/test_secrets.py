"""
Secrets stay inside (issue 24, point 4): a gateway driven through good and
bad logins on security profiles 1, 2 and 3, malformed Basic headers, admin
calls with the right token and a typo of it, a plaintext password pasted
into the credentials file (read on SIGHUP and on the next login), and frames
past what the decoder reads, with known secret strings; none of them, in any
encoding a client sent it, shows up in the gateway's log, the HTTP answers,
the admin API, ``/metrics``, the frames sent to the charge point or what the
gateway published.  Nor does the MQTT password when the broker refuses it.

The gateway has no log level setting: every event, debug included, is
written, in both ``log_format``s (both are run).
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import ssl
import subprocess
from pathlib import Path

import pytest
from websockets.exceptions import InvalidMessage, InvalidStatus

from ocppgw.listener.credentials import make_entry, write_file
from tests.certs import CA
from tests.integration.harness import (
    Backend,
    Broker,
    Gateway,
    basic_auth,
    connect,
    free_port,
    recv_frame,
    run_async,
    settle,
    start_broker,
    start_gateway,
    stop_process,
    wait_log,
)
from tests.integration.harness.admin import ahttp

CP = "it-secret-CP1"
PASSWORD = "Secret-CP-Password-7f3a9c"
WRONG = "Secret-Wrong-Password-61be0d"
#: The profile 2 identity's password, and a wrong one.
TLS_PASSWORD = "Secret-SP2-Password-c4d9e1"
TLS_WRONG = "Secret-SP2-Wrong-Password-77f0"
NOT_BASE64 = "Secret-Not-Base64-5d1e!!"
BEARER = "Secret-Bearer-For-CP-0a4c"
WEAK = "Sec-9q2w"
TOKEN = "Secret-Admin-Token-9b8e7f6a"
TYPO = "Secret-Admin-Tokem-9b8e7f6a"
PASTED = "Secret-Pasted-Plaintext-44c2"
PASTED_OPTION = "Secret-Pasted-Option-e7d3"
MQTT_PASSWORD = "Secret-MQTT-Password-38ab"

#: Every secret, and the forms a client sent it in.
SECRETS = {
    name: value
    for name, value in {
        "password": PASSWORD,
        "wrong password": WRONG,
        "sp2 password": TLS_PASSWORD,
        "sp2 wrong password": TLS_WRONG,
        "not base64": NOT_BASE64,
        "bearer": BEARER,
        "weak password": WEAK,
        "admin token": TOKEN,
        "admin token typo": TYPO,
        "pasted line": PASTED,
        "pasted option": PASTED_OPTION,
        "mqtt password": MQTT_PASSWORD,
    }.items()
}
for _name, _user, _secret in (
    ("basic", CP, PASSWORD),
    ("basic wrong", CP, WRONG),
    ("basic weak", "it-secret-weak", WEAK),
    ("basic sp2", "it-secret-SP2", TLS_PASSWORD),
    ("basic sp2 wrong", "it-secret-SP2", TLS_WRONG),
):
    SECRETS[_name + " (base64)"] = base64.b64encode(f"{_user}:{_secret}".encode()).decode()

#: What Python says of a frame past its decoder's limits.
INTERNAL = ("recursion", "int_max_str_digits", "Exceeds the limit")


def _key_lines(path: Path) -> dict[str, str]:
    """The base64 lines of a private key file, each a secret of its own."""
    lines = path.read_text().splitlines()
    return {f"{path.name} line {n}": line for n, line in enumerate(lines) if len(line) >= 40}


async def _refused(
    gw: Gateway, identity: str, headers: dict[str, str], url: str = "", **kw: object
) -> str:
    """The status and body of a refused handshake, as text."""
    with pytest.raises(InvalidStatus) as e:
        async with connect(
            url or gw.url(identity), ["ocpp1.6"], additional_headers=headers, **kw
        ):
            pass
    response = e.value.response
    return f"{response.status_code} {response.headers} {response.body!r}"


@pytest.mark.parametrize("log_format", ["text", "json"])
@run_async
async def test_no_secret_leaves_the_gateway(
    gateway, backend: Backend, tmp_path: Path, log_format: str
) -> None:
    """Every path that handles a secret, good input and bad: no secret in any output."""
    creds = tmp_path / "creds"
    good_entries = {
        CP: make_entry(CP, PASSWORD.encode()),
        "it-secret-weak": make_entry("it-secret-weak", WEAK.encode(), weak=True),
    }
    good_entries["it-secret-SP2"] = make_entry("it-secret-SP2", TLS_PASSWORD.encode(), 2)
    write_file(str(creds), good_entries)
    ca = CA()
    ca_file = ca.write(tmp_path / "ca.pem")
    server = ca.issue("localhost", server=True, dns=("localhost",)).write(tmp_path, "server")
    client = ca.issue("it-secret-SP3", o="ACME").write(tmp_path, "client")
    rogue = CA("rogue").issue("it-secret-SP3", o="ACME").write(tmp_path, "rogue")
    secrets = dict(SECRETS)
    for key in (server[1], client[1], rogue[1]):
        secrets.update(_key_lines(key))
    admin_port, p2, p3 = free_port(), free_port(), free_port()
    gw = gateway({
        "gateway": {"log_format": log_format},
        "listener:ws": {"security_profile": "1"},
        "auth": {"credentials": str(creds)},
        "admin": {"endpoint": f"tcp:{admin_port}:interface=127.0.0.1", "token": TOKEN},
        "mqtt": {"username": "it-secret-gw", "password": MQTT_PASSWORD},
        "validation": {"mode": "off"},
        "listener:p2": {
            "endpoint": f"tcp:{p2}:interface=127.0.0.1",
            "security_profile": "2",
            "tls_cert": str(server[0]),
            "tls_key": str(server[1]),
        },
        "listener:p3": {
            "endpoint": f"tcp:{p3}:interface=127.0.0.1",
            "security_profile": "3",
            "tls_cert": str(server[0]),
            "tls_key": str(server[1]),
            "tls_ca": str(ca_file),
            "cpo_name": "ACME",
        },
    })
    admin = f"http://127.0.0.1:{admin_port}"
    outputs: list[str] = []

    # Good logins, and frames past the decoder's limits.
    backend.answer("Heartbeat", {"currentTime": "2026-01-01T00:00:00Z"})
    for identity, secret in ((CP, PASSWORD), ("it-secret-weak", WEAK)):
        headers = basic_auth(identity.encode(), secret.encode())
        async with connect(gw.url(identity), ["ocpp1.6"], additional_headers=headers) as ws:
            await ws.send('[2,"hb-1","Heartbeat",{}]')
            outputs.append(repr(await recv_frame(ws)))
            if identity == CP:
                await ws.send('[2,"deep-1","DataTransfer",{"vendorId":"x","data":'
                              + "[" * 5000 + "]" * 5000 + "}]")
                deep = await recv_frame(ws)
                await ws.send('[2,"huge-1","DataTransfer",{"vendorId":"x","data":'
                              + "9" * 5000 + "}]")
                huge = await recv_frame(ws)
                for frame, uid in ((deep, "deep-1"), (huge, "huge-1")):
                    assert frame[:3] == [4, uid, "FormationViolation"], frame
                    assert not any(word in frame[3] for word in INTERNAL), frame
                outputs += [repr(deep), repr(huge)]

    # The same in 2.0.1: its FormatViolation.
    headers = basic_auth(CP.encode(), PASSWORD.encode())
    async with connect(gw.url(CP), ["ocpp2.0.1"], additional_headers=headers) as ws:
        deep_object = '{"a":' * 5000 + "0" + "}" * 5000
        for uid, data in (("deep-2", deep_object), ("huge-2", "-" + "7" * 5000)):
            await ws.send(f'[2,"{uid}","DataTransfer",{{"vendorId":"x","data":{data}}}]')
            frame = await recv_frame(ws)
            assert frame[:3] == [4, uid, "FormatViolation"], frame
            assert not any(word in frame[3] for word in INTERNAL), frame
            outputs.append(repr(frame))

    # Bad logins: a wrong password, a header that is not base64, another scheme.
    for headers in (
        basic_auth(CP.encode(), WRONG.encode()),
        {"Authorization": f"Basic {NOT_BASE64}"},
        {"Authorization": f"Bearer {BEARER}"},
        {"Authorization": f"Basic {base64.b64encode(NOT_BASE64.encode()).decode()}"},
    ):
        outputs.append(await _refused(gw, CP, headers))
    assert all(o.startswith("401") for o in outputs[-4:]), outputs[-4:]

    # Profile 2 (Basic over TLS), right and wrong; profile 3 (client
    # certificates), one of the CA and one of a rogue CA.
    trust = ssl.create_default_context(cafile=str(ca_file))
    sp2 = f"wss://localhost:{p2}/ocpp/it-secret-SP2"
    headers = basic_auth(b"it-secret-SP2", TLS_PASSWORD.encode())
    async with connect(sp2, ["ocpp1.6"], additional_headers=headers, ssl=trust) as ws:
        await ws.send('[2,"hb-sp2","Heartbeat",{}]')
        outputs.append(repr(await recv_frame(ws)))
    headers = basic_auth(b"it-secret-SP2", TLS_WRONG.encode())
    outputs.append(await _refused(gw, "it-secret-SP2", headers, url=sp2, ssl=trust))
    assert outputs[-1].startswith("401"), outputs[-1]
    sp3 = f"wss://localhost:{p3}/ocpp/it-secret-SP3"
    mutual = ssl.create_default_context(cafile=str(ca_file))
    mutual.load_cert_chain(str(client[0]), str(client[1]))
    async with connect(sp3, ["ocpp1.6"], ssl=mutual) as ws:
        await ws.send('[2,"hb-sp3","Heartbeat",{}]')
        outputs.append(repr(await recv_frame(ws)))
    forged = ssl.create_default_context(cafile=str(ca_file))
    forged.load_cert_chain(str(rogue[0]), str(rogue[1]))
    with pytest.raises((OSError, InvalidMessage, InvalidStatus)):
        async with connect(sp3, ["ocpp1.6"], ssl=forged) as ws:
            await ws.recv()

    # The admin API and /metrics, with the token and with a typo of it.
    for path in ("/api/v1/gateway", "/api/v1/chargepoints", "/metrics"):
        for token, expected in ((TOKEN, 200), (TYPO, 401)):
            status, body = await ahttp("GET", admin + path, token=token)
            assert status == expected, (path, token, status, body)
            outputs.append(repr(body))

    # A plaintext password pasted into the credentials file: read on SIGHUP,
    # then (as an option) when the next login finds the file changed.
    creds.write_text(creds.read_text() + f"it-secret-CP2 {PASTED}\n")
    assert gw.proc is not None
    os.kill(gw.proc.pid, signal.SIGHUP)
    await asyncio.to_thread(wait_log, gw, r"reload of credentials failed", 1)
    lines = creds.read_text().splitlines()
    lines[-1] = f"it-secret-CP2 {lines[1].split()[1]} {PASTED_OPTION}"
    creds.write_text("\n".join(lines) + "\n")
    outputs.append(await _refused(gw, "it-secret-CP2", {}))
    await asyncio.to_thread(
        wait_log, gw, r"credentials file unusable, keeping the last good one", 1
    )
    # The last good entries still hold.
    headers = basic_auth(CP.encode(), PASSWORD.encode())
    async with connect(gw.url(CP), ["ocpp1.6"], additional_headers=headers) as ws:
        await ws.send('[2,"hb-2","Heartbeat",{}]')
        outputs.append(repr(await recv_frame(ws)))

    await settle()
    status, metrics = await ahttp("GET", admin + "/metrics", token=TOKEN)
    outputs.append(repr(metrics))
    gw.stop()
    log = gw.log()
    # The paths above ran: their lines are in the log.
    assert "1 weak" in log and "is not a sha256$SALT$DIGEST hash" in log, log
    assert "field 3 is not an option" in log, log
    outputs.append(log)
    outputs += [repr(m) + m.payload.decode("utf-8", "replace") for m in backend.messages()]
    everything = "\n".join(outputs)
    leaked = [name for name, secret in secrets.items() if secret in everything]
    assert not leaked, f"secrets in the output: {leaked}\n{log}"
    assert not any(word in everything for word in INTERNAL), log


def test_mqtt_password_refused_by_broker_stays_inside(tmp_path: Path) -> None:
    """A broker refusing the gateway's MQTT password: the refusal is logged, the password not."""
    directory = tmp_path / "broker"
    directory.mkdir()
    passwords = directory / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "it-secret-gw", "the-real-one-0123456"],
        check=True, capture_output=True, timeout=30,
    )
    extra = ["allow_anonymous false", f"password_file {passwords}"]
    if os.geteuid() == 0:
        # Started as root, mosquitto drops to "mosquitto", who cannot read pytest's tmp.
        extra.append("user root")
    broker: Broker = start_broker(directory, extra=extra)
    try:
        gw = start_gateway(
            tmp_path / "gw",
            broker,
            {"mqtt": {"username": "it-secret-gw", "password": MQTT_PASSWORD}},
            mqtt_connected=False,
        )
        try:
            wait_log(gw, r"MQTT broker .*refused", 1)
        finally:
            gw.stop()
        log = gw.log()
    finally:
        stop_process(broker.proc)
    assert MQTT_PASSWORD not in log, log
