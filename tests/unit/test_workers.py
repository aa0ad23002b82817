"""``[gateway] workers``: the key, each worker's own identity, and which sockets can be shared."""

from __future__ import annotations

import os
import socket

import pytest

from ocppgw import workers
from ocppgw.config import ConfigError, parse

MINIMAL = "[listener:ws]\nendpoint = tcp:8080:interface=127.0.0.1\n"


def _config(extra: str = "", endpoint: str = "tcp:0:interface=127.0.0.1") -> workers.Config:
    return parse(
        f"[gateway]\nid = gw\n{extra}\n[listener:ws]\nendpoint = {endpoint}\n"
        "[mqtt]\nbroker = mqtt://127.0.0.1:1883\n"
    )


def test_workers_default_is_one() -> None:
    """Without the key the gateway is one process."""
    assert parse(MINIMAL).workers == 1


def test_workers_auto_is_the_usable_cpus() -> None:
    """auto is the number of CPUs this process may run on."""
    assert _config("workers = auto").workers == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["0", "-1", "two", "257", "1.5"])
def test_workers_bad_values(value: str) -> None:
    """A bad workers value names the section and key and what is allowed."""
    with pytest.raises(ConfigError, match=r"\[gateway\] workers: must be auto or a whole number"):
        _config(f"workers = {value}")


def test_worker_is_an_instance_of_its_own() -> None:
    """Worker N appends -wN to the gateway id and MQTT client id, and runs no embedded broker."""
    config = parse("[gateway]\nid = gw\nworkers = 2\n" + MINIMAL)
    assert config.mqtt.embedded
    run = workers.as_run(config, {workers.INDEX_VARIABLE: "1"})
    assert run.gateway_id == "gw-w1"
    assert run.mqtt.client_id == "ocppgw-gw-w1"
    assert not run.mqtt.embedded
    assert workers.as_run(config, {}) is config


def test_who_supervises() -> None:
    """The process started with workers > 1 supervises; a worker and workers = 1 do not."""
    two = _config("workers = 2")
    assert workers.supervises(two, {})
    assert not workers.supervises(two, {workers.INDEX_VARIABLE: "0"})
    assert not workers.supervises(_config(), {})


@pytest.mark.parametrize(
    "endpoint, expected",
    [
        ("tcp:8080", (socket.AF_INET, "0.0.0.0", 8080, 50)),
        ("tcp:8080:interface=127.0.0.1:backlog=512", (socket.AF_INET, "127.0.0.1", 8080, 512)),
        ("tcp:port=9000:interface=\\:\\:1", (socket.AF_INET6, "::1", 9000, 50)),
        ("tcp6:8080", (socket.AF_INET6, "::", 8080, 50)),
    ],
)
def test_tcp_address(endpoint: str, expected: tuple[int, str, int, int]) -> None:
    """tcp: and tcp6: endpoint strings are read as Twisted reads them."""
    address = workers.tcp_address(endpoint)
    assert (address.family, address.interface, address.port, address.backlog) == expected


@pytest.mark.parametrize(
    "endpoint, message",
    [
        ("unix:/tmp/s", "needs a tcp: or tcp6: endpoint"),
        ("tcp:0", "fixed port"),
        ("tcp:8080:reuse=1", "unsupported endpoint option 'reuse=1'"),
    ],
)
def test_unshareable_endpoints(endpoint: str, message: str) -> None:
    """An endpoint that workers cannot share is refused, naming the listener."""
    with pytest.raises(ConfigError, match=rf"\[listener:ws\] endpoint: .*{message}"):
        workers.Supervisor(_config("workers = 2", endpoint), "x.ini", reactor=None)


def test_busy_port_is_a_config_error() -> None:
    """A port another (non-sharing) socket holds is refused at start, naming the listener."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=r"\[listener:ws\] endpoint: cannot listen"):
            workers.Supervisor(
                _config("workers = 2", f"tcp:{port}:interface=127.0.0.1"), "x.ini", reactor=None
            )


def test_supervisor_lists_its_workers() -> None:
    """The supervisor knows each worker's index, gateway id and client id before starting."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    supervisor = workers.Supervisor(
        _config("workers = 3", f"tcp:{port}:interface=127.0.0.1"), "x.ini", reactor=None
    )
    assert [(w.index, w.gateway_id, w.client_id, w.pid) for w in supervisor.workers] == [
        (i, f"gw-w{i}", f"ocppgw-gw-w{i}", None) for i in range(3)
    ]


def test_worker_log_events_keep_their_level_and_fields() -> None:
    """A worker's JSON log event reaches the supervisor's log with its level, fields and index."""
    import io

    from twisted.logger import (
        Logger,
        LogLevel,
        formatEvent,
        globalLogPublisher,
        jsonFileLogObserver,
    )

    out = io.StringIO()
    Logger(observer=jsonFileLogObserver(out)).warn("{cid}: slow", cid="CP1")
    seen: list[dict[str, object]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        relay = workers._WorkerProtocol(None, workers.WorkerProcess(1, "gw-w1", "c-w1"))  # type: ignore[arg-type]
        relay.outReceived(out.getvalue().encode() + b"Traceback: not JSON\n")
    finally:
        globalLogPublisher.removeObserver(seen.append)
    mine = [formatEvent(e) for e in seen if "worker 1:" in formatEvent(e)]
    assert mine == ["worker 1: CP1: slow", "worker 1: Traceback: not JSON"]
    (event,) = [e for e in seen if e.get("cid") == "CP1"]
    assert event["log_level"] == LogLevel.warn and event["worker"] == 1


def test_worker_log_relay_keeps_a_partial_line_per_stream() -> None:
    """Partial lines on stdout and stderr, interleaved, are each completed by their own stream."""
    from twisted.logger import formatEvent, globalLogPublisher

    seen: list[dict[str, object]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        relay = workers._WorkerProtocol(None, workers.WorkerProcess(2, "gw-w2", "c-w2"))  # type: ignore[arg-type]
        relay.outReceived(b"out one ")
        relay.errReceived(b"err one ")
        relay.outReceived(b"half\nout two ")
        relay.errReceived(b"half\nerr two ")
        relay.errReceived(b"done\n")
        relay.outReceived(b"done\n")
    finally:
        globalLogPublisher.removeObserver(seen.append)
    mine = [formatEvent(e) for e in seen if "worker 2:" in formatEvent(e)]
    assert mine == [
        "worker 2: out one half",
        "worker 2: err one half",
        "worker 2: err two done",
        "worker 2: out two done",
    ]
