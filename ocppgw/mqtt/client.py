# -*- test-case-name: tests.integration.test_mqtt_window,tests.integration.test_fault -*-
"""
paho-mqtt driven by the Twisted reactor: no network thread.

paho tells us when its socket opens, closes, and wants to write
(``on_socket_*`` callbacks); the reactor tells us when the socket is readable
or writable, and we call ``loop_read``/``loop_write``; a LoopingCall runs
``loop_misc`` for keepalives.  The connection is re-established with
exponential backoff, and every subscription is restored after a reconnect.

Every connect, the first of the process included, resumes the session the
broker keeps for the client id (MQTT 5: clean start 0 with a session expiry,
``[mqtt] session_expiry``; MQTT 3.1.1: clean session 0), so the downstream
messages that arrive while the gateway is away (a reconnect, a restart of the
gateway, or of a broker with persistence) are delivered when it is back,
through the same message handler.  ``session_expiry = 0`` keeps no session.  QoS 1 messages are
the gateway's own (:mod:`ocppgw.mqtt.window`): those published while the
broker is away, or beyond ``[mqtt] max_inflight``, wait, bounded by
``[mqtt] max_buffer``; unacknowledged ones are sent again on reconnect; a
publish counts as done only on PUBACK.  QoS 0 and 2 stay with paho.

With ``mqtts://`` the connection is TLS (:func:`ocppgw.mqtt.tls.mqtt_client_context`):
the broker's chain is verified against ``[mqtt] tls_ca`` and its hostname with
service-identity; a broker that fails either is not connected to, and the
reason is logged at each retry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ocppgw.interfaces import IMQTTClient
from ocppgw.mqtt.connect import open_socket
from ocppgw.mqtt.driver import PahoClient, Watched
from ocppgw.mqtt.subscriptions import Subscriptions
from ocppgw.mqtt.tls import mqtt_client_context
from ocppgw.mqtt.window import RECEIVE_MAXIMUM, PublishError, PublishWindow, checked_topic

if TYPE_CHECKING:
    # The stages read the typed configuration they are handed; config/ is above them.
    from ocppgw.config import MQTTConfig

_log = Logger()

#: How long :meth:`MQTTClient.stop` waits for what is queued, and its
#: DISCONNECT, to be written to a broker that reads slowly or not at all.
STOP_FLUSH = 2.0


@implementer(IMQTTClient)
class MQTTClient:
    """One MQTT connection, shared by every session of the gateway."""

    def __init__(
        self,
        config: MQTTConfig,
        reactor: Any,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        self._config = config
        self._reactor: Any = reactor
        self._handler: Callable[[str, bytes, tuple[int, ...]], None] = lambda t, p, i: None
        self._acks: dict[int, Deferred[None]] = {}
        self._retry_delay = config.reconnect_min
        self._retry_call: Any = None
        self._opening: Deferred[Any] | None = None
        self._misc = LoopingCall(self._loop_misc)
        self._misc.clock = reactor
        self._stopping = False
        #: Stopping: fired once paho wrote the DISCONNECT (or the connection broke).
        self._flushing: Deferred[None] | None = None
        self.connected = False
        #: The retained (topic, payload) the broker publishes if we vanish.
        self.will: tuple[str, bytes] | None = will
        #: Called after each acknowledged connect, e.g. to publish presence.
        self.on_connected: Callable[[], object] | None = None
        #: Fired (and replaced) each time a connection is acknowledged.
        self._connected_waiters: list[Deferred[None]] = []
        v5 = config.protocol == "5"
        self._v5 = v5
        client = PahoClient(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            # MQTT 3.1.1 §3.1.2.4: clean session 0 keeps the session (its
            # subscriptions and the QoS 1 messages queued for them) on the broker.
            clean_session=None if v5 else config.session_expiry == 0,
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set_context(
                mqtt_client_context(config.tls_ca, config.tls_cert, config.tls_key)
            )
        client.max_inflight_messages_set(config.max_inflight)
        client.max_queued_messages_set(config.max_buffer)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.publish_handler = self._deliver
        client.on_publish = self._on_publish
        self._client = client
        self._subscriptions = Subscriptions(client, v5)

        def next_mid() -> int:
            # paho's _mid_generate without its lock (the reactor's one thread
            # is the only caller): the one counter of the client's packet ids.
            mid: int = client._last_mid % 65535 + 1
            client._last_mid = mid
            return mid

        #: QoS 1 publishes; paho keeps only QoS 0 and 2 ones.
        self._window = PublishWindow(
            client._packet_queue, next_mid, config.max_inflight, config.max_buffer, v5
        )
        client.window = self._window
        # Its socket watched by the reactor while it is open.
        Watched(reactor, client, self._window.closed)

    # --- lifecycle ---

    def start(self) -> None:
        """Connect now, and keep reconnecting until :meth:`stop`."""
        self._stopping = False
        if self.will is not None:
            self._client.will_set(self.will[0], self.will[1], qos=1, retain=True)
        properties = None
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self._config.session_expiry
        self._client.connect_async(
            self._config.host,
            self._config.port,
            keepalive=self._config.keepalive,
            # MQTT 5.0 §3.1.2.4: clean start 0, also on the first connect of
            # this process: the session a previous run (same client id) left,
            # and what the broker queued in it, is resumed, not discarded.
            clean_start=self._config.session_expiry == 0,
            properties=properties,
        )
        self._misc.start(1.0, now=False)
        self._connect()

    def when_connected(self) -> Deferred[None]:
        """Fires once the broker has acknowledged a connection."""
        if self.connected:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._connected_waiters.append(d)
        return d

    def stop(self) -> Deferred[None]:
        """
        Disconnect cleanly: what is queued, then the DISCONNECT, are written
        (within :data:`STOP_FLUSH`), so the broker drops our last will instead
        of publishing it on top of a goodbye; then the in-flight publishes
        that are not acked fail.  Fires once the socket is closed.
        """
        self._stopping = True
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        if self._opening is not None:
            self._opening.cancel()
        if self._misc.running:
            self._misc.stop()
        if self.connected:
            self._client.disconnect()
            # Often all of it at once; else the reactor writes the rest.
            self._client.loop_write()
        if not self.connected or self._client.socket() is None:
            self._closed()
            return succeed(None)
        written: Deferred[None] = Deferred()
        self._flushing = written
        written.addTimeout(STOP_FLUSH, self._reactor, onTimeoutCancel=lambda r, t: None)
        written.addBoth(lambda _: self._closed())
        return written

    def _written(self) -> None:
        """Stopping, the DISCONNECT is written (or the connection broke)."""
        if self._flushing is not None and not self._flushing.called:
            self._flushing.callback(None)

    def _closed(self) -> None:
        """The connection is given up: what is not acknowledged fails."""
        self._flushing = None
        self._client._sock_close()
        self.connected = False
        for d in list(self._acks.values()):
            d.errback(Failure(PublishError("MQTT client stopped before PUBACK")))
        self._acks.clear()
        self._window.fail_all("MQTT client stopped before PUBACK")

    def buffered(self) -> int:
        """How many publishes wait in the client, not sent to the broker yet."""
        return self._client.queued(self.connected) + self._window.buffered()

    def unacknowledged(self) -> int:
        """How many QoS >= 1 publishes still wait for their PUBACK."""
        return len(self._acks) + self._window.unacknowledged()

    def _connect(self) -> None:
        self._retry_call = None
        if self._stopping:
            return
        # Name lookup, TCP connect and TLS handshake without blocking the reactor.
        c = self._config
        tls = self._client._ssl_context if c.tls else None
        timeout = self._client.connect_timeout  # paho's, 5 s
        self._opening = open_socket(self._reactor, c.host, c.port, timeout, tls)
        self._opening.addCallbacks(self._opened, self._not_opened)

    def _opened(self, sock: Any) -> None:
        self._opening, self._client.ready_socket = None, sock
        try:
            rc = self._client.reconnect()
        except OSError as e:
            self._not_opened(Failure(e))
            return
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._schedule_reconnect()

    def _not_opened(self, failure: Failure) -> None:
        self._opening = None
        if self._stopping:
            return
        e = failure.value
        if isinstance(e, ConnectionRefusedError):
            # Nothing listens (yet): e.g. the embedded broker still starting,
            # or a broker restarting.  A refusal costs one round trip, so it
            # is retried every reconnect_min, without backoff: the gateway
            # connects within reconnect_min of the broker accepting.
            self._retry_delay = self._config.reconnect_min
            _log.warn(
                "MQTT broker {host}:{port} refused the connection; retrying in {delay:.1f} s",
                host=self._config.host,
                port=self._config.port,
                delay=self._retry_delay,
            )
        else:
            _log.warn(
                "MQTT broker {host}:{port} unreachable ({why}); retrying in {delay:.1f} s",
                host=self._config.host,
                port=self._config.port,
                why=(e.strerror if isinstance(e, OSError) else None) or str(e),
                delay=self._retry_delay,
            )
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._stopping or self._retry_call is not None:
            return
        self._retry_call = self._reactor.callLater(self._retry_delay, self._connect)
        self._retry_delay = min(self._retry_delay * 2, self._config.reconnect_max)

    def _loop_misc(self) -> None:
        self._client.loop_misc()

    # --- paho protocol callbacks ---

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            _log.error("MQTT broker refused the connection: {reason}", reason=str(reason))
            return
        self.connected = True
        self._retry_delay = self._config.reconnect_min
        _log.info(
            "MQTT connected to {host}:{port} (session present: {present})",
            host=self._config.host,
            port=self._config.port,
            present=bool(getattr(flags, "session_present", False)),
        )
        # Restore every subscription (the session may not have survived), and
        # drop from the resumed session what was given up meanwhile.
        self._subscriptions.restore()
        # What was published before the connection broke goes again first.
        most = getattr(properties, "ReceiveMaximum", None) if self._v5 else None
        self._window.opened(int(most) if most else RECEIVE_MAXIMUM)
        if self.on_connected is not None:
            self.on_connected()
        waiters, self._connected_waiters = self._connected_waiters, []
        for d in waiters:
            d.callback(None)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        was = self.connected
        self.connected = False
        self._window.closed()
        if self._stopping:
            # Not from inside paho's callback: it closes the socket next.
            self._reactor.callLater(0, self._written)
            return
        if was:
            _log.warn("MQTT connection lost ({reason}); reconnecting", reason=str(reason))
        self._schedule_reconnect()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # Only what parse_publish leaves to paho (QoS 2, topic aliases) comes here.
        identifiers: tuple[int, ...] = ()
        if self._v5 and message.properties is not None:
            found = getattr(message.properties, "SubscriptionIdentifier", None)
            if found is not None:
                identifiers = tuple(found) if isinstance(found, list) else (int(found),)
        self._deliver(message.topic, bytes(message.payload), identifiers)

    def _deliver(self, topic: str, payload: bytes, identifiers: tuple[int, ...]) -> None:
        try:
            self._handler(topic, payload, identifiers)
        except Exception:
            _log.failure("handling a message on {topic} failed", topic=topic)

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        d = self._acks.pop(mid, None)
        if d is None:
            return
        if reason is not None and getattr(reason, "is_failure", False):
            d.errback(Failure(PublishError(f"broker refused the message: {reason}")))
        else:
            d.callback(None)

    # --- IMQTTClient ---

    def set_message_handler(self, handler: Callable[[str, bytes, tuple[int, ...]], None]) -> None:
        self._handler = handler

    @property
    def supports_identifiers(self) -> bool:
        """MQTT 5 subscription identifiers (and shared subscriptions) are available."""
        return self._v5

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> Deferred[None]:
        if qos == 1:
            try:
                return self._window.publish(checked_topic(topic, payload), payload, retain)
            except PublishError:
                return fail()
        d: Deferred[None] = Deferred()
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            return fail(
                PublishError(
                    f"MQTT buffer full ({self._config.max_buffer} messages waiting for the broker)"
                )
            )
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return fail(PublishError(f"publish failed: {paho.error_string(info.rc)}"))
        if qos == 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            # QoS 0 is not queued by paho while disconnected.
            return fail(PublishError("MQTT broker not connected"))
        # Only a QoS 0 message can be done already (written, with no PUBACK to
        # wait for); paho's is_published() raises while disconnected.
        if qos == 0 and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS and info.is_published():
            return succeed(None)
        self._acks[info.mid] = d
        return d

    def subscribe(self, topic_filter: str, qos: int, identifier: int = 0) -> None:
        self._subscriptions.add(topic_filter, qos, identifier, self.connected)

    def unsubscribe(self, topic_filter: str) -> None:
        self._subscriptions.remove(topic_filter, self.connected)
