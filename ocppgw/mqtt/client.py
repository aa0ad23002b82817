# -*- test-case-name: tests.unit.mqtt.test_session,tests.integration.test_fault -*-
"""
The gateway's MQTT connection: paho-mqtt driven by the Twisted reactor, no
network thread of paho's.

How paho meets the reactor is a driver's (:mod:`ocppgw.mqtt.driver`, paho's
documented external-loop API; or, where paho is a version it was checked
against, the speed-up ``paho_internals`` of :mod:`ocppgw.mqtt.speedup`,
chosen once when the client is built).  What both share is here: the
connection is re-established with exponential backoff from
``reconnect_min`` to ``reconnect_max`` (a refusal every ``reconnect_min``),
every subscription is restored after a reconnect, and each publish has its
Deferred.

Every connect, the first of the process included, resumes the session the
broker keeps for the client id (MQTT 5: clean start 0 with a session expiry,
``[mqtt] session_expiry``; MQTT 3.1.1: clean session 0), so the downstream
messages that arrive while the gateway is away (a reconnect, a restart of the
gateway, or of a broker with persistence) are delivered when it is back,
through the same message handler.  ``session_expiry = 0`` keeps no session.
QoS 1 and 2 messages wait in a window of the client's
(:mod:`ocppgw.mqtt.window`): those published while the broker is away, or
beyond ``[mqtt] max_inflight`` or the broker's Receive Maximum, wait,
bounded by ``[mqtt] max_buffer``; unacknowledged ones are sent again on
reconnect; a publish counts as done only on its acknowledgement.  QoS 0
messages are done once written, and fail while the broker is away.

With ``mqtts://`` the connection is TLS (:func:`ocppgw.mqtt.tls.mqtt_client_context`):
the broker's chain is verified against ``[mqtt] tls_ca`` and its hostname with
service-identity; a broker that fails either is not connected to, and the
reason is logged at each retry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ocppgw.interfaces import IMQTTClient
from ocppgw.mqtt import speedup
from ocppgw.mqtt.driver import Driver
from ocppgw.mqtt.subscriptions import Subscriptions
from ocppgw.mqtt.tls import mqtt_client_context
from ocppgw.mqtt.window import RECEIVE_MAXIMUM, PahoWindow, PublishError, Window

if TYPE_CHECKING:
    # The stages read the typed configuration they are handed; config/ is above them.
    from ocppgw.config import MQTTConfig

_log = Logger()

#: How long :meth:`MQTTClient.stop` waits for what is queued, and its
#: DISCONNECT, to be written to a broker that reads slowly or not at all.
STOP_FLUSH = 2.0


def _check(topic: str, payload: bytes, qos: int) -> None:
    """What paho's publish checks (MQTT 3.1.1 §4.7.1, §1.5.3, §2.2.3), before a window keeps it."""
    if qos not in (0, 1, 2):
        raise ValueError("Invalid QoS level.")
    name = topic.encode("utf-8")
    if not name:
        raise ValueError("Invalid topic.")
    if b"+" in name or b"#" in name:
        raise ValueError("Publish topic cannot contain wildcards.")
    if len(name) > 65535:
        raise ValueError("Publish topic is too long.")
    if len(payload) > 268435455:
        raise ValueError("Payload too large.")
    if len(name) + len(payload) + 5 > 268435455:  # with topic, id, properties
        raise ValueError("Packet too large.")


