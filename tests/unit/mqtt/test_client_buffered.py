"""MQTTClient.buffered(): publishes waiting in the client, through its public method."""

from __future__ import annotations

from twisted.internet.task import Clock

from ocppgw.config import parse
from ocppgw.mqtt.client import MQTTClient


def test_buffered_counts_publishes_held_while_disconnected() -> None:
    """QoS 1 publishes made before the broker is connected are counted as buffered."""
    config = parse("[listener:ws]\nendpoint = tcp:0\n[mqtt]\nbroker = mqtt://127.0.0.1:1\n").mqtt
    client = MQTTClient(config, Clock())
    assert client.buffered() == 0
    client.publish("t/a", b"1", qos=1)
    client.publish("t/b", b"2", qos=1)
    assert (client.buffered(), client.unacknowledged()) == (2, 2)
