"""
The soak's ledger (tests/soak/ledger.py) and fault schedule: each invariant
passes on a clean record and reports each way of breaking it.
"""

from __future__ import annotations

import itertools

from twisted.trial.unittest import SynchronousTestCase

from tests.soak import ledger
from tests.soak.faults import KINDS, schedule
from tests.soak.ledger import Event, RssSample, Violation

E = Event


def _clean() -> list[Event]:
    """A record where everything holds: one CALL each way, each answered once."""
    return [
        E(1.0, "up.call", "cp1", "c1.1"),
        E(1.1, "up.answer", "cp1", "c1.1", "result"),
        E(2.0, "dn.sent", "cp1", "bk-1", "DataTransfer"),
        E(2.05, "dn.puback", "cp1", "bk-1"),
        E(2.1, "dn.delivered", "cp1", "bk-1", "DataTransfer", "cp1"),
        E(2.2, "dn.answer", "cp1", "bk-1", "result"),
        E(3.0, "dn.sent", "cp2", "bk-2", "DataTransfer"),
        E(3.05, "dn.puback", "cp2", "bk-2"),
        E(3.1, "dn.answer", "cp2", "bk-2", "Offline"),
        E(9.0, "gw.exit", "a", code="0", note="final"),
    ]


def _invariants(violations: list[Violation]) -> list[str]:
    return sorted(v.invariant for v in violations)


class CleanRecordTests(SynchronousTestCase):
    def test_clean(self) -> None:
        """A record in which every CALL has one outcome yields no violation."""
        self.assertEqual(ledger.check_all(_clean()), [])

    def test_late_answer_is_not_a_second_answer(self) -> None:
        """An answer marked Late beside the one answer is not a violation."""
        events = [*_clean(), E(2.3, "dn.answer", "cp1", "bk-1", "result", "late")]
        self.assertEqual(ledger.check_all(events), [])

    def test_duplicate_answer_is_a_second_answer(self) -> None:
        """A second answer marked Duplicate is one answer too many: a copy gets none (topics.md)."""
        events = [*_clean(), E(2.4, "dn.answer", "cp1", "bk-1", "result", "duplicate")]
        self.assertEqual([v.invariant for v in ledger.check_all(events)], [ledger.DN_ONE])

    def test_closed_is_an_outcome(self) -> None:
        """A CALL whose connection closed before its answer has that one outcome."""
        events = [E(1.0, "up.call", "cp1", "c1.1"), E(1.5, "up.closed", "cp1", "c1.1")]
        self.assertEqual(ledger.check_upstream(events), [])


class UpstreamTests(SynchronousTestCase):
    def test_no_outcome(self) -> None:
        """A charge point CALL with no answer and no close is reported."""
        events = [E(1.0, "up.call", "cp1", "c1.1")]
        [v] = ledger.check_upstream(events)
        self.assertEqual((v.invariant, v.cid, v.uid), (ledger.UP_ONE, "cp1", "c1.1"))

    def test_two_outcomes(self) -> None:
        """A charge point CALL answered and then answered (or closed) again is reported."""
        events = [
            E(1.0, "up.call", "cp1", "c1.1"),
            E(1.1, "up.answer", "cp1", "c1.1", "result"),
            E(1.2, "up.answer", "cp1", "c1.1", "InternalError"),
        ]
        [v] = ledger.check_upstream(events)
        self.assertEqual(v.invariant, ledger.UP_ONE)
        self.assertIn("2 outcomes (result, InternalError)", v.what)

    def test_answer_for_a_call_never_sent(self) -> None:
        """An answer for a UniqueId the charge point never sent is cross-talk."""
        events = [*_clean(), E(5.0, "up.answer", "cp2", "c1.1", "result")]
        self.assertEqual(_invariants(ledger.check_upstream(events)), [ledger.CROSS])

    def test_result_with_another_charge_points_data(self) -> None:
        """A result whose data names another CALL is cross-talk."""
        events = [
            E(1.0, "up.call", "cp1", "c1.1"),
            E(1.1, "up.answer", "cp1", "c1.1", "result", "mismatch"),
        ]
        self.assertEqual(_invariants(ledger.check_upstream(events)), [ledger.CROSS])


class DownstreamTests(SynchronousTestCase):
    def test_unanswered(self) -> None:
        """A backend CALL the broker acknowledged without an answer envelope is reported."""
        events = [E(1.0, "dn.sent", "cp1", "bk-1"), E(1.1, "dn.puback", "cp1", "bk-1")]
        [v] = ledger.check_downstream(events)
        self.assertEqual((v.invariant, v.uid), (ledger.DN_ONE, "bk-1"))
        self.assertIn("0 answers (none, never delivered)", v.what)

    def test_delivered_unanswered(self) -> None:
        """A CALL the charge point received whose answer never reached the backend is reported."""
        events = [
            E(1.0, "dn.sent", "cp1", "bk-1"),
            E(1.1, "dn.puback", "cp1", "bk-1"),
            E(1.2, "dn.delivered", "cp1", "bk-1", "DataTransfer", "cp1"),
        ]
        [v] = ledger.check_downstream(events)
        self.assertEqual(v.invariant, ledger.DN_ONE)
        self.assertIn("0 answers (none, delivered)", v.what)

    def test_never_acknowledged(self) -> None:
        """A backend CALL the broker never acknowledged needs no answer, but at most one."""
        self.assertEqual(ledger.check_downstream([E(1.0, "dn.sent", "cp1", "bk-1")]), [])
        events = [
            E(1.0, "dn.sent", "cp1", "bk-1"),
            E(1.1, "dn.answer", "cp1", "bk-1", "result"),
            E(1.2, "dn.answer", "cp1", "bk-1", "Offline"),
        ]
        self.assertEqual(_invariants(ledger.check_downstream(events)), [ledger.DN_ONE])

    def test_answered_twice(self) -> None:
        """A backend CALL answered by the charge point and Offline is reported."""
        events = [*_clean(), E(2.5, "dn.answer", "cp1", "bk-1", "Offline")]
        [v] = ledger.check_downstream(events)
        self.assertEqual(v.invariant, ledger.DN_ONE)
        self.assertIn("2 answers (result, Offline)", v.what)

    def test_delivered_twice(self) -> None:
        """A charge point receiving the same downstream UniqueId twice is reported."""
        events = [*_clean(), E(2.3, "dn.delivered", "cp1", "bk-1", "DataTransfer", "cp1")]
        [v] = ledger.check_downstream(events)
        self.assertEqual((v.invariant, v.cid, v.uid), (ledger.DN_TWICE, "cp1", "bk-1"))

    def test_delivered_to_another_charge_point(self) -> None:
        """A CALL reaching a charge point it was not addressed to is cross-talk."""
        events = [*_clean(), E(3.05, "dn.delivered", "cp1", "bk-2", "DataTransfer", "cp2")]
        self.assertEqual(_invariants(ledger.check_downstream(events)), [ledger.CROSS])

    def test_delivered_never_sent(self) -> None:
        """A CALL with a UniqueId the backend never sent is cross-talk."""
        events = [*_clean(), E(4.0, "dn.delivered", "cp1", "bk-9", "DataTransfer", "cp1")]
        self.assertEqual(_invariants(ledger.check_downstream(events)), [ledger.CROSS])

    def test_answer_never_asked_for(self) -> None:
        """An answer envelope for a UniqueId the backend never sent is cross-talk."""
        events = [*_clean(), E(4.0, "dn.answer", "cp1", "bk-9", "result")]
        self.assertEqual(_invariants(ledger.check_downstream(events)), [ledger.CROSS])

    def test_answer_from_another_charge_point(self) -> None:
        """An answer envelope naming another charge point than the CALL's is cross-talk."""
        events = [
            E(1.0, "dn.sent", "cp1", "bk-1"),
            E(1.05, "dn.puback", "cp1", "bk-1"),
            E(1.1, "dn.answer", "cp2", "bk-1", "result"),
        ]
        self.assertEqual(_invariants(ledger.check_downstream(events)), [ledger.CROSS])

    def test_answer_with_another_calls_data(self) -> None:
        """A result envelope whose data is another CALL's is cross-talk."""
        events = [
            E(1.0, "dn.sent", "cp1", "bk-1"),
            E(1.05, "dn.puback", "cp1", "bk-1"),
            E(1.1, "dn.answer", "cp1", "bk-1", "result", "mismatch"),
        ]
        self.assertEqual(_invariants(ledger.check_downstream(events)), [ledger.CROSS])


class ProcessAndMemoryTests(SynchronousTestCase):
    def test_left_behind(self) -> None:
        """A process still running after the soak is reported."""
        [v] = ledger.check_processes(["pid 42 twistd -n ocppgw"])
        self.assertEqual(v.invariant, ledger.PROCS)

    def test_unclean_final_exit(self) -> None:
        """A non-zero exit on the final SIGTERM is reported; a mid-run one is not."""
        events = [
            E(1.0, "gw.exit", "a", code="143", note="SIGTERM"),
            E(2.0, "gw.exit", "b", code="143", note="final"),
        ]
        [v] = ledger.check_exits(events)
        self.assertEqual((v.invariant, "b" in v.what), (ledger.EXIT, True))

    def test_traceback_in_log(self) -> None:
        """A traceback in a gateway log is reported; a clean log is not."""
        logs = {"a": "fine\n", "b": "x\nTraceback (most recent call last):\n  boom\n"}
        [v] = ledger.check_logs(logs)
        self.assertEqual(v.invariant, ledger.LOGS)
        self.assertIn("instance b", v.what)

    def _samples(self, late_kib: int) -> list[RssSample]:
        early = [RssSample(t, "a", 1, 80_000) for t in range(11, 60, 2)]
        # a restart at 60 s resets RSS: lower, then growing to late_kib
        late = [RssSample(60 + t, "a", 2, 40_000 + t * 10) for t in range(0, 20, 2)]
        return [*early, *late, RssSample(89, "a", 2, late_kib)]

    def test_memory_flat(self) -> None:
        """RSS in the last third within the bound of the earlier peak is no violation."""
        self.assertEqual(ledger.check_memory(self._samples(90_000), 0, 90), [])

    def test_memory_growing(self) -> None:
        """RSS in the last third above 1.3 x the earlier peak + 16 MiB is reported."""
        [v] = ledger.check_memory(self._samples(80_000 * 13 // 10 + 16 * 1024 + 1), 0, 90)
        self.assertEqual(v.invariant, ledger.MEMORY)


class ScheduleTests(SynchronousTestCase):
    def test_same_seed_same_schedule(self) -> None:
        """A seed gives the same faults at the same offsets; another seed others."""
        self.assertEqual(schedule(7, 600, 5), schedule(7, 600, 5))
        self.assertNotEqual(schedule(7, 600, 5), schedule(8, 600, 5))

    def test_gaps_and_kinds(self) -> None:
        """Faults start 4-12 s apart, within the period, and every kind occurs in 600 s."""
        faults = schedule(3, 600, 5)
        gaps = [b.at - a.at for a, b in itertools.pairwise(faults)]
        self.assertTrue(all(4 <= g <= 12 for g in gaps), gaps)
        self.assertTrue(all(f.at < 600 for f in faults))
        self.assertEqual({f.kind for f in faults}, set(KINDS))

    def test_some_stalls_outlast_the_keepalive(self) -> None:
        """SIGSTOP lasts 1-2 x keepalive, beyond 1.5 x keepalive in some runs' faults."""
        stalls = [f.seconds for s in range(5) for f in schedule(s, 600, 5) if f.kind == "sigstop"]
        self.assertTrue(all(5 <= s <= 10 for s in stalls))
        self.assertTrue(any(s > 7.5 for s in stalls))
