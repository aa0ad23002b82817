# -*- test-case-name: tests.unit.forward.test_mirror -*-
"""
Mirrors (``[forward:NAME] mirrors``): read-only systems that watch a
charge point beside its central system.

- Each mirror has its own connection per charge point, opened with the
  charge point's subprotocol when the relay starts (no Authorization is
  sent: a mirror is another system, and the charge point's credentials are
  the central system's), and opened again after a loss (1 s, doubling to
  30 s: :class:`~ocppgw.forward.hold.Reconnect`).
- It gets a copy of every CALL (and 2.1 SEND) the charge point sends; what
  comes while its connection is not open is held, at most
  :data:`MAX_HELD` frames (the oldest dropped first, and counted), and sent
  in order once it is.
- Its answers go only to the tap (``Direction: Mirror``).  Its CALLs to
  the charge point are refused with a CALLERROR (NotSupported), or, for the
  Actions of ``mirror_calls``, take their turn like a backend's
  (:mod:`~ocppgw.forward.turns`) and the charge point's answer goes back
  to that mirror.
- Sending to it never waits: a slow or dead mirror delays neither the
  charge point nor the central system.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocppgw.forward.hold import Reconnect
from ocppgw.forward.tap import CHARGE_POINT, MIRROR, Tap
from ocppgw.forward.turns import Turns, head
from ocppgw.forward.upstream import Receiver, UpstreamProtocol
from ocppgw.forward.verdicts import Verdicts
from ocppgw.ocpp.messages import CallError, encode_frame
from ocppgw.ocpp.versions import ErrorKind, error_code

_log = Logger()

#: Frames held per mirror while its connection is not open.
MAX_HELD = 100


class Mirror(Receiver):
    """One mirror of one charge point."""

    def __init__(
        self,
        name: str,
        peer: str,
        version: str,
        clock: IReactorTime,
        opener: Callable[[], Deferred[UpstreamProtocol]],
        allowed: tuple[str, ...],
        tapped: Callable[[Mirror, str], None],
        call: Callable[[Mirror, str, str], None],
    ) -> None:
        """
        ``name``: how the turns know it (``Mirror:N``); ``opener()``: its
        connection; ``tapped(mirror, text)``: a frame it sent, for the tap;
        ``call(mirror, unique_id, text)``: a CALL of an allowed Action.
        """
        self.name = name
        self.peer = peer
        self.version = version
        self._allowed = allowed
        self._tapped = tapped
        self._call = call
        self.upstream: UpstreamProtocol | None = None
        self._held: deque[str] = deque()
        #: Frames dropped because too many were held.
        self.dropped = 0
        self._reconnect = Reconnect(clock, opener, self._opened, first_now=True)

    @classmethod
    def made(
        cls,
        index: int,
        peer: str,
        version: str,
        clock: IReactorTime,
        opener: Callable[[], Deferred[UpstreamProtocol]],
        allowed: tuple[str, ...],
        mirrors: Mirrors,
    ) -> Mirror:
        """Mirror number ``index`` of a charge point, reporting to its ``mirrors``."""
        return cls(
            f"{PREFIX}{index}",
            peer,
            version,
            clock,
            opener,
            allowed,
            mirrors.from_mirror,
            mirrors.call,
        )

    @property
    def state(self) -> str:
        if self.upstream is not None:
            return "open"
        return "closed" if self._reconnect.stopped else "connecting"

    def start(self) -> None:
        self._reconnect.start()

    def copy(self, text: str) -> None:
        """A CALL of the charge point's: a copy for the mirror, now or once open."""
        upstream = self.upstream
        if upstream is not None and upstream.send_frame(text):
            return
        if len(self._held) >= MAX_HELD:
            self._held.popleft()
            self.dropped += 1
        self._held.append(text)

    def answer(self, text: str) -> None:
        """The charge point's answer to this mirror's CALL."""
        if self.upstream is not None:
            self.upstream.send_frame(text)

    def stop(self, code: int) -> None:
        """The charge point left: the mirror's connection closes, and is not opened again."""
        self._reconnect.stop()
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.close(code, "charge point disconnected")

    # --- its connection ---

    def _opened(self, upstream: UpstreamProtocol) -> None:
        upstream.receiver = self
        self.upstream = upstream
        held, self._held = self._held, deque()
        for text in held:
            upstream.send_frame(text)

    def upstream_frame(self, text: str) -> None:
        self._tapped(self, text)
        found = head(text)
        if found is None or found[0] != 2:
            return  # an answer (to a copy), or unreadable: the tap's only
        action = _action_of(text)
        if action is not None and action in self._allowed:
            self._call(self, found[1], text)
            return
        refused = CallError(
            found[1],
            error_code(self.version, ErrorKind.NOT_SUPPORTED),
            f"a mirror may not send {action or 'this CALL'} to the charge point (mirror_calls)",
            {},
        )
        self.answer(encode_frame(refused))

    def upstream_closed(self, code: int | None, reason: str | None) -> None:
        if self.upstream is None:
            return
        self.upstream = None
        _log.info("mirror {peer} closed ({code}); reconnecting", peer=self.peer, code=code)
        self._reconnect.start()


