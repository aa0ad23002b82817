# -*- test-case-name: tests.unit.mqtt.test_window,tests.integration.test_mqtt_window -*-
"""
The gateway's QoS 1 and 2 publishes, from publish to PUBACK (or PUBCOMP).

A :class:`Window` keeps what the gateway needs of them:

- at most ``limit`` messages (``[mqtt] max_inflight``) handed to the wire
  without their acknowledgement, and at most the broker's Receive Maximum
  (MQTT 5.0 §3.3.4: a broker refuses, or disconnects, a client that sends
  more);
- the rest waiting, in order, up to ``[mqtt] max_buffer`` in all; one more
  is refused with "MQTT buffer full";
- nothing handed over while the broker is away: what waits goes once a
  connection is acknowledged, after what the connection before it left
  unacknowledged (sent again first, 3.1.1 §4.4, 5.0 §4.4);
- a publish is done only on its acknowledgement; a refusing one (5.0 reason
  code 0x80 and up) fails it.

How a message is handed over is a subclass's: :class:`PahoWindow`, the
public path, hands it to paho's ``publish``, and paho keeps it until its
acknowledgement and sends it again after a reconnect; the speed-up
(:mod:`ocppgw.mqtt.speedup.window`) writes the packet itself.

paho can be told its own in-flight limit (``max_inflight_messages_set``),
but not while a connection is open, so it cannot take the Receive Maximum
a CONNACK brings; and it would queue the rest itself.  The window does
both, so paho never holds more than the window lets through.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from typing import Any, Generic, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

#: MQTT 5.0 §3.2.2.3.3: without a Receive Maximum in the CONNACK, 65,535.
RECEIVE_MAXIMUM = 65535
#: MQTT 3.1.1 §2.3.1, 5.0 §2.2.1: packet identifiers are 1 to 65,535.
_PACKET_IDS = 65535

#: What a window holds for one message until it is handed over (a subclass's).
M = TypeVar("M")


class PublishError(Exception):
    """A message could not be handed to the broker, or the broker refused it."""


class Window(ABC, Generic[M]):
    """
    The publishes of one MQTT client that wait for an acknowledgement.

    :param limit: at most this many handed over and not acknowledged.
    :param buffer: at most this many in all, handed over or waiting.
    """

    def __init__(self, limit: int, buffer: int) -> None:
        self._limit = limit
        self._window = limit
        self._buffer = buffer
        #: packet identifier -> (message, Deferred), in the order handed over
        self._in_flight: dict[int, tuple[M, Deferred[None]]] = {}
        #: (message, Deferred) not handed over yet, in order
        self._waiting: deque[tuple[M, Deferred[None]]] = deque()
        self._open = False

    def add(self, message: M) -> Deferred[None]:
        """
        Hand ``message`` over now, or keep it to hand over; fires on its
        acknowledgement.

        :raises PublishError: ``buffer`` messages wait already.
        """
        if len(self._in_flight) + len(self._waiting) >= self._buffer:
            raise PublishError(f"MQTT buffer full ({self._buffer} messages waiting for the broker)")
        d: Deferred[None] = Deferred()
        if self._open and not self._waiting and len(self._in_flight) < self._window:
            self._hand_over(message, d)
        else:
            self._waiting.append((message, d))
        return d

    @abstractmethod
    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> Deferred[None]:
        """
        Publish at ``qos`` (1 or 2); fires on the acknowledgement (a subclass's).

        :raises PublishError: ``buffer`` messages wait already.
        """

    @abstractmethod
    def _send(self, message: M) -> int:
        """Hand ``message`` to the wire; its packet identifier (a subclass's)."""

    def _hand_over(self, message: M, d: Deferred[None]) -> None:
        try:
            mid = self._send(message)
        except (PublishError, ValueError) as e:
            d.errback(Failure(e if isinstance(e, PublishError) else PublishError(str(e))))
            return
        self._in_flight[mid] = (message, d)

    def owns(self, mid: int) -> bool:
        """``mid`` is one of this window's unacknowledged publishes."""
        return mid in self._in_flight

    def acknowledged(self, mid: int, refusal: str | None = None) -> None:
        """
        The broker's acknowledgement of ``mid``: the publish is done, or
        failed with ``refusal`` (a reason code of 0x80 or more); the window
        moves on.
        """
        entry = self._in_flight.pop(mid, None)
        if entry is None:
            return
        self._fill()
        if refusal is None:
            entry[1].callback(None)
        else:
            entry[1].errback(Failure(PublishError(f"broker refused the message: {refusal}")))

    def opened(self, receive_maximum: int = RECEIVE_MAXIMUM) -> None:
        """
        A connection was acknowledged: what the connection before left
        unacknowledged goes again (:meth:`_again`), then what waits, as far
        as the window (and the broker's Receive Maximum) allows.
        """
        self._open = True
        self._window = max(1, min(self._limit, receive_maximum))
        self._again()
        self._fill()

    def _again(self) -> None:
        """Send again what is unacknowledged (here: nothing, paho does it)."""

    def closed(self) -> None:
        """The connection is gone: nothing is handed over until :meth:`opened`."""
        self._open = False

    def _fill(self) -> None:
        waiting = self._waiting
        while self._open and waiting and len(self._in_flight) < self._window:
            self._hand_over(*waiting.popleft())

    def fail_all(self, why: str) -> None:
        """Fail every publish not acknowledged (the client stops)."""
        entries = [d for _, d in self._in_flight.values()]
        entries += [d for _, d in self._waiting]
        self._in_flight.clear()
        self._waiting.clear()
        for d in entries:
            d.errback(Failure(PublishError(why)))

    def buffered(self) -> int:
        """Messages not on the wire: those waiting, and all of them while disconnected."""
        return len(self._waiting) + (0 if self._open else len(self._in_flight))

    def unacknowledged(self) -> int:
        """Messages published and not acknowledged yet, sent or not."""
        return len(self._in_flight) + len(self._waiting)


#: (topic, payload, QoS, retain) of a message for paho's publish.
Message = tuple[str, bytes, int, bool]


class PahoWindow(Window[Message]):
    """
    A window whose messages go through paho's public ``publish``: paho
    gives each its packet identifier, sends it (or, disconnected, keeps it
    for the next connection), sends it again after a reconnect, and reports
    its acknowledgement to ``on_publish`` (which calls :meth:`acknowledged`).
    """

    def __init__(self, client: paho.Client, limit: int, buffer: int) -> None:
        super().__init__(limit, buffer)
        self._client = client

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> Deferred[None]:
        return self.add((topic, payload, qos, retain))

    def _send(self, message: Message) -> int:
        info: Any = None
        # paho refuses a packet identifier still in use by one of its
        # messages (MQTT_ERR_QUEUE_SIZE; its queue itself is unbounded
        # here): only once its counter wrapped; a later one is free unless
        # all 65,535 are in use.
        for _ in range(_PACKET_IDS):
            info = self._client.publish(*message)
            if info.rc != MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                break
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise PublishError(f"publish failed: {paho.error_string(info.rc)}")
        return int(info.mid)


__all__ = ["RECEIVE_MAXIMUM", "Message", "PahoWindow", "PublishError", "Window"]
