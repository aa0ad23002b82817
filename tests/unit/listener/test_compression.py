"""
permessage-deflate negotiation (RFC 7692 §7) as a listener answers it: the
accept built for each kind of offer, the parameters Autobahn then compresses
with, and the ``Sec-WebSocket-Extensions`` of a real 101 over a StringTransport.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import pytest
from autobahn.websocket.compress import PerMessageDeflate, PerMessageDeflateOffer
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ocppgw.config import ListenerConfig
from ocppgw.connection import OCPPServerProtocol
from ocppgw.connection_fast import BOUNDED_INFLATE, ShortWayProtocol
from ocppgw.listener.compression import deflate_accept
from ocppgw.listener.factory import OCPPServerFactory

VERSIONS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")
LISTENER = ListenerConfig("t", "tcp:0", "/ocpp", 0, None, 65536, 10.0)


def offer(header: str) -> PerMessageDeflateOffer:
    """The offer Autobahn parses from a ``permessage-deflate; ...`` header value."""
    params: dict[str, list[Any]] = {}
    for part in header.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        params.setdefault(name, []).append(value or True)
    parsed: PerMessageDeflateOffer = PerMessageDeflateOffer.parse(params)
    return parsed


def accepted(header: str, **listener: Any) -> tuple[str, PerMessageDeflate]:
    """The response's extension string to ``header`` and the server's deflate state."""
    config = dataclasses.replace(LISTENER, **listener)
    accept = deflate_accept(config)([offer(header)])
    return accept.get_extension_string(), PerMessageDeflate.create_from_offer_accept(True, accept)


def params(extension: str) -> set[str]:
    return {p.strip() for p in extension.split(";")}


def test_offer_with_client_max_window_bits() -> None:
    """
    websockets' default offer (client_max_window_bits, no value) is answered
    with both directions without context takeover, the gateway's window 9
    announced, and the client asked for window 9.
    """
    ext, pmce = accepted("permessage-deflate; client_max_window_bits")
    assert params(ext) == {
        "permessage-deflate",
        "server_no_context_takeover",
        "server_max_window_bits=9",
        "client_no_context_takeover",
        "client_max_window_bits=9",
    }
    assert (pmce.server_no_context_takeover, pmce.client_no_context_takeover) == (True, True)
    assert (pmce.server_max_window_bits, pmce.client_max_window_bits) == (9, 9)
    assert pmce.mem_level == 1
    assert pmce.max_message_size == 65536


def test_offer_with_nothing() -> None:
    """
    A bare offer (no parameters) is accepted; client_max_window_bits is not
    in the response (§7.1.2.2: only where the client offered it), so the
    gateway inflates with a window of 15, and still asks for no context takeover.
    """
    ext, pmce = accepted("permessage-deflate")
    assert params(ext) == {
        "permessage-deflate",
        "server_no_context_takeover",
        "server_max_window_bits=9",
        "client_no_context_takeover",
    }
    assert pmce.client_max_window_bits == 15
    assert pmce.server_max_window_bits == 9
    assert pmce.server_no_context_takeover and pmce.client_no_context_takeover


def test_offer_insisting_on_context_takeover() -> None:
    """
    A client that offers neither no-context-takeover parameter (it would keep
    its context) is still answered with both: a server may include them
    unasked (§7.1.1.1, §7.1.1.2), and the gateway's compressor starts afresh
    for every message.
    """
    ext, pmce = accepted("permessage-deflate; client_max_window_bits=15; server_max_window_bits=15")
    assert "server_no_context_takeover" in params(ext)
    assert "client_no_context_takeover" in params(ext)
    assert pmce.server_no_context_takeover


def test_client_asking_a_smaller_server_window_gets_it() -> None:
    """A client's server_max_window_bits below the configured window is honoured (§7.1.2.1)."""
    ext, pmce = accepted("permessage-deflate; server_max_window_bits=10",
                         compression_window_bits=12)
    assert "server_max_window_bits=10" in params(ext)
    assert pmce.server_max_window_bits == 10


def test_client_offering_no_context_takeover_itself() -> None:
    """An offer with both no-context-takeover parameters has each echoed once."""
    ext, _ = accepted(
        "permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
        "client_max_window_bits"
    )
    assert ext.count("server_no_context_takeover") == 1
    assert ext.count("client_no_context_takeover") == 1


def test_tuning_keys_reach_the_compressor() -> None:
    """compression_window_bits and compression_mem_level are what the deflate state uses."""
    ext, pmce = accepted("permessage-deflate; client_max_window_bits",
                         compression_window_bits=11, compression_mem_level=4)
    assert "client_max_window_bits=11" in params(ext)
    assert "server_max_window_bits=11" in params(ext)
    assert (pmce.server_max_window_bits, pmce.client_max_window_bits, pmce.mem_level) == (11, 11, 4)


def test_each_message_is_compressed_on_its_own() -> None:
    """
    With server_no_context_takeover every message the gateway sends inflates
    with a fresh decompressor of the announced window: none refers to an earlier one.
    """
    _, pmce = accepted("permessage-deflate; client_max_window_bits")
    message = b'[2,"1","Heartbeat",{}]' * 4
    for _ in range(3):
        pmce.start_compress_message()
        data = pmce.compress_message_data(message) + pmce.end_compress_message()
        fresh = zlib.decompressobj(-9)
        assert fresh.decompress(data + b"\x00\x00\xff\xff") == message


def test_compression_off_declines_every_offer() -> None:
    """With compression = off no offer is accepted."""
    config = dataclasses.replace(LISTENER, compression=False)
    assert deflate_accept(config)([offer("permessage-deflate; client_max_window_bits")]) is None


