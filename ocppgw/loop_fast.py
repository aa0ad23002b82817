# -*- test-case-name: tests.unit.test_loop,tests.unit.test_speedups -*-
"""
Speed-up ``twisted_reactor``: Twisted's epoll reactor without the legacy log
context per event, and with fewer system calls per write.

For every file descriptor that is ready, Twisted's ``EPollReactor.doPoll``
wraps the read or write in ``log.callWithLogger``: it asks the selectable for
its ``logPrefix()``, copies the legacy log context, pushes it, and pops it
again.  Only ``twisted.python.log.msg`` calls read that context (as their
``system``); the gateway and Autobahn log through ``twisted.logger``, which
does not.  That is work for every read and write (two reads and one write a
round trip) for a context nothing reads, so :class:`GatewayReactor` calls the
read or write directly.  What ``callWithLogger`` also did stays: an exception
escaping the read or write is logged (with the selectable's ``logPrefix()``
as its ``system``) and never stops the loop.

It also writes the way Twisted's TCP transport would, with fewer system
calls.  ``transport.write()`` buffers the bytes and registers the socket for
writability (``epoll_ctl``); the next poll reports it writable, ``doWrite``
sends, and the socket is unregistered again (``epoll_ctl``): two system calls
and a poll event for every frame sent.  :class:`GatewayReactor` keeps such a
TCP (or UNIX) connection in a list instead and calls its ``doWrite`` itself
just before the next poll, where Twisted would have called it just after;
only a connection whose kernel buffer is full (``doWrite`` leaves bytes
buffered) is registered with epoll, to be written when writable, as before.
Twisted's ``doWrite`` handles a socket that cannot take more (``EAGAIN``), a
closing connection and a failure itself, as it does when epoll wakes it.
The MQTT client's socket, whose ``doWrite`` is paho's ``loop_write``, is
written the same way (its ``writes_when_asked`` attribute says it may be).
Other writers (a connection still connecting, pipes) are registered at
once, as Twisted does.

Both rest on ``EPollReactor``'s private parts (``_poller``, ``_selectables``,
``_writes``, ``_doReadOrWrite``), so :func:`usable` checks the Twisted version
and their shape first; the public path is Twisted's ``EPollReactor`` as it
is (:func:`ocppgw.loop.install`).
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet import tcp
from twisted.internet.epollreactor import EPOLLOUT, EPollReactor
from twisted.python import log

from ocppgw import speedups

#: The Twisted versions whose EPollReactor this was checked against.
TESTED = ">=24.3,<27"


def made() -> GatewayReactor | None:
    """
    A :class:`GatewayReactor`, if it may run here (:func:`ocppgw.speedups.check`:
    the Twisted version, and the private parts it needs on the reactor made).
    """
    candidates: list[GatewayReactor] = []

    def shape() -> bool:
        reactor = GatewayReactor()
        candidates.append(reactor)
        return (
            callable(reactor._poller.poll)
            and isinstance(reactor._selectables, dict)
            and isinstance(reactor._writes, set | dict)
            and callable(reactor._doReadOrWrite)
            and callable(tcp.Connection.doWrite)
        )

    if not speedups.check("twisted_reactor", "twisted", TESTED, shape):
        return None
    return candidates[0] if candidates else GatewayReactor()


class GatewayReactor(EPollReactor):
    """
    ``EPollReactor`` calling each ready descriptor's handler without a log context.

    Everything else (timers, threads, signals, descriptors that fail) is
    Twisted's own.
    """

    def __init__(self) -> None:
        #: Connections written to since the last poll, to be written before the next.
        self._unwritten: dict[Any, None] = {}
        #: Those being written now, and the one whose doWrite runs.
        self._pass: dict[Any, None] = {}
        self._writing: Any = None
        #: Whether that one stopped writing (all sent, or lost).
        self._done_writing = False
        super().__init__()  # type: ignore[no-untyped-call]

    def addWriter(self, writer: Any) -> None:
        if (
            writer is not self._writing
            and writes_when_asked(writer)
            and writer.fileno() not in self._writes
        ):
            self._unwritten[writer] = None
            return
        super().addWriter(writer)  # type: ignore[no-untyped-call]

    def removeWriter(self, writer: Any) -> None:
        self._unwritten.pop(writer, None)
        self._pass.pop(writer, None)
        if writer is self._writing:
            self._done_writing = True
        super().removeWriter(writer)  # type: ignore[no-untyped-call]

    def getWriters(self) -> list[Any]:
        writers: list[Any] = super().getWriters()  # type: ignore[no-untyped-call]
        return writers + [w for w in (*self._pass, *self._unwritten) if w not in writers]

    def removeAll(self) -> list[Any]:
        unwritten = [*self._pass, *self._unwritten]
        self._pass.clear()
        self._unwritten.clear()
        removed: list[Any] = super().removeAll()  # type: ignore[no-untyped-call]
        return removed + [w for w in unwritten if w not in removed]

    def _write_unwritten(self) -> None:
        """
        Call ``doWrite`` of each connection written to; register with epoll
        those that could not send everything.  Connections written to by
        these ``doWrite`` calls wait for the next pass (after a poll that
        does not wait), so that no pass goes on for ever.
        """
        handle: Any = self._doReadOrWrite
        self._pass, self._unwritten = self._unwritten, {}
        while self._pass:
            writer = next(iter(self._pass))
            del self._pass[writer]
            self._writing, self._done_writing = writer, False
            try:
                # As for an epoll "writable" event: doWrite, and the
                # connection lost if it says so or raises.
                handle(writer, writer.fileno(), EPOLLOUT)
                if not self._done_writing:
                    # Bytes left over: written when epoll says writable.
                    super().addWriter(writer)  # type: ignore[no-untyped-call]
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.err(system=_prefix(writer))
            finally:
                self._writing = None

    def doPoll(self, timeout: float | None) -> None:
        """
        Write what was written to connections, then wait up to ``timeout``
        seconds (``None``: for ever) and handle every ready descriptor.
        """
        self._write_unwritten()
        if self._unwritten:
            timeout = 0
        poller: Any = self._poller  # select.epoll
        try:
            ready = poller.poll(-1 if timeout is None else timeout, len(self._selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle: Any = self._doReadOrWrite
        for fd, event in ready:
            selectable = selectables.get(fd)
            if selectable is None:
                # Removed by an earlier handler of this same poll.
                continue
            try:
                handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                # _doReadOrWrite already catches what doRead/doWrite raise;
                # this is a failure of the disconnect path itself.
                log.err(system=_prefix(selectable))
        if ready:
            # What the handlers wrote goes out now, before the timers of the
            # next turn run (paho's flush among them): a charge point's answer
            # is not kept waiting behind the broker's PUBACK.
            self._write_unwritten()

    doIteration = doPoll


def writes_when_asked(writer: Any) -> bool:
    """
    Whether ``writer.doWrite`` may be called at any time, sending what the
    kernel takes: a connected TCP or UNIX connection (while connecting, a
    client's ``doWrite`` is its connect step, an instance attribute), or a
    writer that says so with a true ``writes_when_asked`` attribute (the MQTT
    client's socket).
    """
    if getattr(writer, "writes_when_asked", False):
        return True
    return isinstance(writer, tcp.Connection) and "doWrite" not in vars(writer)


def _prefix(selectable: Any) -> str:
    try:
        return str(selectable.logPrefix())
    except BaseException:
        return "(buggy logPrefix method)"
