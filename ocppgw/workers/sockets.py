# -*- test-case-name: tests.unit.test_workers,tests.integration.test_workers -*-
"""
Sharing a listening socket between worker processes: each worker binds the
same TCP address with ``SO_REUSEPORT`` and the kernel spreads new
connections over them.  Listeners record whether they listen (for
``/healthz``), so nothing reads Twisted's private state; a one-process
gateway's are :class:`ocppgw.listener.listening.Listening`.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

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
        raise ValueError(f"workers > 1 needs a tcp: or tcp6: endpoint, not {endpoint!r}")
    options = {"interface": "::" if kind == "tcp6" else "0.0.0.0", "backlog": "50"}
    port = args[0] if "=" not in args[0] else None
    for arg in args[1:] if port is not None else args:
        key, sep, value = arg.partition("=")
        if not sep or key not in ("port", "interface", "backlog"):
            raise ValueError(f"workers > 1: unsupported endpoint option {arg!r} in {endpoint!r}")
        options[key] = value
    port = options.get("port", port)
    if port is None or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"workers > 1 needs a fixed port from 1 to 65535 in {endpoint!r}")
    family = socket.AF_INET6 if kind == "tcp6" or ":" in options["interface"] else socket.AF_INET
    return TCPAddress(family, options["interface"], int(port), int(options["backlog"]))


def bind_shared(address: TCPAddress) -> socket.socket:
    """A listening socket on ``address`` that other processes may bind too."""
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address.interface, address.port))
        sock.listen(address.backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ReusePortListener(Service):
    """A worker's listener: its own ``SO_REUSEPORT`` socket on the shared address."""

    def __init__(self, reactor: Any, address: TCPAddress, factory: Any) -> None:
        self._reactor = reactor
        self._address = address
        self._factory = factory
        #: The listening port while it listens (as :class:`RecordingEndpoint`'s).
        self.port: Any = None
        self.error: str | None = None
        self.endpoint = self

    def startService(self) -> None:
        super().startService()
        try:
            sock = bind_shared(self._address)
        except OSError as e:
            self.error = str(e)
            raise
        try:
            # adoptStreamPort duplicates the descriptor and logs "starting on PORT".
            self.port = self._reactor.adoptStreamPort(sock.fileno(), sock.family, self._factory)
        finally:
            sock.close()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        port, self.port = self.port, None
        return None if port is None else port.stopListening()
