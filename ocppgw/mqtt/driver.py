# -*- test-case-name: tests.unit.mqtt.test_driver,tests.unit.mqtt.test_session -*-
"""
paho's client as the reactor drives it, through paho's documented API only.

paho's external event loop API: paho says when its socket opens, closes and
wants writing (``on_socket_open``, ``on_socket_close``,
``on_socket_register_write``, ``on_socket_unregister_write``); the reactor
says when the socket is readable or writable, and :class:`Descriptor` calls
``loop_read`` or ``loop_write``; a LoopingCall runs ``loop_misc`` (keepalive
pings, a broker that stopped answering) every second.  paho's ``loop_read``
handles only a few packets, so reading goes on in the same turn while the
socket has more (bounded); a TLS socket may hold decrypted bytes the kernel
no longer signals, so reading also goes on while ``sock.pending()`` says so.

Connecting never blocks the reactor.  paho's ``reconnect()`` looks the name
up, connects and does the TLS handshake with blocking calls (up to its 5 s
connect timeout, plus the handshake), so it runs in the reactor's thread
pool.  Meanwhile the reactor thread leaves the client alone: the
``loop_misc`` LoopingCall is stopped, publishes wait in the client's windows
(:mod:`ocppgw.mqtt.window`), and the socket callbacks paho calls in that
thread are handed to the reactor thread (``callFromThread``) and acted on
once ``reconnect()`` has returned.

A failure while reading (a bug in a callback, say) ends the connection at
once, as a protocol error would (no DISCONNECT, so the broker publishes the
will), and the client reconnects; paho sends again what was not
acknowledged when its ``reconnect()`` runs.

:class:`Driver` is the public path.  The speed-up ``paho_internals``
(:mod:`ocppgw.mqtt.speedup`) is a subclass that drives paho through its
private parts where that was measured to cost.
"""

from __future__ import annotations

import itertools
import select
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw.mqtt.window import Window

if TYPE_CHECKING:
    import ssl

    from ocppgw.config import MQTTConfig

_log = Logger()

#: At most this many ``loop_read`` calls in one reactor turn while the
#: socket stays readable (each handles a few packets): every PUBACK that
#: arrived frees the window in the same turn, and a flood from the broker
#: still leaves the charge points' connections their turn.
_READS_A_TURN = 1000

#: What a driver calls with each PUBLISH it reads itself: topic, payload,
#: MQTT 5 subscription identifiers (the public driver leaves them to paho's
#: ``on_message``).
Deliver = Callable[[str, bytes, tuple[int, ...]], None]
#: What a driver calls when it ended the connection itself, with why.
Lost = Callable[[str], None]


class Descriptor:
    """paho's socket as a Twisted file descriptor; its driver does the work."""

    #: ``doWrite`` may be called at any time (paho's ``loop_write`` sends
    #: what the socket takes), so :mod:`ocppgw.loop` calls it before its next
    #: poll instead of waiting for epoll to report the socket writable.
    writes_when_asked = True

    def __init__(self, sock: Any, driver: Driver) -> None:
        self.sock = sock
        self._driver = driver
        self._fileno = sock.fileno()

    def fileno(self) -> int:
        return int(self._fileno)

    def logPrefix(self) -> str:
        return "mqtt"

    def doRead(self) -> None:
        self._driver.read()

    def doWrite(self) -> None:
        self._driver.paho.loop_write()

    def connectionLost(self, reason: Failure) -> None:
        # The reactor calls this when doRead or doWrite raised, after it
        # stopped watching the socket: a connection nobody reads any more
        # must end now, not when keepalive notices (about a minute later).
        # (It also calls it for every descriptor as it shuts down.)
        if self._driver.paho.socket() is self.sock and not reason.check(
            ConnectionDone, ConnectionLost
        ):
            _log.failure("the MQTT connection failed; dropping it", failure=reason)
        self._driver.drop()


