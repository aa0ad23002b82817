"""The gateway's shutdown, on a task.Clock: what it still owes the backend decides when it ends."""

from __future__ import annotations

import os
import signal
import tempfile
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from ocppgw.config import parse
from ocppgw.loop import Exit
from ocppgw.service import GatewayService
from tests.clocks import ClockTestCase

CONFIG = (
    "[gateway]\nid = gw\nshutdown_timeout = 3\n[listener:ws]\nendpoint = tcp:8080\n"
    "[mqtt]\nbroker = mqtt://127.0.0.1:1883\n"
)


class FakeMQTT:
    """Connected; every publish acknowledged at once."""

    connected = True

    def unacknowledged(self) -> int:
        return 0

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        self.connected = False
        return succeed(None)


class OwingRouter:
    """
    A router whose Shutdown envelope could not be published when the gateway
    began stopping (its charge point's share of the buffer was full): it is
    owed, and paid ``pay_after`` seconds later (never, if None).
    """

    def __init__(self, clock: Clock, pay_after: float | None) -> None:
        self._clock = clock
        self._pay_after = pay_after
        self.owing = 0

    def shutting_down(self, why: str) -> None:
        self.owing = 1
        if self._pay_after is not None:
            self._clock.callLater(self._pay_after, self._paid)

    def _paid(self) -> None:
        self.owing = 0

    def owed(self) -> int:
        return self.owing

    @property
    def directory(self) -> Any:
        return self  # no session: connected() is empty

    def connected(self) -> list[Any]:
        return []

    def gateway_presence(self, online: bool) -> tuple[str, bytes]:
        return "ocpp/gateway/gw", b"offline"

    def goodbye(self) -> tuple[str, bytes]:
        return self.gateway_presence(False)

    def said_goodbye(self) -> bool:
        return True  # alone: no other instance's catch-all to hand over to

    def leave(self) -> None:
        pass  # alone: the subscriptions stay, for the next run


class StopTestCase(ClockTestCase):
    """A gateway service stopped on the clock, with what it logs kept in ``logged``."""

    def setUp(self) -> None:
        super().setUp()
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def _stop(self, router: OwingRouter, mqtt: FakeMQTT | None = None) -> Deferred[Any]:
        mqtt = mqtt if mqtt is not None else FakeMQTT()
        service = GatewayService(parse(CONFIG), self.clock, router, mqtt, None, [])  # type: ignore[arg-type]
        service.running = 1
        self.exit = service.exit = Exit()  # not the process's own
        return service.stopService()  # type: ignore[no-any-return]


class OwedEnvelopesTests(StopTestCase):

    def _owed_lines(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.logged if "not published" in formatEvent(e)]

    def test_owed_envelope_is_paid_before_the_stop_ends(self) -> None:
        """An error envelope owed at shutdown is published before the stop ends; the exit is 0."""
        router = OwingRouter(self.clock, pay_after=1.0)
        done = self._stop(router)
        self.clock.advance(0.5)
        self.assertNoResult(done)
        for _ in range(40):
            self.clock.advance(0.05)
        self.successResultOf(done)
        self.assertIsNone(self.exit.killed_by())
        self.assertEqual(self._owed_lines(), [])

    def test_owed_envelope_unpaid_at_the_deadline_is_counted_and_fails_the_exit(self) -> None:
        """An error envelope still owed at the deadline: one line with the count, exit not 0."""
        router = OwingRouter(self.clock, pay_after=None)
        done = self._stop(router)
        for _ in range(100):
            self.clock.advance(0.05)
        self.successResultOf(done)
        self.assertEqual(self.exit.killed_by(), signal.SIGTERM)
        (line,) = self._owed_lines()
        self.assertIn("1 error envelopes", line)


