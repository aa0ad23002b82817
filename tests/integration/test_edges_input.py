"""
Input the field sends: strict JSON both ways (RFC 8259 §6), subprotocol
headers with empty tokens, a version per connection (never per identity), and
a credentials file that breaks on SIGHUP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from ocppgw.listener.credentials import make_entry, write_file
from tests.integration.harness import WAIT, basic_auth, connect, recv_frame, run_async, settle

#: The error code of a malformed payload in each version.
FORMAT = {"ocpp1.6": "FormationViolation", "ocpp2.0.1": "FormatViolation"}

#: JSON that Python reads but RFC 8259 does not allow.
NOT_JSON = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999")


@run_async
async def test_non_finite_numbers_are_format_violations(gateway, backend):
    """NaN, Infinity and 1e999 in a CALL: FormationViolation/FormatViolation, not published."""
    gw = gateway({"validation": {"mode": "off"}})
    wrong = []
    for version, code in FORMAT.items():
        cid = f"it-edge-json-{version}"
        async with connect(gw.url(cid), [version]) as ws:
            for n, literal in enumerate(NOT_JSON):
                uid = f"nf-{n}"
                await ws.send(f'[2,"{uid}","DataTransfer",{{"vendorId":"x","data":{literal}}}]')
                frame = await recv_frame(ws)
                if frame[0] != 4 or frame[2] != code:
                    wrong.append(f"{version} {literal}: answered {frame}")
            await settle()
    published = backend.messages(lambda m: b"DataTransfer" in m.topic.encode() and not m.retain)
    assert not published, f"published a non-finite number: {published}"
    assert not wrong, "\n".join(wrong)


@run_async
async def test_non_finite_number_from_backend_is_invalid(gateway, backend):
    """A backend CALL with 1e999 in its payload is answered Invalid and never sent as Infinity."""
    gw = gateway({"validation": {"mode": "off"}})
    cid = "it-edge-json-dn"
    async with connect(gw.url(cid), ["ocpp2.0.1"]) as ws:
        await recv_presence(backend, cid)
        backend.publish(
            f"ocpp/cs/{cid}/Call/DataTransfer",
            '{"MessageTypeId":2,"UniqueId":"dn-inf","Action":"DataTransfer",'
            '"Payload":{"vendorId":"x","data":1e999}}',
        )
        env = await backend.envelope(f"ocpp/cp/Error/{cid}", UniqueId="dn-inf")
        assert env["ErrorCode"] == "Invalid", env
        try:
            text = await asyncio.wait_for(ws.recv(), 0.5)
        except TimeoutError:
            text = None
        assert text is None, f"the charge point got {text!r}"


async def recv_presence(backend, cid: str) -> None:
    await backend.wait_for(
        lambda m: m.topic == f"ocpp/presence/{cid}" and b'"Online": true' in m.payload,
        f"online presence of {cid}",
    )


@run_async
async def test_empty_subprotocol_tokens_are_skipped(gateway):
    """`Sec-WebSocket-Protocol: ,ocpp2.0.1` is read as ocpp2.0.1, and 2.0.1 is spoken."""
    gw = gateway()
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        (
            "GET /ocpp/it-edge-empty-token HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{gw.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: , ,ocpp2.0.1\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    writer.close()
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"sec-websocket-protocol: ocpp2.0.1\r\n" in head.lower(), head


@run_async
async def test_version_belongs_to_the_connection(gateway, backend):
    """A 1.6 then a 2.0.1 connection of one identity: the second gets 2.0.1 topics, schemas."""
    gw = gateway({"dnstream": {"topic": "ocpp/cs/${version}/${cid}/+/+", "offline_ttl": "30"}})
    cid = "it-edge-version"
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
        await recv_presence(backend, cid)
    async with connect(gw.url(cid), ["ocpp2.0.1"]) as ws:
        await backend.wait_for(
            lambda m: m.topic == f"ocpp/presence/{cid}" and b"ocpp2.0.1" in m.payload,
            "2.0.1 presence",
        )
        await settle()
        # A 2.0.1 Reset (type Immediate, 2.0.1's schema), on the 2.0.1 topic.
        backend.publish(
            f"ocpp/cs/ocpp2.0.1/{cid}/Call/Reset",
            {
                "MessageTypeId": 2,
                "UniqueId": "v-1",
                "Action": "Reset",
                "Payload": {"type": "Immediate"},
            },
        )
        frame = await recv_frame(ws)
        assert frame == [2, "v-1", "Reset", {"type": "Immediate"}], frame
        await ws.send('[3,"v-1",{"status":"Accepted"}]')
        env = await backend.envelope(f"ocpp/cp/Reply/{cid}", UniqueId="v-1")
        assert env["Protocol"] == "ocpp2.0.1", env


@run_async
async def test_broken_credentials_keep_the_last_good_ones(gateway, tmp_path):
    """Credentials broken on SIGHUP: the last good stay, one error logged, not re-read per login."""
    creds = tmp_path / "creds"
    password = b"a-16-char-password-ok"
    write_file(str(creds), {"it-edge-cred": make_entry("it-edge-cred", password)})
    gw = gateway({"listener:ws": {"security_profile": "1"}, "auth": {"credentials": str(creds)}})

    async def login() -> None:
        async with connect(
            gw.url("it-edge-cred"),
            ["ocpp1.6"],
            additional_headers=basic_auth(b"it-edge-cred", password),
        ) as ws:
            await ws.send('[2,"c-1","Heartbeat",{}]')

    await login()
    creds.write_text("it-edge-cred not-a-hash\n")
    assert gw.proc is not None
    os.kill(gw.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    while "credentials" not in gw.log().split("reload", 1)[-1]:
        assert time.monotonic() < deadline, f"no reload logged:\n{gw.log()}"
        await asyncio.sleep(0.05)
    for _ in range(3):
        await asyncio.wait_for(login(), WAIT)
    assert gw.log().count(str(creds)) == 1, f"not logged exactly once:\n{gw.log()}"
    # A file swapped for one that blocks a reader (a FIFO): handshakes go on
    # with the last good entries, and the new error is logged once.
    creds.unlink()
    os.mkfifo(creds)
    for _ in range(3):
        await asyncio.wait_for(login(), 3)
    await settle()
    assert gw.log().count(str(creds)) == 2, f"not logged exactly once:\n{gw.log()}"