class Driver:
    """
    One paho client on the reactor: its socket watched, its connects made in
    the reactor's thread pool, its keepalive run.

    :param deliver: unused here (paho's ``on_message`` delivers); for a
        driver that reads PUBLISHes itself.
    :param lost: called when the driver ends the connection itself.
    """

    #: The paho client class this driver builds.
    paho_class: type[paho.Client] = paho.Client

    def __init__(self, config: MQTTConfig, reactor: Any, deliver: Deliver, lost: Lost) -> None:
        v5 = config.protocol == "5"
        self._reactor = reactor
        self._lost = lost
        self.paho = self.paho_class(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            # MQTT 3.1.1 §3.1.2.4: clean session 0 keeps the session (its
            # subscriptions and the QoS 1 messages queued for them) on the broker.
            clean_session=None if v5 else config.session_expiry == 0,
            # A CONNACK refusing 3.1.1 would make paho reconnect (blocking)
            # as 3.1 from inside loop_read: the client reconnects instead.
            reconnect_on_failure=False,
        )
        client = self.paho
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        self._descriptor: Descriptor | None = None
        self._misc = LoopingCall(self._loop_misc)
        self._misc.clock = reactor
        #: paho's reconnect() runs in a thread: the reactor thread leaves paho alone.
        self.busy = False
        #: Socket callbacks paho made in that thread, acted on once it returned.
        self._from_thread: list[tuple[Callable[..., None], Any]] = []
        #: Connects asked for while one ran: they get its result.
        self._also: list[Deferred[MQTTErrorCode]] = []
        self._stopping = False

    def use_tls(self, context: ssl.SSLContext) -> None:
        """Connect with TLS, ``context`` checking the broker (:mod:`ocppgw.mqtt.tls`)."""
        self.paho.tls_set_context(context)

    def qos1_window(self, limit: int, buffer: int, v5: bool) -> Window[Any] | None:
        """A window of the driver's own for QoS 1 publishes (None: paho's publish, as QoS 2)."""
        return None

    # --- lifecycle ---

    def start(self) -> None:
        """Run paho's keepalive, every second."""
        self._stopping = False
        if not self._misc.running:
            self._misc.start(1.0, now=False)

    def connect(self) -> Deferred[MQTTErrorCode]:
        """
        Open a connection and send CONNECT (paho's ``reconnect()``, in the
        reactor's thread pool); fires with its result, or fails with why the
        broker could not be reached.
        """
        if self.busy:
            # Started again while the connect of before still runs (stop, then
            # start): that connect is this one.
            also: Deferred[MQTTErrorCode] = Deferred()
            self._also.append(also)
            return also
        self._unwatch()  # paho closes the socket before, in the thread
        self.busy = True
        if self._misc.running:
            self._misc.stop()
        d: Deferred[MQTTErrorCode] = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self.paho.reconnect
        )
        d.addBoth(self._connected)
        return d

    def _connected(self, result: Any) -> Any:
        # Back on the reactor thread, after every socket callback of the thread.
        self.busy = False
        events, self._from_thread = self._from_thread, []
        for call, args in events:
            call(*args)
        if self._stopping:
            self._close()
        elif not self._misc.running:
            self._misc.start(1.0, now=False)
        also, self._also = self._also, []
        for d in also:
            d.callback(result)
        return result

    def stop(self, connected: bool) -> bool:
        """
        Disconnect: when ``connected``, what is queued and a DISCONNECT are
        written, and True says the socket is still open for the rest (paho
        closes it once the DISCONNECT is out; else :meth:`close`).  Otherwise
        the socket is closed now; a connect under way, when its thread returns.
        """
        self._stopping = True
        if self._misc.running:
            self._misc.stop()
        if self.busy:
            return False
        if connected:
            self.paho.disconnect()
            self.paho.loop_write()  # often all of it; else the reactor writes the rest
            if self.paho.socket() is not None:
                return True
        self._close()
        return False

    def close(self) -> None:
        """Close the socket, whatever is left to write."""
        self._close()

    def _close(self) -> None:
        sock = self.paho.socket()
        self._unwatch()
        if sock is not None:
            sock.close()

    # --- reading ---

    def read(self) -> None:
        """
        Read what the broker sent: paho's ``loop_read`` (a few packets each),
        again while the socket has more (up to :data:`_READS_A_TURN` times),
        and always while TLS holds decrypted bytes, which nothing else signals.
        """
        client = self.paho
        try:
            for turn in itertools.count(1):
                rc = client.loop_read()
                sock = client.socket()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or sock is None:
                    break
                if _pending(sock):
                    continue
                if turn >= _READS_A_TURN or not _readable(sock):
                    break
        except Exception:
            _log.failure("reading from the MQTT broker failed; dropping the connection")
            self.drop()

    def drop(self) -> None:
        """
        End the connection now, as a protocol error would: no DISCONNECT (the
        will stays armed), the socket shut down, the client told.  paho
        closes the socket when it reconnects.
        """
        sock: Any = self.paho.socket()
        if sock is None or self._descriptor is None or self._descriptor.sock is not sock:
            return
        self._unwatch()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._lost("the connection was dropped")

    # --- paho's socket callbacks ---

    def _in_reactor(self, call: Callable[..., None], *args: Any) -> None:
        if self.busy:
            # Called in the thread running reconnect(): acted on once it returned.
            self._reactor.callFromThread(self._from_thread.append, (call, args))
        else:
            call(*args)

    def _socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_reactor(self._watch, sock)

    def _socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_reactor(self._unwatch, sock)

    def _register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_reactor(self._want_write, sock)

    def _unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_reactor(self._written, sock)

    def _watch(self, sock: Any) -> None:
        try:
            # Nagle's algorithm was the largest latency cost measured here: with
            # TCP_NODELAY on both ends, QoS 1 p99 fell from 39 ms to 5 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._unwatch()
        self._descriptor = Descriptor(sock, self)
        self._reactor.addReader(self._descriptor)

    def _unwatch(self, sock: Any = None) -> None:
        descriptor = self._descriptor
        if descriptor is not None and (sock is None or descriptor.sock is sock):
            self._reactor.removeReader(descriptor)
            self._reactor.removeWriter(descriptor)
            self._descriptor = None

    def _want_write(self, sock: Any) -> None:
        descriptor = self._descriptor
        if descriptor is not None and descriptor.sock is sock:
            # The reactor calls Descriptor.doWrite, paho's loop_write:
            # ocppgw.loop's reactor at the end of this turn, before it polls
            # again (the descriptor writes when asked); another reactor once
            # epoll says the socket is writable.  Either way, what a turn
            # queued goes out together.
            self._reactor.addWriter(descriptor)

    def _written(self, sock: Any) -> None:
        descriptor = self._descriptor
        if descriptor is not None and descriptor.sock is sock:
            self._reactor.removeWriter(descriptor)

    def _loop_misc(self) -> None:
        self.paho.loop_misc()


def _pending(sock: Any) -> bool:
    """A TLS socket holds decrypted bytes that were not read yet."""
    pending = getattr(sock, "pending", None)
    return pending is not None and pending() > 0


def _readable(sock: Any) -> bool:
    """The kernel has more for ``sock`` (or its end): ``poll`` without waiting."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


__all__ = ["Deliver", "Descriptor", "Driver", "Lost"]
