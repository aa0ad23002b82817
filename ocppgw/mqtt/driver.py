# -*- test-case-name: tests.unit.mqtt.test_client_read,tests.unit.mqtt.test_client_write -*-
"""
paho's client as the reactor drives it: :class:`PahoClient`, paho minus the
costs measured under load, and :class:`Descriptor`, its socket as a Twisted
file descriptor.  :mod:`ocppgw.mqtt.client` joins them to the reactor.
"""

from __future__ import annotations

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
