"""
Nothing is lost at the close of a connection, nor when the gateway fails to
handle or publish a message: what cannot be delivered ends in an error
envelope (or a CALLERROR), never in a log line alone.
"""

from __future__ import annotations

import asyncio
import os
import struct

from tests.integration.harness import WAIT, connect, recv_frame, run_async, topic_value
from tests.integration.harness.support import (
    ReconnectingBackend,
    own_gateway,
    presence,
    raw_handshake,
    restart_broker,
    start_own_broker,
    stop_broker,
)


def _masked(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 §5.2), payload under 126 bytes."""
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + key + body


async def _server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next (unmasked) frame from the gateway: (opcode, payload)."""
    async with asyncio.timeout(WAIT):
        head = await reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        return head[0] & 0x0F, await reader.readexactly(length)


def _error_topic(cid: str) -> str:
    return f"ocpp/cp/Error/{topic_value(cid)}"


@run_async
async def test_messages_for_a_closing_connection_get_disconnected_and_timeout(gateway, backend):
    """During a pending close handshake: Disconnected for answer and CALL, Timeout in flight."""
    gw = gateway({"dnstream": {"awaiting_timeout": "1.5"}})
    cid = "it-edge-closing"
    reader, writer = await raw_handshake(gw.port, cid)
    try:
        writer.write(_masked(1, b'[2,"up-1","Authorize",{"idTag":"TAG1"}]'))
        await backend.envelope(f"ocpp/cp/{cid}/Authorize", UniqueId="up-1")
        backend.publish(
            f"ocpp/cs/{cid}/Call/ClearCache",
            {"MessageTypeId": 2, "UniqueId": "dn-1", "Action": "ClearCache", "Payload": {}},
        )
        opcode, frame = await _server_frame(reader)
        assert (opcode, frame) == (1, b'[2,"dn-1","ClearCache",{}]'), frame
        # A binary frame: the gateway closes with 1003 and waits for our close
        # frame, which never comes (nor does the TCP close): it is closing.
        writer.write(_masked(2, b"\x00"))
        opcode, frame = await _server_frame(reader)
        assert opcode == 8 and frame[:2] == struct.pack("!H", 1003), frame
        backend.publish(
            f"ocpp/cs/{cid}/Reply/Authorize",
            {
                "MessageTypeId": 3,
                "UniqueId": "up-1",
                "Payload": {"idTagInfo": {"status": "Accepted"}},
            },
        )
        backend.publish(
            f"ocpp/cs/{cid}/Call/ClearCache",
            {"MessageTypeId": 2, "UniqueId": "dn-2", "Action": "ClearCache", "Payload": {}},
        )
        answer = await backend.envelope(_error_topic(cid), UniqueId="up-1")
        assert answer["ErrorCode"] == "Disconnected" and answer["Origin"] == "gateway", answer
        call = await backend.envelope(_error_topic(cid), UniqueId="dn-2")
        assert call["ErrorCode"] == "Disconnected" and call["Action"] == "ClearCache", call
        timeout = await backend.envelope(_error_topic(cid), UniqueId="dn-1", timeout=4)
        assert timeout["ErrorCode"] == "Timeout" and timeout["Action"] == "ClearCache", timeout
    finally:
        writer.close()


@run_async
async def test_answer_whose_publish_fails_gets_notpublished_once_the_broker_is_back(tmp_path):
    """A CALLRESULT refused by the full MQTT buffer: the backend's CALL gets NotPublished later."""
    broker = start_own_broker(tmp_path / "mosquitto", persistent=True)
    backend = ReconnectingBackend(broker, persistent=True)
    extra = {
        "mqtt": {"max_buffer": "4", "reconnect_max": "1"},
        "local": {"heartbeat": "true"},
        "listener:ws": {"max_message_rate": "0"},
    }
    cid = "it-edge-notpublished"
    try:
        with own_gateway(tmp_path / "gw", broker, extra) as gw:
            async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
                await presence(backend, cid, True)
                backend.publish(
                    f"ocpp/cs/{cid}/Call/ClearCache",
                    {
                        "MessageTypeId": 2,
                        "UniqueId": "dn-r1",
                        "Action": "ClearCache",
                        "Payload": {},
                    },
                )
                assert await recv_frame(ws) == [2, "dn-r1", "ClearCache", {}]
                await asyncio.to_thread(stop_broker, broker)
                for n in range(4):  # fill this charge point's share of the buffer
                    await ws.send(f'[2,"hb{n}","Heartbeat",{{}}]')
                    assert (await recv_frame(ws))[:2] == [3, f"hb{n}"]
                await ws.send('[3,"dn-r1",{"status":"Accepted"}]')
                await asyncio.sleep(0.3)
                await asyncio.to_thread(restart_broker, broker)
                env = await backend.envelope(_error_topic(cid), timeout=15, UniqueId="dn-r1")
                assert env["ErrorCode"] == "NotPublished" and env["Origin"] == "gateway", env
                assert env["Action"] == "ClearCache", env
                assert "CALLRESULT" in env["ErrorDescription"], env
    finally:
        backend.close()
        if broker.proc.poll() is None:
            stop_broker(broker)
