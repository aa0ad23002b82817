"""The log observers: JSON lines, and repeated warnings held back."""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from ocppgw.logs import BURST, WINDOW, JSONLines, RateLimited


def event(fmt: str, level: LogLevel = LogLevel.warn, **kw: Any) -> dict[str, Any]:
    return {"log_format": fmt, "log_level": level, "log_namespace": "t", "log_time": 0.0, **kw}


class LogTests(SynchronousTestCase):
    def test_json_lines(self) -> None:
        """Each event is one JSON object on one line, with identity and peer when given."""
        out = io.StringIO()
        observer = JSONLines(out)
        observer(event("{cid}: connected from {peer}", LogLevel.info, cid="CP1", peer="tcp4:x"))
        observer(event("plain\nline two"))
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        first = json.loads(lines[0])
        self.assertEqual(first["text"], "CP1: connected from tcp4:x")
        self.assertEqual(
            (first["identity"], first["peer"], first["level"]), ("CP1", "tcp4:x", "info")
        )
        self.assertEqual(json.loads(lines[1])["text"], "plain\nline two")

    def test_json_lines_name_the_worker(self) -> None:
        """An event a worker logged (field "worker") keeps its index as the field "worker"."""
        out = io.StringIO()
        observer = JSONLines(out)
        observer(event("MQTT connected", LogLevel.info, worker=1))
        observer(event("the supervisor's own", LogLevel.info))
        first, second = (json.loads(line) for line in out.getvalue().splitlines())
        self.assertEqual((first["worker"], first["text"]), (1, "MQTT connected"))
        self.assertNotIn("worker", second)

    def test_repeated_warnings_held_back(self) -> None:
        """Past BURST in a window a warning is held back; the next window says how many."""
        seen: list[dict[str, Any]] = []
        now = [0.0]
        limited = RateLimited(seen.append, clock=lambda: now[0])
        for _ in range(BURST + 5):
            limited(event("{cid}: bad frame", cid="CP1"))
        limited(event("{cid}: bad frame", cid="CP2"))
        limited(event("not a warning", LogLevel.info))
        self.assertEqual(len(seen), BURST + 2)
        now[0] = WINDOW
        limited(event("{cid}: bad frame", cid="CP1"))
        self.assertEqual(seen[-2]["held"], 5)
        self.assertEqual(seen[-1]["log_format"], "{cid}: bad frame")
