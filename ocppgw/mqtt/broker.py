# -*- test-case-name: tests.unit.mqtt.test_broker -*-
"""
The embedded broker: a local mosquitto run and supervised as a child process.

With ``[mqtt] broker = embedded`` the gateway writes a mosquitto configuration
into a private temporary directory, starts mosquitto on ``embedded_host`` and
``embedded_port``, restarts it (with backoff, :mod:`ocppgw.restarts`) if it dies, and stops it when
the gateway stops.  Its sessions and queued messages are kept in that
directory (``persistence``), so a mosquitto restarted after a crash resumes
them; the directory goes when the gateway stops.  ``set_tcp_nodelay`` is
on: Nagle's algorithm was the largest latency cost measured on the MQTT side.

mosquitto runs in a session and process group of its own (``setsid`` before
the exec), so a Ctrl-C in the terminal reaches only the gateway, which stops
the broker last.  Once the gateway is stopping (:meth:`EmbeddedBroker.hold`)
a broker that dies is not restarted, and the stop is bounded: SIGTERM, then
SIGKILL after ``STOP_TIMEOUT`` seconds, so a hung mosquitto cannot hang the
gateway's shutdown.

The gateway's MQTT clients connect once mosquitto accepts connections
(:meth:`EmbeddedBroker.listening`: a TCP connect tried every
:data:`PROBE_INTERVAL` seconds, for at most :data:`PROBE_LIMIT`), not into
a refusal and a retry ``reconnect_min`` later: a start with the embedded
broker logs no refused connection, and connects as soon as it listens.

:func:`embedded_broker` checks before anything starts (issues 22 and 24): a
port another process already listens on stops the gateway with a line naming
that process (not a broker failing forever while the gateway uses the other
one), and with ``[mqtt] username`` the broker lets in only the gateway's
login and the backends' of ``embedded_users``
(:mod:`ocppgw.mqtt.broker_access`); ``[mqtt] embedded_host`` off loopback
requires that (:mod:`ocppgw.config.derived`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw.mqtt.broker_access import (
    BrokerAccessError,
    BrokerSettings,
    port_problem,
    read_users,
    write_password_file,
)
from ocppgw.restarts import Restarts

_log = Logger()

_SEARCH = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")

#: Seconds mosquitto gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 5.0

#: Run argv[1:] in a new session (its own process group): spawnProcess has
#: no preexec hook, so the child's Python does setsid() and then the exec.
_SETSID = "import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])"


class BrokerNotFound(BrokerAccessError):
    """No mosquitto binary could be found."""


def find_mosquitto(configured: str = "") -> str:
    """
    The path of the mosquitto binary: ``configured`` if given, else PATH and
    the usual sbin directories.

    :raises BrokerNotFound: with what to do about it.
    """
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise BrokerNotFound(f"[mqtt] mosquitto: {configured} is not an executable file")
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path=os.pathsep.join(_SEARCH))
    if found is None:
        raise BrokerNotFound(
            "[mqtt] broker = embedded needs mosquitto, which was not found on PATH or in "
            + ", ".join(_SEARCH)
            + "; install it (apt-get install mosquitto), set [mqtt] mosquitto to its path, "
            "or set [mqtt] broker = mqtt://HOST:PORT"
        )
    return found


def embedded_broker(reactor: Any, mqtt: BrokerSettings) -> EmbeddedBroker:
    """
    The embedded broker as ``[mqtt]`` configures it, checked before it starts:
    mosquitto is found, ``host:port`` is free (:func:`port_problem`), and,
    with ``username``, only the gateway's login and those of
    ``embedded_users`` are let in.

    :raises BrokerAccessError: one line naming the key and the cause.
    """
    binary = find_mosquitto(mqtt.mosquitto)
    host, port, username, users_file = mqtt.host, mqtt.port, mqtt.username, mqtt.embedded_users
    logins = None
    if username is not None:
        logins = [(username, mqtt.password or "")]
        if users_file is not None:
            try:
                backends = read_users(users_file)
            except BrokerAccessError as e:
                raise BrokerAccessError(f"[mqtt] embedded_users: {e}") from None
            if any(user == username for user, _ in backends):
                raise BrokerAccessError(
                    f"[mqtt] embedded_users: {users_file} names [mqtt] username, the "
                    "gateway's own login: give the backends logins of their own"
                )
            logins += backends
    problem = port_problem(host, port)
    if problem is not None:
        raise BrokerAccessError(problem)
    return EmbeddedBroker(reactor, binary, host, port, logins)


#: Seconds between the embedded mosquitto's saves of its sessions to disk: each
#: writes the whole database (every retained presence), so not too often.
AUTOSAVE_INTERVAL = 60


def mosquitto_config(host: str, port: int, data_dir: str, password_file: str | None = None) -> str:
    """
    A mosquitto.conf for a local broker that keeps its sessions, queued and
    retained messages in ``data_dir`` (saved every :data:`AUTOSAVE_INTERVAL`
    seconds and when it stops), so that a broker the gateway restarts after a
    crash still holds the sessions it kept.  Anonymous, unless
    ``password_file`` is given: then only its logins are let in.
    """
    if password_file is None:
        access = ["allow_anonymous true"]
    else:
        access = ["allow_anonymous false", f"password_file {password_file}"]
    return "\n".join(
        [
            "# written by ocppgw for its embedded broker",
            f"listener {port} {host}",
            *access,
            "persistence true",
            f"persistence_location {os.path.join(data_dir, '')}",
            f"autosave_interval {AUTOSAVE_INTERVAL}",
            "set_tcp_nodelay true",
            "max_queued_messages 100000",
            "max_inflight_messages 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "",
        ]
    )


def data_directory() -> str:
    """
    A new private directory for the embedded mosquitto's configuration and
    saved sessions.  Started as root, mosquitto drops to its own user (named
    ``mosquitto``) after reading its configuration; the directory is then
    that user's, so that it can save its sessions there.
    """
    path = tempfile.mkdtemp(prefix="ocppgw-mosquitto-")
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("mosquitto")
        except KeyError:
            return path  # no such user: mosquitto keeps running as root
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


#: Seconds between two tries of whether the embedded mosquitto listens yet.
PROBE_INTERVAL = 0.05
#: Seconds after which the MQTT clients connect anyway (and say why they cannot).
PROBE_LIMIT = 5.0


class _Probe:
    """Tries a TCP connect to ``host:port`` until one is accepted; ``done`` fires then."""

    def __init__(self, reactor: Any, host: str, port: int) -> None:
        self._reactor = reactor
        kind = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
        self._endpoint = kind(reactor, host, port, timeout=1)
        self._deadline = reactor.seconds() + PROBE_LIMIT
        self._call: Any = None
        self._attempt: Deferred[Any] | None = None
        #: Fires once mosquitto accepted a connection, or the probe gave up or stopped.
        self.done: Deferred[None] = Deferred()

    def start(self) -> None:
        self._call = None
        attempt = self._attempt = self._endpoint.connect(Factory.forProtocol(Protocol))
        attempt.addCallbacks(self._accepted, self._not_yet)

    def _accepted(self, protocol: Protocol) -> None:
        self._attempt = None
        if protocol.transport is not None:
            protocol.transport.abortConnection()  # type: ignore[attr-defined]
        self._fire()

    def _not_yet(self, failure: Failure) -> None:
        self._attempt = None
        if failure.check(CancelledError) or self.done.called:
            return
        if self._reactor.seconds() >= self._deadline:
            self._fire()
        else:
            self._call = self._reactor.callLater(PROBE_INTERVAL, self.start)

    def _fire(self) -> None:
        if not self.done.called:
            self.done.callback(None)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._attempt is not None:
            self._attempt.cancel()
        self._fire()


class _Child(ProcessProtocol):
    def __init__(self, owner: EmbeddedBroker) -> None:
        self.owner = owner
        self.ended: Deferred[None] = Deferred()

    def errReceived(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip():
                _log.info("mosquitto: {line}", line=line)

    outReceived = errReceived

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.owner._ended(self, reason)


class EmbeddedBroker(Service):
    """Runs mosquitto for as long as the service runs."""

    def __init__(
        self,
        reactor: Any,
        binary: str,
        host: str,
        port: int,
        logins: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        """``logins``: the only users let in (else anonymous access)."""
        self._reactor = reactor
        self._logins = None if logins is None else tuple(logins)
        self._binary = binary
        self._host = host
        self._port = port
        self._child: _Child | None = None
        self._dir: str | None = None
        self._restarts = Restarts(reactor, first=0.5)
        self._kill: Any = None
        #: False once the gateway is stopping: nothing restarts the broker then.
        self._supervise = True
        self._probe: _Probe | None = None

    def startService(self) -> None:
        super().startService()
        self._dir = data_directory()
        passwords = None
        if self._logins is not None:
            passwords = os.path.join(self._dir, "passwords")
            write_password_file(passwords, self._logins)
        path = os.path.join(self._dir, "mosquitto.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(mosquitto_config(self._host, self._port, self._dir, passwords))
        self._spawn()

    def listening(self) -> Deferred[None]:
        """
        Fires once the mosquitto started by :meth:`startService` accepts
        connections, or after :data:`PROBE_LIMIT` seconds, or when the
        service stops, whichever is first.
        """
        if self._probe is None:
            self._probe = _Probe(self._reactor, self._host, self._port)
            self._probe.start()
        done: Deferred[None] = Deferred()
        self._probe.done.addCallback(lambda _: done.callback(None))
        return done

    def _spawn(self) -> None:
        assert self._dir is not None
        child = _Child(self)
        self._child = child
        conf = os.path.join(self._dir, "mosquitto.conf")
        _log.info("starting embedded mosquitto on {host}:{port}", host=self._host, port=self._port)
        self._restarts.started()
        self._reactor.spawnProcess(
            child,
            sys.executable,
            [sys.executable, "-c", _SETSID, self._binary, "-c", conf],
            env=dict(os.environ),
            usePTY=False,
        )

    def hold(self) -> None:
        """The gateway is stopping: a broker that dies from now on stays dead."""
        self._supervise = False
        self._restarts.hold()

    def _ended(self, child: _Child, reason: Failure) -> None:
        if child is not self._child:
            return
        self._child = None
        if self._kill is not None and self._kill.active():
            self._kill.cancel()
        if not self.running or not self._supervise:
            return
        how = "exited" if reason.check(ProcessDone) else reason.getErrorMessage()
        delay = self._restarts.ended(self._spawn)
        _log.error("embedded mosquitto {how}; restarting in {delay:.1f} s", how=how, delay=delay)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.hold()
        if self._probe is not None:
            self._probe.stop()
        child = self._child
        d: Deferred[None] = succeed(None)
        if child is not None and child.transport is not None:
            d = child.ended
            self._signal(child, signal.SIGTERM)
            self._kill = self._reactor.callLater(STOP_TIMEOUT, self._signal, child, signal.SIGKILL)
        d.addBoth(self._cleanup)
        return d

    def _signal(self, child: _Child, signum: int) -> None:
        if signum == signal.SIGKILL:
            _log.warn("embedded mosquitto did not stop in {t:g} s; killing it", t=STOP_TIMEOUT)
        try:
            child.transport.signalProcess(signum)  # type: ignore[union-attr]
        except Exception:
            pass  # already gone

    def _cleanup(self, result: object) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
