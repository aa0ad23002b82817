"""The gateway's reactor: Twisted's epoll reactor without the per-event log context."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import types
import weakref
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python import context, log
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ocppgw import loop
from ocppgw.loop_fast import GatewayReactor, writes_when_asked


class _Reader(FileDescriptor):
    """One end of a socketpair, read by the reactor."""

    def __init__(self, reactor: Any, sock: socket.socket, fail: bool = False) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.fail = fail
        self.read: list[bytes] = []
        self.systems: list[object] = []
        self.lost: list[Any] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "reader"

    def doRead(self) -> None:
        self.systems.append(context.get(log.ILogContext)["system"])
        data = self.sock.recv(100)
        if self.fail:
            raise RuntimeError("bug in doRead")
        self.read.append(data)

    def connectionLost(self, reason: Any) -> None:
        self.lost.append(reason)
        super().connectionLost(reason)


class GatewayReactorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = GatewayReactor()
        self.addCleanup(self.reactor._poller.close)

    def pair(self, fail: bool = False) -> tuple[_Reader, socket.socket]:
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        reader = _Reader(self.reactor, a, fail)
        self.reactor.addReader(reader)
        return reader, b

    def test_ready_descriptors_read_without_a_log_context(self) -> None:
        """Every ready reader is read in one poll, outside any legacy log context."""
        first, to_first = self.pair()
        second, to_second = self.pair()
        to_first.send(b"one")
        to_second.send(b"two")
        self.reactor.doIteration(0)
        self.assertEqual((first.read, second.read), ([b"one"], [b"two"]))
        self.assertEqual(first.systems, ["-"])

    def test_failing_read_disconnects_only_that_descriptor(self) -> None:
        """An exception from doRead is logged and loses that connection; the others still read."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        bad, to_bad = self.pair(fail=True)
        good, to_good = self.pair()
        to_bad.send(b"x")
        to_good.send(b"y")
        self.reactor.doIteration(0)
        self.assertEqual(good.read, [b"y"])
        self.assertEqual(len(bad.lost), 1)
        self.assertNotIn(bad, self.reactor.getReaders())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_failing_disconnect_is_logged_with_the_prefix_and_the_loop_goes_on(self) -> None:
        """A failure outside doRead (connectionLost) is logged with logPrefix; the loop lives."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        reader, to_reader = self.pair()

        def broken(reason: Any) -> None:
            raise ValueError("bug in connectionLost")

        reader.connectionLost = broken  # type: ignore[method-assign]
        # doRead says the connection is done: the reactor disconnects it.
        reader.doRead = ConnectionDone  # type: ignore[assignment,method-assign]
        to_reader.send(b"x")
        self.reactor.doIteration(0)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        systems = [e.get("log_system") for e in events if e.get("isError")]
        self.assertIn("reader", systems)

    def test_no_events_waits_and_returns(self) -> None:
        """A poll with nothing ready returns after its timeout."""
        reader, _ = self.pair()
        self.reactor.doIteration(0.01)
        self.assertEqual(reader.read, [])


class InstallTests(SynchronousTestCase):
    def run_python(self, code: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        return out.stdout.strip()

    def test_installed_when_none_is(self) -> None:
        """install() makes GatewayReactor the global reactor when none was chosen."""
        code = (
            "import os; os.environ.pop('OCPPGW_SPEEDUPS', None);"
            "from ocppgw import loop; print(loop.install());"
            "from twisted.internet import reactor; print(type(reactor).__name__)"
        )
        self.assertEqual(self.run_python(code).split(), ["True", "GatewayReactor"])

    def test_public_epoll_reactor_with_the_speedup_off(self) -> None:
        """With the speed-up off, install() makes Twisted's own EPollReactor the global reactor."""
        code = (
            "import os; os.environ['OCPPGW_SPEEDUPS'] = '-twisted_reactor';"
            "from ocppgw import loop; print(loop.install());"
            "from twisted.internet import reactor; print(type(reactor).__name__)"
        )
        self.assertEqual(self.run_python(code).split(), ["True", "EPollReactor"])

    def test_chosen_reactor_kept(self) -> None:
        """A reactor chosen before (twistd --reactor) is kept."""
        code = (
            "from twisted.internet import selectreactor; selectreactor.install();"
            "from ocppgw import loop; print(loop.install());"
            "from twisted.internet import reactor; print(type(reactor).__name__)"
        )
        self.assertEqual(self.run_python(code).split(), ["False", "SelectReactor"])


class _Collect(Protocol):
    """Keeps what it receives and whether its connection was lost."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


class _Asked(_Reader):
    """A writer that says doWrite may be called at any time, as the MQTT socket does."""

    writes_when_asked = True

    def __init__(self, reactor: Any, sock: socket.socket, rounds: int) -> None:
        super().__init__(reactor, sock)
        self.rounds = rounds
        self.writes = 0

    def doWrite(self) -> None:
        # Like paho's loop_write: done after `rounds` calls, then stops writing.
        self.writes += 1
        if self.writes >= self.rounds:
            self.reactor.removeWriter(self)


class AskedWriterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = GatewayReactor()
        self.addCleanup(self.reactor._poller.close)
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.sock = a

    def test_written_before_the_next_poll(self) -> None:
        """A writer with writes_when_asked is written on the next pass, never registered."""
        writer = _Asked(self.reactor, self.sock, rounds=1)
        self.reactor.addWriter(writer)
        self.assertNotIn(writer.fileno(), self.reactor._writes)
        self.reactor.doIteration(0)
        self.assertEqual(writer.writes, 1)
        self.assertNotIn(writer, self.reactor.getWriters())

    def test_still_writing_registered_with_epoll(self) -> None:
        """One that did not finish is registered, and written whenever epoll says writable."""
        writer = _Asked(self.reactor, self.sock, rounds=3)
        self.reactor.addWriter(writer)
        self.reactor.doIteration(0)  # the pass before the poll, then the poll's event
        self.assertEqual(writer.writes, 2)
        self.assertIn(writer.fileno(), self.reactor._writes)
        self.reactor.doIteration(0)
        self.assertEqual(writer.writes, 3)
        self.assertNotIn(writer, self.reactor.getWriters())
        self.assertNotIn(writer.fileno(), self.reactor._writes)


class WritesTests(SynchronousTestCase):
    """A TCP connection written to is written before the next poll, not after."""

    def setUp(self) -> None:
        self.reactor = reactor = GatewayReactor()
        self.addCleanup(self._close)
        self.server: list[_Collect] = []
        factory = Factory.forProtocol(lambda: self.server.append(_Collect()) or self.server[-1])
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.port = port
        self.client = _Collect()
        client_factory = ClientFactory.forProtocol(lambda: self.client)
        self.connector = reactor.connectTCP("127.0.0.1", port.getHost().port, client_factory)
        self.connecting = self.connector.transport
        self.spin(lambda: bool(self.server) and self.client.transport is not None)

    def _close(self) -> None:
        for selectable in self.reactor.removeAll():
            selectable.connectionLost(Failure(ConnectionDone()))
        self.port.stopListening()
        self.reactor._poller.close()

    def spin(self, done: Any, turns: int = 1000) -> None:
        for _ in range(turns):
            if done():
                return
            self.reactor.runUntilCurrent()
            self.reactor.doIteration(0.01)
        self.fail("condition not reached")

    def test_connecting_client_waits_for_epoll(self) -> None:
        """While connecting, a client is registered with epoll at once, as Twisted does."""
        late = _Collect()
        connector = self.reactor.connectTCP(
            "127.0.0.1", self.port.getHost().port, ClientFactory.forProtocol(lambda: late)
        )
        self.reactor.runUntilCurrent()  # the connect step: connect_ex, then wait for writable
        transport = connector.transport
        self.assertFalse(writes_when_asked(transport))
        self.assertIn(transport.fileno(), self.reactor._writes)
        self.spin(lambda: late.transport is not None)
        self.assertTrue(writes_when_asked(transport))

    def test_small_write_sent_without_epoll(self) -> None:
        """The bytes go out on the next pass; the socket is never registered for writing."""
        transport = self.client.transport
        assert transport is not None
        transport.write(b"hello")
        self.assertIn(transport, self.reactor.getWriters())
        self.assertNotIn(transport.fileno(), self.reactor._writes)
        self.reactor.doIteration(0)
        self.assertNotIn(transport, self.reactor.getWriters())
        self.assertNotIn(transport.fileno(), self.reactor._writes)
        self.spin(lambda: self.server[0].received == b"hello")

    def test_large_write_finished_through_epoll(self) -> None:
        """What the kernel cannot take at once is registered with epoll and all arrives."""
        transport = self.client.transport
        assert transport is not None
        data = bytes(range(256)) * 64 * 1024  # 16 MiB, more than any socket buffer
        transport.write(data)
        self.reactor.doIteration(0)
        self.assertIn(transport.fileno(), self.reactor._writes)
        self.spin(lambda: len(self.server[0].received) == len(data), turns=100_000)
        self.assertEqual(self.server[0].received, data)
        self.assertNotIn(transport, self.reactor.getWriters())

    def test_lose_connection_after_write(self) -> None:
        """loseConnection after a write: the bytes arrive, then both sides see the close."""
        transport = self.client.transport
        assert transport is not None
        transport.write(b"bye")
        transport.loseConnection()
        self.spin(lambda: self.server[0].lost and self.client.lost)
        self.assertEqual(self.server[0].received, b"bye")

    def test_remove_all_includes_unwritten(self) -> None:
        """A connection written to but not written yet is among removeAll()'s selectables."""
        transport = self.client.transport
        assert transport is not None
        transport.write(b"x")
        removed = self.reactor.removeAll()
        self.assertIn(transport, removed)
        self.assertNotIn(transport, self.reactor.getWriters())
        for selectable in removed:
            selectable.connectionLost(Failure(ConnectionDone()))


_RUN = """
import socket
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from ocppgw.loop_fast import GatewayReactor

reactor = GatewayReactor()
a, b = socket.socketpair()
b.setblocking(False)
transport = tcp.Connection(a, Protocol(), reactor)
transport.connected = True
received = []
shut_down = []
reactor.addSystemEventTrigger("after", "shutdown", shut_down.append, True)

def check():
    received.append(b.recv(10))
    reactor.stop()

reactor.callLater(0, transport.write, b"ping")
reactor.callLater(0.05, check)
reactor.run(installSignalHandlers=False)
print(received, shut_down)
"""


class RunTests(SynchronousTestCase):
    def test_runs_writes_and_stops(self) -> None:
        """Run as twistd does: a write goes out through the loop, and stop() ends run()."""
        out = subprocess.run(
            [sys.executable, "-c", _RUN], capture_output=True, text=True, timeout=20, check=True
        )
        self.assertEqual(out.stdout.strip(), "[b'ping'] [True]")


_COLLECTOR = """
import gc, sys, weakref
from ocppgw import tap
path = sys.argv[1]
open(path, "w").write("[listener:ws]\\nendpoint = tcp:0\\n[mqtt]\\nbroker = mqtt://127.0.0.1:1\\n")
options = tap.Options()
options.parseOptions(["--config", path])
tap.makeService(options)
from twisted.internet import reactor
before = (gc.get_threshold(), gc.get_freeze_count())
reactor.callLater(0, reactor.stop)
reactor.run(installSignalHandlers=False)

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a
alive = weakref.ref(a)
del a, b
gc.collect()
print(before, gc.get_threshold(), gc.get_freeze_count() > 0, alive() is None)
"""


