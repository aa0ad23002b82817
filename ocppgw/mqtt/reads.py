# -*- test-case-name: tests.unit.mqtt.test_client_read -*-
"""
paho's read path, without its per-byte system calls.

paho reads a packet's fixed header one byte per ``recv`` and handles one
packet per ``loop_read``: four system calls per PUBACK, and one reactor turn
per packet.  :meth:`BufferedReads.read_available` reads the socket in large
chunks into a buffer, and paho's ``_sock_recv`` serves its small reads from
it, so every packet that arrived is handled in the same reactor turn, with
one ``recv`` for all of them.  paho still parses and handles each packet
(MQTT 3.1.1 §2.2.3, MQTT 5.0 §2.1.4: the remaining length is up to four
bytes); only where its bytes come from changes.
"""

from __future__ import annotations

import ssl
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

#: How much one read of the broker's socket asks for.
_READ_CHUNK = 256 * 1024
#: At most this much is read from the broker in one reactor turn, so that
#: charge points' frames are not starved by a flood of downstream messages.
_READ_TURN = 4 * 1024 * 1024


class BufferedReads(paho.Client):
    """Mixed into paho's client: the socket is read by :meth:`read_available`."""

    _rbuf: bytes = b""
    _rpos: int = 0

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
        while self._sock is not None and self._rpos < len(self._rbuf):
            rc = self._packet_read()
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
            if rc > 0:
                return self._loop_rc_handle(rc)
        if self._rpos:
            self._rbuf, self._rpos = self._rbuf[self._rpos :], 0
        if closed and self._sock is not None:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        return MQTTErrorCode.MQTT_ERR_SUCCESS
