"""
Hostile input against one real gateway, while a healthy charge point keeps
doing Heartbeat round trips (answered by a test backend over MQTT) and the
gateway's memory is watched: malformed frames made by hypothesis, oversized
and binary frames, slowloris handshakes, 10,000 failed logins, and identities
built to confuse topics, percent-decoding and Unicode.

The tests run in file order; the last one checks the healthy client and the
gateway's RSS over the whole module.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection

from ocppgw.listener.credentials import make_entry, write_file
from tests.integration.harness.security import (
    Backend,
    Gateway,
    basic,
    free_port,
    heartbeat,
    raw_request,
    start_broker,
    start_gateway,
    stop,
    wait_for,
    ws_connect,
)

PASSWORD = "hostile-suite-password"
MAX_FRAME = 65536
#: Identities the identity tests expect to be accepted (and have credentials).
ACCEPTED = ["%2F", "Café", "⚡🔌", "\u05e2\u05de\u05d3\u05d4-1", "CP 7", "a:b"]
ATTACKER = "127.0.0.3"
#: OCPP-J error codes a CALLERROR may carry, 1.6 and 2.x.
ERROR_CODES = {
    "NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
    "FormationViolation", "FormatViolation", "PropertyConstraintViolation",
    "OccurenceConstraintViolation", "OccurrenceConstraintViolation",
    "TypeConstraintViolation", "GenericError", "MessageTypeNotSupported", "RpcFrameworkError",
}


@dataclass
class Healthy:
    """A charge point doing Heartbeat round trips in a thread until stopped."""

    ws: ClientConnection
    round_trips: int = 0
    failures: list[str] = field(default_factory=list)
    worst: float = 0.0
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stopping.is_set():
            t0 = time.monotonic()
            try:
                assert "currentTime" in heartbeat(self.ws, timeout=5)
            except Exception as e:  # recorded and asserted on by the last test
                self.failures.append(f"{type(e).__name__}: {e}")
                return
            self.round_trips += 1
            self.worst = max(self.worst, time.monotonic() - t0)
            self.stopping.wait(0.02)


@dataclass
class Suite:
    gw: Gateway
    backend: Backend
    healthy: Healthy
    rss_before_kb: int
    started: float


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    d: Path = tmp_path_factory.mktemp("hostile")
    broker = start_broker(d / "broker")
    identities = ["HEALTHY", *[f"HOSTILE{n}" for n in range(20)], *ACCEPTED]
    write_file(str(d / "creds"), {i: make_entry(i, PASSWORD.encode()) for i in identities})
    port = free_port()
    ini = f"""