class CollectorTests(SynchronousTestCase):
    def test_twistd_ocppgw_tunes_the_collector_once_running(self) -> None:
        """
        makeService leaves the collector as it is until the reactor runs; then
        start-up's objects are frozen, the young thresholds stay Python's, a
        full collection is considered after every generation-1 one, and a
        reference cycle made later is still collected.
        """
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, "-c", _COLLECTOR, f"{tmp}/gw.ini"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
        self.assertEqual(
            out.stdout.strip(), "((700, 10, 10), 0) (700, 10, 1) True True"
        )


class ExitTests(SynchronousTestCase):
    def test_killed_by(self) -> None:
        """Exit 0 after a complete stop; else the stopping signal (SIGTERM when none did)."""
        import signal

        from ocppgw.loop import Exit

        for stopping, complete, expected in (
            (signal.SIGTERM, True, None),
            (None, True, None),
            (signal.SIGINT, False, signal.SIGINT),
            (None, False, signal.SIGTERM),
            (signal.SIGTERM, None, signal.SIGTERM),
            (None, None, None),
        ):
            exit = Exit()
            exit.signal = stopping
            if complete is not None:
                exit.stopped(complete)
            self.assertEqual(exit.killed_by(), expected, (stopping, complete))

    def test_stop_signal_then_complete_stop_exits_0(self) -> None:
        """
        A process on catch_stop_signals that gets SIGTERM stops its reactor;
        a complete stop exits 0, an incomplete one ends by SIGTERM.
        """
        code = """
import os, signal, sys
from ocppgw import loop
loop.install()
from twisted.internet import reactor
loop.catch_stop_signals(reactor)
reactor.callLater(0.1, os.kill, os.getpid(), signal.SIGTERM)
reactor.addSystemEventTrigger("before", "shutdown", loop.EXIT.stopped, sys.argv[1] == "complete")
reactor.callLater(30, reactor.stop)
reactor.run()
print("stopped by", loop.EXIT.signal)
"""
        import signal

        for how, status in (("complete", 0), ("incomplete", -signal.SIGTERM)):
            done = subprocess.run(
                [sys.executable, "-c", code, how], capture_output=True, text=True, timeout=60
            )
            self.assertEqual(done.returncode, status, done.stderr)
            self.assertIn(f"stopped by {int(signal.SIGTERM)}", done.stdout)

    def test_second_signal_and_ignored_sigint(self) -> None:
        """
        A second stop signal while the reactor stops is logged and raises
        nothing (no ReactorNotRunning traceback); a SIGINT ignored when the
        process started (a shell's background job) stays ignored.
        """
        code = """
import os, signal, sys
from twisted.logger import globalLogBeginner, textFileLogObserver
from ocppgw import loop
loop.install()
from twisted.internet import reactor
globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
loop.catch_stop_signals(reactor)
def twice():
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
reactor.callLater(0.1, twice)
reactor.addSystemEventTrigger("before", "shutdown", loop.EXIT.stopped, True)
reactor.callLater(30, reactor.stop)
reactor.run()
print("stopped by", loop.EXIT.signal)
"""
        import signal

        def ignore_sigint() -> None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
            preexec_fn=ignore_sigint,
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertNotIn("Traceback", done.stdout + done.stderr)
        self.assertNotIn("Received SIGINT", done.stdout)
        self.assertIn("Received SIGTERM, shutting down.", done.stdout)
        self.assertIn("Received SIGTERM, already shutting down.", done.stdout)
        self.assertIn(f"stopped by {int(signal.SIGTERM)}", done.stdout)

