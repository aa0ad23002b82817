# -*- test-case-name: tests.unit.mqtt.speedup.test_connect,tests.integration.test_edges_broker -*-
"""
Part of the speed-up ``paho_internals``: the broker's socket, connected and
handshaken by the reactor itself.

paho's ``reconnect()`` resolves the name, connects and does the TLS handshake
with blocking calls (up to its 5 s connect timeout each), which froze every
charge point of the gateway while the broker was unreachable.  Here:

- the name is looked up by ``getaddrinfo`` in the reactor's thread pool
  (IP literals without it);
- each address is connected with a non-blocking ``connect`` whose completion
  the reactor watches (writable, then ``SO_ERROR``);
- the TLS handshake is driven by the reactor too (``SSLWantReadError`` /
  ``SSLWantWriteError``), so the service-identity check of
  :mod:`ocppgw.mqtt.tls` runs as it ends;

all within one bounded timeout; the socket is then handed to paho's
``reconnect()`` through its private ``_create_socket``
(:class:`~ocppgw.mqtt.speedup.driver.PahoClient`).  A refused connect fails
at once with :class:`ConnectionRefusedError`.  (The public driver runs
paho's own blocking connect in the reactor's thread pool instead.)
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

_IN_PROGRESS = (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY)


class _Watch:
    """A socket as a Twisted file descriptor, for one readiness event."""

    def __init__(self, sock: socket.socket, ready: Callable[[], None]) -> None:
        self._fileno = sock.fileno()
        self._ready = ready

    def fileno(self) -> int:
        return self._fileno

    def logPrefix(self) -> str:
        return "mqtt-connect"

    def doRead(self) -> None:
        self._ready()

    def doWrite(self) -> None:
        self._ready()

    def connectionLost(self, reason: Failure) -> None:
        # epoll reports a refused connect as EPOLLERR|EPOLLHUP without
        # EPOLLOUT, which the reactor hands here instead of to doWrite: the
        # socket is ready all the same, and SO_ERROR says why (ECONNREFUSED),
        # at once rather than as a timeout.
        self._ready()


def _ready(reactor: Any, sock: socket.socket, write: bool) -> Deferred[None]:
    """Fires when ``sock`` is writable (``write``) or readable; cancellable."""
    watch: _Watch

    def cancel(d: Deferred[None]) -> None:
        stop()

    def stop() -> None:
        (reactor.removeWriter if write else reactor.removeReader)(watch)

    def fire() -> None:
        if not d.called:  # once, whether as doWrite/doRead or connectionLost
            stop()
            d.callback(None)

    d: Deferred[None] = Deferred(cancel)
    watch = _Watch(sock, fire)
    (reactor.addWriter if write else reactor.addReader)(watch)
    return d


def _addresses(reactor: Any, host: str, port: int) -> Deferred[list[Any]]:
    """``getaddrinfo`` for TCP; off the reactor thread unless ``host`` is an IP literal."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        return deferToThreadPool(
            reactor,
            reactor.getThreadPool(),
            socket.getaddrinfo,
            host,
            port,
            type=socket.SOCK_STREAM,
        )
    d: Deferred[list[Any]] = Deferred()
    d.callback(found)
    return d


@inlineCallbacks
def _connect(reactor: Any, address: Any) -> Any:
    family, kind, proto, _, sockaddr = address
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        err = sock.connect_ex(sockaddr)
        if err in _IN_PROGRESS:
            yield _ready(reactor, sock, write=True)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
    except BaseException:
        sock.close()
        raise
    return sock


@inlineCallbacks
def _handshake(reactor: Any, sock: ssl.SSLSocket) -> Any:
    while True:
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            yield _ready(reactor, sock, write=False)
        except ssl.SSLWantWriteError:
            yield _ready(reactor, sock, write=True)
        else:
            return sock


@inlineCallbacks
def _open(reactor: Any, host: str, port: int, tls: ssl.SSLContext | None) -> Any:
    addresses = yield _addresses(reactor, host, port)
    error: BaseException = OSError(f"no address for {host}")
    for address in addresses:
        try:
            sock = yield _connect(reactor, address)
        except OSError as e:
            error = e
            continue
        break
    else:
        raise error
    if tls is None:
        return sock
    try:
        wrapped = tls.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
        yield _handshake(reactor, wrapped)
    except BaseException:
        sock.close()
        raise
    return wrapped


def open_socket(
    reactor: Any, host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None
) -> Deferred[socket.socket]:
    """
    A connected (and with ``tls``, handshaken and verified) non-blocking
    socket to ``host:port``; fails with :class:`TimeoutError` after
    ``timeout`` seconds, or with the connect's or handshake's error.
    Cancelling it closes what was opened.
    """
    d: Deferred[socket.socket] = _open(reactor, host, port, tls)
    timer = reactor.callLater(timeout, d.cancel)

    def done(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        elif isinstance(result, Failure):
            return Failure(TimeoutError(f"no connection within {timeout:g} s"))
        return result

    d.addBoth(done)
    return d
