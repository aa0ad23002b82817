"""
The soak's ledger: what the charge points, the backend and the injector
recorded, and the invariants of issue 18 as pure functions over it.

Events are appended as they happen (``time.monotonic()``); nothing here does
I/O, so tests/unit/test_soak_ledger.py feeds hand-made events and checks that
each broken invariant is reported.

Kinds of :class:`Event` (``cid`` is a charge point identity, ``uid`` a UniqueId):

- ``up.call``: a charge point sent CALL ``uid``.
- ``up.answer``: a charge point received a CALLRESULT (``code`` "result") or
  CALLERROR (``code`` its ErrorCode) with ``uid``; ``note`` "mismatch" when a
  result's data is not the one its CALL sent.
- ``up.closed``: the connection closed while CALL ``uid`` waited for its answer.
- ``dn.sent``: the backend published downstream CALL ``uid`` for ``cid``.
- ``dn.puback``: the broker acknowledged ``dn.sent`` ``uid`` (paho retries it
  until then; a command never acknowledged is not the gateway's to answer).
- ``dn.copy``: the backend published a plain copy of ``uid`` (a QoS 1 redelivery).
- ``dn.delivered``: charge point ``cid`` received CALL ``uid``; ``note`` is the
  identity the CALL's payload names (the one the backend addressed).
- ``dn.answer``: the backend received an envelope with ``uid``: ``code``
  "result" or the ErrorCode; ``cid`` the ChargePointId of the envelope;
  ``note`` holds the flags "late", "duplicate", "mismatch" (space separated).
- ``fault``, ``fault.end``, ``gw.start``, ``gw.exit``, ``broker.stop``,
  ``broker.start``, ``cp.open``, ``cp.close``, ``backend.*``: the timeline.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    t: float
    kind: str
    cid: str = ""
    uid: str = ""
    code: str = ""
    note: str = ""

    def describe(self, t0: float = 0.0) -> str:
        fields = [f"{self.t - t0:8.3f}", self.kind]
        fields += [f"{k}={v}" for k, v in (("cid", self.cid), ("uid", self.uid)) if v]
        fields += [v for v in (self.code, self.note) if v]
        return " ".join(fields)


@dataclass(frozen=True)
class RssSample:
    t: float
    instance: str
    pid: int
    kib: int


@dataclass(frozen=True)
class Violation:
    invariant: str  # one of INVARIANTS
    what: str
    cid: str = ""
    uid: str = ""


#: The invariants, as named in a failure.
INVARIANTS = (
    "upstream: one outcome per charge point CALL",
    "downstream: one answer envelope per backend CALL",
    "downstream: a charge point never gets a UniqueId twice",
    "no cross-talk",
    "no process left behind",
    "memory flat",
    "clean gateway exit",
    "no traceback in a gateway log",
)
UP_ONE, DN_ONE, DN_TWICE, CROSS, PROCS, MEMORY, EXIT, LOGS = INVARIANTS

#: The log lines that mean the gateway hit a bug (as tests/integration/conftest.py).
BUG_MARKERS = ("Traceback (most recent call last)", "Unhandled Error")

#: Flags of a dn.answer that do not make it an answer of its own: a late
#: answer after a Timeout or Shutdown (docs/topics.md: published with "Late": true).
#: A copy of a CALL gets no answer at all (docs/topics.md), so nothing else is exempt.
_NOT_AN_ANSWER = ("late",)


def check_upstream(events: Iterable[Event]) -> list[Violation]:
    """Every charge point CALL has exactly one outcome; no answer for an id never sent."""
    sent: dict[tuple[str, str], Event] = {}
    outcomes: dict[tuple[str, str], list[Event]] = defaultdict(list)
    out: list[Violation] = []
    for e in events:
        if e.kind == "up.call":
            sent[(e.cid, e.uid)] = e
        elif e.kind in ("up.answer", "up.closed"):
            key = (e.cid, e.uid)
            if key not in sent:
                out.append(
                    Violation(
                        CROSS,
                        f"{e.cid} received an answer for {e.uid}, never sent by it",
                        e.cid,
                        e.uid,
                    )
                )
                continue
            if e.note == "mismatch":
                out.append(
                    Violation(
                        CROSS, f"{e.cid} got a result for {e.uid} with another's data", e.cid, e.uid
                    )
                )
            outcomes[key].append(e)
    for key in sent:
        got = outcomes.get(key, [])
        if len(got) != 1:
            kinds = ", ".join(_outcome(e) for e in got) or "none"
            out.append(
                Violation(UP_ONE, f"CALL {key[1]} of {key[0]}: {len(got)} outcomes ({kinds})", *key)
            )
    return out


def _outcome(e: Event) -> str:
    return "closed" if e.kind == "up.closed" else e.code


def check_downstream(events: Iterable[Event]) -> list[Violation]:
    """
    Every backend CALL gets exactly one answer envelope (late and duplicate
    ones aside), for its own charge point; no charge point gets a CALL
    meant for another, or the same UniqueId twice; no answer for an id the
    backend never sent.
    """
    target: dict[str, str] = {}
    acked: set[str] = set()
    answers: dict[str, list[Event]] = defaultdict(list)
    delivered: Counter[tuple[str, str]] = Counter()
    out: list[Violation] = []
    for e in events:
        if e.kind == "dn.sent":
            target[e.uid] = e.cid
        elif e.kind == "dn.puback":
            acked.add(e.uid)
        elif e.kind == "dn.delivered":
            if target.get(e.uid) != e.cid or (e.note and e.note != e.cid):
                out.append(
                    Violation(
                        CROSS,
                        f"{e.cid} received CALL {e.uid} meant for "
                        f"{target.get(e.uid) or e.note or 'no one'}",
                        e.cid,
                        e.uid,
                    )
                )
            delivered[(e.cid, e.uid)] += 1
        elif e.kind == "dn.answer":
            if e.uid not in target:
                out.append(
                    Violation(
                        CROSS,
                        f"an answer envelope ({e.code}) for {e.uid}, never sent",
                        e.cid,
                        e.uid,
                    )
                )
                continue
            flags = e.note.split()
            if target[e.uid] != e.cid or "mismatch" in flags:
                out.append(
                    Violation(
                        CROSS,
                        f"the answer to {e.uid} (for {target[e.uid]}) names "
                        f"{e.cid} or carries another's data",
                        e.cid,
                        e.uid,
                    )
                )
            if not any(f in flags for f in _NOT_AN_ANSWER):
                answers[e.uid].append(e)
    for (cid, uid), n in delivered.items():
        if n > 1:
            out.append(Violation(DN_TWICE, f"{cid} received CALL {uid} {n} times", cid, uid))
    for uid, cid in target.items():
        got = answers.get(uid, [])
        if not got and uid not in acked:
            continue  # the broker never took it (counted as "not acknowledged")
        if len(got) != 1:
            kinds = ", ".join(e.code for e in got) or "none"
            if not got:  # where it was lost: the gateway, or after the charge point had it
                kinds += ", delivered" if delivered[(cid, uid)] else ", never delivered"
            out.append(
                Violation(DN_ONE, f"CALL {uid} for {cid}: {len(got)} answers ({kinds})", cid, uid)
            )
    return out


@dataclass(frozen=True)
class MemoryBound:
    """RSS in the last third of the run at most ``factor`` x the earlier peak + ``slack_kib``."""

    factor: float = 1.3
    slack_kib: int = 16 * 1024
    warmup: float = 10.0  # seconds after the start not counted in the earlier peak


def check_memory(
    samples: Sequence[RssSample], start: float, end: float, bound: MemoryBound = MemoryBound()
) -> list[Violation]:
    """
    Per instance: the peak RSS of the last third of [start, end] against the
    peak of the time between warm-up and that third.  A restart only lowers
    RSS, so restarts cannot hide growth within one life; a leak across lives
    would show as each life peaking higher.
    """
    third = start + (end - start) * 2 / 3
    early: dict[str, int] = {}
    late: dict[str, RssSample] = {}
    for s in samples:
        if start + bound.warmup <= s.t < third:
            early[s.instance] = max(early.get(s.instance, 0), s.kib)
        elif s.t >= third and (s.instance not in late or s.kib > late[s.instance].kib):
            late[s.instance] = s
    out = []
    for instance, s in sorted(late.items()):
        if instance not in early:
            continue  # no earlier sample to compare with (said in the summary)
        limit = early[instance] * bound.factor + bound.slack_kib
        if s.kib > limit:
            out.append(
                Violation(
                    MEMORY,
                    f"instance {instance}: RSS {s.kib} KiB in the last third, "
                    f"above {limit:.0f} KiB ({bound.factor} x the earlier peak "
                    f"{early[instance]} KiB + {bound.slack_kib} KiB)",
                )
            )
    return out


def check_processes(left: Iterable[str]) -> list[Violation]:
    """Every process the soak started is gone: ``left`` describes those that are not."""
    return [Violation(PROCS, f"still running after the soak: {p}") for p in left]


def check_exits(events: Iterable[Event]) -> list[Violation]:
    """The final SIGTERM of each instance exits 0 (``gw.exit`` with note "final")."""
    return [
        Violation(EXIT, f"instance {e.cid} exited with status {e.code} on the final SIGTERM")
        for e in events
        if e.kind == "gw.exit" and e.note == "final" and e.code != "0"
    ]


def check_logs(logs: dict[str, str]) -> list[Violation]:
    """No gateway log holds a traceback or an unhandled error."""
    out = []
    for name, text in sorted(logs.items()):
        for marker in BUG_MARKERS:
            at = text.find(marker)
            if at >= 0:
                excerpt = text[max(0, text.rfind("\n", 0, at - 1)) : at + 1500]
                out.append(Violation(LOGS, f"instance {name} logged {marker!r}:\n{excerpt}"))
    return out


def check_all(
    events: Sequence[Event],
    samples: Sequence[RssSample] = (),
    start: float = 0.0,
    end: float = 0.0,
    left: Iterable[str] = (),
) -> list[Violation]:
    return (
        check_upstream(events)
        + check_downstream(events)
        + check_memory(samples, start, end)
        + check_processes(left)
        + check_exits(events)
    )


# --- reporting ---


def counts(events: Iterable[Event]) -> dict[str, Counter[str]]:
    """Counts per outcome kind: upstream outcomes, downstream answers, faults, deliveries."""
    out: dict[str, Counter[str]] = {
        "upstream CALLs": Counter(),
        "upstream outcomes": Counter(),
        "downstream CALLs": Counter(),
        "downstream answers": Counter(),
        "faults": Counter(),
    }
    for e in events:
        if e.kind == "up.call":
            out["upstream CALLs"]["sent"] += 1
        elif e.kind in ("up.answer", "up.closed"):
            out["upstream outcomes"][_outcome(e)] += 1
        elif e.kind == "dn.sent":
            out["downstream CALLs"]["sent"] += 1
        elif e.kind == "dn.puback":
            out["downstream CALLs"]["acknowledged by the broker"] += 1
        elif e.kind == "dn.copy":
            out["downstream CALLs"]["copies"] += 1
        elif e.kind == "dn.delivered":
            out["downstream CALLs"]["delivered"] += 1
        elif e.kind == "dn.answer":
            flags = [f for f in e.note.split() if f in _NOT_AN_ANSWER]
            out["downstream answers"][" ".join([e.code, *flags])] += 1
        elif e.kind == "fault":
            out["faults"][e.code] += 1
    return out


def timeline(
    events: Sequence[Event], v: Violation, t0: float, before: float = 15.0, after: float = 5.0
) -> list[str]:
    """
    The events of ``v``'s UniqueId (or, without one, of its identity), with
    the connects and closes of its identity and every fault, process and
    backend event from ``before`` seconds ahead of the first of them to
    ``after`` seconds after the last.
    """
    key = "uid" if v.uid else "cid"
    mine = [e for e in events if getattr(v, key) and getattr(e, key) == getattr(v, key)]
    if not mine:
        return []
    lo = min(e.t for e in mine) - before
    hi = max(e.t for e in mine) + after
    context = [
        e
        for e in events
        if lo <= e.t <= hi
        and (
            e.kind.split(".")[0] in ("fault", "gw", "broker", "backend")
            or (v.cid and e.cid == v.cid and e.kind in ("cp.open", "cp.close", "presence"))
        )
    ]
    picked = sorted({id(e): e for e in mine + context}.values(), key=lambda e: e.t)
    return [e.describe(t0) for e in picked]


def shape(v: Violation) -> str:
    """``v``'s description without its identities and UniqueIds: violations of one shape."""
    return re.sub(r"\b(bk-\d+|c\d+\.\d+|soak\d+)\b", "*", v.what)


@dataclass
class Report:
    seed: int
    violations: list[Violation]
    summary: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations
