# -*- test-case-name: tests.unit.test_workers,tests.integration.test_exactly_once_ops -*-
"""
A worker's lifeline: the read end of a pipe whose write end only the
supervisor holds.  The supervisor never writes to it, so end-of-file means
the supervisor is gone, even killed, and the worker stops as on SIGTERM
rather than serve the shared port alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.error import ConnectionDone, ReactorNotRunning
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

LIFELINE_VARIABLE = "OCPPGW_SUPERVISOR_FD"
#: The worker's end of the pipe from its supervisor (after stdin, stdout, stderr).
LIFELINE_FD = 3

_log = Logger()


@implementer(IReadDescriptor)
class Lifeline:
    """The worker's end of the supervisor's pipe: end-of-file means the supervisor is gone."""

    def __init__(self, fd: int, gone: Callable[[], None]) -> None:
        self._fd = fd
        self._gone = gone
        self._ended = False
        os.set_blocking(fd, False)

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "supervisor"

    def doRead(self) -> Failure | None:
        try:
            data = os.read(self._fd, 512)
        except BlockingIOError:
            return None
        except OSError as e:
            self._ended = True
            return Failure(e)
        if data:
            return None  # the supervisor never writes: ignored
        self._ended = True
        return Failure(ConnectionDone())

    def connectionLost(self, reason: Failure) -> None:
        # The reactor reports a hang-up without a read, and disconnects every
        # descriptor as it stops: only an end-of-file means the supervisor is gone.
        ended = self._ended or self._at_end()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if ended:
            self._gone()

    def _at_end(self) -> bool:
        try:
            return os.read(self._fd, 512) == b""
        except BlockingIOError:
            return False  # open, nothing to read
        except OSError:
            return True


def watch(reactor: Any, fd: int) -> None:
    """Stop ``reactor`` (an orderly stop) once the pipe ``fd`` reaches end-of-file."""

    def gone() -> None:
        _log.error("the supervisor is gone (pipe closed); stopping as on SIGTERM")
        with contextlib.suppress(ReactorNotRunning):
            reactor.stop()

    reactor.addReader(Lifeline(fd, gone))
