# -*- test-case-name: tests.unit.test_workers,tests.integration.test_workers -*-
"""
Sharing a listening socket between worker processes: each worker binds the
same TCP address with ``SO_REUSEPORT`` and the kernel spreads new
connections over them.  Listeners record whether they listen (for
``/healthz``), so nothing reads Twisted's private state; a one-process
gateway's are :class:`ocppgw.listener.listening.Listening`.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ocppgw.listener import accepting
from ocppgw.listener.accepting import AcceptingPort, Gate, TCPAddress

_log = Logger()


def tcp_address(endpoint: str) -> TCPAddress:
    """
    The address of a ``tcp:PORT`` or ``tcp6:PORT`` endpoint string that
    workers can share: a fixed port.

    :raises ValueError: any other endpoint, port 0, or an unknown option.
    """
    try:
        address = accepting.tcp_address(endpoint)
    except ValueError as e:
        raise ValueError(f"workers > 1: {e}") from None
    if address.port == 0:
        raise ValueError(f"workers > 1 needs a fixed port from 1 to 65535 in {endpoint!r}")
    return address


def bind_shared(address: TCPAddress) -> socket.socket:
    """A listening socket on ``address`` that other processes may bind too."""
    return accepting.bind(address, shared=True)


class ReusePortListener(Service):
    """A worker's listener: its own ``SO_REUSEPORT`` socket on the shared address."""

    def __init__(
        self, reactor: Any, address: TCPAddress, factory: Any, gate: Gate | None = None
    ) -> None:
        self._reactor = reactor
        self._address = address
        self._factory = factory
        self._gate = gate
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
        port = AcceptingPort(self._reactor, sock, self._factory, self._gate)
        port.startListening()  # logs "starting on PORT"
        self.port = port

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        port, self.port = self.port, None
        return None if port is None else port.stopListening()
