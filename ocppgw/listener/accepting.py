# -*- test-case-name: tests.unit.listener.test_accepting,tests.integration.test_admission -*-
"""
A TCP listening port that accepts a few connections a turn of the reactor,
and answers those over the admission rate without making them a transport.

Twisted's own TCP port accepts every connection waiting, up to a number
that grows by 20 each time it took all it might (100 at first), and makes
each a transport registered with epoll before the reactor polls again.  A
reconnect storm's first wave (thousands at once) so holds the reactor for
tens of milliseconds a turn while the charge points already connected wait,
and each connection over the admission rate costs a transport, its epoll
registrations, a read, a write and a close: 310-360 µs of the gateway's
core, a third of it in a storm's first seconds (docs/performance.md).

:class:`AcceptingPort` is a listening port made of Twisted's public parts:
the listening socket is its own, watched through ``IReactorFDSet``; each
turn it accepts at most :data:`PER_TURN` connections, the rest wait in the
kernel's backlog for the next turn; each connection it keeps becomes a
Twisted transport through ``IReactorSocket.adoptStreamConnection``.

With a :class:`Gate` (a plain-TCP listener with admission control) it takes
an admission token first.  A connection that gets none is answered on its
socket, with no transport (:class:`~ocppgw.listener.throttle.Refusal`): its request head is read
(in by the time a busy gateway accepts; else read as epoll says it comes,
for at most the listener's ``handshake_timeout``), the 503 of
:mod:`ocppgw.listener.throttle` is written after its hold, and the socket is
closed, the whole head read first so that the close is no reset.  On a TLS
listener (whose request is inside TLS) and on another kind of endpoint a
refused connection gets a transport and
:class:`~ocppgw.listener.throttle.Busy`, which does the same.

Out of file descriptors (``EMFILE``, ``ENFILE``) or kernel memory, or on
any error of ``accept`` but one connection's own, the port stops accepting
for :data:`PAUSE` seconds (connections wait in the backlog) and logs why.
"""

from __future__ import annotations

import dataclasses
import errno
import re
import socket
from typing import Any, Protocol

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    ILoggingContext,
    IReadDescriptor,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ocppgw.listener.throttle import Refusal

#: Connections accepted in one turn of the reactor, at most.
PER_TURN = 16

#: Seconds without accepting after the process or the system ran out of descriptors.
PAUSE = 0.5

#: accept() errors of one connection that went (or was never allowed): take the next.
#: Any other (out of descriptors or memory, above all) stops accepting for PAUSE.
_GONE = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR}

_log = Logger()


@dataclasses.dataclass(frozen=True)
class TCPAddress:
    family: int
    interface: str
    port: int
    backlog: int


def tcp_address(endpoint: str) -> TCPAddress:
    """
    The address of a ``tcp:PORT[:interface=ADDR][:backlog=N]`` (or ``tcp6:``)
    endpoint string, as Twisted reads it (``\\:`` escapes a colon).

    :raises ValueError: any other endpoint, or an unknown option.
    """
    parts = [p.replace("\\:", ":") for p in re.split(r"(?<!\\):", endpoint)]
    kind, args = parts[0], parts[1:]
    if kind not in ("tcp", "tcp6") or not args:
        raise ValueError(f"needs a tcp: or tcp6: endpoint, not {endpoint!r}")
    options = {"interface": "::" if kind == "tcp6" else "0.0.0.0", "backlog": "50"}
    port = args[0] if "=" not in args[0] else None
    for arg in args[1:] if port is not None else args:
        key, sep, value = arg.partition("=")
        if not sep or key not in ("port", "interface", "backlog"):
            raise ValueError(f"unsupported endpoint option {arg!r} in {endpoint!r}")
        options[key] = value
    port = options.get("port", port)
    if port is None or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"needs a port from 0 to 65535 in {endpoint!r}")
    if not options["backlog"].isdigit():
        raise ValueError(f"needs a whole number as backlog in {endpoint!r}")
    family = socket.AF_INET6 if kind == "tcp6" or ":" in options["interface"] else socket.AF_INET
    return TCPAddress(family, options["interface"], int(port), int(options["backlog"]))


