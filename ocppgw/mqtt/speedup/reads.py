# -*- test-case-name: tests.unit.mqtt.speedup.test_reads,tests.unit.mqtt.speedup.test_failures -*-
"""
Part of the speed-up ``paho_internals``: paho's read path, without its
per-byte system calls.

paho reads a packet's fixed header one byte per ``recv`` and handles one
packet per ``loop_read``: four system calls per PUBACK, and one reactor turn
per packet.  :meth:`BufferedReads.read_available` reads the socket in large
chunks into a buffer, and paho's ``_sock_recv`` serves its small reads from
it, so every packet that arrived is handled in the same reactor turn, with
one ``recv`` for all of them.  paho still parses and handles each packet
(MQTT 3.1.1 §2.2.3, MQTT 5.0 §2.1.4: the remaining length is up to four
bytes); only where its bytes come from changes.

A failure while handling what was read (a malformed packet, a bug) ends the
connection at once, as paho ends it on a protocol error, instead of leaving
a socket nobody reads until keepalive notices: the client reconnects and its
window sends again what was not acknowledged.

It overrides paho's private ``_handle_publish``, ``_handle_pubackcomp``,
``_packet_read``, ``_sock_recv`` and ``_sock_close``, reads and resets
``_in_packet``, calls ``_packet_handle``, ``_packet_queue``,
``_do_on_publish``, ``_loop_rc_handle`` and ``_call_socket_register_write``,
and decodes a PUBACK it does not read itself with ``paho.mqtt._packet``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from twisted.logger import Logger

from ocppgw.mqtt.speedup.window import PublishWindow

_log = Logger()

#: How much one read of the broker's socket asks for.
_READ_CHUNK = 256 * 1024
#: At most this much is read from the broker in one reactor turn, so that
#: charge points' frames are not starved by a flood of downstream messages.
_READ_TURN = 4 * 1024 * 1024


#: MQTT 5.0 §2.2.2.2: the PUBLISH properties and how long each value is
#: (a number of bytes; -1 a variable byte integer, -2 a length-prefixed
#: string or binary, -4 a string pair).
_PUBLISH_PROPERTIES = {
    0x01: 1,  # Payload Format Indicator
    0x02: 4,  # Message Expiry Interval
    0x03: -2,  # Content Type
    0x08: -2,  # Response Topic
    0x09: -2,  # Correlation Data
    0x0B: -1,  # Subscription Identifier
    0x26: -4,  # User Property
}
_SUBSCRIPTION_IDENTIFIER = 0x0B
_PUBACK_FIRST = 0x40  # MQTT 3.1.1 §3.4.1, 5.0 §3.4.1: flags 0
_PUBLISH_KIND = 0x30

#: What a PUBLISH is handed to: topic, payload, MQTT 5 subscription identifiers.
PublishHandler = Callable[[str, bytes, tuple[int, ...]], None]


def _varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    """A variable byte integer at ``pos`` (MQTT 5.0 §1.5.5), and the position after it."""
    value = shift = 0
    for _ in range(4):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("variable byte integer longer than 4 bytes")


def parse_publish(
    command: int, data: bytes | bytearray, v5: bool
) -> tuple[str, int, int, bytes, tuple[int, ...]] | None:
    """
    Topic, QoS, packet id, payload and subscription identifiers of a PUBLISH
    (MQTT 3.1.1 §3.3, MQTT 5.0 §3.3), or ``None`` for what paho must handle
    itself: QoS 2, a topic alias or an empty topic, an unknown property,
    a topic that is not UTF-8, or a malformed packet.
    """
    qos = (command >> 1) & 0x03
    if qos > 1:
        return None
    try:
        end = 2 + int.from_bytes(data[0:2], "big")
        if end == 2 or len(data) < end:
            return None
        topic = data[2:end].decode("utf-8")
        pos, mid = end, 0
        if qos:
            mid, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        if v5 and data[pos] == 2 and data[pos + 1] == _SUBSCRIPTION_IDENTIFIER:
            # The usual MQTT 5 PUBLISH to a subscriber: one property, a
            # subscription identifier below 128 (one byte).
            value = data[pos + 2]
            if not value & 0x80:
                return topic, qos, mid, bytes(data[pos + 3 :]), (value,)
        identifiers: list[int] = []
        if v5:
            length, pos = _varint(data, pos)
            stop = pos + length
            while pos < stop:
                size = _PUBLISH_PROPERTIES.get(data[pos])
                if size is None:
                    return None
                if data[pos] == _SUBSCRIPTION_IDENTIFIER:
                    value, pos = _varint(data, pos + 1)
                    identifiers.append(value)
                    continue
                pos += 1
                if size > 0:
                    pos += size
                    continue
                for _ in range(2 if size == -4 else 1):  # a string, binary, or string pair
                    pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
            if pos != stop:
                return None
        if pos > len(data):
            return None
        return topic, qos, mid, bytes(data[pos:]), tuple(identifiers)
    except (UnicodeDecodeError, ValueError, IndexError):
        return None


def parse_puback(data: bytes | bytearray, v5: bool) -> int | None:
    """
    The packet id of a PUBACK that says "accepted, nothing more" (MQTT 3.1.1
    §3.4: two bytes; MQTT 5.0 §3.4.2.1: reason code 0x00 may be left out,
    and so may an empty property list), or ``None`` for what paho must
    decode itself: another reason code (a refusal among them), properties,
    or a malformed packet (shorter than its packet id, MQTT 5.0 §3.4.2).
    """
    size = len(data)
    if size < 2:
        return None
    if size == 2:
        return int.from_bytes(data, "big")
    if not v5 or data[2] != 0x00 or size > 4 or (size == 4 and data[3] != 0x00):
        return None
    return int.from_bytes(data[0:2], "big")


#: What paho hands ``on_publish`` for such a PUBACK; shared, and never changed.
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)
_PUBACK_PROPERTIES = Properties(PacketTypes.PUBACK)


class BufferedReads(paho.Client):
    """
    Mixed into paho's client: the socket is read by :meth:`read_available`,
    and a QoS 0 or 1 PUBLISH goes straight to :attr:`publish_handler` (when
    set), without paho's ``MQTTMessage``, ``Properties`` objects and topic
    filter matching; a QoS 1 PUBLISH is acknowledged after the handler ran,
    as paho does (MQTT 3.1.1 §4.3.2).
    """

    publish_handler: PublishHandler | None = None
    #: The QoS 1 publishes of the gateway (:mod:`ocppgw.mqtt.window`); their
    #: PUBACKs are its, whatever their reason code.
    window: PublishWindow | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        handler = self.publish_handler
        packet = self._in_packet
        fields = (
            None
            if handler is None
            else parse_publish(packet["command"], packet["packet"], self._protocol == paho.MQTTv5)
        )
        if fields is None or handler is None:
            rc: MQTTErrorCode = super()._handle_publish()
            return rc
        return self._publish_received(fields)

    def _publish_received(
        self, fields: tuple[str, int, int, bytes, tuple[int, ...]]
    ) -> MQTTErrorCode:
        topic, qos, mid, payload, identifiers = fields
        handler: Any = self.publish_handler
        handler(topic, payload, identifiers)
        if qos == 1 and not self._manual_ack:
            # paho's _send_puback without its debug line and struct.pack:
            # the same four bytes (MQTT 3.1.1 §3.4; MQTT 5.0 §3.4.2.1, reason
            # code 0x00 left out), queued the same way.
            sent: MQTTErrorCode = self._packet_queue(
                paho.PUBACK, bytes((paho.PUBACK, 2, mid >> 8, mid & 0xFF)), mid, 1
            )
            return sent
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        # paho decodes every PUBACK into a ReasonCode and a Properties object;
        # a plain "accepted" one (the packet identifier alone) is read here
        # (and one whole in the buffer before this, in _packet_read), and
        # anything else is decoded by paho.
        window = self.window
        data = self._in_packet["packet"]
        if cmd == "PUBACK" and len(data) < 2:
            return MQTTErrorCode.MQTT_ERR_PROTOCOL  # no packet id: malformed (§3.4.2)
        mid = parse_puback(data, self._protocol == paho.MQTTv5) if cmd == "PUBACK" else None
        if mid is not None and window is not None and window.owns(mid):
            window.acknowledged(mid)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        if mid is None and cmd == "PUBACK" and window is not None:
            decoded = _packet.decode_puback(self._in_packet["command"], data, self._protocol)
            if window.owns(decoded.mid):
                reason = decoded.reason
                window.acknowledged(decoded.mid, str(reason) if reason.is_failure else None)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        if mid is None:
            rc: MQTTErrorCode = super()._handle_pubackcomp(cmd)
            return rc
        with self._out_message_mutex:
            if mid in self._out_messages:
                done: MQTTErrorCode = self._do_on_publish(mid, _PUBACK_SUCCESS, _PUBACK_PROPERTIES)
                return done
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    _rbuf: bytes = b""
    _rpos: int = 0

    def _packet_read(self) -> MQTTErrorCode:
        # paho reads a packet as a byte for its type, a byte at a time for
        # its remaining length, then the rest (each a _sock_recv).  A whole
        # packet in the buffer is taken in one step and handled as paho
        # would; a packet paho has begun, one not all here, or a malformed
        # length is left to paho's own reading.
        packet = self._in_packet
        buf, pos = self._rbuf, self._rpos
        end = len(buf)
        if packet["command"]:
            return super()._packet_read()  # paho's own read of a packet is under way
        if pos < end and not buf[pos] & 0xF0:
            # Packet type 0 is reserved (MQTT 3.1.1 §2.2.1, 5.0 §2.1.2): paho
            # refuses it too.  Refused here, before paho could begin reading
            # it: its "packet under way" state is a non-zero command byte.
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        if pos + 2 > end:
            return super()._packet_read()
        size, shift, i = 0, 0, pos + 1
        while True:
            if i >= end or shift > 21:  # §2.2.3: at most four length bytes
                return super()._packet_read()
            byte = buf[i]
            i += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if i + size > end:
            return super()._packet_read()
        first = buf[pos]
        if first == _PUBACK_FIRST:
            # The broker's PUBACK of one of the window's publishes, handled
            # without the packet dictionary paho's handlers read.
            window = self.window
            mid = parse_puback(buf[i : i + size], self._protocol == paho.MQTTv5)
            if mid is not None and window is not None and window.owns(mid):
                self._rpos = i + size
                window.acknowledged(mid)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        elif first & 0xF0 == _PUBLISH_KIND and self.publish_handler is not None:
            fields = parse_publish(first, buf[i : i + size], self._protocol == paho.MQTTv5)
            if fields is not None:
                self._rpos = i + size
                return self._publish_received(fields)
        self._rpos = i + size
        packet["command"] = buf[pos]
        packet["have_remaining"] = 1
        packet["remaining_length"] = size
        packet["packet"] = bytearray(buf[i : i + size])
        try:
            rc: MQTTErrorCode = self._packet_handle()
        except MalformedPacket:
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        return rc

    def _sock_recv(self, bufsize: int) -> bytes:
        # Serves paho's _packet_read from the buffer read_available filled;
        # an empty buffer is "nothing more for now", as a non-blocking socket says.
        start = self._rpos
        end = start + bufsize
        chunk = self._rbuf[start:end]
        if not chunk:
            raise BlockingIOError()
        self._rpos = start + len(chunk)
        return chunk

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()

    def drop(self) -> MQTTErrorCode:
        """
        End the connection now, as paho ends it on a protocol error: the
        socket is closed and ``on_disconnect`` called (the will stays armed).
        """
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_PROTOCOL)

    def read_available(self) -> MQTTErrorCode:
        """
        Read what the broker sent (in :data:`_READ_CHUNK` reads, at most
        :data:`_READ_TURN` this turn) and handle every whole packet in it.
        """
        sock: Any = self._sock
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        received: list[bytes] = []
        size = 0
        closed = False
        while size < _READ_TURN:
            try:
                data = sock.recv(_READ_CHUNK)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                self._call_socket_register_write()
                break
            except OSError:
                closed = True
                break
            if not data:
                closed = True
                break
            received.append(data)
            size += len(data)
            # TLS may hold decrypted bytes the kernel no longer signals.
            if len(data) < _READ_CHUNK and not (hasattr(sock, "pending") and sock.pending()):
                break
        if received:
            rest = self._rbuf[self._rpos :]
            self._rbuf = b"".join([rest, *received]) if rest else b"".join(received)
            self._rpos = 0
            self._last_bytes_received = paho.time_func()
        try:
            while self._sock is not None and self._rpos < len(self._rbuf):
                rc = self._packet_read()
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                    break
                if rc > 0:
                    return self._loop_rc_handle(rc)
        except Exception:
            _log.failure("reading from the MQTT broker failed; dropping the connection")
            return self.drop()
        if self._rpos:
            self._rbuf, self._rpos = self._rbuf[self._rpos :], 0
        if closed and self._sock is not None:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        return MQTTErrorCode.MQTT_ERR_SUCCESS
