"""
Fixtures of the integration tests: a real mosquitto (one per session), the
real gateway (one or more per test, each on its own port and INI file), and a
test backend on the broker (one per test).  Tests stay independent by using
charge point identities of their own.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import (
    Backend,
    Broker,
    Gateway,
    Sections,
    start_broker,
    start_gateway,
    stop_process,
)
from tests.protoc import protoc

# A run started in the background of a non-interactive shell (`make test &`)
# inherits SIGINT ignored, and so would every gateway and `make demo` it
# starts: the Ctrl-C tests would see a gateway that never stops.  A
# terminal's foreground job has the default; so do the processes started here.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: The files whose tests take longest together (18-71 s each on the quieter
#: host, 2026-12-07: of 873 s in all), longest first: make test hands the
#: files out whole, in this order, to the worker that comes free
#: (--dist loadfile --no-loadscope-reorder), so a module's fixtures are made
#: once and no long file is left to run alone at the end.
LONGEST = (
    "test_soak.py",
    "test_forward.py",
    "test_edges_memory.py",
    "test_rules.py",
    "test_exactly_once_presence.py",
    "test_exactly_once_replay.py",
    "test_exactly_once_mqtt.py",
    "test_rabbitmq_cluster.py",
    "test_packaging.py",
    "test_flight.py",
    "test_instances.py",
    "test_registration.py",
    "test_hostile.py",
    "test_monitoring.py",
    "test_exactly_once_ops.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of :data:`LONGEST` first, in its order; the rest as collected."""

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST.index(name) if name in LONGEST else len(LONGEST)

    items.sort(key=rank)


#: The log lines that mean the gateway hit a bug, whatever the test checks.
_BUG_MARKERS = ("Traceback (most recent call last)", "Unhandled Error")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A mosquitto on a free loopback port, stopped at the end of the session."""
    b = start_broker(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield b
    finally:
        stop_process(b.proc)


@pytest.fixture(scope="session")
def protoc_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """proto/ compiled by protoc (docs/protobuf.md's command) into a directory of the session."""
    return protoc(tmp_path_factory.mktemp("ocppgw-pb"))


@pytest.fixture
def gateway(
    broker: Broker, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Gateway]]:
    """
    Start a gateway: ``gateway({"section": {"key": "value"}})`` merges those
    sections over a default INI (a ws listener on a free port, the test broker).
    """
    started: list[Gateway] = []
    request.node._ocppgw_gateways = started

    def start(extra: Sections | None = None) -> Gateway:
        gw = start_gateway(tmp_path / f"gw{len(started)}", broker, extra)
        started.append(gw)
        return gw

    yield start
    bugs = []
    for gw in started:
        gw.stop()
        log = gw.log()
        if any(marker in log for marker in _BUG_MARKERS):
            bugs.append(f"gateway {gw.name} logged an internal error:\n{log}")
    assert not bugs, "\n".join(bugs)


@pytest.fixture
def backend(broker: Broker) -> Iterator[Backend]:
    """A test backend subscribed to # on the test broker."""
    b = Backend(broker)
    try:
        yield b
    finally:
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Attach the log of every gateway a failed test started to its report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for gw in getattr(item, "_ocppgw_gateways", []):
            report.sections.append((f"gateway {gw.name} log ({gw.log_path})", gw.log()))
