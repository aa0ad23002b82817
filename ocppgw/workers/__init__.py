# -*- test-case-name: tests.unit.test_workers,tests.integration.test_workers -*-
"""
Stage: every core, beside the flow: ``[gateway] workers = N | auto`` runs N
gateway processes sharing the listening sockets (:mod:`ocppgw.workers.sockets`).

May import: :mod:`ocppgw.config`, :mod:`ocppgw.mqtt` (the embedded broker the
supervisor runs), Twisted; never the stages of one gateway, which each worker
builds for itself.

Roles
    ``twistd ocppgw`` with ``workers`` above 1 is the *supervisor*
    (:class:`Supervisor`): it runs no gateway itself.  It starts the embedded
    broker if there is one, then N *workers*, each ``python -m twisted ocppgw
    --config FILE`` with ``OCPPGW_WORKER=<index>`` (0 to N-1) and
    ``OCPPGW_WORKERS=<N>`` in its environment.  A worker reads the same file
    and is an instance of its own (:func:`worker_config`): gateway id and MQTT
    client id get ``-w<index>`` appended, and it does not run the embedded
    broker but connects to it.  So takeover, presence and the offline answers
    (one shared subscription group) work between workers exactly as between
    separate instances on one broker.

Sockets
    Each worker binds every listener itself with ``SO_REUSEPORT``
    (:class:`~ocppgw.workers.sockets.ReusePortListener`) and the kernel spreads new connections over
    them.  The supervisor checks at start that each address can be bound
    that way, so a port in use is an error naming the listener, not N
    failing workers.  Only ``tcp:``/``tcp6:`` endpoints (with ``interface``
    and ``backlog``) can be shared; TLS is the listener's own wrapping and
    works as with one process.

Lifecycle
    A worker that exits while the supervisor runs is started again (1 s,
    doubling to 30 s while it keeps failing, 1 s again after a run of a
    minute: :mod:`ocppgw.restarts`); its log lines are the supervisor's,
    prefixed ``worker N:`` (in ``log_format = json``: the field ``worker``).
    SIGHUP is passed on to every worker.
    SIGTERM/SIGINT stops the workers (each shuts down as one gateway does)
    within ``[gateway] shutdown_timeout`` plus 5 s, SIGKILL after that, and
    the embedded broker last.

    SIGUSR1 drains (the systemd ``ExecReload``): the supervisor passes it on
    to every worker and restarts none of them from then on; each worker
    drains as one gateway does, at ``[gateway] drain_rate`` divided among the
    workers (at least 1 a second each), so the whole gateway closes at most
    ``drain_rate`` charge points a second; once every worker has exited, the
    supervisor stops (embedded broker last) and exits 0, or 143 when a
    worker did not exit 0 (it stopped with publishes or error envelopes
    left, or was killed), as a single gateway does.

    Each worker holds the read end of a pipe whose write end only the
    supervisor has (file descriptor :data:`LIFELINE_FD`, named by
    ``OCPPGW_SUPERVISOR_FD``): when the supervisor is gone, even killed, the
    worker reads end-of-file and stops as on SIGTERM
    (:func:`watch_supervisor`), so no worker is left serving the port alone.

Admin endpoint
    With ``[admin] endpoint`` set, each worker serves its own admin API on
    the UNIX socket ``worker-<index>.sock`` (``OCPPGW_ADMIN_SOCKET``) in a
    private directory (mode 0700) of the supervisor, which serves ``[admin]
    endpoint`` and answers for all workers through them (:mod:`ocppgw.admin.fanout`).
    :attr:`Supervisor.workers` has a :class:`WorkerProcess` per worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping
from functools import partial
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, eventFromJSON
from twisted.python.failure import Failure

from ocppgw.config import Config, ConfigError
from ocppgw.loop import EXIT, Exit
from ocppgw.loop_fast import GatewayReactor
from ocppgw.mqtt.broker import EmbeddedBroker, embedded_broker
from ocppgw.mqtt.broker_access import BrokerAccessError
from ocppgw.restarts import Restarts
from ocppgw.workers.lifeline import LIFELINE_FD, LIFELINE_VARIABLE, watch
from ocppgw.workers.sockets import bind_shared, tcp_address

_log = Logger()

INDEX_VARIABLE = "OCPPGW_WORKER"
COUNT_VARIABLE = "OCPPGW_WORKERS"
ADMIN_VARIABLE = "OCPPGW_ADMIN_SOCKET"
_KILL_GRACE = 5.0


def worker_index(environ: Mapping[str, str] | None = None) -> int | None:
    """This process's worker index, or ``None`` when it is not a worker."""
    value = (os.environ if environ is None else environ).get(INDEX_VARIABLE)
    return None if value is None else int(value)


