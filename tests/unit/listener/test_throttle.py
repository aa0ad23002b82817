"""Admission control: the handshake token bucket on a task.Clock, and its 503 in the upgrade."""

from __future__ import annotations

import dataclasses
import heapq
import math
import random

import pytest
from twisted.internet.task import Clock

from ocppgw.config import ListenerConfig
from ocppgw.listener import Refused
from ocppgw.listener.factory import OCPPServerFactory
from ocppgw.listener.proxy import Source
from ocppgw.listener.throttle import HandshakeRate, handshake_rate
from tests.clocks import Clocks

LISTENER = ListenerConfig("ws", "tcp:0", "/ocpp", 0, None, 65536, 10.0)


def test_burst_is_admitted_at_once_then_503(clocks: Clocks) -> None:
    """max_handshake_burst handshakes at one instant are admitted; the next one is not."""
    bucket = HandshakeRate(clocks.new(), 10, 5, lambda: 0.0)
    assert [bucket.admit() for _ in range(5)] == [None] * 5
    assert bucket.admit() == 1


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
    when the bucket will have served the k before it: ceil(k / rate) seconds.
    """
    bucket = HandshakeRate(clocks.new(), 10, 10, lambda: 0.0)
    assert all(bucket.admit() is None for _ in range(10))
    waits = [bucket.admit() for _ in range(30)]
    assert waits == [math.ceil((k + 1) / 10 - 1e-9) for k in range(30)]


def test_retry_after_is_jittered_by_up_to_a_tenth_or_a_second(clocks: Clocks) -> None:
    """The spread adds up to max(1 s, a tenth of the wait): 100 s of backlog gives up to 110 s."""
    clock = clocks.new()
    low = HandshakeRate(clock, 1, 1, lambda: 0.0)
    high = HandshakeRate(clock, 1, 1, lambda: 0.999)
    low.admit()
    high.admit()
    lows = [low.admit() for _ in range(100)]
    highs = [high.admit() for _ in range(100)]
    assert (lows[0], highs[0]) == (1, 2)
    assert (lows[-1], highs[-1]) == (100, 110)


def test_promises_lapse_with_time(clocks: Clocks) -> None:
    """Once the promised tokens' time has passed, a refusal waits for one token only."""
    clock = clocks.new()
    bucket = HandshakeRate(clock, 10, 1, lambda: 0.0)
    bucket.admit()
    assert [bucket.admit() for _ in range(50)][-1] == 5
    clock.advance(60)
    assert bucket.admit() is None
    assert bucket.admit() == 1


@pytest.mark.parametrize(("n", "rate", "burst"), [(200, 10, 10), (5000, 500, 500)])
def test_a_storm_that_honours_retry_after_drains_at_the_rate(
    clocks: Clocks, n: int, rate: int, burst: int
) -> None:
    """
    n charge points arriving within one second, each coming back after its
    Retry-After until admitted, are all in within n / rate seconds plus 20%.
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


def test_upgrade_over_the_rate_gets_503_before_anything_else(clocks: Clocks) -> None:
    """
    Over the rate, the listener answers 503 with the Retry-After header and
    counts it, before the path is looked at (a wrong path gets 503, not 404);
    under it, the handshake is decided as usual.
    """
    clock = clocks.new()
    factory = OCPPServerFactory(
        dataclasses.replace(LISTENER, max_handshake_rate=1, max_handshake_burst=1),
        ("ocpp1.6",),
        None,
        lambda identity, version, connection: object(),
        lambda session: None,
        throttle=HandshakeRate(clock, 1, 1, lambda: 0.0),
    )
    counted: list[str] = []
    factory.events = type("E", (), {"throttled": lambda self, name: counted.append(name)})()
    source = Source("192.0.2.1")
    admitted = factory.negotiate(source, "/ocpp/CP1", ["ocpp1.6"], {}, None)
    assert not isinstance(admitted, Refused)
    with pytest.raises(Refused) as refused:
        factory.negotiate(source, "/elsewhere/CP2", ["ocpp1.6"], {}, None)
    assert (refused.value.code, refused.value.headers) == (503, [("Retry-After", "1")])
    assert refused.value.counted
    assert counted == ["ws"]
    clock.advance(1)
    with pytest.raises(Refused) as not_found:
        factory.negotiate(source, "/elsewhere/CP2", ["ocpp1.6"], {}, None)
    assert not_found.value.code == 404
