"""
The fault schedule of a soak: a pure function of the seed and the length of
the fault period, so that a failing seed replays the same faults in the same
order at the same offsets (what the processes do in between is not
deterministic; the schedule is).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Seconds between the starts of two faults (the issue: every 4-12 s).
GAP = (4.0, 12.0)

#: The kinds, with their weights.
KINDS: dict[str, int] = {
    "sigkill": 2,  # SIGKILL an instance, restart it after `down` s
    "sigterm": 2,  # SIGTERM an instance, restart it once it exited and `down` s passed
    "sigstop": 2,  # SIGSTOP an instance for `seconds`, then SIGCONT
    "broker_restart": 2,  # SIGTERM mosquitto, start it again after `down` s (same port)
    "tcp_reset": 3,  # RST a `share` of the charge point connections
    "backend_pause": 2,  # the backend reads but neither answers nor commands for `seconds`
    "duplicate": 3,  # the next `count` commands are published twice, the copy `delay` s later
}

INSTANCES = ("a", "b")


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the fault period started
    kind: str
    instance: str = ""  # "a" or "b" for the instance faults
    seconds: float = 0.0  # sigstop, backend_pause: how long
    down: float = 0.0  # sigkill, sigterm, broker_restart: how long down before the restart
    share: float = 0.0  # tcp_reset: the share of connections reset
    count: int = 0  # duplicate: how many commands get a copy
    delay: float = 0.0  # duplicate: at most this many seconds between a command and its copy

    def describe(self) -> str:
        parts = [f"{self.at:7.2f}s {self.kind}"]
        if self.instance:
            parts.append(f"instance={self.instance}")
        for name in ("seconds", "down", "share", "delay"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={value:.2f}")
        if self.count:
            parts.append(f"count={self.count}")
        return " ".join(parts)


def schedule(seed: int, seconds: float, keepalive: float) -> list[Fault]:
    """
    The faults of a fault period of ``seconds`` for ``seed``: starts
    4-12 s apart; a SIGSTOP lasts 1-2 x ``keepalive`` (so beyond
    1.5 x keepalive about half the time, when the broker drops the instance).
    """
    rng = random.Random(seed)
    kinds = list(KINDS)
    weights = [KINDS[k] for k in kinds]
    out: list[Fault] = []
    at = rng.uniform(*GAP)
    while at < seconds:
        kind = rng.choices(kinds, weights)[0]
        instance = rng.choice(INSTANCES)
        if kind in ("sigkill", "sigterm"):
            fault = Fault(at, kind, instance=instance, down=round(rng.uniform(0.2, 2.0), 2))
        elif kind == "sigstop":
            fault = Fault(
                at, kind, instance=instance, seconds=round(rng.uniform(1, 2) * keepalive, 2)
            )
        elif kind == "broker_restart":
            fault = Fault(at, kind, down=round(rng.uniform(0.2, 2.0), 2))
        elif kind == "tcp_reset":
            fault = Fault(at, kind, share=round(rng.uniform(0.05, 0.3), 2))
        elif kind == "backend_pause":
            fault = Fault(at, kind, seconds=round(rng.uniform(1.0, 6.0), 2))
        else:
            fault = Fault(at, kind, count=rng.randint(3, 15), delay=round(rng.uniform(0, 1.5), 2))
        out.append(fault)
        at += rng.uniform(*GAP)
    return out
