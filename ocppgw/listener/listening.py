# -*- test-case-name: tests.integration.test_startup_failures,tests.unit.listener.test_listening -*-
"""
A listening endpoint as a Twisted service that says when it cannot listen.

Twisted's ``StreamServerEndpointService`` logs a port that cannot be bound
as an "Unhandled Error" and runs on without it; a gateway whose charge
point port (or admin port) is taken must not look healthy to systemd.
:class:`Listening` hands the failure, as one line naming the INI key and
its value, to ``refused`` (:func:`ocppgw.loop.refuse_start` in the
gateway: log it, stop, exit non-zero).

:class:`RecordingEndpoint` keeps what ``listen`` gave: ``port`` once
listening, ``error`` when it could not, for ``/healthz`` and the admin API.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

_log = Logger()


@implementer(IStreamServerEndpoint)
class RecordingEndpoint:
    """
    A server endpoint that keeps what its ``listen`` gave: ``port`` once
    listening, ``error`` when it could not listen.  What the admin API and
    ``/healthz`` read of a listener, one-process or worker alike.
    """

    def __init__(self, endpoint: IStreamServerEndpoint) -> None:
        self._endpoint = endpoint
        self.port: IListeningPort | None = None
        self.error: str | None = None

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        def bound(port: IListeningPort) -> IListeningPort:
            self.port, self.error = port, None
            return port

        def failed(failure: Failure) -> Failure:
            self.error = failure.getErrorMessage()
            return failure

        return self._endpoint.listen(factory).addCallbacks(bound, failed)


def cause(failure: Failure | BaseException) -> str:
    """Why a port could not be bound, in a few words ("address already in use")."""
    error = failure.value if isinstance(failure, Failure) else failure
    if isinstance(error, CannotListenError):
        port = error.port
        if isinstance(port, bytes | str):  # a UNIX socket's path
            where = port.decode("utf-8", "replace") if isinstance(port, bytes) else port
        else:
            where = f"{error.interface or '*'}:{port}"
        socket_error = error.socketError
        reason = getattr(socket_error, "strerror", None) or str(socket_error)
        if reason == "Cannot acquire lock":
            reason += " (another process listens there: a gateway with the same [gateway] id?)"
        return f"cannot listen on {where}: {reason}"
    if isinstance(error, OSError) and error.strerror:
        return f"cannot listen: {error.strerror}"
    return f"cannot listen: {error}"


#: Told one line when a listener cannot listen.
Refused = Callable[[str], None]


def _log_refusal(line: str) -> None:
    _log.error("{line}", line=line)


class Listening(Service):
    """
    ``factory`` on the endpoint string ``value`` of INI key ``key`` (e.g.
    ``[listener:ws] endpoint``), or on ``endpoint`` made of it, when given; a
    failure to listen (or to make ``directory``, the UNIX socket's) goes to
    ``refused`` as one line, never to the log as an unhandled error.

    :raises ValueError, TypeError, KeyError: ``value`` is not an endpoint string.
    """

    def __init__(
        self,
        reactor: Any,
        key: str,
        value: str,
        factory: Any,
        refused: Refused = _log_refusal,
        directory: str | None = None,
        endpoint: IStreamServerEndpoint | None = None,
    ) -> None:
        #: Made (mode 0700) before listening, for a UNIX socket: None, none.
        self.directory = directory
        self.key = key
        self.value = value
        self.factory = factory
        self.refused = refused
        #: What the admin API reads: the port, or why there is none.
        self.endpoint = RecordingEndpoint(endpoint or serverFromString(reactor, value))
        self._listening: Deferred[IListeningPort] | None = None

    def startService(self) -> None:
        super().startService()
        if self.directory is not None:
            try:
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
            except OSError as e:
                reason = e.strerror or str(e)
                self.refused(f"{self.key} = {self.value}: cannot create {self.directory}: {reason}")
                return
        d = self._listening = self.endpoint.listen(self.factory)
        d.addErrback(self._failed)

    def _failed(self, failure: Failure) -> None:
        self.refused(f"{self.key} = {self.value}: {cause(failure)}")

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        listening, self._listening = self._listening, None
        port, self.endpoint.port = self.endpoint.port, None
        if port is not None:
            return port.stopListening()
        if listening is not None and not listening.called:
            listening.cancel()
        return None
