# -*- test-case-name: tests.unit.test_loop -*-
"""
The event loop ``twistd ocppgw`` runs on, and how the process ends.

Stage: the event loop under every stage, the lowest layer; ``ocppgw.tap``
installs it, and the supervisor (``ocppgw.workers``) gives it to its workers
(``--reactor=ocppgw``, the reactor plugin in ``twisted/plugins``).
May import: Twisted, and the speed-ups below it.

:func:`install` makes Twisted's epoll reactor the global one: the speed-up
``twisted_reactor`` (:mod:`ocppgw.loop_fast`, without the legacy log context
per event and with fewer system calls per write) where it may run, else
``EPollReactor`` as it is.

:func:`tune_collector`, run once the reactor runs, freezes what start-up left
(modules, schemas, configuration) out of the cyclic garbage collector's
sight, so its full collections no longer walk it.  Its young thresholds stay
Python's: a larger one collects less often, but charge points coming and
going then leave their cyclic garbage (read buffers among it) alive for
longer, and the RSS that ``tests/integration/test_edges_memory.py`` bounds
grows past its bound.  :class:`Collector` runs it, and then keeps the full
collections short while charge points arrive and none leave (a reconnect
storm): CPython collects the oldest generation whenever it grew by a
quarter, a pause that grows with the charge points connected (0.45-0.54 s
at 10,000, docs/performance.md) and finds nothing, their state being
long-lived.  A full collection is considered after every generation-1 one
(the third threshold 1, not 10), and after one that, with those of the last
``quiet`` seconds, found almost nothing (at most ``few`` unreachable
objects) and came ``quiet`` seconds after the last charge point went (its
connection ended or its session was forgotten: :func:`charge_point_went`),
what survived it is frozen: each full collection then walks only what came
since the last, some milliseconds, not one that walks thousands of charge
points' state every few seconds.  A charge point that goes leaves its
session and connection as cyclic garbage (some 45 objects), and a frozen
one's is hidden from every collection: so while charge points go nothing is
frozen (what the collections find cannot tell: freezing hides the very
garbage they would find, and CI saw ``test_edges_memory``'s RSS grow 57%
when only they decided).  Every ``period`` seconds all is unfrozen and
collected once, then frozen again, so the cyclic garbage of charge points
that left after being frozen lives at most that long.

:class:`Exit` is how the process ends: 0 after a complete, orderly stop,
also one that a signal started, as supervisors expect of a clean shutdown;
after an incomplete one (publishes or error envelopes left, a worker that
did not stop cleanly), as killed by the signal that stopped it (SIGTERM,
exit status 143, when none did, as after SIGUSR1's drain).  Twisted's own
SIGTERM and SIGINT handlers would make twistd end every signalled stop by
that signal, so :func:`catch_stop_signals` replaces them once the reactor
runs, with handlers that stop it the same way.  A gateway that cannot
start (a port it must listen on is taken: :func:`refuse_start`) logs one
line naming the key, its value and the cause, stops, and exits 1.
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys
from collections import deque
from types import FrameType
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ocppgw.loop_fast import made

_log = Logger()


def install() -> bool:
    """
    Install the epoll reactor as the global reactor (the speed-up's
    :class:`~ocppgw.loop_fast.GatewayReactor` where it may run), unless one
    is installed.

    :returns: whether it was installed: not when ``twistd --reactor`` (or an
        earlier import) chose a reactor.
    """
    if "twisted.internet.reactor" in sys.modules:
        return False
    from twisted.internet.main import installReactor

    reactor = made()
    if reactor is None:
        from twisted.internet.epollreactor import EPollReactor

        installReactor(EPollReactor())
    else:
        installReactor(reactor)
    return True


def tune_collector() -> None:
    """Collect once, and freeze what survived out of the collector's sight."""
    gc.collect()
    gc.freeze()


