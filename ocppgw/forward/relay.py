# -*- test-case-name: tests.unit.forward.test_relay -*-
"""
The relay of one charge point: its connection and the central system's,
frame for frame.

- Each text frame goes on unchanged (the same characters, so the same UTF-8
  bytes), in the order it came, before anything else is done with it; then
  it is judged (:mod:`~ocppgw.forward.verdicts`) and tapped
  (:mod:`~ocppgw.forward.tap`).
- What the central system sends between its upgrade and the charge point's
  is held by the :class:`Link` and relayed first, in order.
- CALLs towards the charge point take turns with the MQTT backends' and the
  answers go back to whoever asked (:mod:`~ocppgw.forward.turns`); the
  backends' side is MQTT mode's session, whose connection is the turns.
- ``on_csms_down = close``: the central system's connection gone, the
  charge point's is closed with 1012 (RFC 6455 §7.4.1, service restart), so
  that it reconnects and is relayed again.  The charge point's gone, the
  central system's is closed with the charge point's own close code when it
  sent one a close frame may carry (1000, 1001, 3000-4999), else 1001; so
  are the mirrors' (:mod:`~ocppgw.forward.mirror`).
- ``on_csms_down = hold``: the charge point is kept, its CALLs answered
  with a CALLERROR while the central system's connection is opened again
  (:mod:`~ocppgw.forward.hold`).
- ``validation = enforce``: a frame the rules refuse is answered, not
  relayed (:mod:`~ocppgw.forward.enforce`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from ocppgw.forward.enforce import refusal
from ocppgw.forward.hold import Reconnect, held_off
from ocppgw.forward.mirror import Mirrors
from ocppgw.forward.tap import CHARGE_POINT, CSMS, MIRROR, Tap
from ocppgw.forward.turns import BACKEND, CENTRAL, Turns
from ocppgw.forward.upstream import Receiver, UpstreamProtocol
from ocppgw.forward.verdicts import ACCEPTED, Verdict, Verdicts
from ocppgw.interfaces import (
    CLOSE_GOING_AWAY,
    CLOSE_SERVICE_RESTART,
    NO_EVENTS,
    IChargePointConnection,
    IChargePointSession,
    IGatewayEvents,
)
from ocppgw.ocpp.messages import Message, MessageType

#: A frame judged: its message (None: unreadable) and verdict.
Judged = tuple[Message | None, Verdict]


def forwardable(code: int | None) -> int:
    """A close code of the charge point's that the central system may be sent (RFC 6455 §7.4)."""
    if code is not None and (code in (1000, 1001) or 3000 <= code <= 4999):
        return code
    return CLOSE_GOING_AWAY


class Link(Receiver):
    """The central system's open connection, from its upgrade until the relay takes it."""

    def __init__(
        self, upstream: UpstreamProtocol, version: str | None, clock: IReactorTime, wait: float
    ) -> None:
        self.upstream = upstream
        #: The subprotocol the central system chose (the charge point's too).
        self.version = version
        #: ``on_csms_down = hold``: opens this connection again (a Deferred of a Link).
        self.reopen: Callable[[], Deferred[Link]] | None = None
        self._held: list[str] = []
        self._closed: tuple[int | None, str | None] | None = None
        upstream.receiver = self
        #: A charge point that leaves before its upgrade completes never takes it.
        self._timer: IDelayedCall | None = None
        if wait > 0:
            self._timer = clock.callLater(wait, self.abandon)

    def upstream_frame(self, text: str) -> None:
        self._held.append(text)

    def upstream_closed(self, code: int | None, reason: str | None) -> None:
        self._closed = (code, reason)
        self._stop_timer()

    def abandon(self) -> None:
        """Nobody takes this connection: close it."""
        self._timer = None
        self.upstream.close(CLOSE_GOING_AWAY, "charge point left during the handshake")

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def hand_to(self, receiver: Receiver) -> None:
        """From now on ``receiver`` gets the frames and the close; first what was held."""
        self._stop_timer()
        self.upstream.receiver = receiver
        held, self._held = self._held, []
        for text in held:
            receiver.upstream_frame(text)
        if self._closed is not None:
            receiver.upstream_closed(*self._closed)


