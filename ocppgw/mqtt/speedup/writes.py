# -*- test-case-name: tests.unit.mqtt.speedup.test_writes -*-
"""
Part of the speed-up ``paho_internals``: paho's write path, one ``send``
for everything queued in a reactor turn.

paho sends each queued packet with its own ``send``: a round trip through
the gateway queues a PUBLISH (the CALL going up), a PUBACK (for the
CALLRESULT coming down) and, with many charge points, dozens of them per
reactor turn.  :meth:`JoinedWrites._packet_write` joins the packets at the
head of the queue (up to :data:`_WRITE_CHUNK` bytes) into one ``send`` and
then accounts the bytes written to each packet in order, exactly as paho
does one by one; a packet only partly written stays at the head, as in
paho.  Packets whose completion paho acts on (a QoS 0 PUBLISH, whose
``on_publish`` fires on write, and DISCONNECT, after which paho closes the
socket) are left to paho's own loop, which writes them one by one.

Before that, :meth:`JoinedWrites._packet_queue` keeps packets of the first
kind queued in a row (PUBACKs, QoS 1 PUBLISHes, SUBSCRIBE, PINGREQ...) as
one stretch of bytes, queued as one packet when a packet of the other kind
is queued or the socket is written: one dictionary and one accounting for
the run, where paho made them per packet.

The bytes and their order on the wire are unchanged (MQTT 3.1.1 §4.6,
MQTT 5.0 §4.6: PUBLISH and PUBACK packets go out in the order queued); only
the number of system calls changes.

It overrides paho's private ``_packet_queue``, ``_packet_write`` and
``_sock_close``, appends to its ``_out_packet`` queue, and calls
``_sock_send``, ``_call_socket_register_write`` and ``_easy_log``.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

#: At most this much is joined into one ``send``.
_WRITE_CHUNK = 256 * 1024

_DISCONNECT = 0xE0
_PUBLISH = 0x30
_PUBACK = 0x40


def _plain(packet: Any) -> bool:
    """A packet whose completion needs no more than its bytes being written."""
    command = packet["command"] & 0xF0
    return command != _DISCONNECT and not (command == _PUBLISH and packet["qos"] == 0)


class JoinedWrites(paho.Client):
    """Mixed into paho's client: queued packets go out joined, one ``send`` per chunk."""

    def _packet_queue(
        self, command: int, packet: bytes | bytearray, mid: int, qos: int, info: Any = None
    ) -> MQTTErrorCode:
        # paho's, for a client whose writes the reactor drives: the packet
        # joins the queue and the socket is registered for writing once per
        # turn.  paho's also pokes the socketpair of its threaded loop (never
        # made here) and, with no one to register the socket with, writes at
        # once: that case is still paho's.
        if self._on_socket_register_write is None:
            rc: MQTTErrorCode = super()._packet_queue(command, packet, mid, qos, info)
            return rc
        kind = command & 0xF0
        if kind != _DISCONNECT and not (kind == _PUBLISH and qos == 0):
            # Packets whose completion is only their bytes written (PUBACKs,
            # the window's PUBLISHes, SUBSCRIBE, PINGREQ...) queued in a row
            # are one stretch of bytes, queued as one packet when another
            # kind is queued or the socket is written: everything leaves in
            # the order it was queued (MQTT 3.1.1 §4.6, 5.0 §4.6).
            run = self._run
            if run is None:
                run = self._run = bytearray()
            run += packet
            if not self._registered_write:
                self._call_socket_register_write()
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        self._queue_run()
        self._out_packet.append(
            {
                "command": command,
                "mid": mid,
                "qos": qos,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": info,
            }
        )
        if not self._registered_write:
            self._call_socket_register_write()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    #: Plain packets queued since the last other one (see _packet_queue).
    _run: bytearray | None = None

    def _queue_run(self) -> None:
        run = self._run
        if run:
            data = bytes(run)
            run.clear()
            self._out_packet.append(
                {
                    # Stands for the run: a type nothing is done for once written.
                    "command": _PUBACK,
                    "mid": 0,
                    "qos": 1,
                    "pos": 0,
                    "to_process": len(data),
                    "packet": data,
                    "info": None,
                }
            )

    def want_write(self) -> bool:
        return bool(self._run) or super().want_write()

    def _sock_close(self) -> None:
        # As paho forgets its queue on a reconnect: the broker sends again
        # what was not acknowledged on the connection that is gone.
        if self._run:
            self._run.clear()
        super()._sock_close()

    def _packet_write(self) -> MQTTErrorCode:
        self._queue_run()
        out = self._out_packet
        while out:
            batch: list[Any] = []
            size = 0
            for packet in out:
                if size >= _WRITE_CHUNK or not _plain(packet):
                    break
                batch.append(packet)
                size += packet["to_process"]
            if len(batch) < 2:
                # One packet, or one paho must complete itself: paho's own loop.
                rc: MQTTErrorCode = super()._packet_write()
                return rc
            data = b"".join(p["packet"][p["pos"] :] if p["pos"] else p["packet"] for p in batch)
            try:
                written = self._sock_send(data)
            except (AttributeError, ValueError):
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                self._easy_log(paho.MQTT_LOG_ERR, "failed to send on socket: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if written <= 0:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            for packet in batch:
                if written <= 0:
                    break
                done = min(written, packet["to_process"])
                packet["to_process"] -= done
                packet["pos"] += done
                written -= done
                if packet["to_process"]:
                    break  # only partly written: it stays at the head
                out.popleft()
        return MQTTErrorCode.MQTT_ERR_SUCCESS
