# -*- test-case-name: tests.unit.listener.test_ratelimit -*-
"""
Failed-login rate limits, per source address and per charge point identity.

Brute force against HTTP Basic is met here, not by a slow hash: OCPP
passwords are machine-made random keys (A00.FR.205; 2.0.1 BasicAuthPassword
16-40 characters), and a slow hash would make reconnect storms of thousands
of charge points expensive.  Each key (an address or an identity) has a token
bucket of ``max_failures`` tokens that refills at ``max_failures / window``
tokens a second; each failed login takes one.  A key with less than one
token left is limited: its handshakes get 429 with ``Retry-After`` before any
password is checked.  Successful logins take nothing.

Memory is bounded: a bucket that has refilled is forgotten, and each table
holds at most ``max_keys`` buckets, evicting the least recently touched.
Time comes from an injected ``IReactorTime``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime


class FailureLimiter:
    """One token bucket per key, in an LRU table of at most ``max_keys`` keys."""

    def __init__(self, clock: IReactorTime, max_failures: int, window: float, max_keys: int):
        if max_failures < 0 or window <= 0 or max_keys < 1:
            raise ValueError("max_failures >= 0, window > 0 and max_keys >= 1 required")
        self._clock = clock
        self._capacity = float(max_failures)
        self._rate = max_failures / window
        self._max_keys = max_keys
        #: key -> (tokens left, when they were counted); least recently touched first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._capacity > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float:
        found = self._buckets.get(key)
        if found is None:
            return self._capacity
        tokens, stamp = found
        tokens = min(self._capacity, tokens + (now - stamp) * self._rate)
        if tokens >= self._capacity:
            del self._buckets[key]  # refilled: nothing to remember
        return tokens

    def retry_after(self, key: str) -> int | None:
        """Whole seconds until ``key`` may try again, or None if it may now."""
        if not self.enabled:
            return None
        tokens = self._tokens(key, self._clock.seconds())
        if tokens >= 1.0:
            return None
        return max(1, math.ceil((1.0 - tokens) / self._rate))

    def failed(self, key: str) -> None:
        """Count one failed login of ``key``."""
        if not self.enabled:
            return
        now = self._clock.seconds()
        tokens = self._tokens(key, now)
        self._buckets[key] = (max(0.0, tokens - 1.0), now)
        self._buckets.move_to_end(key)
        # Amortised clean-up: forget the oldest buckets once they have refilled.
        for _ in range(2):
            oldest = next(iter(self._buckets))
            if oldest == key:
                break
            self._tokens(oldest, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)


class LoginLimiter:
    """The per-address and per-identity limits of one gateway, shared by its listeners."""

    def __init__(
        self,
        clock: IReactorTime,
        per_address: int,
        per_identity: int,
        window: float,
        max_keys: int,
    ) -> None:
        self.addresses = FailureLimiter(clock, per_address, window, max_keys)
        self.identities = FailureLimiter(clock, per_identity, window, max_keys)

    def retry_after(self, address: str, identity: str) -> int | None:
        """Seconds until this address may try this identity again; None: it may now."""
        waits = [
            w
            for w in (self.addresses.retry_after(address), self.identities.retry_after(identity))
            if w is not None
        ]
        return max(waits) if waits else None

    def failed(self, address: str, identity: str) -> None:
        """Count one failed login from ``address`` as ``identity``."""
        self.addresses.failed(address)
        self.identities.failed(identity)
