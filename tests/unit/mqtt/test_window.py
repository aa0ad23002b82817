"""
The windows of QoS 1 and 2 publishes: what the public one (PahoWindow, on a
real paho client through its public publish) and the speed-up's share, on
both; the public one's own; and what MQTTClient.publish refuses, on both
paths.  The speed-up window's own are in tests/unit/mqtt/speedup/test_window.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ocppgw.config import parse
from ocppgw.mqtt.client import MQTTClient
from ocppgw.mqtt.speedup import fits
from ocppgw.mqtt.window import PahoWindow, PublishError, Window
from tests.clocks import Clocks
from tests.unit.mqtt.reactors import DRIVERS, driver_class


class Recorded:
    """
    A real paho client, not connected (so it keeps each QoS 1 or 2 message
    for its next connection, as paho does), whose publishes are recorded.
    """

    def __init__(self) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="t")
        #: (topic, payload, qos, retain, packet id) of each publish, in order
        self.sent: list[tuple[str, bytes, int, bool, int]] = []
        real = self.client.publish

        def publish(topic: str, payload: Any = None, qos: int = 0, retain: bool = False) -> Any:
            info = real(topic, payload, qos, retain)
            self.sent.append((topic, payload, qos, retain, info.mid))
            return info

        self.client.publish = publish  # type: ignore[method-assign]

    def payloads(self) -> list[bytes]:
        return [payload for _, payload, _, _, _ in self.sent]

    def mid_of(self, n: int) -> int:
        return self.sent[n][4]


def window(limit: int = 10, buffer: int = 100) -> tuple[PahoWindow, Recorded]:
    paho_client = Recorded()
    return PahoWindow(paho_client.client, limit, buffer), paho_client


def _speedup(limit: int = 10, buffer: int = 100) -> tuple[Window[Any], Any]:
    from tests.unit.mqtt.speedup.test_window import window as speedup_window

    return speedup_window(limit, buffer)


#: The shared behaviours run on the public window and on the speed-up's.
WINDOWS = [
    pytest.param(window, id="public"),
    pytest.param(
        _speedup,
        id="speedup",
        marks=pytest.mark.skipif(not fits(), reason="paho lacks what the speed-up uses"),
    ),
]
Make = Callable[..., tuple[Window[Any], Any]]


@pytest.mark.parametrize("make", WINDOWS)
def test_nothing_is_handed_over_before_a_connection(make: Make) -> None:
    """Publishes made before the CONNACK wait, counted as buffered, and go out on it."""
    w, wire = make()
    w.publish("t", b"1", 1, False)
    w.publish("t", b"2", 1, False)
    assert wire.payloads() == [] and (w.buffered(), w.unacknowledged()) == (2, 2)
    w.opened()
    assert wire.payloads() == [b"1", b"2"]
    assert (w.buffered(), w.unacknowledged()) == (0, 2)


@pytest.mark.parametrize("make", WINDOWS)
def test_the_window_holds_back_the_rest_until_an_acknowledgement(make: Make) -> None:
    """With a limit of 2, the third publish waits until one is acknowledged, then goes, in order."""
    w, wire = make(limit=2)
    w.opened()
    done: list[int] = []
    for n in range(3):
        w.publish("t", bytes([n]), 1, False).addCallback(lambda _, n=n: done.append(n))
    assert len(wire.payloads()) == 2 and w.buffered() == 1
    w.acknowledged(wire.mid_of(1))
    assert done == [1]
    assert wire.payloads() == [b"\x00", b"\x01", b"\x02"]


@pytest.mark.parametrize("make", WINDOWS)
def test_receive_maximum_narrows_the_window(make: Make) -> None:
    """The broker's Receive Maximum (MQTT 5.0 §3.3.4) caps what is in flight."""
    w, wire = make(limit=10)
    w.opened(receive_maximum=1)
    w.publish("t", b"1", 1, False)
    w.publish("t", b"2", 1, False)
    assert wire.payloads() == [b"1"]


@pytest.mark.parametrize("make", WINDOWS)
def test_a_full_buffer_refuses_with_a_clear_error(make: Make) -> None:
    """max_buffer messages waiting (handed over or not): the next one is refused, naming it."""
    w, _ = make(limit=1, buffer=2)
    w.opened()
    w.publish("t", b"1", 1, False)
    w.publish("t", b"2", 1, False)
    with pytest.raises(PublishError, match=r"MQTT buffer full \(2 messages"):
        w.publish("t", b"3", 1, False)


@pytest.mark.parametrize("make", WINDOWS)
def test_a_refusal_fails_the_publish_and_stopping_fails_the_rest(make: Make) -> None:
    """A refusing acknowledgement fails its publish with the reason; fail_all fails the rest."""
    w, wire = make(limit=1)
    w.opened()
    errors: list[str] = []
    for _ in range(3):
        w.publish("t", b"x", 1, False).addErrback(lambda f: errors.append(str(f.value)))
    w.acknowledged(wire.mid_of(0), "Not authorized")
    w.fail_all("stopped")
    assert errors == ["broker refused the message: Not authorized", "stopped", "stopped"]
    assert w.unacknowledged() == 0


def interrupted(w: Window[Any]) -> None:
    """Three publishes through a window of 2, the connection lost, a fourth: all four wait."""
    w.opened()
    for n in (b"1", b"2", b"3"):
        w.publish("t", n, 1, False)
    w.closed()
    w.publish("t", b"4", 1, False)
    assert (w.buffered(), w.unacknowledged()) == (4, 4)


def test_after_a_reconnect_what_waits_goes_after_what_paho_holds() -> None:
    """
    The public window, disconnected: new publishes wait; what paho holds stays
    there (paho sends it again itself, tests/unit/mqtt/test_driver.py).
    """
    w, recorded = window(limit=2)
    interrupted(w)
    w.opened()
    assert recorded.payloads() == [b"1", b"2"]  # not handed over twice
    w.acknowledged(recorded.mid_of(0))
    w.acknowledged(recorded.mid_of(1))
    assert recorded.payloads() == [b"1", b"2", b"3", b"4"]


def test_a_packet_id_paho_still_uses_is_passed_over() -> None:
    """paho refuses a packet id it still uses (its counter wrapped): the next one is taken."""
    answers = [MQTTErrorCode.MQTT_ERR_QUEUE_SIZE, MQTTErrorCode.MQTT_ERR_SUCCESS]
    mids = iter([7, 8])

    class Wrapped:
        def publish(self, *args: Any) -> paho.MQTTMessageInfo:
            info = paho.MQTTMessageInfo(next(mids))
            info.rc = answers.pop(0)
            return info

    w = PahoWindow(Wrapped(), 10, 100)  # type: ignore[arg-type]
    w.opened()
    w.publish("t", b"x", 1, False)
    assert not w.owns(7) and w.owns(8)


def _client(clocks: Clocks, kind: str, extra: str = "") -> MQTTClient:
    config = parse(
        f"[listener:ws]\nendpoint = tcp:0\n[mqtt]\nbroker = mqtt://127.0.0.1:1\n{extra}"
    ).mqtt
    return MQTTClient(config, clocks.new(), driver=driver_class(kind))


@pytest.mark.parametrize("kind", DRIVERS)
@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("", "Invalid topic"),
        ("a/+/b", "wildcards"),
        ("a/#", "wildcards"),
        ("x" * 65536, "too long"),
    ],
)
def test_publish_refuses_a_topic_paho_would(
    topic: str, why: str, kind: str, clocks: Clocks
) -> None:
    """MQTTClient.publish at QoS 1 refuses what paho's publish refuses, with its words."""
    client = _client(clocks, kind)
    with pytest.raises(ValueError, match=why):
        client.publish(topic, b"x", qos=1)
    with pytest.raises(ValueError, match=why):
        paho.Client(CallbackAPIVersion.VERSION2).publish(topic, b"x", qos=1)
    assert client.unacknowledged() == 0


@pytest.mark.parametrize("kind", DRIVERS)
def test_publish_refuses_a_packet_over_the_largest_remaining_length(
    kind: str, clocks: Clocks
) -> None:
    """A payload that fits alone but not with its topic is refused before it is queued."""

    class Huge(bytes):
        def __len__(self) -> int:
            return 268435455 - 3  # fits alone (§2.2.3), not with topic and packet id

    client = _client(clocks, kind)
    with pytest.raises(ValueError, match="Packet too large"):
        client.publish("t/x", Huge(), qos=1)
    assert client.unacknowledged() == 0


@pytest.mark.parametrize("kind", DRIVERS)
@pytest.mark.parametrize("qos", [1, 2])
def test_a_full_buffer_fails_the_publish(kind: str, qos: int, clocks: Clocks) -> None:
    """[mqtt] max_buffer publishes waiting: the next one fails with "MQTT buffer full"."""
    client = _client(clocks, kind, "max_buffer = 2\n")
    client.publish("t/a", b"1", qos=qos)
    client.publish("t/b", b"2", qos=qos)
    errors: list[str] = []
    client.publish("t/c", b"3", qos=qos).addErrback(lambda f: errors.append(str(f.value)))
    assert errors == ["MQTT buffer full (2 messages waiting for the broker)"]
    assert (client.buffered(), client.unacknowledged()) == (2, 2)


@pytest.mark.parametrize("kind", DRIVERS)
def test_qos0_fails_while_disconnected(kind: str, clocks: Clocks) -> None:
    """A QoS 0 message is not kept while the broker is away: it fails at once."""
    errors: list[str] = []
    client = _client(clocks, kind)
    client.publish("t", b"0", qos=0).addErrback(lambda f: errors.append(str(f.value)))
    assert errors == ["MQTT broker not connected"]
