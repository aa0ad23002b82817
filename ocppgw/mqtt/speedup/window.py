# -*- test-case-name: tests.unit.mqtt.speedup.test_window,tests.integration.test_mqtt_window -*-
"""
Part of the speed-up ``paho_internals``: the gateway's QoS 1 publishes
written as packets of our own, without paho's per-message objects.

paho makes an ``MQTTMessage``, an ``MQTTMessageInfo`` with a
``threading.Condition``, and takes two locks for each publish, none of
which the reactor's one thread needs.  :class:`PublishWindow` is a
:class:`~ocppgw.mqtt.window.Window` (the in-flight limit, the Receive
Maximum, the buffer, done on PUBACK) that builds each PUBLISH itself:

- a packet identifier per message, from the client's one counter (MQTT
  3.1.1 §2.3.1, 5.0 §2.2.1: unused among the client's unacknowledged
  packets): paho's private ``_last_mid``;
- the packet queued in paho's write queue (its private ``_packet_queue``),
  so it keeps its order among the PUBACKs, subscriptions and pings paho
  still sends;
- after a reconnect, every unacknowledged message sent again, in order and
  marked DUP (3.1.1 §4.4, 5.0 §4.4), before anything newer; beyond a
  smaller Receive Maximum, back to the head of the queue.

paho never knows these messages: their PUBACKs are read by
:mod:`ocppgw.mqtt.speedup.reads` and handed to :meth:`Window.acknowledged`.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred

from ocppgw.mqtt.window import Window

_PUBLISH_QOS1 = 0x32
_RETAIN = 0x01
_DUP = 0x08

#: A PUBLISH without its packet identifier: first byte, topic field, payload.
Packet = tuple[int, bytes, bytes]


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


class PublishWindow(Window[Packet]):
    """
    The QoS 1 publishes of one MQTT client, as packets of our own.

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
        super().__init__(limit, buffer)
        self._queue = queue
        self._next_mid = next_mid
        self._props = b"\x00" if v5 else b""

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> Deferred[None]:
        """
        Send (or keep to send) a QoS 1 PUBLISH (whatever ``qos`` says); fires
        on its PUBACK.

        :raises PublishError: ``max_buffer`` messages wait already.
        """
        name = topic.encode("utf-8")
        first = _PUBLISH_QOS1 | _RETAIN if retain else _PUBLISH_QOS1
        return self.add((first, len(name).to_bytes(2, "big") + name, payload))

    def _send(self, message: Packet) -> int:
        mid = self._next_mid()
        while mid in self._in_flight:  # only once 65,535 wait: the counter wrapped
            mid = self._next_mid()
        first, field, payload = message
        self._queue(first, self._packet(first, field, mid, payload), mid, 1)
        return mid

    def _packet(self, first: int, field: bytes, mid: int, payload: bytes) -> bytes:
        """A whole PUBLISH (MQTT 3.1.1 §3.3, 5.0 §3.3), its payload copied once."""
        props = self._props
        size = len(field) + 2 + len(props) + len(payload)
        return b"".join(
            (bytes((first,)), _length(size), field, mid.to_bytes(2, "big"), props, payload)
        )

    def _again(self) -> None:
        window = self._window
        entries = list(self._in_flight.items())
        # More unacknowledged than the broker now takes (§3.3.4): the newest
        # go back to the head of the queue, to be sent as new packets.
        for mid, ((first, field, payload), d) in reversed(entries[window:]):
            del self._in_flight[mid]
            self._waiting.appendleft(((first & ~_DUP, field, payload), d))
        for mid, ((first, field, payload), d) in entries[:window]:
            first |= _DUP
            self._in_flight[mid] = ((first, field, payload), d)
            self._queue(first, self._packet(first, field, mid, payload), mid, 1)


__all__ = ["PublishWindow"]
