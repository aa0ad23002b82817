"""Admission control: the handshake token bucket on a task.Clock; the 503 over it."""

from __future__ import annotations

import dataclasses
import heapq
import random

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ocppgw.config import ListenerConfig
from ocppgw.connection import OCPPServerProtocol
from ocppgw.listener.factory import OCPPServerFactory
from ocppgw.listener.throttle import Busy, HandshakeRate, handshake_rate
from tests.clocks import Clocks

LISTENER = ListenerConfig("ws", "tcp:0", "/ocpp", 0, None, 65536, 10.0)


def test_burst_is_admitted_at_once_then_503(clocks: Clocks) -> None:
    """max_handshake_burst handshakes at one instant are admitted; the next one is not."""
    bucket = HandshakeRate(clocks.new(), 10, 5, lambda: 0.0)
    assert [bucket.admit() for _ in range(5)] == [None] * 5
    # Back in a second plus the 0.1 s the bucket needs for a token.
    assert bucket.admit() == pytest.approx(1.1)


@pytest.mark.parametrize("gap", [0.1, 0.25, 1.0])
def test_never_refused_at_or_under_the_rate(clocks: Clocks, gap: float) -> None:
    """Handshakes at least 1/rate apart (rate 10/s, burst 1) are all admitted, for minutes."""
    clock = clocks.new()
    bucket = HandshakeRate(clock, 10, 1, lambda: 0.0)
    for _ in range(2000):
        assert bucket.admit() is None
        clock.advance(gap)


def test_bursts_within_the_bucket_at_the_rate_are_never_refused(clocks: Clocks) -> None:
    """Bursts of max_handshake_burst every burst/rate seconds (the rate on average) all pass."""
    clock = clocks.new()
    bucket = HandshakeRate(clock, 10, 5, lambda: 0.0)
    for _ in range(200):
        assert [bucket.admit() for _ in range(5)] == [None] * 5
        clock.advance(0.5)


def test_each_refusal_is_told_the_next_unpromised_token(clocks: Clocks) -> None:
    """
    Without jitter, the k-th refused handshake of a storm is told to come back
    a second plus the time the bucket needs to serve the k before it: 1 + k / rate.
    """
    bucket = HandshakeRate(clocks.new(), 10, 10, lambda: 0.0)
    assert all(bucket.admit() is None for _ in range(10))
    waits = [bucket.admit() for _ in range(30)]
    assert waits == pytest.approx([1 + (k + 1) / 10 for k in range(30)])


def test_return_is_jittered_by_up_to_a_tenth_at_most_a_second(clocks: Clocks) -> None:
    """The jitter adds up to a tenth of the wait, at most a second: 2 s of backlog, up to 0.2 s."""
    clock = clocks.new()
    low = HandshakeRate(clock, 1, 1, lambda: 0.0)
    high = HandshakeRate(clock, 1, 1, lambda: 0.999)
    low.admit()
    high.admit()
    lows = [low.admit() for _ in range(100)]
    highs = [high.admit() for _ in range(100)]
    assert highs[1] - lows[1] == pytest.approx(0.999 * 0.2)
    assert (lows[-1], highs[-1]) == pytest.approx((101, 101.999))


def test_promises_lapse_with_time(clocks: Clocks) -> None:
    """Once the promised tokens' time has passed, a refusal waits for one token only."""
    clock = clocks.new()
    bucket = HandshakeRate(clock, 10, 1, lambda: 0.0)
    bucket.admit()
    assert [bucket.admit() for _ in range(50)][-1] == pytest.approx(6)
    clock.advance(60)
    assert bucket.admit() is None
    assert bucket.admit() == pytest.approx(1.1)


@pytest.mark.parametrize(("n", "rate", "burst"), [(200, 10, 10), (5000, 500, 500)])
def test_a_storm_that_honours_retry_after_drains_at_the_rate(
    clocks: Clocks, n: int, rate: int, burst: int
) -> None:
    """
    n charge points arriving within one second, each coming back when told
    (the 503's hold and Retry-After) until admitted, are all in within
    n / rate seconds plus 20%.
    """
    clock = clocks.new()
    chance = random.Random(23).random
    bucket = HandshakeRate(clock, rate, burst, chance)
    due = [(chance(), i) for i in range(n)]
    heapq.heapify(due)
    last = 0.0
    while due:
        at, i = heapq.heappop(due)
        clock.advance(at - clock.seconds())
        wait = bucket.admit()
        if wait is None:
            last = at
        else:
            heapq.heappush(due, (at + wait, i))
    assert last <= n / rate * 1.2


