# -*- test-case-name: tests.unit.mqtt.test_window,tests.integration.test_mqtt_window -*-
"""
The gateway's QoS 1 publishes, kept here rather than in paho.

paho makes an ``MQTTMessage``, an ``MQTTMessageInfo`` with a
``threading.Condition``, and takes two locks for each publish; under load
that was about 8% of the gateway's CPU.  :class:`PublishWindow` keeps what
the gateway needs of it and nothing more:

- a packet identifier per message, from the client's one counter (MQTT
  3.1.1 §2.3.1, 5.0 §2.2.1: unused among the client's unacknowledged
  packets);
- at most ``limit`` messages on the wire without their PUBACK, and at most
  the broker's Receive Maximum (MQTT 5.0 §3.3.4);
- the rest waiting, in order, up to ``[mqtt] max_buffer`` in all, as paho's
  queue did;
- after a reconnect, every unacknowledged message sent again, in order and
  marked DUP (3.1.1 §4.4, 5.0 §4.4), before anything newer;
- a publish is done only on its PUBACK; a refusing PUBACK (5.0 reason code
  0x80 and up) fails it.

The packets go out through paho's write queue, so they keep their order
among the PUBACKs, subscriptions and pings paho still sends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

#: MQTT 5.0 §3.2.2.3.3: without a Receive Maximum in the CONNACK, 65,535.
RECEIVE_MAXIMUM = 65535

_PUBLISH_QOS1 = 0x32
_RETAIN = 0x01
_DUP = 0x08


class PublishError(Exception):
    """A message could not be handed to the broker, or the broker refused it."""


def checked_topic(topic: str, payload: bytes) -> bytes:
    """``topic``, encoded, after what paho's publish checks (MQTT 3.1.1 §4.7.1, §1.5.3, §2.2.3)."""
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
    return name


def _length(size: int) -> bytes:
    """A remaining length as a variable byte integer (MQTT 3.1.1 §2.2.3, 5.0 §1.5.5)."""
    if size < 128:
        return bytes((size,))
    if size < 16384:
        return bytes((size & 0x7F | 0x80, size >> 7))
    out = bytearray()
    while True:
        size, digit = divmod(size, 128)
        out.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(out)


class PublishWindow:
    """
    The QoS 1 publishes of one MQTT client, from publish to PUBACK.

    :param queue: hands a whole packet (its first byte, its bytes, its packet
        identifier, its QoS) to the client's write queue: paho's ``_packet_queue``.
    :param next_mid: the client's packet identifier counter.
    :param v5: MQTT 5: a PUBLISH carries a (here empty) property list.
    """

    def __init__(
        self,
        queue: Callable[[int, bytes, int, int], object],
        next_mid: Callable[[], int],
        limit: int,
        buffer: int,
        v5: bool,
    ) -> None:
        self._queue = queue
        self._next_mid = next_mid
        self._limit = limit
        self._window = limit
        self._buffer = buffer
        self._props = b"\x00" if v5 else b""
        #: packet identifier -> (first byte, topic field, payload, Deferred); in send order
        self._in_flight: dict[int, tuple[int, bytes, bytes, Deferred[None]]] = {}
        #: (first byte, topic field, payload, Deferred) not sent yet, in order
        self._waiting: deque[tuple[int, bytes, bytes, Deferred[None]]] = deque()
        self._open = False

    def publish(self, topic: bytes, payload: bytes, retain: bool) -> Deferred[None]:
        """
        Send (or keep to send) a QoS 1 PUBLISH; fires on its PUBACK.

        :raises PublishError: ``max_buffer`` messages wait already.
        """
        if len(self._in_flight) + len(self._waiting) >= self._buffer:
            raise PublishError(f"MQTT buffer full ({self._buffer} messages waiting for the broker)")
        d: Deferred[None] = Deferred()
        first = _PUBLISH_QOS1 | _RETAIN if retain else _PUBLISH_QOS1
        field = len(topic).to_bytes(2, "big") + topic
        if self._open and not self._waiting and len(self._in_flight) < self._window:
            self._send(first, field, payload, d)
        else:
            self._waiting.append((first, field, payload, d))
        return d

    def _send(self, first: int, field: bytes, payload: bytes, d: Deferred[None]) -> None:
        mid = self._next_mid()
        while mid in self._in_flight:  # only once 65,535 wait: the counter wrapped
            mid = self._next_mid()
        self._in_flight[mid] = (first, field, payload, d)
        self._queue(first, self._packet(first, field, mid, payload), mid, 1)

    def _packet(self, first: int, field: bytes, mid: int, payload: bytes) -> bytes:
        """A whole PUBLISH (MQTT 3.1.1 §3.3, 5.0 §3.3), its payload copied once."""
        props = self._props
        size = len(field) + 2 + len(props) + len(payload)
        return b"".join(
            (bytes((first,)), _length(size), field, mid.to_bytes(2, "big"), props, payload)
        )

    def owns(self, mid: int) -> bool:
        """``mid`` is one of this window's unacknowledged publishes."""
        return mid in self._in_flight

    def acknowledged(self, mid: int, refusal: str | None = None) -> None:
        """
        The broker's PUBACK for ``mid``: the publish is done, or failed with
        ``refusal`` (a reason code of 0x80 or more); the window moves on.
        """
        entry = self._in_flight.pop(mid, None)
        if entry is None:
            return
        self._fill()
        if refusal is None:
            entry[3].callback(None)
        else:
            entry[3].errback(Failure(PublishError(f"broker refused the message: {refusal}")))

    def opened(self, receive_maximum: int = RECEIVE_MAXIMUM) -> None:
        """
        A connection was acknowledged: send every unacknowledged message
        again, marked DUP, then what waits, as far as the window (and the
        broker's Receive Maximum) allows.
        """
        self._open = True
        self._window = window = max(1, min(self._limit, receive_maximum))
        entries = list(self._in_flight.items())
        # More unacknowledged than the broker now takes (§3.3.4): the newest
        # go back to the head of the queue, to be sent as new packets.
        for mid, (first, field, payload, d) in reversed(entries[window:]):
            del self._in_flight[mid]
            self._waiting.appendleft((first & ~_DUP, field, payload, d))
        for mid, (first, field, payload, d) in entries[:window]:
            first |= _DUP
            self._in_flight[mid] = (first, field, payload, d)
            self._queue(first, self._packet(first, field, mid, payload), mid, 1)
        self._fill()

    def closed(self) -> None:
        """The connection is gone: nothing is sent until :meth:`opened`."""
        self._open = False

    def _fill(self) -> None:
        waiting = self._waiting
        while self._open and waiting and len(self._in_flight) < self._window:
            self._send(*waiting.popleft())

    def fail_all(self, why: str) -> None:
        """Fail every publish not acknowledged (the client stops)."""
        entries = [d for _, _, _, d in self._in_flight.values()]
        entries += [d for _, _, _, d in self._waiting]
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


__all__ = ["RECEIVE_MAXIMUM", "PublishError", "PublishWindow"]