class Collector:
    """The cyclic garbage collector of a running gateway (see the module text)."""

    #: A full collection freezes what survived it when it and those of the
    #: last QUIET seconds found at most FEW unreachable objects together, and
    #: no charge point went in those seconds.
    FEW = 1000
    QUIET = 10.0
    #: Seconds between two looks at everything (unfreeze, collect, freeze).
    PERIOD = 300.0

    def __init__(
        self,
        clock: IReactorTime,
        quiet: float = QUIET,
        period: float = PERIOD,
    ) -> None:
        self._clock = clock
        self._quiet = quiet
        self._period = period
        self._sweeping = False
        self._call: IDelayedCall | None = None
        #: (when, unreachable objects found) of the full collections of the
        #: last ``quiet`` seconds that found any.
        self._found: deque[tuple[float, int]] = deque()
        #: When a charge point last went (:meth:`went`).
        self._went = float("-inf")
        #: Full collections after which the survivors were frozen.
        self.frozen = 0

    def start(self) -> None:
        """Freeze start-up's objects, then watch the full collections."""
        tune_collector()
        young, older, _ = gc.get_threshold()
        gc.set_threshold(young, older, 1)
        gc.callbacks.append(self._observe)
        self._call = self._clock.callLater(self._period, self._sweep)
        _RUNNING[:] = [self]

    def stop(self) -> None:
        if self in _RUNNING:
            _RUNNING.clear()
        if self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if self._sweeping or phase != "stop" or info.get("generation") != 2:
            return
        now = self._clock.seconds()
        found = self._found
        while found and found[0][0] <= now - self._quiet:
            found.popleft()
        collected = info.get("collected", 0)
        if collected:
            found.append((now, collected))
        if now - self._went >= self._quiet and sum(n for _, n in found) <= self.FEW:
            gc.freeze()
            self.frozen += 1

    def went(self) -> None:
        """A charge point went: nothing is frozen for ``quiet`` seconds."""
        self._went = self._clock.seconds()

    def _sweep(self) -> None:
        self._sweeping = True
        try:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        finally:
            self._sweeping = False
        self._call = self._clock.callLater(self._period, self._sweep)


#: The running gateway's collector, if one was started.
_RUNNING: list[Collector] = []


def charge_point_went() -> None:
    """A charge point's connection ended, or its session was forgotten (:meth:`Collector.went`)."""
    for collector in _RUNNING:
        collector.went()


class Exit:
    """How the process ends (see the module's docstring)."""

    def __init__(self) -> None:
        #: The signal that stopped the gateway, if one did.
        self.signal: int | None = None
        #: Whether the stop was complete; None: not stopped yet.
        self.complete: bool | None = None
        #: Why the gateway could not start, if it could not: the exit status is 1.
        self.refused: str | None = None

    def stopped(self, complete: bool) -> None:
        """The services stopped: completely (nothing left behind), or not."""
        self.complete = complete

    def killed_by(self) -> int | None:
        """
        The signal the process ends by: None (exit 0) after a complete stop;
        the stopping signal when the services never said (as twistd would).
        """
        if self.complete:
            return None
        if self.complete is None:
            return self.signal
        return self.signal if self.signal is not None else signal.SIGTERM

    def end(self) -> None:
        """At interpreter exit: 1 after a refused start, else as :meth:`killed_by` says."""
        if self.refused is not None:
            _flush()
            os._exit(1)
        number = self.killed_by()
        if number is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)


#: The process's own, armed by :func:`catch_stop_signals`.
EXIT = Exit()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()


def refuse_start(reactor: Any, line: str, exit: Exit = EXIT) -> None:
    """
    The gateway cannot start (``line`` names the key, its value and why):
    log it, and stop the reactor as soon as it runs; the process exits 1
    (:meth:`Exit.end`, armed by :func:`catch_stop_signals`).  Only the first
    refusal is logged and stops: the rest follow from it.
    """
    if exit.refused is not None:
        return
    exit.refused = line
    _log.critical("{line}; not starting", line=line)
    reactor.callWhenRunning(reactor.stop)


def catch_stop_signals(reactor: Any, exit: Exit = EXIT) -> None:
    """
    Once ``reactor`` runs, SIGTERM and SIGINT stop it as Twisted's handlers
    do, remembered in ``exit``, which ends the process (at interpreter exit).
    As Twisted does, an ignored SIGINT stays ignored (a shell's background
    job, as ``make demo`` starts the gateway).  A second signal while the
    reactor stops is logged and changes nothing (``reactor.stop`` again
    would raise ReactorNotRunning, a traceback at the end of a clean stop).
    """
    stopping: list[int] = []

    def stop(number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if stopping:
            _log.info("Received {name}, already shutting down.", name=name)
            return
        _log.info("Received {name}, shutting down.", name=name)
        stopping.append(number)
        exit.signal = number
        reactor.callFromThread(reactor.stop)

    def install() -> None:
        signal.signal(signal.SIGTERM, stop)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, stop)

    reactor.callWhenRunning(install)
    atexit.register(exit.end)
