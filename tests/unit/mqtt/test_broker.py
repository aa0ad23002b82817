"""The embedded broker: finding mosquitto and the configuration it is given."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.error import ProcessTerminated
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from ocppgw.mqtt.broker import (
    PROBE_INTERVAL,
    PROBE_LIMIT,
    BrokerNotFound,
    EmbeddedBroker,
    data_directory,
    find_mosquitto,
    mosquitto_config,
)
from tests.clocks import Clocks


def test_configured_binary_must_be_executable(tmp_path: Path) -> None:
    """A configured [mqtt] mosquitto that is no executable file is refused, naming the key."""
    script = tmp_path / "mosquitto"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(BrokerNotFound, match=r"\[mqtt\] mosquitto: .* is not an executable"):
        find_mosquitto(str(script))
    script.chmod(0o755)
    assert find_mosquitto(str(script)) == str(script)


def test_missing_binary_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no mosquitto anywhere, the error names the choices: install, path, external broker."""
    monkeypatch.setattr("ocppgw.mqtt.broker._SEARCH", ())
    monkeypatch.setenv("PATH", "")
    with pytest.raises(BrokerNotFound) as e:
        find_mosquitto()
    assert "apt-get install mosquitto" in str(e.value)
    assert "[mqtt] broker = mqtt://HOST:PORT" in str(e.value)


def test_config_listens_only_where_asked() -> None:
    """The embedded mosquitto listens on the configured host and port only."""
    lines = mosquitto_config("127.0.0.1", 18830, "/run/x").splitlines()
    assert "listener 18830 127.0.0.1" in lines
    assert "set_tcp_nodelay true" in lines
    assert sum(line.startswith("listener") for line in lines) == 1


def test_config_keeps_sessions_in_its_directory() -> None:
    """Sessions, queued and retained messages survive a restart of the embedded mosquitto."""
    lines = mosquitto_config("127.0.0.1", 18830, "/run/x").splitlines()
    assert "persistence true" in lines
    assert "persistence_location /run/x/" in lines
    assert any(line.startswith("autosave_interval ") for line in lines)


def test_data_directory_is_writable_by_the_broker() -> None:
    """As root, the data directory belongs to the user mosquitto drops to, so it can save."""
    path = data_directory()
    try:
        owner = os.stat(path).st_uid
        if os.geteuid() != 0:
            assert owner == os.geteuid()
            return
        try:
            expected = pwd.getpwnam("mosquitto").pw_uid
        except KeyError:
            expected = 0
        assert owner == expected
    finally:
        shutil.rmtree(path)


class _SpawningClock(Clock):
    """A task.Clock whose spawnProcess records each child protocol (nothing runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.children: list[Any] = []

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], **kw: Any) -> None:
        self.children.append(protocol)


def test_restart_delay_doubles_on_quick_deaths_and_resets_after_a_healthy_run(
    clocks: Clocks,
) -> None:
    """
    A mosquitto that dies at once is started again after 0.5, 1, 2 s; one
    that ran for a minute before it died, after 0.5 s again.
    """
    clock = clocks.add(_SpawningClock())
    broker = EmbeddedBroker(clock, "/usr/sbin/mosquitto", "127.0.0.1", 1883)
    broker.startService()
    waits = []
    for ran in (1, 1, 1, 60):
        clock.advance(ran)
        clock.children[-1].processEnded(Failure(ProcessTerminated(exitCode=1)))
        (restart,) = clock.getDelayedCalls()
        waits.append(restart.getTime() - clock.seconds())
        clock.advance(waits[-1])
    assert waits == [0.5, 1.0, 2.0, 0.5]
    assert len(clock.children) == 5
    broker.stopService()


class _ProbedReactor(MemoryReactorClock):
    """A memory reactor whose mosquitto refuses until ``listens`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.children: list[Any] = []
        self.listens = False

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], **kw: Any) -> None:
        self.children.append(protocol)

    def connectTCP(
        self, host: str, port: int, factory: Any, timeout: float = 30, bindAddress: Any = None
    ) -> Any:
        connector = super().connectTCP(host, port, factory, timeout, bindAddress)
        if self.listens:
            protocol = factory.buildProtocol(None)
            transport = StringTransport()
            protocol.makeConnection(transport)
        else:
            factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
        return connector


def test_listening_fires_as_soon_as_mosquitto_accepts(clocks: Clocks) -> None:
    """
    listening() tries a connect every PROBE_INTERVAL while refused and fires
    at the first accepted one, which it closes at once.
    """
    reactor = clocks.add(_ProbedReactor())
    broker = EmbeddedBroker(reactor, "/usr/sbin/mosquitto", "127.0.0.1", 1883)
    broker.startService()
    fired: list[object] = []
    broker.listening().addCallback(fired.append)
    for _ in range(3):
        assert fired == []
        reactor.advance(PROBE_INTERVAL)
    tries = len(reactor.tcpClients)
    assert tries == 4 and reactor.tcpClients[0][:2] == ("127.0.0.1", 1883)
    reactor.listens = True
    reactor.advance(PROBE_INTERVAL)
    assert fired == [None] and len(reactor.tcpClients) == 5
    assert reactor.getDelayedCalls() == []
    broker.stopService()


def test_listening_gives_up_after_the_limit_and_on_stop(clocks: Clocks) -> None:
    """A mosquitto that never listens: listening() fires after PROBE_LIMIT; a stop fires it too."""
    reactor = clocks.add(_ProbedReactor())
    broker = EmbeddedBroker(reactor, "/usr/sbin/mosquitto", "127.0.0.1", 1883)
    broker.startService()
    fired: list[object] = []
    broker.listening().addCallback(fired.append)
    reactor.advance(PROBE_LIMIT - 2 * PROBE_INTERVAL)
    assert fired == []
    reactor.pump([PROBE_INTERVAL] * 4)
    assert fired == [None] and reactor.getDelayedCalls() == []
    broker.stopService()

    stopped = clocks.add(_ProbedReactor())
    other = EmbeddedBroker(stopped, "/usr/sbin/mosquitto", "127.0.0.1", 1883)
    other.startService()
    fired_on_stop: list[object] = []
    other.listening().addCallback(fired_on_stop.append)
    other.stopService()
    assert fired_on_stop == [None] and stopped.getDelayedCalls() == []