@implementer(IChargePointSession)
class Relay(Receiver):
    """One charge point relayed to its central system."""

    def __init__(
        self,
        identity: str,
        version: str,
        connection: IChargePointConnection,
        link: Link,
        tap: Tap | None,
        peer: str,
        verdicts: Verdicts,
        turns: Turns,
        backend: IChargePointSession | None = None,
        events: IGatewayEvents = NO_EVENTS,
        clock: IReactorTime | None = None,
        enforce: bool = False,
    ) -> None:
        """``backend``: the MQTT backends' session of the charge point, on ``turns``."""
        self.identity = identity
        self.version = version
        self.connection = connection
        self.upstream = link.upstream
        self.tap = tap
        self.peer = peer
        self.verdicts = verdicts
        self.turns = turns
        #: The MQTT backends' session (kept for its close_session after it was told closing).
        self.backend = backend
        self._told = False
        #: Whose side closed first: the charge point's (True), the central system's (False).
        self.closed_by: bool | None = None
        self._events = events
        self._seconds = clock.seconds if clock is not None else (lambda: 0.0)
        #: validation = enforce: refused frames are answered here, not relayed.
        self.enforce = enforce
        #: The central system's frames judged before their turn, by id() (enforce).
        self._judged: dict[int, tuple[str, Judged]] = {}
        #: on_csms_down = hold: the attempts to reconnect, and whether it is away now.
        self._reconnect: Reconnect | None = None
        self.away = False
        if link.reopen is not None and clock is not None:
            self._reconnect = Reconnect(clock, link.reopen, self._relinked)
        #: The mirrors' connections (:mod:`~ocppgw.forward.mirror`), added by the forwarder.
        self.mirrors = Mirrors(identity, version, tap, turns, lambda: Verdicts(version, None))
        turns.on_sent = self._sent
        link.hand_to(self)

    # --- the charge point (IChargePointSession) ---

    def frame_received(self, text: str) -> None:
        at = self._seconds()
        judged = None
        if self.enforce:
            judged = self.verdicts.judge(text, True)
            if judged[1] != ACCEPTED:
                self._refuse(text, True, judged)
                return
        turns = self.turns
        if turns.in_flight is not None:
            who = turns.answer_of(text)
            if who is not None and who != CENTRAL:
                # The answer to a backend's or a mirror's CALL: theirs alone.
                if who == BACKEND:
                    self._to_backend(text)
                    self._tapped(text, True, CHARGE_POINT, "", judged)
                else:
                    self.mirrors.answered(who, text)
                self._events.forwarded(CHARGE_POINT, self._seconds() - at)
                turns.resume()
                return
        if self.away:
            self._held_off(text, judged)
        else:
            self.upstream.send_frame(text)
            self._events.forwarded(CHARGE_POINT, self._seconds() - at)
            self._tapped(text, True, CHARGE_POINT, self.peer, judged)
        if self.mirrors:
            self.mirrors.copy(text)
        turns.resume()

    def _to_backend(self, text: str) -> None:
        if self.backend is not None and not self._told:
            self.backend.frame_received(text)

    def _refuse(self, text: str, from_charge_point: bool, judged: Judged) -> None:
        """validation = enforce: ``text`` is not relayed; the CALLERROR of the rules instead."""
        message, verdict = judged
        sender, peer = (CHARGE_POINT, self.peer) if from_charge_point else (CSMS, self.peer)
        found = refusal(text, self.version, message, verdict)
        if found is not None:
            error, to_sender = found
            if to_sender == from_charge_point:
                self.connection.send_frame(error)
            elif not from_charge_point:
                self.upstream.send_frame(error)
            elif self.turns.answer_of(text) == BACKEND:
                self._to_backend(error)
                self.turns.resume()
            else:
                self.upstream.send_frame(error)
                self.turns.resume()
        self._tapped(text, from_charge_point, sender, peer, judged)

    def closing(self) -> None:
        if self.closed_by is None:
            self.closed_by = True
            code: Any = getattr(self.connection, "remoteCloseCode", None)
            self.upstream.close(forwardable(code), "charge point disconnected")
        if self._reconnect is not None:
            self._reconnect.stop()
        if self.mirrors:
            code = getattr(self.connection, "remoteCloseCode", None)
            self.mirrors.stop(forwardable(code))
        self.left()

    def _held_off(self, text: str, judged: Judged | None) -> None:
        """on_csms_down = hold, the central system away: CALLs answered here, nothing relayed."""
        if judged is None:
            judged = self.verdicts.judge(text, True)
        message = judged[0]
        error, verdict = held_off(self.version, message.unique_id if message else "-1")
        if message is not None and message.message_type == MessageType.CALL:
            self.connection.send_frame(error)
        self._tapped(text, True, CHARGE_POINT, self.peer, (message, verdict))

    def _relinked(self, link: Link) -> None:
        """The central system's connection is open again."""
        self.upstream = link.upstream
        self.away = False
        link.hand_to(self)

    def state(self) -> dict[str, object]:
        """The central system's connection as the admin API shows it."""
        upstream = self.upstream
        names = {
            upstream.STATE_OPEN: "open",
            upstream.STATE_CLOSING: "closing",
            upstream.STATE_CLOSED: "closed",
        }
        state = "reconnecting" if self.away else names.get(upstream.state, "opening")
        return {
            "central_system": {"peer": self.peer, "state": state},
            "mirrors": self.mirrors.state(),
        }

    def left(self) -> None:
        """The charge point's connection is not open any more: the backend's session learns it."""
        self.turns.stop()
        if not self._told:
            self._told = True
            if self.backend is not None:
                self.backend.closing()

    # --- the central system (Receiver) ---

    def upstream_frame(self, text: str) -> None:
        if self.enforce:
            judged = self.verdicts.judge(text, False)
            if judged[1] != ACCEPTED:
                self._refuse(text, False, judged)
                return
            self._judged[id(text)] = (text, judged)
        self.turns.from_central(text)

    def _sent(self, text: str, who: str, at: float) -> None:
        """A frame of ``who`` (central system, backend, mirror), received ``at``, went out."""
        if self.mirrors and self.mirrors.sent(who, text):
            self._events.forwarded(MIRROR, self._seconds() - at)
            return
        self._events.forwarded(who, self._seconds() - at)
        judged = self._judged.pop(id(text), None) if self._judged else None
        peer = "" if who == BACKEND else self.peer
        self._tapped(text, False, who, peer, None if judged is None else judged[1])

    def upstream_closed(self, code: int | None, reason: str | None) -> None:
        if self.closed_by is None and self._reconnect is not None:
            if not self.away:
                self.away = True
                self._events.upstream_failed("lost")
                self.turns.central_gone()
            self._reconnect.start()
            return
        if self.closed_by is None:
            self.closed_by = False
            self._events.upstream_failed("lost")
            self.connection.close(
                CLOSE_SERVICE_RESTART, f"central system closed ({code}); reconnect"
            )

    def _tapped(
        self,
        text: str,
        from_charge_point: bool,
        direction: str,
        peer: str,
        judged: Judged | None = None,
    ) -> None:
        tap = self.tap
        if tap is None:
            return
        if judged is None:
            judged = self.verdicts.judge(text, from_charge_point)
        message, verdict = judged
        tap.frame(self.identity, self.version, text, direction, peer, message, verdict)
