"""
The accepting port: a few connections a turn, admitted ones adopted by the
reactor, refused ones answered 503 on their socket (real loopback sockets,
a fake reactor on a task.Clock that records what it adopts).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from ocppgw.listener.accepting import (
    PAUSE,
    PER_TURN,
    AcceptingEndpoint,
    AcceptingPort,
    TCPAddress,
    accepting_endpoint,
    bind,
    tcp_address,
)

HEAD = (
    b"GET /ocpp/CP1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


class _Gate:
    """Admission control that refuses while ``back`` is set; records what it admitted."""

    head_timeout = 10.0

    def __init__(self, back: float | None) -> None:
        self.back = back
        self.admitted_for: list[Any] = []

    def refused(self) -> float | None:
        return self.back

    def admitted(self, addr: Any) -> _Recording:
        self.admitted_for.append(addr)
        return _Recording()


class _Recording(Protocol):
    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class _Port:
    """An accepting port on 127.0.0.1 with clients to connect to it."""

    def __init__(self, gate: _Gate | None) -> None:
        self.reactor = MemoryReactorClock()
        self.factory = Factory.forProtocol(_Recording)
        sock = bind(TCPAddress(socket.AF_INET, "127.0.0.1", 0, 128))
        self.number = sock.getsockname()[1]
        self.port = AcceptingPort(self.reactor, sock, self.factory, gate)
        self.port.startListening()
        self.clients: list[socket.socket] = []

    def connect(self, send: bytes = b"") -> socket.socket:
        client = socket.create_connection(("127.0.0.1", self.number), timeout=5)
        self.clients.append(client)
        if send:
            client.sendall(send)
        return client

    def close(self) -> None:
        self.port.stopListening()
        for client in self.clients:
            client.close()


@pytest.fixture
def open_port() -> Any:
    made: list[_Port] = []

    def make(gate: _Gate | None = None) -> _Port:
        made.append(_Port(gate))
        return made[-1]

    yield make
    for port in made:
        port.close()


def _answer(client: socket.socket) -> bytes:
    """All the client reads until the server's close (a reset raises)."""
    data = b""
    while chunk := client.recv(4096):
        data += chunk
    return data


def test_at_most_per_turn(open_port: Any) -> None:
    """Twenty connections waiting: one turn accepts PER_TURN (16), the next the other 4."""
    port = open_port()
    for _ in range(20):
        port.connect()
    port.port.doRead()
    assert len(port.reactor.adoptedStreamConnections) == PER_TURN
    port.port.doRead()
    assert len(port.reactor.adoptedStreamConnections) == 20
    assert all(f is port.factory for _, _, f in port.reactor.adoptedStreamConnections)


def test_listening_registers_and_stops(open_port: Any) -> None:
    """Listening: the port is a reader and its factory started; stopped: neither, socket closed."""
    port = open_port()
    assert port.port in port.reactor.readers
    assert port.factory.numPorts == 1
    assert port.port.getHost() == IPv4Address("TCP", "127.0.0.1", port.number)
    port.port.stopListening()
    assert port.port not in port.reactor.readers
    assert port.factory.numPorts == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port.number), timeout=5)


def test_admitted_connection_is_adopted_with_the_gates_protocol(open_port: Any) -> None:
    """A connection with a token is adopted; its protocol is the gate's admitted one."""
    gate = _Gate(None)
    port = open_port(gate)
    port.connect(HEAD)
    port.port.doRead()
    [(_fd, family, factory)] = port.reactor.adoptedStreamConnections
    assert family == socket.AF_INET
    address = IPv4Address("TCP", "127.0.0.1", 1)
    assert isinstance(factory.buildProtocol(address), _Recording)
    assert gate.admitted_for == [address]


def test_refused_with_its_head_in_is_answered_on_the_socket(open_port: Any) -> None:
    """
    A refused connection whose request head is in: nothing adopted, nothing
    registered; after the hold (the fraction of a second of 2.5 s) a 503
    with Retry-After: 2, then an orderly close (EOF, no reset).
    """
    port = open_port(_Gate(2.5))
    client = port.connect(HEAD)
    _wait_readable_at_server(port)
    port.port.doRead()
    assert port.reactor.adoptedStreamConnections == []
    assert port.reactor.readers == {port.port}
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(1)  # held
    port.reactor.advance(0.5)
    client.setblocking(True)
    answer = _answer(client)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: 2\r\n" in answer
    assert answer.endswith(b"\r\n\r\n")


def test_refused_head_in_pieces_is_read_as_it_comes(open_port: Any) -> None:
    """
    A refused connection whose head is not all in: read as the reactor says
    it is readable, no transport; answered once the rest came (its hold over).
    """
    port = open_port(_Gate(1.0))
    client = port.connect(HEAD[:20])
    _wait_readable_at_server(port)
    port.port.doRead()
    assert port.reactor.adoptedStreamConnections == []
    [refusal] = port.reactor.readers - {port.port}
    refusal.doRead()  # nothing more yet
    assert refusal in port.reactor.readers
    client.sendall(HEAD[20:])
    time.sleep(0.05)
    refusal.doRead()
    assert port.reactor.readers == {port.port}
    assert b"\r\nRetry-After: 1\r\n" in _answer(client)
    assert port.reactor.getDelayedCalls() == []