def worker_config(config: Config, index: int) -> Config:
    """The configuration of worker ``index``: an instance of its own, no embedded broker."""
    suffix = f"-w{index}"
    mqtt = dataclasses.replace(config.mqtt, client_id=config.mqtt.client_id + suffix)
    return dataclasses.replace(config, gateway_id=config.gateway_id + suffix, mqtt=mqtt)


def as_run(config: Config, environ: Mapping[str, str] | None = None) -> Config:
    """``config`` as this process runs it: a worker's own, or unchanged."""
    index = worker_index(environ)
    if index is None:
        return config
    mqtt = dataclasses.replace(config.mqtt, embedded=False)
    # Never the shared [admin] endpoint: the supervisor serves it (module docstring).
    path = (os.environ if environ is None else environ).get(ADMIN_VARIABLE)
    endpoint = None if path is None else "unix:{}:mode=600".format(path.replace(":", "\\:"))
    admin = dataclasses.replace(config.admin, endpoint=endpoint)
    # The drain_rate is the whole gateway's: each worker closes its part.
    count = int((os.environ if environ is None else environ).get(COUNT_VARIABLE) or 1)
    rate = max(1, config.drain_rate // max(1, count))
    run = dataclasses.replace(config, mqtt=mqtt, admin=admin, drain_rate=rate)
    return worker_config(run, index)


def watch_supervisor(reactor: Any, environ: Mapping[str, str] | None = None) -> bool:
    """
    In a worker, stop the reactor (an orderly stop, as on SIGTERM) once the
    supervisor is gone, killed or not.  Whether this process is such a worker.
    """
    env = os.environ if environ is None else environ
    value = env.get(LIFELINE_VARIABLE)
    if value is None or worker_index(env) is None:
        return False  # not a worker the supervisor started
    watch(reactor, int(value))
    return True


def supervises(config: Config, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is the supervisor of ``config.workers`` workers."""
    return config.workers > 1 and worker_index(environ) is None


# --- the supervisor ---


@dataclasses.dataclass
class WorkerProcess:
    """One worker, as the supervisor knows it."""

    index: int
    gateway_id: str
    client_id: str
    #: The delays before it is started again (1 s, doubling to 30 s).
    restarts: Restarts
    #: The process id while it runs, ``None`` while it is (re)started.
    pid: int | None = None
    #: The UNIX socket of its admin API, with ``[admin] endpoint`` set.
    admin_socket: str | None = None
    transport: Any = None
    exited: Deferred[None] | None = None


class _WorkerProtocol(ProcessProtocol):
    def __init__(self, supervisor: Supervisor, worker: WorkerProcess) -> None:
        self._supervisor = supervisor
        self._worker = worker
        #: The unfinished last line of each stream, by file descriptor: the
        #: worker writes stdout and stderr independently.
        self._partial: dict[int, bytes] = {}

    def outReceived(self, data: bytes) -> None:
        self._lines(1, data)

    def errReceived(self, data: bytes) -> None:
        self._lines(2, data)

    def _lines(self, fd: int, data: bytes) -> None:
        lines = (self._partial.pop(fd, b"") + data).split(b"\n")
        rest = lines.pop()
        if rest:
            self._partial[fd] = rest
        for line in lines:
            self._relay(line.decode("utf-8", "replace"))

    def _relay(self, line: str) -> None:
        """
        One line of the worker's output into the supervisor's log.  A worker
        logs JSON events (twist does, to a pipe): each keeps its level and
        fields, gains ``worker``, and is written in the supervisor's
        ``[gateway] log_format``; anything else (a crash before logging
        started) is logged as the text of an event.
        """
        text = line.strip("\x1e").strip()
        if not text:
            return
        index = self._worker.index
        try:
            event = eventFromJSON(text)
        except ValueError:
            event = None
        # json: the field "worker" (ocppgw.logs); text: a prefix (fields are flattened).
        text_prefix = "" if self._supervisor.config.log_format == "json" else f"worker {index}: "
        if not isinstance(event, dict):
            _log.info(text_prefix + "{line}", worker=index, line=text)
            return
        event["worker"] = index
        event["log_format"] = text_prefix + str(event.get("log_format") or "")
        _log.observer(event)

    def processEnded(self, reason: Failure) -> None:
        # What a dying worker wrote without a final newline is still logged.
        for fd in sorted(self._partial):
            self._relay(self._partial.pop(fd).decode("utf-8", "replace"))
        self._supervisor._ended(self._worker, reason)


class Supervisor(MultiService):
    """The first process of ``workers = N``: starts, restarts and stops the workers."""

    #: Told how the stop went: the process's exit status follows it.
    exit: Exit = EXIT

    def __init__(self, config: Config, config_path: str, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self._path = os.path.abspath(config_path)
        self._stopping = False
        self._draining = False
        #: Workers that ended other than cleanly (exit status 0) while stopping.
        self._unclean: list[str] = []
        self._admin_dir: str | None = None
        for listener in config.listeners:
            key = f"[listener:{listener.name}] endpoint"
            try:
                bind_shared(tcp_address(listener.endpoint)).close()
            except ValueError as e:
                raise ConfigError(f"{key}: {e}") from None
            except OSError as e:
                raise ConfigError(f"{key}: cannot listen on {listener.endpoint}: {e}") from None
        self.broker: EmbeddedBroker | None = None
        if config.mqtt.embedded:
            try:
                self.broker = embedded_broker(reactor, config.mqtt)
            except BrokerAccessError as e:
                raise ConfigError(str(e)) from None
            self.broker.setServiceParent(self)
        #: Every worker, by index: what the admin API and metrics address.
        self.workers: tuple[WorkerProcess, ...] = tuple(
            WorkerProcess(i, w.gateway_id, w.mqtt.client_id, Restarts(reactor, 1.0, 30.0))
            for i in range(config.workers)
            for w in (worker_config(config, i),)
        )

    def startService(self) -> None:
        if self.config.admin.endpoint is not None:
            self._admin_dir = tempfile.mkdtemp(prefix="ocppgw-admin-")
            for worker in self.workers:
                worker.admin_socket = os.path.join(self._admin_dir, f"worker-{worker.index}.sock")
        super().startService()
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda n, f: self.reactor.callFromThread(self._hup))
        if hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, lambda n, f: self.reactor.callFromThread(self.drain))
        if self.exit.refused is not None:
            return  # [admin] endpoint could not listen: no worker to start and stop
        for worker in self.workers:
            self._spawn(worker)

    def _spawn(self, worker: WorkerProcess) -> None:
        if self._stopping or self._draining:
            return
        env = dict(os.environ)
        env[INDEX_VARIABLE] = str(worker.index)
        env[COUNT_VARIABLE] = str(len(self.workers))
        env[LIFELINE_VARIABLE] = str(LIFELINE_FD)
        if worker.admin_socket is not None:
            env[ADMIN_VARIABLE] = worker.admin_socket
            with contextlib.suppress(FileNotFoundError):
                os.unlink(worker.admin_socket)  # left by a worker that was killed
        argv = [sys.executable, "-m", "twisted", *self._reactor_option(), "ocppgw"]
        argv += ["--config", self._path]
        worker.exited = Deferred()
        worker.transport = self.reactor.spawnProcess(
            _WorkerProtocol(self, worker),
            sys.executable,
            argv,
            env=env,
            path=os.getcwd(),
            # LIFELINE_FD: a pipe only this process writes (watch_supervisor).
            childFDs={0: "w", 1: "r", 2: "r", LIFELINE_FD: "w"},
        )
        worker.pid = worker.transport.pid
        worker.restarts.started()
        _log.info("worker {index} started (pid {pid})", index=worker.index, pid=worker.pid)

    def _reactor_option(self) -> list[str]:
        """Workers run on the supervisor's reactor when it is the gateway's own (ocppgw.loop)."""
        return ["--reactor=ocppgw"] if isinstance(self.reactor, GatewayReactor) else []

    def _ended(self, worker: WorkerProcess, reason: Failure) -> None:
        worker.pid, worker.transport = None, None
        # A worker that stops with publishes or error envelopes left exits 143
        # (counted before its exit may end the supervisor's stop).
        if (self._stopping or self._draining) and not reason.check(ProcessDone):
            self._unclean.append(f"worker {worker.index}: {reason.getErrorMessage()}")
        exited, worker.exited = worker.exited, None
        if exited is not None:
            exited.callback(None)
        if self._stopping or self._draining:
            why = reason.getErrorMessage()
            _log.info("worker {index} exited ({why})", index=worker.index, why=why)
            return
        delay = worker.restarts.ended(partial(self._spawn, worker))
        _log.error(
            "worker {index} exited ({why}); starting it again in {delay:g} s",
            index=worker.index,
            why=reason.getErrorMessage(),
            delay=delay,
        )

    def _signal(self, signum: int) -> None:
        for worker in self.workers:
            if worker.transport is not None:
                try:
                    worker.transport.signalProcess(signum)
                except Exception:
                    pass  # it is exiting; processEnded follows

    def _hup(self) -> None:
        self._signal(signal.SIGHUP)

    def drain(self) -> Deferred[Any] | None:
        """
        SIGUSR1: every worker drains (and none is started again); once all
        have exited, the supervisor stops.  Fires then; ``None`` if already
        draining or stopping.
        """
        if self._draining or self._stopping or not self.running:
            return None
        self._draining = True
        self._hold()
        waits = [w.exited for w in self.workers if w.exited is not None]
        _log.info("draining: SIGUSR1 to {n} workers; stopping once all have exited", n=len(waits))
        self._signal(signal.SIGUSR1)

        def drained(_: object) -> None:
            if self._stopping:
                return  # SIGTERM came first
            _log.info("drained: every worker exited; stopping")
            self.reactor.stop()

        return DeferredList(waits).addCallback(drained)

    def _hold(self) -> None:
        """No worker is started again: a restart that waits is dropped."""
        for worker in self.workers:
            worker.restarts.hold()

    def stopService(self) -> Deferred[Any]:
        self._stopping = True
        self._hold()
        waits = [w.exited for w in self.workers if w.exited is not None]
        self._signal(signal.SIGTERM)
        kill = self.reactor.callLater(
            self.config.shutdown_timeout + _KILL_GRACE, self._signal, signal.SIGKILL
        )

        def stopped(_: object) -> Any:
            if kill.active():
                kill.cancel()
            if self._admin_dir is not None:
                shutil.rmtree(self._admin_dir, ignore_errors=True)
            if self._unclean:
                _log.warn(
                    "stopping; not every worker stopped cleanly: {why}",
                    why="; ".join(self._unclean),
                )
            self.exit.stopped(complete=not self._unclean)
            # The broker last: the workers' final presence goes through it.
            return MultiService.stopService(self)

        return DeferredList(waits).addCallback(stopped)


__all__ = [
    "Supervisor",
    "WorkerProcess",
    "as_run",
    "supervises",
    "watch_supervisor",
    "worker_config",
    "worker_index",
]
