# -*- test-case-name: tests.unit.router.test_journal -*-
"""
The journal of backend CALLs a process holds: so that one killed with them
still answers each, once, when it starts again.

The broker takes a backend CALL as delivered once the gateway acknowledged
it (at once, so that one slow charge point holds up no other).  From then on
the gateway alone knows of it: queued for its charge point, or sent and
waiting for the answer.  A process that is killed (SIGKILL, the OOM killer,
a crash) takes that knowledge with it, and the backend would never get an
answer.  So each such CALL is written to a file of the process (one per MQTT
client id, in ``[gateway] journal``) when it is queued and when it is sent,
and marked done once its one answer is published (the broker acknowledged
it).  The next run of the process reads what is not done and answers it:

- sent, not answered: ``Disconnected`` ("the gateway stopped before the
  answer came"; the charge point may have acted on it);
- queued, never sent: ``Shutdown`` (not sent).

Each line is one ``write()`` to a file opened for appending: the kernel has
it when the call returns, so a killed process loses none (a power loss may:
the journal is not synced).  A clean stop answers everything itself and
removes the file; a file that grows past :data:`COMPACT_AT` is rewritten
with what is still open.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocppgw.ocpp.envelope import ORIGIN_GATEWAY, Envelope, GatewayError
from ocppgw.ocpp.messages import CallError
from ocppgw.ocpp.timestamps import rfc3339

_log = Logger()

#: A journal larger than this (bytes) is rewritten with the open entries only.
COMPACT_AT = 1 << 20

#: How often an answer of a recovered entry is published again when the
#: broker did not take it (seconds).
RETRY = 1.0


@dataclass
class Entry:
    """One backend CALL the process holds."""

    identity: str
    version: str
    unique_id: str
    action: str
    sent: bool = False


def _field(text: str) -> str:
    # Identities, ids and actions never hold tabs or newlines (OCPP-J and the
    # identity rules refuse them); escape anyway, so a line is always one entry.
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _unfield(text: str) -> str:
    out, escaped = [], False
    for c in text:
        if escaped:
            out.append({"t": "\t", "n": "\n"}.get(c, c))
            escaped = False
        elif c == "\\":
            escaped = True
        else:
            out.append(c)
    return "".join(out)


class Journal:
    """The backend CALLs one process holds, in a file that outlives it."""

    def __init__(self, path: str, clock: IReactorTime) -> None:
        self.path = path
        self._clock = clock
        self._fd = -1
        self._size = 0
        #: (identity, UniqueId) -> entry, for every CALL held and not answered.
        self.open: dict[tuple[str, str], Entry] = {}

    # --- the file ---

    def start(self) -> list[Entry]:
        """
        Open the journal: what a previous run left open is returned (to be
        answered with :meth:`answer_recovered`) and stays open in the new file
        until it is.
        """
        left = self._read()
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        self.open = {(e.identity, e.unique_id): e for e in left}
        self._rewrite()
        return left

    def _read(self) -> list[Entry]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            return []
        entries: dict[tuple[str, str], Entry] = {}
        for line in lines:
            fields = [_unfield(x) for x in line.split("\t")]
            if fields[0] == "A" and len(fields) == 5:
                _, identity, version, unique_id, action = fields
                entries[(identity, unique_id)] = Entry(identity, version, unique_id, action)
            elif fields[0] == "S" and len(fields) == 3:
                entry = entries.get((fields[1], fields[2]))
                if entry is not None:
                    entry.sent = True
            elif fields[0] == "D" and len(fields) == 3:
                entries.pop((fields[1], fields[2]), None)
            # Anything else is a line cut by the kill: it holds nothing whole.
        return list(entries.values())

    def _rewrite(self) -> None:
        """The file anew, with the open entries only (atomically, by rename)."""
        temporary = self.path + ".new"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            data = "".join(self._lines(e) for e in self.open.values()).encode("utf-8")
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = len(data)

    @staticmethod
    def _lines(entry: Entry) -> str:
        line = "\t".join(
            _field(x) for x in ("A", entry.identity, entry.version, entry.unique_id, entry.action)
        )
        sent = f"S\t{_field(entry.identity)}\t{_field(entry.unique_id)}\n" if entry.sent else ""
        return line + "\n" + sent

    def _write(self, line: str) -> None:
        if self._fd < 0:
            return
        data = line.encode("utf-8")
        try:
            os.write(self._fd, data)
        except OSError as e:
            _log.error("journal {path}: {why}; CALLs are no longer kept", path=self.path, why=e)
            os.close(self._fd)
            self._fd = -1
            return
        self._size += len(data)
        if self._size > COMPACT_AT:
            self._rewrite()

    def stop(self) -> None:
        """A clean stop: nothing is left open (each was answered), so the file goes."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if not self.open:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    # --- what the sessions tell it ---

    def queued(self, identity: str, version: str, unique_id: str, action: str) -> None:
        """A backend CALL joined its charge point's queue."""
        self.open[(identity, unique_id)] = Entry(identity, version, unique_id, action)
        self._write(
            "\t".join(_field(x) for x in ("A", identity, version, unique_id, action)) + "\n"
        )

    def sent(self, identity: str, unique_id: str) -> None:
        """That CALL went to the charge point."""
        entry = self.open.get((identity, unique_id))
        if entry is not None:
            entry.sent = True
            self._write(f"S\t{_field(identity)}\t{_field(unique_id)}\n")

    def answered(self, identity: str, unique_id: str) -> None:
        """Its one answer was published (the broker has it)."""
        if self.open.pop((identity, unique_id), None) is not None:
            self._write(f"D\t{_field(identity)}\t{_field(unique_id)}\n")

    # --- what a previous run left ---

    def answer_recovered(
        self, entries: list[Entry], publish: Callable[[Envelope], Deferred[None]]
    ) -> None:
        """Answer each CALL a previous run held and did not answer, once."""
        for entry in entries:
            if (entry.identity, entry.unique_id) not in self.open:
                continue  # answered meanwhile
            if entry.sent:
                code, why = (
                    GatewayError.DISCONNECTED,
                    "the gateway stopped before the charge point's answer came "
                    "(it may have acted on it)",
                )
            else:
                code, why = GatewayError.SHUTDOWN, "the gateway stopped before sending it; not sent"
            envelope = Envelope(
                CallError(entry.unique_id, code.value, why, {}, entry.action),
                version=entry.version,
                charge_point=entry.identity,
                timestamp=rfc3339(self._clock.seconds()),
                origin=ORIGIN_GATEWAY,
            )
            self._publish_recovered(envelope, entry, publish)

    def _publish_recovered(
        self, envelope: Envelope, entry: Entry, publish: Callable[[Envelope], Deferred[None]]
    ) -> None:
        def published(_: object) -> None:
            self.answered(entry.identity, entry.unique_id)

        def failed(_: object) -> None:
            self._clock.callLater(RETRY, self._publish_recovered, envelope, entry, publish)

        publish(envelope).addCallbacks(published, failed)