def _action_of(text: str) -> str | None:
    """The Action of a CALL frame, read from its third element."""
    from ocppgw.ocpp.jsontext import loads

    try:
        value: Any = loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and len(value) > 2 and isinstance(value[2], str):
        return value[2]
    return None


#: How the turns name a mirror's CALLs: ``Mirror:N``.
PREFIX = "Mirror:"


class Mirrors:
    """The mirrors of one charge point, as its relay sees them."""

    def __init__(
        self,
        identity: str,
        version: str,
        tap: Tap | None,
        turns: Turns,
        verdicts: Callable[[], Verdicts],
    ) -> None:
        self._identity = identity
        self._version = version
        self._tap = tap
        self._turns = turns
        self._verdicts = verdicts
        self.by_name: dict[str, Mirror] = {}
        #: Per mirror, the verdicts of its exchanges (its answers name the CALL they answer).
        self._judges: dict[str, Verdicts] = {}

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def add(self, mirror: Mirror) -> None:
        self.by_name[mirror.name] = mirror
        self._judges[mirror.name] = self._verdicts()
        mirror.start()

    def copy(self, text: str) -> None:
        """A frame from the charge point: each mirror gets the CALLs and SENDs."""
        found = head(text)
        if found is None or found[0] not in (2, 6):
            return
        for name, mirror in self.by_name.items():
            mirror.copy(text)
            if self._tap is not None:
                self._judges[name].judge(text, True)

    def answered(self, who: str, text: str) -> bool:
        """The charge point answered the CALL of ``who``: True when ``who`` is a mirror."""
        mirror = self.by_name.get(who)
        if mirror is None:
            return False
        mirror.answer(text)
        self._tapped(mirror, text, CHARGE_POINT, True)
        return True

    def sent(self, who: str, text: str) -> bool:
        """A CALL of ``who`` went to the charge point: True (and tapped) when a mirror's."""
        mirror = self.by_name.get(who)
        if mirror is None:
            return False
        self._tapped(mirror, text, MIRROR, False)
        return True

    def from_mirror(self, mirror: Mirror, text: str) -> None:
        """A frame a mirror sent (an answer to a copy, or a CALL): the tap's."""
        self._tapped(mirror, text, MIRROR, False)

    def call(self, mirror: Mirror, unique_id: str, text: str) -> None:
        """A mirror's CALL of an allowed Action: its turn towards the charge point."""
        self._turns.from_other(mirror.name, unique_id, text)

    def stop(self, code: int) -> None:
        for mirror in self.by_name.values():
            mirror.stop(code)

    def state(self) -> list[dict[str, object]]:
        return [
            {"peer": m.peer, "state": m.state, "dropped": m.dropped} for m in self.by_name.values()
        ]

    def _tapped(self, mirror: Mirror, text: str, direction: str, from_cp: bool) -> None:
        if self._tap is None:
            return
        message, verdict = self._judges[mirror.name].judge(text, from_cp)
        self._tap.frame(
            self._identity, self._version, text, direction, mirror.peer, message, verdict
        )