[listener:ws]
endpoint = tcp:{port}:interface=127.0.0.1
security_profile = 1
max_frame_size = {MAX_FRAME}
handshake_timeout = 2
# The healthy charge point does up to 50 round trips a second, above the
# default per-connection limit (max_message_rate = 10); this suite is about
# the others' attacks, not its rate.
max_message_rate = 100
max_message_burst = 100
# Admission control would answer most of these floods with 503 before the
# checks this suite is about (it has tests of its own: test_admission.py).
max_handshake_rate = 0
[auth]
credentials = {d / "creds"}
[mqtt]
broker = mqtt://127.0.0.1:{broker.port}
"""
    backend = Backend(broker.port)
    gw = start_gateway(d / "gw", ini, port)
    ws = ws_connect(f"ws://127.0.0.1:{port}/ocpp/HEALTHY", basic("HEALTHY", PASSWORD))
    healthy = Healthy(ws)
    assert "currentTime" in heartbeat(ws)
    thread = threading.Thread(target=healthy.run, daemon=True)
    thread.start()
    try:
        yield Suite(gw, backend, healthy, gw.rss_kb(), time.monotonic())
    finally:
        healthy.stopping.set()
        thread.join(10)
        ws.close()
        stop(gw.proc)
        backend.close()
        stop(broker.proc)


def attacker(suite: Suite, identity: str, version: str = "ocpp1.6") -> ClientConnection:
    return ws_connect(f"ws://127.0.0.1:{suite.gw.port}/ocpp/{quote(identity, safe='')}",
                      basic(identity, PASSWORD), protocol=version)


def probe(ws: ClientConnection) -> list[list[object]]:
    """
    Send a Heartbeat after whatever came before and return every frame up to
    its answer; the connection must still be open and answering.
    """
    uid = f"probe-{uuid.uuid4().hex[:12]}"
    ws.send(json.dumps([2, uid, "Heartbeat", {}]))
    frames = []
    deadline = time.monotonic() + 10
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        assert isinstance(frame, list), frame
        if frame[1] == uid:
            assert frame[0] in (3, 4), frame
            return frames
        frames.append(frame)


def assert_callerrors(frames: list[list[object]]) -> None:
    """Everything the gateway sent back for a bad frame is a well-formed CALLERROR."""
    for frame in frames:
        assert frame[0] == 4 and len(frame) == 5, frame
        assert isinstance(frame[1], str) and len(frame[1]) <= 36, frame
        assert frame[2] in ERROR_CODES and isinstance(frame[4], dict), frame


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
_bytes_as_text = st.binary(max_size=300).map(lambda b: b.decode("latin-1"))
_shaped = st.tuples(
    st.sampled_from([2, 3, 4, 5, 6, 7, "2", None, -1, 2.5, True]),
    st.one_of(st.text(max_size=40), st.integers(), st.none(), _json),
    st.one_of(st.text(max_size=30), st.integers(), _json),
    _json,
).map(lambda t: json.dumps(list(t)))


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
def test_malformed_frames(suite: Suite, version: str) -> None:
    """Random text, random bytes as text and wrong-typed frames get CALLERRORs, never a close."""
    ws = attacker(suite, "HOSTILE0" if version == "ocpp1.6" else "HOSTILE1", version)

    @settings(max_examples=120, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(frame=st.one_of(_text, _bytes_as_text, _shaped))
    def check(frame: str) -> None:
        ws.send(frame)
        assert_callerrors(probe(ws))

    try:
        check()
    finally:
        ws.close()


@pytest.mark.parametrize("frame", [
    "[" * 60_000,                                     # deep nesting within max_frame_size
    "[" * 30_000 + "]" * 30_000,
    '[2,"big","Heartbeat",{"x":"' + "A" * 60_000 + '"}]',  # a huge string
    '[2,"' + "i" * 5000 + '","Heartbeat",{}]',        # a huge message id
    '{"MessageTypeId":2}',                              # an object, not an array
    '[2,"x","Heartbeat",{}]' * 1000,                    # trailing garbage
])
def test_nasty_frames_within_limits(suite: Suite, frame: str) -> None:
    """Deep nesting, huge strings and ids within max_frame_size: CALLERROR, connection kept."""
    ws = attacker(suite, "HOSTILE2")
    try:
        ws.send(frame)
        frames = probe(ws)
        assert_callerrors(frames)
        assert frames, "a bad frame must be answered"
    finally:
        ws.close()


def raw_websocket(port: int, identity: str) -> socket.socket:
    """A raw socket past a successful upgrade, for frames a library would not send."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    auth = basic(identity, PASSWORD)["Authorization"]
    sock.sendall(
        f"GET /ocpp/{identity} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
        f"Authorization: {auth}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def frame_header(opcode: int, length: int) -> bytes:
    """A masked client frame header (mask key zero, so the payload goes as is)."""
    if length < 126:
        return bytes([0x80 | opcode, 0x80 | length]) + b"\0\0\0\0"
    if length < 65536:
        return bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", length) + b"\0\0\0\0"
    return bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", length) + b"\0\0\0\0"


@pytest.mark.parametrize("opcode, payload, sent, code", [
    (0x1, b"[" * 100_000, None, 1009),  # 100k '[', all of it sent
    # Only the header of a frame one byte too big: the gateway decides on it.
    (0x1, b"x" * (MAX_FRAME + 1), 0, 1009),
    (0x2, b"\x00\x01binary", None, 1003),
])
def test_oversized_and_binary_frames_close(suite: Suite, opcode: int, payload: bytes,
                                           sent: int | None, code: int) -> None:
    """A frame over max_frame_size closes with 1009, a binary frame with 1003."""
    sock = raw_websocket(suite.gw.port, "HOSTILE3")
    try:
        sock.sendall(frame_header(opcode, len(payload)) + payload[:sent])
        data = b""
        while len(data) < 4:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        assert data[0] == 0x88, data[:8]  # FIN + close
        assert struct.unpack("!H", data[2:4])[0] == code
    finally:
        sock.close()


def test_slowloris_handshakes_are_cut(suite: Suite) -> None:
    """Clients dribbling their upgrade request are closed after handshake_timeout (2 s)."""
    socks = []
    for _ in range(30):
        s = socket.create_connection(("127.0.0.1", suite.gw.port), timeout=5)
        s.sendall(b"GET /ocpp/HOSTILE4 HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    t0 = time.monotonic()
    open_socks = list(socks)
    while open_socks and time.monotonic() - t0 < 8:
        for s in list(open_socks):
            try:
                s.sendall(b"X-Slow: 1\r\n")
                s.setblocking(False)
                try:
                    if s.recv(1024) == b"":
                        open_socks.remove(s)
                except BlockingIOError:
                    pass
                s.setblocking(True)
            except OSError:
                open_socks.remove(s)
        time.sleep(0.25)
    elapsed = time.monotonic() - t0
    for s in socks:
        s.close()
    assert not open_socks, f"{len(open_socks)} slow handshakes still open after {elapsed:.1f} s"
    assert 1.5 <= elapsed <= 6


def test_ten_thousand_failed_logins(suite: Suite) -> None:
    """10,000 wrong passwords from one address: the limiter answers 429 before checking."""

    async def attack() -> list[bytes]:
        gate = asyncio.Semaphore(50)
        targets = ["HEALTHY", *[f"guess{n}" for n in range(99)]]

        async def one(n: int) -> bytes:
            identity = targets[n % len(targets)]
            async with gate:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", suite.gw.port, local_addr=(ATTACKER, 0))
                auth = basic(identity, f"guess-{n}")["Authorization"]
                writer.write(
                    f"GET /ocpp/{identity} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
                    f"Authorization: {auth}\r\n\r\n".encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                writer.close()
                return head

        return await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(10_000))), 60)

    t0 = time.monotonic()
    heads = asyncio.run(attack())
    statuses = [int(h.split(b" ", 2)[1]) for h in heads]
    limited = statuses.count(429)
    assert statuses.count(401) + limited == 10_000
    # [auth] max_failures_per_address = 20 in a 60 s window, plus the refill meanwhile.
    assert statuses.count(401) <= 20 + (time.monotonic() - t0) / 3 + 1
    assert all(b"Retry-After: " in h for h in heads if h.startswith(b"HTTP/1.1 429"))
    # The healthy charge point's identity was among the targets: its connection stays.
    assert not suite.healthy.failures
    # Another address is not limited by the attacker's failures.
    ok = raw_request(suite.gw.port, "/ocpp/HOSTILE5", basic("HOSTILE5", PASSWORD))
    assert ok.startswith(b"HTTP/1.1 101"), ok


