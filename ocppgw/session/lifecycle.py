# -*- test-case-name: tests.unit.session.test_lifecycle -*-
"""
A session's lifecycle, as one automat state machine: the states, the
transitions in one table, and outputs that do the work.

- **open**: frames flow both ways.
- **closing**: a close frame went out or came in (RFC 6455 §7.1.2), or the
  TCP connection is being dropped; Autobahn sends nothing more, so neither
  does the session.  A backend message meant for the charge point is answered
  Disconnected; timeouts still publish their Timeout envelope; CALLs queued
  before stay queued.
- **grace**: the connection is gone.  The backend CALL in flight has failed
  (Disconnected: the charge point may or may not have acted on it); queued
  and newly arriving CALLs wait ``offline_ttl`` seconds for a reconnection.
- **replaced**: a newer connection of the identity on this gateway took over;
  it adopts the queue (:meth:`ocppgw.session.rules.Session.adopt`).
- **moved**: another gateway instance holds the identity (also when it came
  back there during the grace period here); what was queued here is
  answered Replaced at once.
- **expired**: the grace period ran out; what was queued is answered Offline.

The last three are final: the router forgets the session (``release``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from automat import TypeMachineBuilder
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ocppgw.interfaces import CLOSE_NORMAL
from ocppgw.ocpp.envelope import Envelope, GatewayError
from ocppgw.session.lifecycle_fast import index
from ocppgw.session.timers import cancel

_log = Logger()

#: RFC 6455 §7.4.1 close code for a connection replaced by a newer one.


class Phase(Enum):
    """Where a session is in its lifecycle (for logs, shutdown and tests)."""

    OPEN = "open"
    CLOSING = "closing"
    GRACE = "grace"
    REPLACED = "replaced"
    MOVED = "moved"
    EXPIRED = "expired"


class Lifecycle(Protocol):
    """The inputs of a session's lifecycle."""

    def from_backend(self, envelope: Envelope) -> None:
        """A message from the backend for the charge point."""

    def closing(self) -> None:
        """The connection stopped being open; it closes soon."""

    def connection_lost(self) -> None:
        """The connection is closed."""

    def replaced(self) -> None:
        """A newer connection of this identity on this gateway takes over."""

    def moved(self) -> None:
        """A newer connection of this identity on another gateway instance took over."""

    def expired(self) -> None:
        """The offline grace period ran out."""

    def phase(self) -> Phase:
        """Which state the session is in."""


class Rules(Protocol):
    """What the outputs act on: the session's exchanges and its connection."""

    identity: str

    def deliver(self, envelope: Envelope) -> None: ...

    def refuse(self, envelope: Envelope, code: GatewayError, why: str) -> None: ...

    def unlink(self) -> None: ...

    def close(self, code: int, reason: str) -> None: ...

    def abandon(self, code: GatewayError, why: str) -> None: ...

    def fail_queue(self, code: GatewayError, why: str) -> None: ...

    def release(self) -> None: ...


@dataclass
class Core:
    rules: Rules
    clock: IReactorTime
    #: Seconds queued CALLs wait for a reconnection.
    grace_period: float


@dataclass
class Grace:
    """The grace state's data: the timer that ends it."""

    timer: IDelayedCall


def _start_grace(lifecycle: Lifecycle, core: Core) -> Grace:
    return Grace(core.clock.callLater(core.grace_period, lifecycle.expired))


# --- outputs ---


def _deliver(lifecycle: Lifecycle, core: Core, envelope: Envelope) -> None:
    core.rules.deliver(envelope)


class Refusal(Protocol):
    __name__: str

    def __call__(self, lifecycle: Lifecycle, core: Core, /, envelope: Envelope) -> None: ...


def _refusing(code: GatewayError, why: str) -> Refusal:
    def refuse(lifecycle: Lifecycle, core: Core, envelope: Envelope) -> None:
        core.rules.refuse(envelope, code, why)

    refuse.__name__ = f"refuse_{code.name.lower()}"
    return refuse


_refuse_closing = _refusing(
    GatewayError.DISCONNECTED, "the charge point's connection is closing; not sent"
)
_refuse_replaced = _refusing(GatewayError.REPLACED, "connection replaced; not sent")
_refuse_offline = _refusing(GatewayError.OFFLINE, "charge point is offline; not sent")


def _stop_sending(lifecycle: Lifecycle, core: Core) -> None:
    core.rules.unlink()


def _disconnected(lifecycle: Lifecycle, core: Core) -> None:
    core.rules.unlink()
    core.rules.abandon(GatewayError.DISCONNECTED, "charge point disconnected before answering")


