"""
A central system written by others on npm's ``ocpp-rpc`` in strict mode
(tests/integration/node/csms.js, its module installed by ``make test-deps``
into tests/integration/node/node_modules), run by node, over ws or wss.
Its events arrive as JSON lines (csms.js says which); a call to a charge
point is a line written to it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.harness import WAIT, free_port, stop_process

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE = shutil.which("node") or "/usr/bin/node"

Event = dict[str, Any]


class RpcCentralSystem:
    """``node csms.js``: the events it said, in order, and calls to make."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        if not (NODE_DIR / "node_modules" / "ocpp-rpc").is_dir():
            raise AssertionError(
                f"ocpp-rpc is not installed in {NODE_DIR}/node_modules: run make test-deps"
            )
        self.port = free_port()
        self.scheme = "wss" if tls else "ws"
        argv = [NODE, str(NODE_DIR / "csms.js"), str(self.port)]
        argv += [str(p) for p in tls] if tls else []
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stdin=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._lock = threading.Lock()
        self.events: list[Event] = []
        self.other: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait(lambda e: e["event"] == "listening", "listening")

    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/ocpp/${{cid}}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            try:
                event = json.loads(line)
            except ValueError:
                with self._lock:
                    self.other.append(line)
                continue
            with self._lock:
                self.events.append(event)

    def of(self, identity: str, kind: str | None = None) -> list[Event]:
        """The events about ``identity`` (of ``kind``), in order."""
        with self._lock:
            return [
                e
                for e in self.events
                if e.get("identity") == identity and (kind is None or e["event"] == kind)
            ]

    def wait(self, match: Callable[[Event], bool], what: str, timeout: float = WAIT) -> Event:
        """The first event that ``match``es, waiting for it (blocking: call it off the loop)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                events = list(self.events)
            found = [e for e in events if match(e)]
            if found:
                return found[0]
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"ocpp-rpc central system: no {what}; {events} {self.other}")
            time.sleep(0.02)

    def call(self, identity: str, method: str, params: dict[str, Any]) -> None:
        """Make the central system call ``method`` on charge point ``identity``."""
        assert self.proc.stdin is not None
        line = json.dumps({"identity": identity, "method": method, "params": params})
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        stop_process(self.proc)
