"""
Where a gateway's reactor stops answering: a probe loaded into ``twistd``
processes through ``PYTHONPATH`` (Python imports ``sitecustomize`` at start),
for bench runs, not for production.

    OCPPGW_STALL_LOG=/tmp/stalls PYTHONPATH=bench/stall_probe \\
        .venv/bin/python bench/handshake_storm.py --n 10000 --boot
    .venv/bin/python bench/stall_probe/sitecustomize.py /tmp/stalls-*.log

Each ``twistd`` process appends to ``$OCPPGW_STALL_LOG-PID.log``:

- every garbage collection that took over 5 ms, and every full one, with
  its generation, the unreachable objects it found and the objects frozen
  out of the collector's sight (``gc.callbacks``);
- every time the reactor went more than 30 ms without returning to epoll:
  a thread samples the main thread's stack every 5 ms meanwhile.  (The
  probe wraps the reactor's epoll object to know when it waits; a
  collection holds the interpreter, so its pause shows as a stall sampled
  where it ended.)

Run as a script, it summarises logs: the stalls by the innermost frames of
their samples, and the collections' pauses.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import traceback
from typing import Any

#: Milliseconds: a collection logged when longer; a stall when the reactor is away longer.
GC_MS, STALL_MS = 5.0, 30.0


def _install(path: str) -> None:
    log = open(f"{path}-{os.getpid()}.log", "a", buffering=1)
    began = [0.0]
    state = {"waiting": True, "since": time.perf_counter(), "turn": 0}

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - began[0]) * 1000
        if ms > GC_MS or info["generation"] == 2:
            log.write(
                f"{time.time():.3f} GC gen{info['generation']} {ms:.1f}ms "
                f"collected {info['collected']} frozen {gc.get_freeze_count()}\n"
            )

    gc.callbacks.append(collected)

    class Poller:
        """The reactor's epoll object, noting when it waits."""

        def __init__(self, poller: Any) -> None:
            self._poller = poller

        def __getattr__(self, name: str) -> Any:
            return getattr(self._poller, name)

        def poll(self, *args: Any) -> Any:
            state["waiting"] = True
            try:
                return self._poller.poll(*args)
            finally:
                state["waiting"] = False
                state["since"] = time.perf_counter()
                state["turn"] += 1

    def watch() -> None:
        while "twisted.internet.reactor" not in sys.modules:
            time.sleep(0.05)
        time.sleep(0.5)
        reactor = sys.modules["twisted.internet.reactor"]
        reactor._poller = Poller(reactor._poller)  # type: ignore[attr-defined]
        main = threading.main_thread().ident
        while True:
            time.sleep(0.005)
            away = (time.perf_counter() - state["since"]) * 1000
            if state["waiting"] or away <= STALL_MS:
                continue
            frame = sys._current_frames().get(main)
            stack = "".join(traceback.format_stack(frame, limit=14)) if frame else ""
            log.write(f"{time.time():.3f} STALL turn {state['turn']} away {away:.0f}ms\n{stack}\n")

    threading.Thread(target=watch, daemon=True).start()


def summarise(paths: list[str]) -> None:
    """Print each log's stalls by their innermost frames, and its collections."""
    import collections
    import re

    for path in paths:
        text = open(path).read()
        worst: dict[int, float] = {}
        places: collections.Counter[str] = collections.Counter()
        for block in text.split("\n\n"):
            m = re.search(r"STALL turn (\d+) away (\d+)ms\n(.*)", block, re.S)
            if m is None:
                continue
            turn, away = int(m[1]), float(m[2])
            worst[turn] = max(worst.get(turn, 0.0), away)
            frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', m[3])
            inner = reversed(frames[-3:])
            places[" < ".join(f"{os.path.basename(f)}:{fn}" for f, fn in inner)] += 1
        pauses = [
            float(m[2])
            for m in re.finditer(r"^[\d.]+ GC gen(\d) ([\d.]+)ms", text, re.M)
            if float(m[2]) > GC_MS
        ]
        longest = sorted(worst.values())[-5:]
        print(f"{path}: {len(worst)} stalls over {STALL_MS:.0f} ms, the longest {longest} ms")
        for place, n in places.most_common(12):
            print(f"  {n:5d} samples  {place}")
        print(
            f"  collections over {GC_MS:.0f} ms: {len(pauses)}, {sum(pauses):.0f} ms in all, "
            f"the longest {sorted(pauses)[-5:]}"
        )


if __name__ == "__main__":
    summarise(sys.argv[1:])
elif any(a.endswith("twistd") for a in sys.orig_argv[:2]) and os.environ.get("OCPPGW_STALL_LOG"):
    _install(os.environ["OCPPGW_STALL_LOG"])
