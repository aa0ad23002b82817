# -*- test-case-name: tests.unit.router.test_protobuf_numbers -*-
"""
The field and enum value numbers of the generated .proto files, locked.

Numbers are the wire contract of the protobuf profile, so they must not follow
the property order of whatever ``ocpp`` package is installed.
``proto/ocppgw_pb/v1/numbers.json`` holds, per .proto file, every message's
field numbers and every enum's value numbers by name, and those that were
removed.  :class:`Numbers` hands ``tools/genproto.py`` the number of each
field and value:

- a name in the lock keeps its number;
- a new field gets the next number after every number its message ever used
  (an alternative field ``x_raw``/``x_text``/``x_empty`` the number of ``x``
  plus 1000 when that is free); a new enum value the next after every value;
- a name that the schemas no longer have is ``reserved`` (number and name) in
  the .proto, and stays in the lock, so its number is never given again;
  should the name come back, it gets its old number.

A message or enum type that did not exist is numbered as the schema orders
its properties or values (``customData`` last).  ``make proto`` writes the
lock back with what it added.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The number above a field's at which its alternative field is first put.
ALT_OFFSET = 1000

_HEADER = (
    "Locked protobuf numbers of proto/ocppgw_pb/v1 (docs/protobuf.md, 'Field numbers'). "
    "Written by `make proto`: never edit or renumber by hand."
)


@dataclass
class _Block:
    """The numbers of one message (fields) or one enum (values)."""

    used: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    #: Names seen in this run: what is not seen becomes removed.
    seen: set[str] = field(default_factory=set)

    def number(self, name: str, preferred: int | None = None) -> int:
        """The number of ``name``; a new alternative field gets ``preferred`` if free."""
        self.seen.add(name)
        if name in self.used:
            return self.used[name]
        taken = set(self.used.values()) | set(self.removed.values())
        if name in self.removed:
            number = self.removed.pop(name)
        elif preferred is not None and preferred not in taken:
            number = preferred
        else:
            alt = preferred is not None
            pool = [n for n in taken if (n >= ALT_OFFSET) == alt]
            number = max(pool, default=ALT_OFFSET if alt else 0) + 1
        self.used[name] = number
        return number

    def close(self) -> dict[str, int]:
        """Move what this run did not see to removed; the numbers to reserve."""
        for name in [n for n in self.used if n not in self.seen]:
            self.removed[name] = self.used.pop(name)
        return dict(self.removed)


class Numbers:
    """The lock of one .proto file (``v16``, ``v201``, ``v21``), read and extended."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        self.messages = {k: _load(v) for k, v in data.get("messages", {}).items()}
        self.enums = {k: _load(v) for k, v in data.get("enums", {}).items()}

    def field(self, message: str, name: str, alt_of: int | None = None) -> int:
        """The number of field ``name`` of ``message``; ``alt_of``: the main field's number."""
        block = self.messages.setdefault(message, _Block())
        if alt_of is None:
            return block.number(name)
        return block.number(name, alt_of + ALT_OFFSET)

    def value(self, enum: str, value: str) -> int:
        """The number of the enum value whose wire string is ``value`` (0 is UNSPECIFIED)."""
        return self.enums.setdefault(enum, _Block()).number(value)

    def reserved_fields(self, message: str) -> dict[str, int]:
        """The removed fields of ``message`` (call once every field was numbered)."""
        return self.messages.setdefault(message, _Block()).close()

    def reserved_values(self, enum: str) -> dict[str, int]:
        """The removed values of ``enum``, by wire string (call once all were numbered)."""
        return self.enums.setdefault(enum, _Block()).close()

    def dump(self) -> dict[str, Any]:
        return {
            "messages": {k: _dump(v) for k, v in sorted(self.messages.items())},
            "enums": {k: _dump(v) for k, v in sorted(self.enums.items())},
        }


def _load(data: dict[str, Any]) -> _Block:
    return _Block(dict(data.get("numbers", {})), dict(data.get("removed", {})))


def _dump(block: _Block) -> dict[str, Any]:
    out: dict[str, Any] = {"numbers": dict(sorted(block.used.items(), key=lambda kv: kv[1]))}
    if block.removed:
        out["removed"] = dict(sorted(block.removed.items(), key=lambda kv: kv[1]))
    return out


def read(path: Path) -> dict[str, Numbers]:
    """The locks in ``path`` by .proto file; none when it does not exist (a first run)."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {k: Numbers(v) for k, v in data.items() if not k.startswith("//")}


def write(path: Path, locks: dict[str, Numbers]) -> None:
    """Write ``locks``, one line per message or enum, so a diff shows each change."""
    lines = ["{", f' "//": {json.dumps(_HEADER)},']
    files = sorted(locks)
    for i, name in enumerate(files):
        data = locks[name].dump()
        lines.append(f" {json.dumps(name)}: {{")
        for j, part in enumerate(("messages", "enums")):
            lines.append(f"  {json.dumps(part)}: {{")
            items = list(data[part].items())
            lines += [
                f"   {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
                + ("," if n < len(items) - 1 else "")
                for n, (k, v) in enumerate(items)
            ]
            lines.append("  }" + ("," if j == 0 else ""))
        lines.append(" }" + ("," if i < len(files) - 1 else ""))
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
