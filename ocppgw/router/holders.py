# -*- test-case-name: tests.unit.router.test_router -*-
"""What :mod:`ocppgw.router.presence` keeps per identity: held here, or said by another instance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: What other instances said is pruned when it grows past twice what was
#: left at the last pruning, and at least this many entries.
PRUNE_MIN = 1000

#: How many dead runs of other instances are remembered.
DEAD_RUNS = 1000


@dataclass
class Here:
    """This instance's current connection of one identity."""

    #: Names this connection in its presence ("Connection"), so that this
    #: instance knows its own presence when the broker echoes it back.
    token: str
    version: str
    peer: str
    since: float
    #: The sequence number of the last presence published for it.
    seq: int = 0
    #: The broker has delivered this connection's online presence back to us:
    #: another instance's online presence delivered after it is newer.
    echoed: bool = False
    #: Another live instance held the identity when it connected here.
    taken: bool = False
    #: The backend's last BootNotification answer on this connection (None: none yet).
    registration: str | None = None

    def online_fields(self) -> dict[str, Any]:
        """What an online presence says of this connection beyond the identity's own."""
        return {
            "RemoteAddress": self.peer,
            "Connection": self.token,
            "Registration": self.registration,
        }


@dataclass(slots=True)
class Elsewhere:
    """What another instance last said of an identity."""

    gateway: str
    online: bool
    #: When we heard it (this instance's clock; only ever compared with itself).
    heard: float
    #: The run of that instance, and the sequence number, of what it said.
    run: object = None
    seq: object = None
    #: The instance itself is gone (its last will): nobody holds the identity.
    gone: bool = False
    #: Gone with a goodbye that handed nothing over: its MQTT session keeps
    #: the identity's commands for its next run, which answers them.
    kept: bool = False
