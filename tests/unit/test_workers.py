"""``[gateway] workers``: the key, each worker's own identity, and which sockets can be shared."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from ocppgw import workers
from ocppgw.config import ConfigError, parse
from ocppgw.workers import sockets
from tests.clocks import Clocks

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
    address = sockets.tcp_address(endpoint)
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


class _Supervised:
    """What a worker's log relay reads of its supervisor: the configuration."""

    def __init__(self, extra: str = "") -> None:
        self.config = _config(extra)


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
        worker = workers.WorkerProcess(1, "gw-w1", "c-w1", None)  # type: ignore[arg-type]
        relay = workers._WorkerProtocol(_Supervised(), worker)  # type: ignore[arg-type]
        relay.outReceived(out.getvalue().encode() + b"Traceback: not JSON\n")
    finally:
        globalLogPublisher.removeObserver(seen.append)
    mine = [formatEvent(e) for e in seen if "worker 1:" in formatEvent(e)]
    assert mine == ["worker 1: CP1: slow", "worker 1: Traceback: not JSON"]
    (event,) = [e for e in seen if e.get("cid") == "CP1"]
    assert event["log_level"] == LogLevel.warn and event["worker"] == 1


def test_worker_log_in_json_is_one_object_a_line_with_the_worker_field() -> None:
    """
    With log_format = json, the supervisor writes each line of a worker, JSON
    event or not, as one JSON object with "worker": its index, and its text
    without the "worker N:" prefix.
    """
    import io
    import json

    from twisted.logger import Logger, globalLogPublisher, jsonFileLogObserver

    from ocppgw.logs import JSONLines

    out = io.StringIO()
    Logger(observer=jsonFileLogObserver(out)).warn("{cid}: slow", cid="CP1")
    written = io.StringIO()
    observer = JSONLines(written)
    globalLogPublisher.addObserver(observer)
    try:
        supervisor = _Supervised("log_format = json")
        relay = workers._WorkerProtocol(supervisor, workers.WorkerProcess(1, "gw-w1", "c-w1", None))  # type: ignore[arg-type]
        relay.outReceived(out.getvalue().encode() + b"Traceback: not JSON\n")
    finally:
        globalLogPublisher.removeObserver(observer)
    records = [json.loads(line) for line in written.getvalue().splitlines()]
    mine = [(r["worker"], r["level"], r["text"]) for r in records if "worker" in r]
    assert mine == [(1, "warn", "CP1: slow"), (1, "info", "Traceback: not JSON")]
    assert [r["identity"] for r in records if r["text"] == "CP1: slow"] == ["CP1"]


