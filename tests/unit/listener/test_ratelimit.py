"""The failed-login limiter: token buckets on a task.Clock, bounded memory."""

from __future__ import annotations

import pytest

from ocppgw.listener.ratelimit import FailureLimiter, LoginLimiter
from tests.clocks import Clocks


def test_limits_after_max_failures(clocks: Clocks) -> None:
    """max_failures failures are allowed; the next attempt waits for a token."""
    clock = clocks.new()
    limiter = FailureLimiter(clock, 3, 60.0, 100)
    for _ in range(3):
        assert limiter.retry_after("a") is None
        limiter.failed("a")
    # One token refills every 60 / 3 = 20 s.
    assert limiter.retry_after("a") == 20
    assert limiter.retry_after("b") is None


def test_refills_over_the_window(clocks: Clocks) -> None:
    """Tokens come back at max_failures per window; a full bucket is forgotten."""
    clock = clocks.new()
    limiter = FailureLimiter(clock, 3, 60.0, 100)
    for _ in range(3):
        limiter.failed("a")
    clock.advance(10)
    assert limiter.retry_after("a") == 10
    clock.advance(10)
    assert limiter.retry_after("a") is None
    limiter.failed("a")
    assert limiter.retry_after("a") == 20
    clock.advance(60)
    assert limiter.retry_after("a") is None
    assert len(limiter) == 0


def test_memory_is_bounded(clocks: Clocks) -> None:
    """However many keys fail, the table never holds more than max_keys."""
    clock = clocks.new()
    limiter = FailureLimiter(clock, 1, 3600.0, 50)
    for n in range(10_000):
        limiter.failed(f"k{n}")
        assert len(limiter) <= 50
    # The most recent keys are the ones remembered.
    assert limiter.retry_after("k9999") is not None
    assert limiter.retry_after("k0") is None


def test_refilled_buckets_are_cleaned_up_as_others_fail(clocks: Clocks) -> None:
    """Old buckets that have refilled are dropped while other keys fail."""
    clock = clocks.new()
    limiter = FailureLimiter(clock, 2, 10.0, 1000)
    for n in range(100):
        limiter.failed(f"old{n}")
    clock.advance(11)
    for n in range(100):
        limiter.failed(f"new{n}")
    assert len(limiter) == 100


def test_zero_disables(clocks: Clocks) -> None:
    """max_failures 0 never limits and remembers nothing."""
    limiter = FailureLimiter(clocks.new(), 0, 60.0, 10)
    for _ in range(100):
        limiter.failed("a")
    assert limiter.retry_after("a") is None and len(limiter) == 0


def test_bad_parameters(clocks: Clocks) -> None:
    """A non-positive window or table size is refused."""
    with pytest.raises(ValueError):
        FailureLimiter(clocks.new(), 1, 0.0, 10)
    with pytest.raises(ValueError):
        FailureLimiter(clocks.new(), 1, 1.0, 0)


def test_login_limiter_per_address_and_per_identity(clocks: Clocks) -> None:
    """An address is limited across identities, an identity across addresses."""
    clock = clocks.new()
    limiter = LoginLimiter(clock, per_address=5, per_identity=2, window=10.0, max_keys=100)
    limiter.failed("10.0.0.1", "CP1")
    limiter.failed("10.0.0.2", "CP1")
    assert limiter.retry_after("10.0.0.3", "CP1") == 5
    assert limiter.retry_after("10.0.0.3", "CP2") is None
    for n in range(3):
        limiter.failed("10.0.0.9", f"X{n}")
    assert limiter.retry_after("10.0.0.9", "CP3") is None
    limiter.failed("10.0.0.9", "X9")
    limiter.failed("10.0.0.9", "X10")
    assert limiter.retry_after("10.0.0.9", "CP3") == 2