def test_refused_head_not_in_within_the_timeout_is_dropped(open_port: Any) -> None:
    """A refused connection that sends no whole head within head_timeout: closed unanswered."""
    port = open_port(_Gate(1.0))
    client = port.connect(HEAD[:20])
    port.port.doRead()
    port.reactor.advance(_Gate.head_timeout)
    assert port.reactor.readers == {port.port}
    assert _answer(client) == b""


def test_refused_client_gone_is_closed(open_port: Any) -> None:
    """A refused connection whose client closed before the accept: closed, nothing kept."""
    port = open_port(_Gate(1.0))
    client = port.connect()
    client.close()
    _wait_readable_at_server(port)
    port.port.doRead()
    assert port.reactor.adoptedStreamConnections == []
    assert port.reactor.readers == {port.port}
    assert port.reactor.getDelayedCalls() == []


def test_stop_answers_the_held_refusals_and_drops_the_unread(open_port: Any) -> None:
    """
    Stopping while a 503 is held: it is answered at once; a refusal still
    waiting for its head is closed; no timer and no reader is left.
    """
    port = open_port(_Gate(3.75))
    held = port.connect(HEAD)
    waiting = port.connect(HEAD[:20])
    _wait_readable_at_server(port)
    port.port.doRead()
    assert len(port.reactor.getDelayedCalls()) == 2
    port.port.stopListening()
    assert port.reactor.getDelayedCalls() == []
    assert port.reactor.readers == set()
    assert b"\r\nRetry-After: 3\r\n" in _answer(held)
    assert _answer(waiting) == b""


class _Exhausted:
    """A listening socket out of descriptors, as accept() says it."""

    family = socket.AF_INET

    def __init__(self, error: int) -> None:
        self.error = error
        self.accepts = 0

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 9)

    def fileno(self) -> int:
        return 99

    def accept(self) -> Any:
        self.accepts += 1
        raise OSError(self.error, os.strerror(self.error))

    def close(self) -> None:
        pass


def _failing(error: int) -> tuple[MemoryReactorClock, _Exhausted, AcceptingPort]:
    """A port listening on a socket whose accept() fails with ``error``, after one turn."""
    reactor = MemoryReactorClock()
    sock = _Exhausted(error)
    port = AcceptingPort(reactor, sock, Factory.forProtocol(Protocol), None)  # type: ignore[arg-type]
    port.startListening()
    port.doRead()
    return reactor, sock, port


@pytest.mark.parametrize("error", [errno.EMFILE, errno.ENFILE, errno.EINVAL])
def test_out_of_descriptors_pauses_accepting(error: int) -> None:
    """
    EMFILE (or any error not one connection's own): accepting stops for
    PAUSE seconds (the port not a reader), then resumes.
    """
    reactor, sock, port = _failing(error)
    assert sock.accepts == 1
    assert port not in reactor.readers
    reactor.advance(PAUSE)
    assert port in reactor.readers
    port.stopListening()


def test_a_connection_gone_before_accept_takes_the_next() -> None:
    """ECONNABORTED is one connection's end: the turn goes on (here to PER_TURN attempts)."""
    reactor, sock, port = _failing(errno.ECONNABORTED)
    assert sock.accepts == PER_TURN
    assert port in reactor.readers
    port.connectionLost(Failure(Exception("gone")))
    assert reactor.getDelayedCalls() == []


def test_endpoint_that_cannot_bind_fails_with_cannot_listen() -> None:
    """A taken port: listen() fails with CannotListenError naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = taken.getsockname()[1]
        address = TCPAddress(socket.AF_INET, "127.0.0.1", number, 50)
        d = AcceptingEndpoint(MemoryReactorClock(), address, None).listen(Factory())
        failure = _failure_of(d)
    assert failure.check(CannotListenError)
    assert failure.value.port == number


@pytest.mark.parametrize(
    "endpoint, expected",
    [
        ("tcp:0:interface=127.0.0.1", (socket.AF_INET, "127.0.0.1", 0, 50)),
        ("tcp6:port=8080:backlog=7", (socket.AF_INET6, "::", 8080, 7)),
    ],
)
def test_tcp_address_takes_port_zero(endpoint: str, expected: tuple[int, str, int, int]) -> None:
    """One process may listen on port 0 (the kernel's choice); the options as Twisted reads them."""
    address = tcp_address(endpoint)
    assert (address.family, address.interface, address.port, address.backlog) == expected


@pytest.mark.parametrize(
    "endpoint", ["unix:/tmp/s", "ssl:8443", "tcp:8080:reuse=1", "tcp:x", "tcp:8080:backlog=x"]
)
def test_other_endpoints_are_twisteds(endpoint: str) -> None:
    """Any endpoint but a plain tcp:/tcp6: one (or one Twisted would refuse) is left to Twisted."""
    assert accepting_endpoint(MemoryReactorClock(), endpoint, None) is None


def _failure_of(d: Any) -> Failure:
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert len(failures) == 1
    return failures[0]


def _wait_readable_at_server(port: _Port) -> None:
    """
    Until the kernel has what the clients sent: on loopback a send is queued
    at the receiver within the call, but a moment's grace keeps this sure.
    """
    select.select([port.port.fileno()], [], [], 5)
    time.sleep(0.05)