class FullCollectionTests(SynchronousTestCase):
    """loop.Collector on a task.Clock, told of collections as CPython tells it."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.collector = loop.Collector(self.clock, 10.0, 300.0)
        self.addCleanup(gc.set_threshold, *gc.get_threshold())
        self.addCleanup(gc.unfreeze)
        self.addCleanup(self.collector.stop)
        self.collector.start()
        gc.unfreeze()

    def _collection(self, generation: int, found: int = 0) -> None:
        self.collector._observe("start", {"generation": generation})
        self.collector._observe("stop", {"generation": generation, "collected": found})

    def test_full_collection_that_found_nothing_freezes_its_survivors(self) -> None:
        """A full collection that found (almost) nothing freezes what survived it."""
        self._collection(2, found=loop.Collector.FEW)
        self.assertEqual(self.collector.frozen, 1)
        self.assertGreater(gc.get_freeze_count(), 0)

    def test_full_collection_that_found_garbage_freezes_nothing(self) -> None:
        """A full collection that found many unreachable objects (churn) freezes nothing."""
        self._collection(2, found=loop.Collector.FEW + 1)
        self.assertEqual((self.collector.frozen, gc.get_freeze_count()), (0, 0))

    def test_garbage_of_the_last_quiet_seconds_counts_together(self) -> None:
        """
        Charge points going, a little garbage found each time: while the full
        collections of the last quiet seconds (10) found more than FEW
        together, none freezes; once they found FEW or less, one does.
        """
        some = loop.Collector.FEW // 2 + 1
        for _ in range(4):  # at 0, 2, 4 and 6 s
            self._collection(2, found=some)
            self.clock.advance(2)
        self.assertEqual(self.collector.frozen, 1)  # at 0 s: FEW / 2 + 1 alone
        self._collection(2)  # at 8 s: the four within the last 10 s
        self.assertEqual(self.collector.frozen, 1)
        self.clock.advance(7)
        self._collection(2)  # at 15 s: only the one at 6 s within them
        self.assertEqual(self.collector.frozen, 2)

    def test_nothing_frozen_while_charge_points_go(self) -> None:
        """
        Within quiet seconds (10) of a charge point going, a full collection
        that found nothing freezes nothing (a frozen session that then goes
        hides its garbage from every collection); quiet seconds after, one does.
        """
        self.clock.advance(100)
        loop.charge_point_went()
        self.clock.advance(9.9)
        self._collection(2)
        self.assertEqual(self.collector.frozen, 0)
        self.clock.advance(0.1)
        self._collection(2)
        self.assertEqual(self.collector.frozen, 1)

    def test_a_connection_and_a_forgotten_session_tell_it(self) -> None:
        """A charge point's connection ending, and its session forgotten, each count as it going."""
        from ocppgw.router.directory import Directory
        from tests.unit.test_connection import open_connection

        self.clock.advance(100)
        proto, _ = open_connection()
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.collector._went, 100)

        self.clock.advance(5)
        directory = Directory(object(), self.clock, lambda s, p: None, lambda s: None)  # type: ignore[arg-type]
        session = types.SimpleNamespace(identity="CP1")
        directory.by_identity["CP1"] = session  # type: ignore[assignment]
        self.assertEqual(directory.forget(session), "CP1")
        self.assertEqual(self.collector._went, 105)

    def test_young_collection_freezes_nothing(self) -> None:
        """Only full collections count: a generation-1 collection freezes nothing."""
        self._collection(1)
        self.assertEqual((self.collector.frozen, gc.get_freeze_count()), (0, 0))

    def test_every_period_all_is_collected_once(self) -> None:
        """
        Every period the frozen objects are unfrozen and collected: a reference
        cycle frozen in the meantime is collected then, and the survivors frozen again.
        """

        class Node:
            other: Any

        a, b = Node(), Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        self._collection(2)  # the cycle is frozen with the rest
        del a, b
        gc.collect()
        self.assertIsNotNone(alive())
        self.clock.advance(300)
        self.assertIsNone(alive())
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_stop_leaves_no_timer_and_no_callback(self) -> None:
        """stop() cancels the periodic look and removes the collector's callback."""
        self.collector.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertNotIn(self.collector._observe, gc.callbacks)