class JournalStartTests(ClockTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def test_an_unwritable_journal_is_named_and_the_gateway_runs_on(self) -> None:
        """A journal that cannot be opened (its directory is a file): one error line naming
        [gateway] journal, the path and why; the journal is then not kept."""
        from twisted.logger import formatEvent

        from ocppgw.router.journal import Journal

        fd, blocker = tempfile.mkstemp(prefix="ocppgw-journal-")
        os.close(fd)
        self.addCleanup(os.remove, blocker)
        journal = Journal(blocker + "/gw.journal", self.clock)
        config, mqtt = parse(CONFIG), FakeMQTT()
        service = GatewayService(config, self.clock, None, mqtt, None, [], journal=journal)  # type: ignore[arg-type]
        service._recover(journal)
        (line,) = [formatEvent(e) for e in self.logged if "journal" in formatEvent(e)]
        self.assertIn(f"[gateway] journal: {blocker}/gw.journal: ", line)
        self.assertIn("will not be answered", line)
        journal.queued("CP1", "ocpp1.6", "a", "Reset")  # not kept, and no error


class WaitingSession:
    """A charge point with ``calls`` CALLs the backend has not answered; closing it ends it."""

    def __init__(self, router: WaitingRouter, calls: int) -> None:
        self._router = router
        self._calls = calls
        self.connection = self

    def awaiting_backend(self) -> int:
        return self._calls

    def close(self, code: int, reason: str) -> None:
        self._router.sessions.remove(self)


class WaitingRouter(OwingRouter):
    """Nothing owed; charge points whose CALLs wait for the backend."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock, pay_after=0.0)
        self.sessions: list[WaitingSession] = []

    def connected(self) -> list[Any]:
        return list(self.sessions)


class WaitingStopTests(StopTestCase):

    def test_a_stop_that_waits_for_the_backend_says_so_at_once(self) -> None:
        """
        A stop with charge point CALLs unanswered by the backend logs at once
        how many wait and for how long at most (shutdown_timeout), before any
        time passes; the stop then ends at that deadline.
        """
        from twisted.logger import formatEvent

        router = WaitingRouter(self.clock)
        router.sessions += [WaitingSession(router, 2), WaitingSession(router, 1)]
        done = self._stop(router)
        lines = [formatEvent(e) for e in self.logged if "waiting up to" in formatEvent(e)]
        self.assertEqual(
            lines,
            ["stopping: waiting up to 3.0 s for the backend's answers to 3 charge point CALLs"],
        )
        self.clock.advance(2.9)
        self.assertNoResult(done)
        for _ in range(10):
            self.clock.advance(0.05)
        self.successResultOf(done)
        self.assertEqual(router.sessions, [])

    def test_a_stop_with_nothing_awaited_says_nothing_of_waiting(self) -> None:
        """A stop without unanswered charge point CALLs logs no waiting line."""
        from twisted.logger import formatEvent

        router = WaitingRouter(self.clock)
        router.sessions.append(WaitingSession(router, 0))
        done = self._stop(router)
        for _ in range(10):
            self.clock.advance(0.05)
        self.successResultOf(done)
        self.assertEqual([e for e in self.logged if "waiting up to" in formatEvent(e)], [])


class AcknowledgingMQTT(FakeMQTT):
    """Connected; each publish acknowledged by the broker ``after`` seconds later."""

    def __init__(self, clock: Clock, after: float) -> None:
        self._clock = clock
        self._after = after
        self.pending = 0

    def unacknowledged(self) -> int:
        return self.pending

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> Deferred[None]:
        self.pending += 1
        acked: Deferred[None] = Deferred()
        self._clock.callLater(self._after, self._acked, acked)
        return acked

    def _acked(self, acked: Deferred[None]) -> None:
        self.pending -= 1
        acked.callback(None)


class LeavingRouter(OwingRouter):
    """Nothing owed; as it leaves, a catch-all copy that waited is answered Offline."""

    def __init__(self, clock: Clock, mqtt: AcknowledgingMQTT) -> None:
        super().__init__(clock, pay_after=0.0)
        self._mqtt = mqtt

    def leave(self) -> None:
        self._mqtt.publish("ocpp/CP1/answer", b'{"Error": "Offline"}', 1)


class LeavingStopTests(StopTestCase):

    def test_answers_decided_as_the_router_leaves_are_acknowledged_before_the_stop_ends(
        self,
    ) -> None:
        """
        What the router decides as it leaves (a catch-all copy answered
        Offline) is published like every other answer: the stop ends once the
        broker acknowledged it, complete (exit 0), with no line of publishes
        left, not at once with the publish counted as lost.
        """
        from twisted.logger import formatEvent

        mqtt = AcknowledgingMQTT(self.clock, after=0.2)
        done = self._stop(LeavingRouter(self.clock, mqtt), mqtt)
        for _ in range(40):
            self.clock.advance(0.05)
        self.successResultOf(done)
        self.assertEqual(mqtt.pending, 0)
        self.assertIsNone(self.exit.killed_by())
        self.assertEqual([e for e in self.logged if "not acknowledged" in formatEvent(e)], [])
