# -*- test-case-name: tests.unit.admin.test_flight -*-
"""
Memory the flight recorder let go of, given back to the system (issue 21).

The recorder's frames are allocated while the traffic's own objects come and
go around them; when it drops the oldest to stay within ``[recorder]
max_memory``, the C heap keeps the freed space resident between the frames
still kept (glibc returns only the top of its heap by itself), so the
gateway's RSS grew by almost twice the budget in ``bench/recorder_memory.py``
(10,000 charge points, 16 MiB).  glibc's ``malloc_trim(0)`` hands every free
page of the heap back (``madvise``), with the frames kept where they are.
It walks the heap, holding the reactor meanwhile: some 25-55 ms on a
fragmented 300 MB heap here, so the recorder calls it at most once a second
and no more than 1% of the time (:data:`ocppgw.admin.flight.RELEASE_SHARE`).
Where the C library has no ``malloc_trim`` (musl, macOS), nothing is done.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable


def heap_trimmer() -> Callable[[], float] | None:
    """
    glibc's ``malloc_trim(0)``, answering how long it took (seconds), or None
    where the process's C library has none.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def release() -> float:
        started = time.perf_counter()
        trim(0)
        return time.perf_counter() - started

    return release
