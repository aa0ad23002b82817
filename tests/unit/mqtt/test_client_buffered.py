"""MQTTClient.buffered(): publishes waiting in the client, by its public method (both paths)."""

from __future__ import annotations

import pytest

from ocppgw.config import parse
from ocppgw.mqtt.client import MQTTClient
from tests.clocks import Clocks
from tests.unit.mqtt.reactors import DRIVERS, driver_class


@pytest.mark.parametrize("kind", DRIVERS)
def test_buffered_counts_publishes_held_while_disconnected(kind: str, clocks: Clocks) -> None:
    """QoS 1 publishes made before the broker is connected are counted as buffered."""
    config = parse("[listener:ws]\nendpoint = tcp:0\n[mqtt]\nbroker = mqtt://127.0.0.1:1\n").mqtt
    client = MQTTClient(config, clocks.new(), driver=driver_class(kind))
    assert client.buffered() == 0
    client.publish("t/a", b"1", qos=1)
    client.publish("t/b", b"2", qos=1)
    assert (client.buffered(), client.unacknowledged()) == (2, 2)
