# -*- test-case-name: tests.unit.admin.test_recorder,tests.integration.test_admin_metrics -*-
"""
The Prometheus metrics of one gateway process, all named ``ocppgw_…``.

They live in a registry of their own (not prometheus-client's global one),
so that each gateway, and each test, counts only what it saw.  No label
holds a charge point identity: an operator with 100 000 charge points would
get 100 000 series per metric.  Per charge point details are the admin
API's (``GET /api/v1/chargepoints/{id}``).

What is a gauge of the current state (charge points connected, queue length,
MQTT state) is read at scrape time by :class:`_StateCollector`, from the
callables it is given, so it can never drift from the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ocppgw.admin.metrics_fast import adder, enabled
from ocppgw.speedups import speedups

#: Buckets of answer times, in seconds: a charge point answers within
#: milliseconds to its default 30 s timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass(frozen=True)
class State:
    """What the gauges read at scrape time."""

    #: (version, listener) -> number of charge points connected.
    connected: Callable[[], dict[tuple[str, str], int]]
    #: Backend CALLs waiting in the queues, over all charge points.
    queued: Callable[[], int]
    #: Charge points in their offline grace period.
    in_grace: Callable[[], int]
    mqtt_connected: Callable[[], bool]
    buffered: Callable[[], int]
    unacknowledged: Callable[[], int]


#: The gauges of one value: name, help, and how it is read from the state.
_GAUGES: tuple[tuple[str, str, Callable[[State], float]], ...] = (
    (
        "ocppgw_charge_points_in_grace",
        "Charge points disconnected but within [dnstream] offline_ttl.",
        lambda state: state.in_grace(),
    ),
    (
        "ocppgw_queue_length",
        "Backend CALLs waiting behind the one in flight, over all charge points.",
        lambda state: state.queued(),
    ),
    (
        "ocppgw_mqtt_connected",
        "1 while the MQTT client is connected to the broker.",
        lambda state: 1 if state.mqtt_connected() else 0,
    ),
    (
        "ocppgw_mqtt_buffered_publishes",
        "Publishes waiting in the client for the broker (not sent yet).",
        lambda state: state.buffered(),
    ),
    (
        "ocppgw_mqtt_unacknowledged_publishes",
        "QoS >= 1 publishes waiting for their PUBACK.",
        lambda state: state.unacknowledged(),
    ),
)


class _StateCollector(Collector):
    def __init__(self, state: State) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        state = self._state
        connected = GaugeMetricFamily(
            "ocppgw_charge_points_connected",
            "Charge points connected now, by OCPP version and listener.",
            labels=["version", "listener"],
        )
        for (version, listener), n in sorted(state.connected().items()):
            connected.add_metric([version, listener], n)
        yield connected
        for name, documentation, read in _GAUGES:
            yield GaugeMetricFamily(name, documentation, value=read(state))
        enabled = GaugeMetricFamily(
            "ocppgw_speedup_enabled",
            "1 for each optional speed-up that runs, 0 where its public path runs instead "
            "(docs/design.md, Speed-ups).",
            labels=["name"],
        )
        for speedup in speedups():
            enabled.add_metric([speedup.name], 1 if speedup.enabled else 0)
        yield enabled

    def describe(self) -> Iterator[Metric]:
        return iter(())


#: Every counter: attribute, name (``_total`` is added), help, labels.
_COUNTERS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    (
        "messages",
        "ocppgw_messages",
        "OCPP-J messages by direction (in: from charge points), type and action.",
        ("direction", "type", "action"),
    ),
    ("bytes", "ocppgw_message_bytes", "Bytes of OCPP-J frames by direction.", ("direction",)),
    (
        "connections",
        "ocppgw_connections",
        "WebSocket connections opened by charge points, by OCPP version and listener.",
        ("version", "listener"),
    ),
    (
        "disconnections",
        "ocppgw_disconnections",
        "Charge point connections closed, by WebSocket close code (1006: abnormal).",
        ("code",),
    ),
    (
        "gateway_errors",
        "ocppgw_gateway_errors",
        "Error envelopes the gateway published itself, by code (Offline, Timeout, ...).",
        ("code",),
    ),
    (
        "call_errors",
        "ocppgw_callerrors",
        "CALLERRORs (and 2.1 CALLRESULTERRORs) by direction and OCPP error code.",
        ("direction", "code"),
    ),
    (
        "validation_failures",
        "ocppgw_validation_failures",
        "Payloads failing schema validation, by action and direction.",
        ("action", "direction"),
    ),
    (
        "refused",
        "ocppgw_handshakes_refused",
        "Handshakes refused, by reason: an HTTP status (400, 401, 403, 404, 429), TLS, "
        "or TLS revoked (a client certificate tls_crl revokes).",
        ("reason",),
    ),
    (
        "throttled",
        "ocppgw_handshakes_throttled",
        "Handshakes answered 503 with Retry-After: over the listener's max_handshake_rate.",
        ("listener",),
    ),
    (
        "takeovers",
        "ocppgw_takeovers",
        "Connections taken over by a newer one: on this instance (same) or another (across).",
        ("where",),
    ),
    (
        "auth_http",
        "ocppgw_auth_http",
        "HTTP authentication service ([auth] http_url) decisions: allow, deny, error, cache_hit.",
        ("result",),
    ),
    (
        "mqtt_reconnects",
        "ocppgw_mqtt_reconnects",
        "Times the MQTT client connected to the broker again after the first time.",
        (),
    ),
    (
        "forward_frames",
        "ocppgw_forward_frames",
        "Forward mode: frames relayed, by who sent them (ChargePoint, CSMS, Backend).",
        ("direction",),
    ),
    (
        "forward_failures",
        "ocppgw_forward_upstream_failures",
        "Forward mode: central system connections that failed, by the status the charge "
        "point got (401, 404, 502, 503, ...) or lost (mid-session).",
        ("reason",),
    ),
)

#: Buckets of the relay's own time per frame, in seconds.
RELAY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)


class Labelled:
    """
    How to count into each child of one labelled metric: a callable taking
    the amount (a counter's increment, a histogram's observation), made once
    per child.

    prometheus-client's ``labels()`` checks and converts the values and takes
    a lock on every call: it is called once per child here.  The callable is
    the child's own ``inc``/``observe``, or, with the speed-up on
    (:mod:`ocppgw.admin.metrics_fast`), one that adds to the child's values
    without the lock.  The label values must come from bounded sets (see
    :class:`~ocppgw.admin.records.Recorder`); amounts are never negative.
    """

    def __init__(self, metric: Any) -> None:
        self._labels = metric.labels
        self._histogram = isinstance(metric, Histogram)
        self._adders: dict[tuple[str, ...], Callable[[float], None]] = {}

    def __call__(self, *values: str) -> Callable[[float], None]:
        add = self._adders.get(values)
        if add is None:
            child = self._labels(*values)
            add = adder(child, self._histogram) or (child.observe if self._histogram else child.inc)
            self._adders[values] = add
        return add


class Metrics:
    """The counters and histograms, and the registry ``/metrics`` renders."""

    messages: Counter
    bytes: Counter
    connections: Counter
    disconnections: Counter
    gateway_errors: Counter
    call_errors: Counter
    validation_failures: Counter
    refused: Counter
    throttled: Counter
    takeovers: Counter
    auth_http: Counter
    mqtt_reconnects: Counter
    forward_frames: Counter
    forward_failures: Counter

    def __init__(self, state: State | None = None) -> None:
        enabled()  # the speed-up's verdict, before start-up reports them
        self.registry = registry = CollectorRegistry()
        for attribute, name, documentation, labels in _COUNTERS:
            setattr(self, attribute, Counter(name, documentation, labels, registry=registry))
        self.downstream_latency = Histogram(
            "ocppgw_downstream_call_seconds",
            "How long charge points took to answer backend CALLs, by action.",
            ["action"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "ocppgw_upstream_answer_seconds",
            "How long the backend took to answer charge point CALLs, by action.",
            ["action"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.forward_latency = Histogram(
            "ocppgw_forward_relay_seconds",
            "Forward mode: the gateway's own time to relay a frame (received to written), "
            "by who sent it.",
            ["direction"],
            buckets=RELAY_BUCKETS,
            registry=registry,
        )
        ProcessCollector(namespace="ocppgw", registry=registry)
        #: The children counted for every message, made once each.
        self.messages_of = Labelled(self.messages)
        self.bytes_of = Labelled(self.bytes)
        self.call_errors_of = Labelled(self.call_errors)
        self.downstream_latency_of = Labelled(self.downstream_latency)
        self.upstream_latency_of = Labelled(self.upstream_latency)
        self.validation_failures_of = Labelled(self.validation_failures)
        self.forward_frames_of = Labelled(self.forward_frames)
        self.forward_latency_of = Labelled(self.forward_latency)
        if state is not None:
            self.watch(state)

    def watch(self, state: State) -> None:
        """Read the gauges of ``state`` at every scrape."""
        self.registry.register(_StateCollector(state))