def _let_go(core: Core) -> None:
    """Close a connection a newer one superseded; its CALL in flight failed."""
    core.rules.unlink()
    core.rules.close(CLOSE_NORMAL, "replaced")
    core.rules.abandon(GatewayError.REPLACED, "connection replaced before the answer came")


def _superseded(lifecycle: Lifecycle, core: Core) -> None:
    _log.info("{cid}: new connection replaces the old one", cid=core.rules.identity)
    _let_go(core)


def _reconnected(lifecycle: Lifecycle, core: Core, grace: Grace) -> None:
    cancel(grace.timer)


def _moved(lifecycle: Lifecycle, core: Core) -> None:
    # The other instance receives the downstream messages now: hold nothing here.
    _let_go(core)
    core.rules.fail_queue(
        GatewayError.REPLACED, "charge point moved to another gateway instance; not sent"
    )
    core.rules.release()


def _moved_while_gone(lifecycle: Lifecycle, core: Core, grace: Grace) -> None:
    # The other instance has the charge point: nothing waits here for it.
    cancel(grace.timer)
    core.rules.fail_queue(
        GatewayError.REPLACED, "charge point reconnected through another gateway instance; not sent"
    )
    core.rules.release()


def _expire(lifecycle: Lifecycle, core: Core, grace: Grace) -> None:
    cancel(grace.timer)  # when expire() came before the timer
    core.rules.fail_queue(
        GatewayError.OFFLINE, "charge point is offline and did not reconnect in time"
    )
    core.rules.release()


# --- the table ---

_builder = TypeMachineBuilder(Lifecycle, Core)
_open = _builder.state("open")
_closing = _builder.state("closing")
_grace = _builder.state("grace", _start_grace)
_replaced = _builder.state("replaced")
_moved_away = _builder.state("moved")
_expired = _builder.state("expired")

_open.upon(Lifecycle.from_backend).loop()(_deliver)
_open.upon(Lifecycle.closing).to(_closing)(_stop_sending)
_open.upon(Lifecycle.connection_lost).to(_grace)(_disconnected)
_open.upon(Lifecycle.replaced).to(_replaced)(_superseded)
_open.upon(Lifecycle.moved).to(_moved_away)(_moved)
_open.upon(Lifecycle.expired).loop().returns(None)

_closing.upon(Lifecycle.from_backend).loop()(_refuse_closing)
_closing.upon(Lifecycle.closing).loop().returns(None)
_closing.upon(Lifecycle.connection_lost).to(_grace)(_disconnected)
_closing.upon(Lifecycle.replaced).to(_replaced)(_superseded)
_closing.upon(Lifecycle.moved).to(_moved_away)(_moved)
_closing.upon(Lifecycle.expired).loop().returns(None)

# Held: a CALL waits in the queue, a SEND is answered Offline (no link).
_grace.upon(Lifecycle.from_backend, nodata=True).loop()(_deliver)
_grace.upon(Lifecycle.closing, nodata=True).loop().returns(None)
_grace.upon(Lifecycle.connection_lost, nodata=True).loop().returns(None)
_grace.upon(Lifecycle.replaced).to(_replaced)(_reconnected)
# Moved elsewhere while gone here: let go at once; what waited is Replaced.
_grace.upon(Lifecycle.moved).to(_moved_away)(_moved_while_gone)
_grace.upon(Lifecycle.expired).to(_expired)(_expire)

for _final, _refuse in (
    (_replaced, _refuse_replaced),
    (_moved_away, _refuse_replaced),
    (_expired, _refuse_offline),
):
    _final.upon(Lifecycle.from_backend).loop()(_refuse)
    for _ignored in (
        Lifecycle.closing,
        Lifecycle.connection_lost,
        Lifecycle.replaced,
        Lifecycle.moved,
        Lifecycle.expired,
    ):
        _final.upon(_ignored).loop().returns(None)

for _state, _phase in (
    (_open, Phase.OPEN),
    (_closing, Phase.CLOSING),
    (_replaced, Phase.REPLACED),
    (_moved_away, Phase.MOVED),
    (_expired, Phase.EXPIRED),
):
    _state.upon(Lifecycle.phase).loop().returns(_phase)
_grace.upon(Lifecycle.phase, nodata=True).loop().returns(Phase.GRACE)

#: ``LifecycleMachine(Core(...))`` is a new session's lifecycle, open.
LifecycleMachine = _builder.build()


index(LifecycleMachine)  # the speed-up of ocppgw.session.lifecycle_fast, where it fits
