# -*- test-case-name: tests.unit.admin.test_recorder,tests.unit.test_speedups -*-
"""
Speed-up ``prometheus_values``: count into a metric's child without its lock.

prometheus-client's ``inc()`` and ``observe()`` check that the child may be
observed and take a lock for every value; ``observe()`` walks the buckets,
each taking its lock.  The gateway counts and renders ``/metrics`` on the
reactor's one thread, so it may add to the child's values itself: a
counter's ``_value``, a histogram's ``_sum`` and the one bucket of
``_buckets`` that ``observe()`` would pick (bisection of ``_upper_bounds``).
Those are private names of prometheus-client (``values.MutexValue`` and the
metric classes, 0.2x); where a child lacks them, or the version is not one
this was tested with, the child's own ``inc``/``observe`` run.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.utils import INF
from prometheus_client.values import MutexValue

from ocppgw import speedups

#: The prometheus-client versions whose private values this was checked against.
TESTED = ">=0.20,<0.27"


def _shape() -> bool:
    registry = CollectorRegistry()
    counter = Counter("probe", "", ["a"], registry=registry).labels("x")
    histogram = Histogram("probe_s", "", ["a"], buckets=(1.0,), registry=registry).labels("x")
    add, observe = _incrementer(counter), _observer(histogram)
    if add is None or observe is None:
        return False
    add(2.0)
    observe(0.5)
    values = {(s.name, s.labels.get("le")): s.value for m in registry.collect() for s in m.samples}
    return (
        values.get(("probe_total", None)) == 2.0
        and values.get(("probe_s_bucket", "1.0")) == 1.0
        and values.get(("probe_s_sum", None)) == 0.5
    )


def enabled() -> bool:
    """Whether children are counted into directly."""
    return speedups.check("prometheus_values", "prometheus-client", TESTED, _shape)


def adder(child: Any, histogram: bool) -> Callable[[float], None] | None:
    """Add to ``child`` (a counter's or a histogram's) directly; None: use its own method."""
    if not enabled():
        return None
    return _observer(child) if histogram else _incrementer(child)


def _incrementer(child: Any) -> Callable[[float], None] | None:
    value = getattr(child, "_value", None)
    if not isinstance(value, MutexValue) or not isinstance(getattr(value, "_value", None), float):
        return None

    def add(amount: float) -> None:
        # MutexValue.inc without its lock: counts and scrapes both run on the
        # reactor's one thread (nothing of the gateway counts from another).
        value._value += amount

    return add


def _observer(child: Any) -> Callable[[float], None] | None:
    total = getattr(child, "_sum", None)
    buckets = getattr(child, "_buckets", None)
    bounds = list(getattr(child, "_upper_bounds", ()))
    if not (
        isinstance(total, MutexValue)
        and isinstance(buckets, list)
        and len(buckets) == len(bounds)
        and bounds[-1:] == [INF]
        and all(isinstance(b, MutexValue) for b in buckets)
        and all(isinstance(getattr(v, "_value", None), float) for v in (total, *buckets))
    ):
        return None

    def observe(amount: float) -> None:
        # The sum and the one bucket, as MutexValue.inc adds them, without its
        # lock (see _incrementer).
        total._value += amount
        buckets[bisect_left(bounds, amount)]._value += 1

    return observe