def test_worker_log_relay_keeps_a_partial_line_per_stream() -> None:
    """Partial lines on stdout and stderr, interleaved, are each completed by their own stream."""
    from twisted.logger import formatEvent, globalLogPublisher

    seen: list[dict[str, object]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        worker = workers.WorkerProcess(2, "gw-w2", "c-w2", None)  # type: ignore[arg-type]
        relay = workers._WorkerProtocol(_Supervised(), worker)  # type: ignore[arg-type]
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


class _Transport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[int] = []

    def signalProcess(self, signum: int) -> None:
        self.signals.append(signum)


class _Reactor:
    """Records what the supervisor asks of the reactor (processes, timers, stop)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.spawned: list[tuple[object, dict[int, str], dict[str, str], _Transport]] = []
        self.stopped = 0
        self.readers: list[object] = []

    def spawnProcess(self, proto: object, executable: str, args: list[str], **kw: object) -> object:
        transport = _Transport(1000 + len(self.spawned))
        self.spawned.append((proto, kw["childFDs"], kw["env"], transport))  # type: ignore[arg-type]
        return transport

    def callLater(self, delay: float, f: object, *a: object) -> object:
        return self.clock.callLater(delay, f, *a)  # type: ignore[arg-type]

    def seconds(self) -> float:
        return self.clock.seconds()

    def stop(self) -> None:
        self.stopped += 1

    def addReader(self, reader: object) -> None:
        self.readers.append(reader)


def _supervisor(reactor: _Reactor) -> workers.Supervisor:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    supervisor = workers.Supervisor(
        _config("workers = 2", f"tcp:{port}:interface=127.0.0.1"), "x.ini", reactor=reactor
    )
    supervisor.running = 1  # started, without the signal handlers startService installs
    for worker in supervisor.workers:
        supervisor._spawn(worker)
    return supervisor


def _end(reactor: _Reactor, index: int, signal: int | None = None) -> None:
    """Worker ``index`` exits: 0, or killed by ``signal`` (twistd re-raised SIGTERM)."""
    from twisted.internet.error import ProcessDone, ProcessTerminated

    proto = reactor.spawned[index][0]
    reason = ProcessDone(0) if signal is None else ProcessTerminated(signal=signal)
    proto.processEnded(Failure(reason))  # type: ignore[attr-defined]


def test_worker_gets_a_pipe_only_the_supervisor_writes(clocks: Clocks) -> None:
    """Each worker is started with fd 3 a pipe from the supervisor, named in its environment."""
    reactor = _Reactor(clocks.new())
    _supervisor(reactor)
    for _, fds, env, _ in reactor.spawned:
        assert fds == {0: "w", 1: "r", 2: "r", workers.LIFELINE_FD: "w"}
        assert env[workers.LIFELINE_VARIABLE] == str(workers.LIFELINE_FD)


def test_drain_forwards_sigusr1_restarts_none_and_stops_once_all_exited(clocks: Clocks) -> None:
    """SIGUSR1: every worker gets it, none is started again, the supervisor stops after the last."""
    import signal

    reactor = _Reactor(clocks.new())
    supervisor = _supervisor(reactor)
    supervisor.drain()
    assert [t.signals for *_, t in reactor.spawned] == [[signal.SIGUSR1], [signal.SIGUSR1]]
    assert supervisor.drain() is None  # a second SIGUSR1 changes nothing
    _end(reactor, 0)
    reactor.clock.advance(60)
    assert len(reactor.spawned) == 2 and reactor.stopped == 0
    _end(reactor, 1)
    assert reactor.stopped == 1
    assert reactor.clock.getDelayedCalls() == []


def test_supervisor_exit_status_follows_its_workers(clocks: Clocks) -> None:
    """Path 9: a worker that stops with envelopes owed exits by SIGTERM (143); the
    supervisor then exits 143 too, never 0; when every worker exits 0, so does it."""
    import signal

    from ocppgw.loop import Exit

    for codes, expected in (((None, signal.SIGTERM), signal.SIGTERM), ((None, None), None)):
        reactor = _Reactor(clocks.new())
        supervisor = _supervisor(reactor)
        supervisor.exit = Exit()
        supervisor.exit.signal = signal.SIGTERM  # what stopped it
        stopped = supervisor.stopService()
        for index, code in enumerate(codes):
            _end(reactor, index, code)
        assert stopped.called
        assert supervisor.exit.killed_by() == expected
        drained = _Reactor(clocks.new())
        supervisor = _supervisor(drained)
        supervisor.exit = Exit()
        supervisor.drain()
        for index, code in enumerate(codes):
            _end(drained, index, code)
        supervisor.stopService()
        assert supervisor.exit.killed_by() == expected


def test_drain_rate_is_shared_among_the_workers() -> None:
    """Each of N workers drains at drain_rate / N (at least 1 a second)."""
    config = parse("[gateway]\nid = gw\nworkers = 4\ndrain_rate = 100\n" + MINIMAL)
    env = {workers.INDEX_VARIABLE: "0", workers.COUNT_VARIABLE: "4"}
    assert workers.as_run(config, env).drain_rate == 25
    slow = parse("[gateway]\nid = gw\nworkers = 4\ndrain_rate = 2\n" + MINIMAL)
    assert workers.as_run(slow, env).drain_rate == 1


def test_worker_stops_when_the_supervisor_pipe_ends(clocks: Clocks) -> None:
    """End-of-file on the supervisor's pipe stops the worker; its own reactor stopping does not."""
    reactor = _Reactor(clocks.new())
    for close_writer in (True, False):
        read_end, write_end = os.pipe()
        assert workers.watch_supervisor(
            reactor, {workers.INDEX_VARIABLE: "0", workers.LIFELINE_VARIABLE: str(read_end)}
        )
        reader = reactor.readers.pop()
        before = reactor.stopped
        if close_writer:
            os.close(write_end)
        # A hang-up is reported without a read; a stopping reactor disconnects every reader.
        reader.connectionLost(Failure(ConnectionError()))  # type: ignore[attr-defined]
        assert reactor.stopped == before + (1 if close_writer else 0)
        if not close_writer:
            os.close(write_end)
    assert not workers.watch_supervisor(reactor, {})
    # Not a worker: the variable alone (inherited by accident) watches nothing.
    assert not workers.watch_supervisor(reactor, {workers.LIFELINE_VARIABLE: "3"})


def test_worker_reads_end_of_file(clocks: Clocks) -> None:
    """doRead reports the end of the supervisor's pipe, and nothing while it is open."""
    reactor = _Reactor(clocks.new())
    read_end, write_end = os.pipe()
    workers.watch_supervisor(
        reactor, {workers.INDEX_VARIABLE: "0", workers.LIFELINE_VARIABLE: str(read_end)}
    )
    reader: Any = reactor.readers.pop()
    assert reader.doRead() is None
    os.close(write_end)
    reason = reader.doRead()
    assert reason is not None and reason.check(ConnectionDone)
    reader.connectionLost(reason)
    assert reactor.stopped == 1
