# -*- test-case-name: tests.unit.mqtt.test_client_read,tests.unit.mqtt.test_client_write -*-
"""
paho's client as the reactor drives it: :class:`PahoClient`, paho minus the
costs measured under load, and :class:`Descriptor`, its socket as a Twisted
file descriptor.  :mod:`ocppgw.mqtt.client` joins them to the reactor.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw.mqtt.reads import BufferedReads
from ocppgw.mqtt.writes import JoinedWrites

_log = Logger()


class PahoClient(BufferedReads, JoinedWrites, paho.Client):
    """
    paho's client, minus two costs measured under load.

    After every PUBACK paho walks all its outgoing messages looking for queued
    ones to send (``_update_inflight``), which with a large in-flight window
    was ~15% of the gateway's CPU in a reconnect storm.  Queued messages exist
    only when there are more outgoing messages than in flight, so the walk is
    skipped otherwise.

    paho reads a packet's fixed header one byte per ``recv`` and handles one
    packet per ``loop_read``; :class:`~ocppgw.mqtt.reads.BufferedReads` reads
    in large chunks and handles every packet that arrived in one turn;
    :class:`~ocppgw.mqtt.writes.JoinedWrites` sends what was queued in one.
    """

    def _update_inflight(self) -> MQTTErrorCode:
        out = getattr(self, "_out_messages", None)
        inflight = getattr(self, "_inflight_messages", None)
        if out is not None and inflight is not None and len(out) <= inflight:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        rc: MQTTErrorCode = super()._update_inflight()
        return rc

    def queued(self, connected: bool) -> int:
        """Publishes paho holds that are not on the wire yet (all of them while disconnected)."""
        out = getattr(self, "_out_messages", None)
        inflight = getattr(self, "_inflight_messages", 0)
        return 0 if out is None else max(0, len(out) - (int(inflight) if connected else 0))

    #: For the next ``reconnect()``: paho's own connect would block the reactor.
    ready_socket: Any = None

    def _create_socket(self) -> Any:
        sock, self.ready_socket = self.ready_socket, None
        if sock is None:
            raise OSError("no connected socket to the broker")
        return sock


class Descriptor:
    """paho's socket as a Twisted file descriptor."""

    #: ``doWrite`` may be called at any time (paho's ``loop_write`` sends
    #: what the socket takes), so :mod:`ocppgw.loop` calls it before its next
    #: poll instead of waiting for epoll to report the socket writable.
    writes_when_asked = True

    def __init__(self, sock: Any, client: PahoClient) -> None:
        self._sock = sock
        self._client = client
        self._fileno = sock.fileno()

    def fileno(self) -> int:
        return int(self._fileno)

    def logPrefix(self) -> str:
        return "mqtt"

    def doRead(self) -> None:
        self._client.read_available()

    def doWrite(self) -> None:
        self._client.loop_write()

    def connectionLost(self, reason: Failure) -> None:
        # The reactor calls this when doRead or doWrite raised, after it
        # stopped watching the socket: a connection nobody reads any more
        # must end now, not when keepalive notices (about a minute later).
        # (It also calls it for every descriptor as it shuts down.)
        if self._client.socket() is not None and not reason.check(ConnectionDone, ConnectionLost):
            _log.failure("the MQTT connection failed; dropping it", failure=reason)
        self._client.drop()


class Watched:
    """paho's socket callbacks: its socket, while open, a :class:`Descriptor` of the reactor."""

    def __init__(self, reactor: Any, client: PahoClient, closed: Callable[[], None]) -> None:
        self._reactor = reactor
        self._client = client
        self._closed = closed
        self._descriptor: Descriptor | None = None
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write

    def _socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        try:
            # Nagle's algorithm was the largest latency cost measured here: with
            # TCP_NODELAY on both ends, QoS 1 p99 fell from 39 ms to 5 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._descriptor = Descriptor(sock, self._client)
        self._reactor.addReader(self._descriptor)

    def _socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._closed()
        if self._descriptor is not None:
            self._reactor.removeReader(self._descriptor)
            self._reactor.removeWriter(self._descriptor)
            self._descriptor = None

    def _register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._descriptor is not None:
            # The reactor calls Descriptor.doWrite, paho's loop_write, which
            # sends everything queued in one send (JoinedWrites): ocppgw.loop's
            # reactor at the end of this turn, before it polls again (the
            # descriptor writes when asked); another reactor once epoll says
            # the socket is writable.  Either way, what a turn queued goes out
            # together.
            self._reactor.addWriter(self._descriptor)

    def _unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._descriptor is not None:
            self._reactor.removeWriter(self._descriptor)