def test_only_permessage_deflate_is_accepted() -> None:
    """Without a permessage-deflate offer among them, nothing is accepted."""
    assert deflate_accept(LISTENER)([]) is None


class _Transport(StringTransport):
    def unregisterProducer(self) -> None:
        self.producer = None


def upgrade(extensions: str, **listener: Any) -> bytes:
    """The HTTP response of a listener to an upgrade offering ``extensions``."""
    return opened(extensions, **listener)[0]


def opened(extensions: str, **listener: Any) -> tuple[bytes, bool | None]:
    """The response to an upgrade offering ``extensions``; whether it took the short way."""
    factory = OCPPServerFactory(
        dataclasses.replace(LISTENER, **listener), VERSIONS, None,
        lambda identity, version, connection: object(), lambda session: None,
    )
    # The speed-up's class whatever OCPPGW_SPEEDUPS says (make test runs both).
    factory.protocol = ShortWayProtocol
    proto = factory.buildProtocol(("127.0.0.1", 5555))
    transport = _Transport()
    proto.makeConnection(transport)
    proto.dataReceived(
        (
            "GET /ocpp/CP1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
            f"Sec-WebSocket-Extensions: {extensions}\r\n\r\n"
        ).encode()
    )
    response = bytes(transport.value())
    short_way = getattr(proto, "_short_way", None)
    proto.connectionLost(Failure(ConnectionDone()))
    return response, short_way


def extension_header(response: bytes) -> str | None:
    for line in response.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"sec-websocket-extensions":
            return value.strip().decode()
    return None


@pytest.mark.parametrize("offered", [
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate",
    # Insisting on context takeover: neither no_context_takeover offered, windows of 15.
    "permessage-deflate; client_max_window_bits=15; server_max_window_bits=15",
])
def test_101_carries_the_bounded_answer(offered: str) -> None:
    """
    The 101 to each kind of permessage-deflate offer (websockets' default, a
    bare one, one insisting on context takeover) names
    server_no_context_takeover and window 9.
    """
    response = upgrade(offered)
    assert response.startswith(b"HTTP/1.1 101"), response
    header = extension_header(response)
    assert header is not None, response
    assert {"permessage-deflate", "server_no_context_takeover",
            "server_max_window_bits=9"} <= params(header)


def test_101_without_the_extension_when_off() -> None:
    """With compression = off the 101 has no Sec-WebSocket-Extensions header."""
    response = upgrade("permessage-deflate; client_max_window_bits", compression=False)
    assert response.startswith(b"HTTP/1.1 101"), response
    assert extension_header(response) is None, response


def test_short_way_taken_by_a_compressed_connection() -> None:
    """
    ocppgw.connection_fast's short way is on for a connection that negotiated
    permessage-deflate (each message compressed on its own both ways, as the
    listener answers every offer), as for one that did not; on an Autobahn
    whose extension inflates without a bound (25.9.1, not 26.11.1), compressed
    connections stay Autobahn's.
    """
    _, compressed = opened("permessage-deflate; client_max_window_bits")
    _, plain = opened("permessage-deflate; client_max_window_bits", compression=False)
    assert (compressed, plain) == (BOUNDED_INFLATE, True)


class _Session:
    """Records the text frames a connection hands to its session."""

    def __init__(self) -> None:
        self.frames: list[str] = []

    def frame_received(self, text: str) -> None:
        self.frames.append(text)


def _client_frame(text: str) -> bytes:
    """A masked text frame, deflated with window 9 as the gateway asked (RSV1 set)."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -9)
    payload = (deflate.compress(text.encode()) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) <= 125
    return bytes((0xC1, 0x80 | len(payload))) + mask + masked


def _server_text(raw: bytes) -> str:
    """The text of one deflated, unmasked server frame, inflated on its own (window 9)."""
    assert raw[0] == 0xC1, raw
    assert raw[1] <= 125, raw
    return zlib.decompressobj(-9).decompress(raw[2:] + b"\x00\x00\xff\xff").decode()


@pytest.mark.parametrize("cls", [ShortWayProtocol, OCPPServerProtocol])
def test_idle_compressed_connection_keeps_no_zlib_objects(cls: type[Any]) -> None:
    """
    With the autobahn_frames speed-up, between messages a connection with no
    context takeover both ways holds neither a compressor nor a decompressor;
    on either path messages keep flowing compressed both ways.
    """
    session = _Session()
    factory = OCPPServerFactory(
        LISTENER, VERSIONS, None, lambda identity, version, connection: session,
        lambda s: None,
    )
    factory.protocol = cls
    proto: Any = factory.buildProtocol(("127.0.0.1", 5555))
    transport = _Transport()
    proto.makeConnection(transport)
    proto.dataReceived(
        b"GET /ocpp/CP1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 101")
    try:
        deflate = proto._perMessageCompress
        for n in range(2):
            call = f'[2,"{n}","Heartbeat",{{}}]'
            proto.dataReceived(_client_frame(call))
            assert session.frames[-1] == call
            transport.clear()
            answer = f'[3,"{n}",{{"currentTime":"2026-01-02T03:04:05Z"}}]'
            proto.send_frame(answer)
            assert _server_text(transport.value()) == answer
            assert proto._perMessageCompress is deflate
            if cls is ShortWayProtocol:
                assert (deflate._compressor, deflate._decompressor) == (None, None)
    finally:
        proto.connectionLost(Failure(ConnectionDone()))