@implementer(IMQTTClient)
class MQTTClient:
    """
    One MQTT connection, shared by every session of the gateway.

    :param driver: how paho meets the reactor; by default the speed-up
        where it fits, else :class:`~ocppgw.mqtt.driver.Driver`.
    """

    def __init__(
        self,
        config: MQTTConfig,
        reactor: Any,
        will: tuple[str, bytes] | None = None,
        driver: type[Driver] | None = None,
    ) -> None:
        self._config = config
        self._reactor: Any = reactor
        self._handler: Callable[[str, bytes, tuple[int, ...]], None] = lambda t, p, i: None
        self._retry_delay = config.reconnect_min
        self._retry_call: Any = None
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
        kind = driver or speedup.fast_driver() or Driver
        self._driver = kind(config, reactor, self._deliver, self._lost)
        client = self._driver.paho
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        if config.tls:
            self._driver.use_tls(
                mqtt_client_context(config.tls_ca, config.tls_cert, config.tls_key)
            )
        # The windows keep paho below both: it never queues a message itself.
        client.max_inflight_messages_set(config.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._client = client
        self._subscriptions = Subscriptions(client, v5)
        #: QoS 0 publishes until paho wrote them: packet id -> Deferred.
        self._written: dict[int, Deferred[None]] = {}
        #: QoS 2 publishes, and QoS 1 ones unless the driver has a window of its own.
        self._window = PahoWindow(client, config.max_inflight, config.max_buffer)
        self._qos1 = self._driver.qos1_window(config.max_inflight, config.max_buffer, v5)
        self._window_opens: Any = None

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
        self._driver.start()
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
        if not self._driver.stop(self.connected):
            self._stopped()
            return succeed(None)
        written: Deferred[None] = Deferred()
        self._flushing = written
        written.addTimeout(STOP_FLUSH, self._reactor, onTimeoutCancel=lambda r, t: None)
        written.addBoth(lambda _: self._stopped())
        return written

    def _disconnect_written(self) -> None:
        """Stopping, the DISCONNECT is written (or the connection broke)."""
        if self._flushing is not None and not self._flushing.called:
            self._flushing.callback(None)

    def _stopped(self) -> None:
        """The connection is given up: what is not acknowledged fails."""
        self._flushing = None
        self._driver.close()
        self._closed("MQTT client stopped before PUBACK")
        self.connected = False
        for window in self._windows():
            window.fail_all("MQTT client stopped before PUBACK")

    def _windows(self) -> list[Window[Any]]:
        return [self._window] if self._qos1 is None else [self._qos1, self._window]

    def buffered(self) -> int:
        """How many publishes wait in the client, not sent to the broker yet."""
        return sum(window.buffered() for window in self._windows())

    def unacknowledged(self) -> int:
        """How many publishes still wait for their PUBACK (or, QoS 0, their write)."""
        return len(self._written) + sum(window.unacknowledged() for window in self._windows())

    def _connect(self) -> None:
        self._retry_call = None
        if self._stopping:
            return
        self._driver.connect().addCallbacks(self._opened, self._not_opened)

    def _opened(self, rc: MQTTErrorCode) -> None:
        if not self._stopping and rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._schedule_reconnect()

    def _not_opened(self, failure: Failure) -> None:
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
        # What was published before the connection broke goes again first:
        # the driver's window sends it now; paho sends its own once this
        # returns, so what waits for paho goes on the next turn.
        most = getattr(properties, "ReceiveMaximum", None) if self._v5 else None
        receive_maximum = int(most) if most else RECEIVE_MAXIMUM
        if self._qos1 is not None:
            self._qos1.opened(receive_maximum)
        self._window_opens = self._reactor.callLater(0, self._window.opened, receive_maximum)
        if self.on_connected is not None:
            self.on_connected()
        waiters, self._connected_waiters = self._connected_waiters, []
        for d in waiters:
            d.callback(None)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._lost(str(reason))

    def _lost(self, why: str) -> None:
        """The connection is gone (paho said so, or the driver ended it): reconnect."""
        was = self.connected
        self.connected = False
        self._closed("MQTT connection lost before the message was written")
        if self._stopping:
            # Not from inside paho's callback: it closes the socket next.
            self._reactor.callLater(0, self._disconnect_written)
            return
        if was:
            _log.warn("MQTT connection lost ({reason}); reconnecting", reason=why)
        self._schedule_reconnect()

    def _closed(self, why: str) -> None:
        if self._window_opens is not None and self._window_opens.active():
            self._window_opens.cancel()
        for window in self._windows():
            window.closed()
        # paho forgets what it had not written when it reconnects.
        written, self._written = self._written, {}
        for d in written.values():
            d.errback(Failure(PublishError(why)))

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # With the speed-up, only what it leaves to paho (QoS 2, topic aliases) comes here.
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
        d = self._written.pop(mid, None)
        if d is not None:
            d.callback(None)  # a QoS 0 message, written
            return
        refused = reason is not None and getattr(reason, "is_failure", False)
        self._window.acknowledged(mid, str(reason) if refused else None)

    # --- IMQTTClient ---

    def set_message_handler(self, handler: Callable[[str, bytes, tuple[int, ...]], None]) -> None:
        self._handler = handler

    @property
    def supports_identifiers(self) -> bool:
        """MQTT 5 subscription identifiers (and shared subscriptions) are available."""
        return self._v5

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> Deferred[None]:
        _check(topic, payload, qos)
        if qos == 0:
            return self._publish_qos0(topic, payload, retain)
        window = self._window if qos == 2 or self._qos1 is None else self._qos1
        try:
            return window.publish(topic, payload, qos, retain)
        except PublishError:
            return fail()

    def _publish_qos0(self, topic: str, payload: bytes, retain: bool) -> Deferred[None]:
        if not self.connected:
            # QoS 0 is not kept while disconnected.
            return fail(PublishError("MQTT broker not connected"))
        info = self._client.publish(topic, payload, qos=0, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return fail(PublishError(f"publish failed: {paho.error_string(info.rc)}"))
        if info.is_published():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._written[info.mid] = d
        return d

    def subscribe(self, topic_filter: str, qos: int, identifier: int = 0) -> None:
        self._subscriptions.add(topic_filter, qos, identifier, self.connected)

    def unsubscribe(self, topic_filter: str) -> None:
        self._subscriptions.remove(topic_filter, self.connected)