def bind(address: TCPAddress, shared: bool = False) -> socket.socket:
    """
    A non-blocking listening socket on ``address``; with ``shared``, one that
    other processes may bind too (``SO_REUSEPORT``: workers).

    :raises OSError: it cannot be bound.
    """
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address.interface, address.port))
        sock.listen(address.backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Gate(Protocol):
    """Admission control, as the port asks it (the listener's ``OCPPServerFactory``)."""

    @property
    def head_timeout(self) -> float:
        """Seconds a refused connection has to send its request head."""

    def refused(self) -> float | None:
        """Take a token: None when there was one, else the seconds until the refused may return."""

    def admitted(self, addr: IAddress | None) -> Any:
        """The protocol of a connection that has its token."""


class _Builds:
    """A factory of one protocol, for ``adoptStreamConnection``."""

    def __init__(self, build: Any) -> None:
        self.buildProtocol = build


@implementer(IListeningPort, IReadDescriptor)
class AcceptingPort:
    """
    ``factory`` on the listening socket ``sock`` (non-blocking, listening),
    with the admission control ``gate`` when it may answer refusals on the
    socket (see the module text).
    """

    def __init__(self, reactor: Any, sock: socket.socket, factory: Any, gate: Gate | None) -> None:
        self._reactor = reactor
        self._socket = sock
        self._factory = factory
        self._gate = gate
        self._admitted = factory if gate is None else _Builds(gate.admitted)
        #: Refused connections not answered yet.
        self._refusals: set[Refusal] = set()
        self._paused: IDelayedCall | None = None
        self._listening = False
        self._prefix = (
            factory.logPrefix() if ILoggingContext.providedBy(factory) else type(factory).__name__
        )
        self._port = sock.getsockname()[1]
        #: Every accepted connection's, read once (the socket's property makes an enum).
        self._family = int(sock.family)

    # IListeningPort

    def startListening(self) -> None:
        _log.info("{prefix} starting on {port}", prefix=self._prefix, port=self._port)
        self._factory.doStart()
        self._listening = True
        self._reactor.addReader(self)

    def stopListening(self) -> Deferred[None]:
        """Stop accepting; the refusals held are answered now; the socket is closed."""
        if self._listening:
            self._listening = False
            self._reactor.removeReader(self)
            self._stop()
        return succeed(None)

    def getHost(self) -> IPv4Address | IPv6Address:
        host, port, *rest = self._socket.getsockname()
        if self._family == socket.AF_INET6:
            return IPv6Address("TCP", host, port, *rest)
        return IPv4Address("TCP", host, port)

    # IReadDescriptor

    def fileno(self) -> int:
        return self._socket.fileno()

    def logPrefix(self) -> str:
        return self._prefix

    def connectionLost(self, reason: Failure) -> None:
        """The reactor dropped the socket (an error on it, or the reactor's end)."""
        if self._listening:
            self._listening = False
            self._stop()

    def doRead(self) -> None:
        """Accept up to :data:`PER_TURN` waiting connections."""
        for _ in range(PER_TURN):
            try:
                conn, _address = self._socket.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in _GONE:
                    continue
                self._pause(e)
                return
            try:
                self._accepted(conn)
            except Exception:
                _log.failure("{prefix}: a new connection failed", prefix=self._prefix)
                conn.close()

    # What becomes of a connection

    def _accepted(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        gate = self._gate
        back = None if gate is None else gate.refused()
        if back is None:
            try:
                # The reactor's transport gets its own descriptor (a duplicate).
                self._reactor.adoptStreamConnection(conn.fileno(), self._family, self._admitted)
            finally:
                conn.close()
            return
        assert gate is not None
        refusal = Refusal(self._reactor, conn, back, self._refusals.discard)
        self._refusals.add(refusal)
        refusal.start(gate.head_timeout)

    def _pause(self, error: OSError) -> None:
        why = error.strerror or str(error)
        # A warning: the log's rate limit holds a lasting shortage to a few lines a minute.
        _log.warn(
            "{prefix} on port {port} cannot accept ({why}); accepting again in {pause} s",
            prefix=self._prefix,
            port=self._port,
            why=why,
            pause=PAUSE,
        )
        self._reactor.removeReader(self)
        self._paused = self._reactor.callLater(PAUSE, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if self._listening:
            self._reactor.addReader(self)

    def _stop(self) -> None:
        if self._paused is not None and self._paused.active():
            self._paused.cancel()
        self._paused = None
        for refusal in list(self._refusals):
            refusal.end()
        self._socket.close()
        self._factory.doStop()
        _log.info("({prefix} Port {port} Closed)", prefix=self._prefix, port=self._port)


@implementer(IStreamServerEndpoint)
class AcceptingEndpoint:
    """A ``tcp:``/``tcp6:`` endpoint whose ports are :class:`AcceptingPort`."""

    def __init__(self, reactor: Any, address: TCPAddress, gate: Gate | None) -> None:
        self._reactor = reactor
        self._address = address
        self._gate = gate

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        address = self._address
        try:
            sock = bind(address)
        except OSError as e:
            return fail(CannotListenError(address.interface, address.port, e))
        port = AcceptingPort(self._reactor, sock, factory, self._gate)
        port.startListening()
        return succeed(port)


def accepting_endpoint(reactor: Any, endpoint: str, gate: Gate | None) -> AcceptingEndpoint | None:
    """
    An :class:`AcceptingEndpoint` for the endpoint string ``endpoint``; None
    when it is not a plain ``tcp:``/``tcp6:`` one (Twisted's own then).
    """
    try:
        address = tcp_address(endpoint)
    except ValueError:
        return None
    return AcceptingEndpoint(reactor, address, gate)
