"""
The speed-up paho_internals: a failure anywhere in its read path drops the
broker connection (#18, path 7).  Run only where the speed-up fits; the public
path's are in tests/unit/mqtt/test_driver.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from twisted.python.failure import Failure

from ocppgw.config import parse
from ocppgw.mqtt.driver import Descriptor
from ocppgw.mqtt.speedup import fits
from ocppgw.mqtt.speedup.driver import FastDriver, PahoClient
from ocppgw.mqtt.speedup.reads import parse_puback
from tests.clocks import Clocks
from tests.unit.mqtt.reactors import ThreadedReactor
from tests.unit.mqtt.speedup.test_reads import connected

pytestmark = pytest.mark.skipif(not fits(), reason="paho lacks what the speed-up uses")


@pytest.fixture(params=[paho.MQTTv311, paho.MQTTv5], ids=["3.1.1", "5"])
def wired(request: Any) -> Iterator[tuple[PahoClient, socket.socket, list[Any]]]:
    """A connected paho client on one end of a socketpair, recording its disconnects."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = connected(ours, request.param)
    events: list[Any] = []
    client.on_disconnect = lambda c, u, f, r, p: events.append("disconnected")
    yield client, theirs, events
    theirs.close()
    ours.close()


@pytest.mark.parametrize("body", [b"", b"\x01"], ids=["length 0", "length 1"])
def test_puback_shorter_than_its_packet_id_drops_the_connection(wired: Any, body: bytes) -> None:
    """A PUBACK with remaining length below 2 is malformed: the connection ends, nothing raises."""
    client, theirs, events = wired
    theirs.sendall(bytes((0x40, len(body))) + body)
    client.read_available()
    assert events == ["disconnected"]
    assert client._sock is None


@pytest.mark.parametrize("body", [b"", b"\x01"])
def test_parse_puback_refuses_a_short_puback(body: bytes) -> None:
    """parse_puback leaves a PUBACK without a whole packet id to paho (malformed), never raises."""
    assert parse_puback(body, True) is None
    assert parse_puback(body, False) is None


def test_v5_puback_without_reason_code_is_success() -> None:
    """MQTT 5.0 §3.4.2.1: remaining length 2 means reason code 0x00, success."""
    assert parse_puback(b"\x12\x34", True) == 0x1234


def test_an_exception_while_handling_a_packet_drops_the_connection(wired: Any) -> None:
    """An exception raised while a packet is handled ends the connection instead of escaping."""
    client, theirs, events = wired

    class Broken:
        def owns(self, mid: int) -> bool:
            raise RuntimeError("bug")

    client.window = Broken()  # type: ignore[assignment]
    theirs.sendall(b"\x40\x02\x00\x07")
    client.read_available()
    assert events == ["disconnected"]
    assert client._sock is None


def test_descriptor_lost_drops_the_connection(wired: Any, clocks: Clocks) -> None:
    """When the reactor gives up on the socket (connectionLost), paho's connection ends too."""
    client, _, events = wired
    config = parse("[listener:ws]\nendpoint = tcp:0\n").mqtt
    reactor = clocks.add(ThreadedReactor())
    driver = FastDriver(config, reactor, lambda t, p, i: None, lambda why: None)
    driver.paho = client
    descriptor = Descriptor(client._sock, driver)
    descriptor.connectionLost(Failure(RuntimeError("doRead raised")))
    assert events == ["disconnected"]
    assert client._sock is None
