"""A listener that cannot listen says so in one named line; the gateway then refuses to start."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from typing import Any

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from ocppgw.config.values import endpoint, required_endpoint
from ocppgw.listener.listening import Listening
from ocppgw.loop import Exit, refuse_start


class _TakenReactor(MemoryReactorClock):
    """Every TCP port is already in use."""

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        raise CannotListenError(interface, port, OSError(errno.EADDRINUSE, "Address in use"))


class ListeningTests(SynchronousTestCase):
    def test_listens_and_stops(self) -> None:
        """A free port: listening recorded, no refusal; stopping stops listening."""
        reactor = MemoryReactorClock()
        refused: list[str] = []
        key = "[listener:ws] endpoint"
        service = Listening(reactor, key, "tcp:8080", Factory(), refused.append)
        service.startService()
        self.assertEqual(refused, [])
        self.assertEqual(reactor.tcpServers[0][0], 8080)
        self.assertIsNotNone(service.endpoint.port)
        service.stopService()
        self.assertIsNone(service.endpoint.port)

    def test_taken_port_is_one_named_line(self) -> None:
        """A taken port: one line with key, value and cause; nothing logged as unhandled."""
        refused: list[str] = []
        value = "tcp:9100:interface=127.0.0.1"
        service = Listening(_TakenReactor(), "[admin] endpoint", value, Factory(), refused.append)
        service.startService()
        self.assertEqual(
            refused,
            [
                "[admin] endpoint = tcp:9100:interface=127.0.0.1: "
                "cannot listen on 127.0.0.1:9100: Address in use"
            ],
        )
        self.assertIn("Address in use", service.endpoint.error or "")
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertIsNone(service.stopService())


class DirectoryTests(SynchronousTestCase):
    def fresh_path(self) -> str:
        """A path that does not exist yet, in a temporary directory removed after the test."""
        base = tempfile.mkdtemp(prefix="ocppgw-listening-")
        self.addCleanup(shutil.rmtree, base, True)
        return os.path.join(base, "x")

    def test_socket_directory_made_private_at_start(self) -> None:
        """A UNIX socket's directory is made (mode 0700) at start, not when built."""
        base = self.fresh_path()
        directory = os.path.join(base, "ocppgw")
        service = Listening(
            MemoryReactorClock(), "[admin] endpoint", f"unix:{directory}/gw.sock", Factory(),
            directory=directory,
        )
        self.assertFalse(os.path.exists(directory))
        service.startService()
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        service.stopService()

    def test_directory_that_cannot_be_made_is_one_named_line(self) -> None:
        """A directory that cannot be made: one line with key, value and why; no listening."""
        blocker = self.fresh_path()
        with open(blocker, "w"):
            pass  # a file where the directory's parent should be
        directory = os.path.join(blocker, "ocppgw")
        reactor = MemoryReactorClock()
        refused: list[str] = []
        value = f"unix:{directory}/gw.sock"
        service = Listening(
            reactor, "[admin] endpoint", value, Factory(), refused.append, directory=directory
        )
        service.startService()
        self.assertEqual(
            refused, [f"[admin] endpoint = {value}: cannot create {directory}: Not a directory"]
        )
        self.assertEqual(reactor.unixServers, [])
        self.assertIsNone(service.stopService())


class _StartingReactor:
    """What refuse_start asks of the reactor: calls for when it runs, and stop()."""

    def __init__(self) -> None:
        self.when_running: list[Callable[[], object]] = []
        self.stops = 0

    def callWhenRunning(self, f: Callable[[], object]) -> None:
        self.when_running.append(f)

    def stop(self) -> None:
        self.stops += 1

    def run(self) -> None:
        for f in self.when_running:
            f()


class RefuseStartTests(SynchronousTestCase):
    def test_first_refusal_stops_once_and_exits_1(self) -> None:
        """refuse_start keeps the first line and stops the reactor once it runs; not twice."""
        reactor = _StartingReactor()
        exit = Exit()
        refuse_start(reactor, "[listener:ws] endpoint = tcp:1: cannot listen", exit)
        refuse_start(reactor, "[admin] endpoint = tcp:2: cannot listen", exit)
        self.assertEqual(exit.refused, "[listener:ws] endpoint = tcp:1: cannot listen")
        self.assertEqual(reactor.stops, 0)
        reactor.run()
        self.assertEqual(reactor.stops, 1)


class BarePortTests(SynchronousTestCase):
    def test_bare_port_is_tcp(self) -> None:
        """A bare port is tcp:PORT; any other endpoint string, and empty (off), are kept."""
        self.assertEqual(required_endpoint("8080"), "tcp:8080")
        self.assertEqual(endpoint("9100"), "tcp:9100")
        self.assertEqual(endpoint("unix:/run/x.sock"), "unix:/run/x.sock")
        self.assertEqual(endpoint(""), "")
        self.assertRaises(ValueError, required_endpoint, "")
