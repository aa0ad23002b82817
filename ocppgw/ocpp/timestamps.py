# -*- test-case-name: tests.unit.session.test_session -*-
"""
RFC 3339 times as every envelope carries them (``Timestamp``): UTC, with
milliseconds, e.g. ``2026-12-07T09:30:00.149Z``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

#: The last whole second formatted, and its text: every envelope of that
#: second reuses it (a profile showed datetime formatting per message).
_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def rfc3339(seconds: float) -> str:
    """``seconds`` since the epoch as an RFC 3339 UTC time with milliseconds."""
    global _second
    # Rounded to microseconds half-even, then truncated to milliseconds, as
    # datetime.fromtimestamp(...).isoformat(timespec="milliseconds") does.
    fraction, whole = math.modf(seconds)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    second = int(whole)
    if second != _second[0]:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (second, text)
    return _second[1] + _MILLIS[micros // 1000]


#: ".000Z" to ".999Z": the end of every timestamp, made once.
_MILLIS = tuple(f".{n:03d}Z" for n in range(1000))