def test_rate_zero_is_no_admission_control() -> None:
    """max_handshake_rate = 0: no bucket at all."""
    assert handshake_rate(0, 10, 1, Clock()) is None


def test_workers_share_the_rate_and_burst(clocks: Clocks) -> None:
    """With workers = 2 each worker's bucket holds half the burst (and refills at half the rate)."""
    clock = clocks.new()
    bucket = handshake_rate(100, 40, 2, clock)
    assert bucket is not None
    assert [bucket.admit() for _ in range(21)][-1] is not None
    clock.advance(0.02)  # one token at 50/s
    assert bucket.admit() is None
    assert bucket.admit() is not None


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bad_bucket_is_refused(rate: float, burst: int) -> None:
    """A bucket needs a positive rate and a burst of at least one."""
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        HandshakeRate(Clock(), rate, burst)


def _factory(clock: Clock, counted: list[str]) -> OCPPServerFactory:
    """A listener admitting 1 handshake a second, burst 1, without jitter; throttles counted."""
    factory = OCPPServerFactory(
        dataclasses.replace(LISTENER, max_handshake_rate=1, max_handshake_burst=1),
        ("ocpp1.6",),
        None,
        lambda identity, version, connection: object(),
        lambda session: None,
        throttle=HandshakeRate(clock, 1, 1, lambda: 0.0),
    )
    factory.events = type("E", (), {"throttled": lambda self, name: counted.append(name)})()
    return factory


HEAD = (
    b"GET /ocpp/CP2 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
)


def test_connection_over_the_rate_gets_503_and_retry_after(clocks: Clocks) -> None:
    """
    Over the rate a connection gets no WebSocket protocol: once its request
    head is whole, 503 with Retry-After, then the close; counted once. The
    first connection (under the rate) gets the charge point protocol.
    """
    clock = clocks.new()
    counted: list[str] = []
    factory = _factory(clock, counted)
    address = IPv4Address("TCP", "127.0.0.1", 5555)
    first = factory.buildProtocol(address)
    assert isinstance(first, OCPPServerProtocol)
    busy = factory.buildProtocol(address)
    assert isinstance(busy, Busy)
    transport = StringTransport()
    busy.makeConnection(transport)
    busy.dataReceived(HEAD[:40])
    assert transport.value() == b""
    busy.dataReceived(HEAD[40:])
    response = transport.value()
    assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), response
    # Back in 1 s plus the second the bucket needs for a token: no fraction to hold.
    assert b"\r\nRetry-After: 2\r\n" in response
    assert transport.disconnecting
    busy.dataReceived(b"more")
    assert transport.value() == response
    busy.connectionLost(Failure(ConnectionDone()))
    assert counted == ["ws"]
    clock.advance(1)
    assert isinstance(factory.buildProtocol(address), OCPPServerProtocol)


def test_busy_holds_the_fraction_of_a_second(clocks: Clocks) -> None:
    """
    To come back in 2.5 s: the 503 waits 0.5 s after the request head and
    says Retry-After: 2, so that the client returns 2.5 s after it was refused.
    """
    clock = clocks.new()
    busy = Busy(2.5, clock, 10.0)
    transport = StringTransport()
    busy.makeConnection(transport)
    clock.advance(0.2)
    busy.dataReceived(HEAD)
    clock.advance(0.29)
    assert transport.value() == b""
    clock.advance(0.02)
    assert transport.value().startswith(b"HTTP/1.1 503 ")
    assert b"\r\nRetry-After: 2\r\n" in transport.value()
    assert transport.disconnecting
    busy.connectionLost(Failure(ConnectionDone()))


def test_busy_connection_without_a_request_is_dropped(clocks: Clocks) -> None:
    """A refused connection that sends no whole request head is aborted after handshake_timeout."""
    clock = clocks.new()
    busy = Busy(3, clock, 10.0)
    transport = StringTransport()
    busy.makeConnection(transport)
    busy.dataReceived(b"GET / HTTP/1.1\r\n")
    clock.advance(9.9)
    assert not transport.disconnected
    clock.advance(0.2)
    assert transport.disconnected
    assert transport.value() == b""
    busy.connectionLost(Failure(ConnectionDone()))


def test_busy_connection_lost_early_leaves_no_timer(clocks: Clocks) -> None:
    """A refused connection that goes before its request leaves no timer behind."""
    clock = clocks.new()
    busy = Busy(3, clock, 10.0)
    busy.makeConnection(StringTransport())
    busy.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []
