"""The journal of backend CALLs a process holds: what a killed run left is answered once."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet.defer import Deferred, fail, succeed

from ocppgw.ocpp.envelope import Envelope
from ocppgw.ocpp.messages import CallError
from ocppgw.router import journal as journal_module
from ocppgw.router.journal import Journal
from tests.clocks import ClockTestCase


class JournalTests(ClockTestCase):
    def setUp(self) -> None:
        super().setUp()
        directory = tempfile.mkdtemp(prefix="ocppgw-journal-")
        self.addCleanup(shutil.rmtree, directory)
        self.path = str(Path(directory) / "gw-1.journal")
        self.published: list[Envelope] = []

    def run_of(self) -> tuple[Journal, list[journal_module.Entry]]:
        """A new run of the process: its journal, and what the last run left."""
        journal = Journal(self.path, self.clock)
        return journal, journal.start()

    def publish(self, envelope: Envelope) -> Deferred[None]:
        self.published.append(envelope)
        return succeed(None)

    def test_what_a_killed_run_held_is_left_for_the_next(self) -> None:
        """Queued and sent CALLs not answered are found by the next run, with what
        was sent; answered ones are not."""
        first, left = self.run_of()
        self.assertEqual(left, [])
        first.queued("CP1", "ocpp1.6", "a", "Reset")
        first.queued("CP1", "ocpp1.6", "b", "ClearCache")
        first.queued("CP2", "ocpp2.0.1", "c", "Reset")
        first.sent("CP1", "a")
        first.sent("CP2", "c")
        first.answered("CP2", "c")
        # Killed: no stop().
        _, left = self.run_of()
        self.assertEqual(
            [(e.identity, e.version, e.unique_id, e.action, e.sent) for e in left],
            [("CP1", "ocpp1.6", "a", "Reset", True), ("CP1", "ocpp1.6", "b", "ClearCache", False)],
        )

    def test_left_calls_are_answered_disconnected_or_shutdown(self) -> None:
        """A sent CALL is answered Disconnected, a queued one Shutdown, each with its
        Action, version and charge point, from the gateway; then neither is left."""
        first, _ = self.run_of()
        first.queued("CP1", "ocpp1.6", "a", "Reset")
        first.sent("CP1", "a")
        first.queued("CP1", "ocpp1.6", "b", "ClearCache")
        second, left = self.run_of()
        second.answer_recovered(left, self.publish)
        got = [
            (e.charge_point, e.version, e.origin, e.message.unique_id, e.message.action)
            for e in self.published
        ]
        self.assertEqual(
            got,
            [("CP1", "ocpp1.6", "gateway", "a", "Reset"),
             ("CP1", "ocpp1.6", "gateway", "b", "ClearCache")],
        )
        codes = [e.message.error_code for e in self.published if isinstance(e.message, CallError)]
        self.assertEqual(codes, ["Disconnected", "Shutdown"])
        _, left = self.run_of()
        self.assertEqual(left, [])

    def test_an_answer_the_broker_did_not_take_is_tried_again(self) -> None:
        """A recovered answer whose publish fails stays in the journal and is published
        again after RETRY seconds."""
        first, _ = self.run_of()
        first.queued("CP1", "ocpp1.6", "a", "Reset")
        second, left = self.run_of()
        outcomes = [fail(RuntimeError("buffer full")), succeed(None)]
        tried: list[str] = []

        def publish(envelope: Envelope) -> Deferred[None]:
            tried.append(envelope.message.unique_id)
            return outcomes.pop(0)

        second.answer_recovered(left, publish)
        self.assertEqual((tried, list(second.open)), (["a"], [("CP1", "a")]))
        self.clock.advance(journal_module.RETRY)
        self.assertEqual((tried, list(second.open)), (["a", "a"], []))

    def test_a_line_cut_by_the_kill_is_ignored(self) -> None:
        """A last line written only in part (the process killed in its write) holds nothing."""
        first, _ = self.run_of()
        first.queued("CP1", "ocpp1.6", "a", "Reset")
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("A\tCP1\tocpp1.6\tb")
        _, left = self.run_of()
        self.assertEqual([e.unique_id for e in left], ["a"])

    def test_fields_with_tabs_survive(self) -> None:
        """An identity or id holding a tab or a backslash is read back as written."""
        first, _ = self.run_of()
        first.queued("C\tP\\1", "ocpp1.6", "x\ny", "Reset")
        _, left = self.run_of()
        self.assertEqual([(e.identity, e.unique_id) for e in left], [("C\tP\\1", "x\ny")])

    def test_a_long_journal_is_compacted(self) -> None:
        """Past COMPACT_AT bytes the file is rewritten with the open CALLs only."""
        self.patch(journal_module, "COMPACT_AT", 2000)
        journal, _ = self.run_of()
        journal.queued("CP1", "ocpp1.6", "keep", "Reset")
        for n in range(100):
            journal.queued("CP1", "ocpp1.6", f"d{n}", "ClearCache")
            journal.answered("CP1", f"d{n}")
        self.assertLess(os.path.getsize(self.path), 2000)
        journal.queued("CP1", "ocpp1.6", "last", "Reset")
        _, left = self.run_of()
        self.assertEqual([e.unique_id for e in left], ["keep", "last"])

    def test_a_clean_stop_removes_the_file_only_when_nothing_is_open(self) -> None:
        """stop() with every CALL answered removes the file; with one open, keeps it."""
        journal, _ = self.run_of()
        journal.queued("CP1", "ocpp1.6", "a", "Reset")
        journal.stop()
        self.assertTrue(os.path.exists(self.path))
        journal, left = self.run_of()
        journal.answer_recovered(left, self.publish)
        journal.stop()
        self.assertFalse(os.path.exists(self.path))
