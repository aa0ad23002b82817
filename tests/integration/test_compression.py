"""
permessage-deflate (RFC 7692) end to end: an ``ocpp`` charge point over
``websockets`` (which offers the extension by default) negotiates the
gateway's bounded parameters and exchanges compressed messages both ways;
``compression = off`` answers without the extension; a decompression bomb
under the frame limit is refused with 1009 without memory growth.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time
import zlib
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16

from tests.integration.harness import WAIT, charge_point, connect, run_async

NOW = "2026-01-02T03:04:05.000Z"


class Resetting16(ChargePoint16):
    """A 1.6 charge point that accepts Reset and remembers it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resets: list[str] = []

    @on(Action16.reset)
    def on_reset(self, type: str, **kwargs: Any) -> Any:
        self.resets.append(type)
        return result16.Reset(status="Accepted")


def _mask(payload: bytes) -> bytes:
    """A client frame's masking key and masked payload (RFC 6455 §5.3)."""
    key = os.urandom(4)
    n = len(payload)
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(
        n, "little"
    )
    return key + masked


def _compressed_frame(message: bytes) -> bytes:
    """One masked text frame with RSV1 set, ``message`` deflated (RFC 7692 §7.2.1)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = deflate.compress(message) + deflate.flush(zlib.Z_SYNC_FLUSH)
    payload = data[:-4]
    n = len(payload)
    if n <= 125:
        head = bytes((0xC1, 0x80 | n))
    elif n <= 0xFFFF:
        head = bytes((0xC1, 0x80 | 126)) + struct.pack("!H", n)
    else:
        head = bytes((0xC1, 0x80 | 127)) + struct.pack("!Q", n)
    return head + _mask(payload)


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The first byte (FIN, RSV, opcode) and payload of the next server frame."""
    first, second = await asyncio.wait_for(reader.readexactly(2), WAIT)
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return first, await asyncio.wait_for(reader.readexactly(n), WAIT)


async def _deflate_handshake(port: int, cid: str) -> tuple[asyncio.StreamReader, Any, bytes]:
    """A raw upgrade offering permessage-deflate; the streams and the response head."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
    writer.write(
        (
            f"GET /ocpp/{cid} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: ocpp1.6\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 101"), f"upgrade refused: {head!r}"
    return reader, writer, head


@run_async
async def test_ocpp_charge_point_negotiates_bounded_deflate_and_talks_both_ways(gateway, backend):
    """
    The ``ocpp`` package's charge point over ``websockets`` negotiates
    permessage-deflate with no context takeover both ways and window 9 both
    ways; its BootNotification and a backend Reset round-trip over it.
    """
    gw = gateway()
    cid = "it-deflate-ocpp"
    backend.answer("BootNotification", {"status": "Accepted", "currentTime": NOW, "interval": 60})
    async with charge_point(Resetting16, gw.url(cid), cid, "ocpp1.6") as cp:
        extensions = cp.conn.ws.protocol.extensions
        assert [e.name for e in extensions] == ["permessage-deflate"], extensions
        deflate = extensions[0]
        # The client's view: "remote" is the gateway, "local" the charge point.
        assert deflate.remote_no_context_takeover is True
        assert deflate.local_no_context_takeover is True
        assert deflate.remote_max_window_bits == 9
        assert deflate.local_max_window_bits == 9
        boot = await cp.call(
            call16.BootNotification(charge_point_vendor="ACME", charge_point_model="X1"),
            suppress=False,
        )
        assert boot.status == "Accepted"
        backend.publish(
            f"ocpp/cs/{cid}/Call/Reset",
            {"MessageTypeId": 2, "UniqueId": "deflate-reset", "Action": "Reset",
             "Payload": {"type": "Soft"}},
        )
        env = await backend.envelope(f"ocpp/cp/Reply/{cid}", UniqueId="deflate-reset")
        assert env["Payload"] == {"status": "Accepted"}
        assert cp.resets == ["Soft"]


@run_async
async def test_compressed_call_gets_a_compressed_answer(gateway, backend):
    """
    On the wire: a deflated CALL (RSV1 set) is understood, and the gateway's
    answer is a deflated frame (RSV1 set) that a fresh inflater of the
    announced window decodes on its own.
    """
    gw = gateway()
    cid = "it-deflate-raw"
    backend.answer("BootNotification", {"status": "Accepted", "currentTime": NOW, "interval": 60})
    reader, writer, head = await _deflate_handshake(gw.port, cid)
    try:
        assert b"server_no_context_takeover" in head, head
        writer.write(_compressed_frame(
            b'[2,"boot-1","BootNotification",{"chargePointVendor":"ACME","chargePointModel":"X1"}]'
        ))
        await writer.drain()
        first, payload = await _read_frame(reader)
        assert first & 0x40, f"the answer is not compressed: {first:#x} {payload!r}"
        assert first & 0x0F == 0x1
        answer = json.loads(zlib.decompressobj(-9).decompress(payload + b"\x00\x00\xff\xff"))
        assert answer[:2] == [3, "boot-1"], answer
        assert answer[2]["status"] == "Accepted", answer
    finally:
        writer.close()


@run_async
async def test_compression_off_answers_without_the_extension(gateway):
    """With ``compression = off`` the 101 has no extension and messages go uncompressed."""
    gw = gateway({"listener:ws": {"compression": "off"}})
    async with connect(gw.url("it-deflate-off"), ["ocpp1.6"]) as ws:
        assert ws.protocol.extensions == []
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None


@run_async
async def test_decompression_bomb_is_refused_with_1009_without_memory_growth(gateway):
    """
    A 60 MB message deflated into one frame under max_frame_size (64 KiB) is
    refused with close code 1009, and the gateway's RSS grows by less than
    8 MiB (inflating it whole would take 60).
    """
    gw = gateway()
    bomb = _compressed_frame(b"0" * 60_000_000)
    assert len(bomb) < 65536, len(bomb)
    reader, writer, _ = await _deflate_handshake(gw.port, "it-deflate-bomb")
    try:
        before = gw.rss_kb()
        started = time.monotonic()
        writer.write(bomb)
        await writer.drain()
        first, payload = await _read_frame(reader)
        assert first & 0x0F == 0x8, f"not a close frame: {first:#x} {payload!r}"
        (code,) = struct.unpack("!H", payload[:2])
        assert code == 1009, payload
        assert time.monotonic() - started < WAIT
        after = gw.rss_kb()
        assert after - before < 8 * 1024, f"RSS grew from {before} to {after} KiB"
    finally:
        writer.close()
