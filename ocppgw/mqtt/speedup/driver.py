# -*- test-case-name: tests.unit.mqtt.speedup.test_reads,tests.unit.mqtt.test_session -*-
"""
Part of the speed-up ``paho_internals``: :class:`FastDriver`, the public
:class:`~ocppgw.mqtt.driver.Driver` with paho's client minus the costs
measured under load (:class:`PahoClient`).

It differs from the public driver in four places: the socket is read by
:meth:`~ocppgw.mqtt.speedup.reads.BufferedReads.read_available`; QoS 1
publishes are written by a :class:`~ocppgw.mqtt.speedup.window.PublishWindow`;
the connection is opened on the reactor (:mod:`ocppgw.mqtt.speedup.connect`)
and handed to paho's ``reconnect()``, so nothing runs in a thread; and it
is ended with paho's own ``_sock_close`` and ``_loop_rc_handle``.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from twisted.internet.defer import Deferred

from ocppgw.mqtt.driver import Deliver, Driver, Lost
from ocppgw.mqtt.speedup.connect import open_socket
from ocppgw.mqtt.speedup.reads import BufferedReads
from ocppgw.mqtt.speedup.window import PublishWindow
from ocppgw.mqtt.speedup.writes import JoinedWrites

if TYPE_CHECKING:
    from ocppgw.config import MQTTConfig


class PahoClient(BufferedReads, JoinedWrites, paho.Client):
    """
    paho's client, minus the costs measured under load.

    After every PUBACK paho walks all its outgoing messages looking for queued
    ones to send (``_update_inflight``), a walk as long as the in-flight
    window for every PUBACK.  Queued messages exist
    only when there are more outgoing messages than in flight, so the walk is
    skipped otherwise.

    paho reads a packet's fixed header one byte per ``recv`` and handles one
    packet per ``loop_read``; :class:`~ocppgw.mqtt.speedup.reads.BufferedReads`
    reads in large chunks and handles every packet that arrived in one turn;
    :class:`~ocppgw.mqtt.speedup.writes.JoinedWrites` sends what was queued in one.
    """

    def _update_inflight(self) -> MQTTErrorCode:
        out = getattr(self, "_out_messages", None)
        inflight = getattr(self, "_inflight_messages", None)
        if out is not None and inflight is not None and len(out) <= inflight:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        rc: MQTTErrorCode = super()._update_inflight()
        return rc

    #: For the next ``reconnect()``: paho's own connect would block the reactor.
    ready_socket: Any = None

    def _create_socket(self) -> Any:
        sock, self.ready_socket = self.ready_socket, None
        if sock is None:
            raise OSError("no connected socket to the broker")
        return sock


class FastDriver(Driver):
    """The public driver, on :class:`PahoClient`."""

    paho_class = PahoClient
    paho: PahoClient

    def __init__(self, config: MQTTConfig, reactor: Any, deliver: Deliver, lost: Lost) -> None:
        super().__init__(config, reactor, deliver, lost)
        # A QoS 0 or 1 PUBLISH read goes straight to the client's handler.
        self.paho.publish_handler = deliver
        self._tls: ssl.SSLContext | None = None
        self._opening: Deferred[Any] | None = None
        self._window: PublishWindow | None = None

    def use_tls(self, context: ssl.SSLContext) -> None:
        super().use_tls(context)
        self._tls = context

    def qos1_window(self, limit: int, buffer: int, v5: bool) -> PublishWindow:
        client = self.paho

        def next_mid() -> int:
            # paho's _mid_generate without its lock (the reactor's one thread
            # is the only caller): the one counter of the client's packet ids.
            mid: int = client._last_mid % 65535 + 1
            client._last_mid = mid
            return mid

        #: QoS 1 publishes; paho keeps only QoS 0 and 2 ones.
        self._window = PublishWindow(client._packet_queue, next_mid, limit, buffer, v5)
        client.window = self._window
        return self._window

    def connect(self) -> Deferred[MQTTErrorCode]:
        # Name lookup, TCP connect and TLS handshake without blocking the
        # reactor, and without a thread; then paho's reconnect() on that socket.
        client = self.paho
        timeout = client.connect_timeout  # paho's, 5 s
        self._opening = open_socket(self._reactor, client.host, client.port, timeout, self._tls)
        return self._opening.addCallback(self._opened)

    def _opened(self, sock: Any) -> MQTTErrorCode:
        self._opening, self.paho.ready_socket = None, sock
        rc: MQTTErrorCode = self.paho.reconnect()
        return rc

    def stop(self, connected: bool) -> bool:
        self._stopping = True
        if self._misc.running:
            self._misc.stop()
        if self._opening is not None:
            self._opening.cancel()  # closes what was opened
        if connected:
            self.paho.disconnect()
            self.paho.loop_write()  # often all of it; else the reactor writes the rest
            if self.paho.socket() is not None:
                return True
        self.paho._sock_close()
        return False

    def close(self) -> None:
        self.paho._sock_close()

    def read(self) -> None:
        self.paho.read_available()

    def drop(self) -> None:
        # paho's own end of a connection on a protocol error: on_disconnect follows.
        self.paho.drop()

    def _socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        if self._window is not None:
            self._window.closed()
        super()._socket_close(client, userdata, sock)


__all__ = ["FastDriver", "PahoClient"]
