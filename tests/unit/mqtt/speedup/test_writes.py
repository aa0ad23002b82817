"""
The speed-up paho_internals, its write path (ocppgw.mqtt.speedup.writes): what
was queued in one turn goes out in one send.  Run only where the speed-up fits.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from ocppgw.mqtt.speedup import fits
from ocppgw.mqtt.speedup.driver import PahoClient
from tests.unit.mqtt.speedup.test_reads import CountingSocket, connected

pytestmark = pytest.mark.skipif(not fits(), reason="paho lacks what the speed-up uses")


@pytest.fixture
def wired() -> Iterator[tuple[PahoClient, CountingSocket, socket.socket, list[Any]]]:
    """A connected paho client on one end of a socketpair, writes left to the caller."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(1)
    counting = CountingSocket(ours)
    client = connected(counting)
    published: list[Any] = []
    client.on_publish = lambda c, u, mid, reason, props: published.append(mid)
    # An event loop is registered: packets wait in the queue for loop_write.
    client.on_socket_register_write = lambda c, u, s: None
    yield client, counting, theirs, published
    theirs.close()
    ours.close()


def _puback(mid: int) -> bytes:
    return b"\x40\x02" + mid.to_bytes(2, "big")


def _receive(theirs: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += theirs.recv(size - len(data))
    return data


def test_queued_packets_go_out_in_one_send(wired: Any) -> None:
    """Three PUBACKs and a QoS 1 PUBLISH queued together leave in one send, in order."""
    client, counting, theirs, _ = wired
    for mid in (1, 2, 3):
        client._send_puback(mid)
    client.publish("up", b"payload", qos=1)
    client.loop_write()
    assert counting.sends == 1
    wire = _puback(1) + _puback(2) + _puback(3)
    assert _receive(theirs, len(wire)) == wire
    assert theirs.recv(64)[:1] == b"\x32"  # the PUBLISH, QoS 1
    assert not client.want_write()


def test_partial_send_keeps_the_rest_in_order(wired: Any) -> None:
    """A send that takes only part of the batch leaves the rest, byte-exact, for the next write."""
    client, counting, theirs, _ = wired
    for mid in range(1, 6):
        client._send_puback(mid)
    counting.limit = 7  # one PUBACK and three bytes of the next
    client.loop_write()
    assert client.want_write()
    counting.limit = None
    client.loop_write()
    wire = b"".join(_puback(mid) for mid in range(1, 6))
    assert _receive(theirs, len(wire)) == wire
    assert not client.want_write()


def test_qos0_publish_is_completed_by_paho(wired: Any) -> None:
    """A QoS 0 PUBLISH in the queue is still written and reported published, as paho does."""
    client, _, theirs, published = wired
    client._send_puback(9)
    info = client.publish("up", b"zero", qos=0)
    client._send_puback(10)
    client.loop_write()
    assert published == [info.mid]
    assert info.is_published()
    head = _receive(theirs, 4)
    assert head == _puback(9)
    assert not client.want_write()


def test_queueing_registers_the_socket_once_and_writes_nothing(wired: Any) -> None:
    """Packets queued in a turn register the socket once; none is sent before loop_write."""
    client, counting, theirs, _ = wired
    registered: list[object] = []
    client.on_socket_register_write = lambda c, u, s: registered.append(s)
    for mid in (1, 2, 3):
        client._send_puback(mid)
    assert (len(registered), counting.sends) == (1, 0)
    client.loop_write()
    assert _receive(theirs, 12) == _puback(1) + _puback(2) + _puback(3)
    client._send_puback(4)
    assert len(registered) == 2  # the socket was unregistered once it was all written


def test_pubacks_in_a_row_keep_their_place_among_other_packets(wired: Any) -> None:
    """
    Packets held as one stretch still leave in the order everything was
    queued: two PUBACKs, a QoS 1 PUBLISH, a PUBACK, a QoS 0 PUBLISH (paho
    completes it), then DISCONNECT last; and while only PUBACKs wait, the
    client says it wants to write.
    """
    client, counting, theirs, _ = wired
    client._send_puback(1)
    client._send_puback(2)
    assert client.want_write() and counting.sends == 0
    client.publish("up", b"p", qos=1)
    client._send_puback(3)
    zero = client.publish("z", b"0", qos=0)
    client.disconnect()
    client.loop_write()
    wire = _puback(1) + _puback(2)
    assert _receive(theirs, len(wire)) == wire
    publish = theirs.recv(1)
    assert publish == b"\x32"
    rest = _receive(theirs, 1 + 2 + 2 + 2 + 1)  # length, topic "up", packet id, payload
    assert rest[-1:] == b"p"
    assert _receive(theirs, 4) == _puback(3)
    assert _receive(theirs, 6) == b"\x30\x04\x00\x01z0"  # the QoS 0 PUBLISH
    assert _receive(theirs, 2) == b"\xe0\x00"  # DISCONNECT (MQTT 3.1.1 §3.14)
    assert zero.is_published()


def test_pubacks_of_a_closed_connection_are_dropped(wired: Any) -> None:
    """PUBACKs not written when the socket closes are forgotten, as paho forgets its queue."""
    client, _, _, _ = wired
    client._send_puback(1)
    client._sock_close()
    assert not client.want_write()