def test_failed_logins_spread_over_addresses_limit_the_identity(suite: Suite) -> None:
    """Failures for one identity from many addresses: 429 for it, even with the password."""
    for n in range(10):  # [auth] max_failures_per_identity = 10
        wrong = raw_request(suite.gw.port, "/ocpp/HOSTILE6", basic("HOSTILE6", "guess"),
                            source=f"127.0.1.{n + 1}")
        assert wrong.startswith(b"HTTP/1.1 401"), wrong
    right = raw_request(suite.gw.port, "/ocpp/HOSTILE6", basic("HOSTILE6", PASSWORD),
                        source="127.0.1.200")
    assert right.startswith(b"HTTP/1.1 429") and b"Retry-After: " in right, right


@pytest.mark.parametrize("raw", [
    "CP%2B1", "CP%231", "%2B", "%23", "a%2Fb", "a/b", "%2F", "CP%00", "%00", "CP%0A",
    quote("Cafe\u0301"), quote("CP\u202e1"), quote("CP\u200b1"), "%ff%fe", "x" * 49,
])
def test_refused_identities(suite: Suite, raw: str) -> None:
    """Wildcards, slashes, NUL, controls, NFD, bidi overrides, bad UTF-8: 400, nothing published."""
    response = raw_request(suite.gw.port, f"/ocpp/{raw}", basic("x", PASSWORD))
    assert response.startswith(b"HTTP/1.1 400"), (raw, response[:80])


@pytest.mark.parametrize("identity", ACCEPTED)
def test_accepted_identities_stay_one_topic_level(suite: Suite, identity: str) -> None:
    """%252F, NFC accents, emoji, RTL letters, spaces and ':' connect; topics stay one level."""
    with attacker(suite, identity) as ws:
        assert "currentTime" in heartbeat(ws)
    encoded = identity.replace("%", "%25").replace(" ", " ")
    topics = wait_for(lambda: suite.backend.topics(f"ocpp/cp/{encoded}/Heartbeat"),
                      f"the Heartbeat of {identity!r}")
    assert all(t.count("/") == 3 for t in topics), topics


def test_healthy_client_and_memory_throughout(suite: Suite) -> None:
    """The healthy charge point's round trips all succeeded; gateway RSS grew < 50 MB."""
    healthy = suite.healthy
    assert not healthy.failures, healthy.failures
    assert healthy.round_trips >= 20, healthy.round_trips
    assert healthy.worst < 5.0
    growth_kb = suite.gw.rss_kb() - suite.rss_before_kb
    assert growth_kb < 50 * 1024, f"gateway RSS grew by {growth_kb / 1024:.1f} MB"
    log = suite.gw.log()
    assert "Traceback" not in log and "Unhandled" not in log, log[-5000:]
