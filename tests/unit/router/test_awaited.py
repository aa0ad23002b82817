"""Answers waited for in this process (the admin API's CALLs), handed over as published."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase

from ocppgw.ocpp.envelope import Envelope
from ocppgw.ocpp.messages import Call, CallError, CallResult
from ocppgw.router.awaited import Awaited
from tests.unit.router.test_router import SetupTestCase, setup


def answer(identity: str, unique_id: str) -> Envelope:
    return Envelope(CallResult(unique_id, {"status": "Accepted"}, "Reset"), "ocpp1.6", identity)


class AwaitedTests(SynchronousTestCase):
    def test_answer_is_handed_over_once(self) -> None:
        """The answer to the awaited CALL fires its Deferred, and nothing waits afterwards."""
        awaited = Awaited()
        d = awaited.answer_to("CP1", "api-1")
        envelope = answer("CP1", "api-1")
        awaited.published(envelope)
        self.assertIs(self.successResultOf(d), envelope)
        self.assertEqual(awaited.waiting, {})

    def test_other_envelopes_are_not_its_answer(self) -> None:
        """Another identity's answer, another UniqueId, or a CALL under the id, fire nothing."""
        awaited = Awaited()
        d = awaited.answer_to("CP1", "api-1")
        awaited.published(answer("CP2", "api-1"))
        awaited.published(answer("CP1", "api-2"))
        awaited.published(Envelope(Call("api-1", "Reset", {}), "ocpp1.6", "CP1"))
        self.assertNoResult(d)
        awaited.published(
            Envelope(CallError("api-1", "Timeout", "late", {}, "Reset"), "ocpp1.6", "CP1")
        )
        self.assertIsInstance(self.successResultOf(d).message, CallError)

    def test_cancel_stops_waiting(self) -> None:
        """A cancelled wait is forgotten: a later answer finds nobody waiting."""
        awaited = Awaited()
        d = awaited.answer_to("CP1", "api-1")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(awaited.waiting, {})
        awaited.published(answer("CP1", "api-1"))  # no error: nobody waits


class RouterAwaitedTests(SetupTestCase):
    def test_router_hands_over_what_it_publishes(self) -> None:
        """The router's publish of the answer fires the wait registered with it."""
        router, mqtt, _, _ = setup()
        d = router.awaited.answer_to("CP1", "api-1")
        router.publish(answer("CP1", "api-1"))
        self.assertEqual(self.successResultOf(d).message.unique_id, "api-1")
        self.assertIn("ocpp/cp/Reply/CP1", [topic for topic, *_ in mqtt.published])
