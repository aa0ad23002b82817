"""Error envelopes whose publish failed are published again, never only logged."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed

from ocppgw.ocpp.envelope import ORIGIN_GATEWAY, Envelope, GatewayError
from ocppgw.ocpp.messages import CallError
from ocppgw.session.owed import OWED_MEMORY, OWED_RETRY, Owed
from tests.clocks import ClockTestCase, end_router
from tests.fakes import FakeMQTT


def _error(unique_id: str) -> Envelope:
    return Envelope(
        CallError(unique_id, GatewayError.OFFLINE.value, "gone"), origin=ORIGIN_GATEWAY
    )


class _Broker:
    """Fails every publish while ``down``, like a full MQTT buffer; records what it took."""

    def __init__(self) -> None:
        self.down = True
        self.taken: list[str] = []

    def publish(self, envelope: Envelope) -> Deferred[None]:
        if self.down:
            return fail(RuntimeError("buffer full"))
        self.taken.append(envelope.message.unique_id)
        return succeed(None)


class OwedTests(ClockTestCase):
    def test_published_once_the_broker_takes_it(self) -> None:
        """A failed publish is tried again every OWED_RETRY seconds until it goes through."""
        clock, broker = self.clock, _Broker()
        owed = Owed(clock, broker.publish, "test")
        owed.publish(_error("1"))
        clock.advance(OWED_RETRY)
        self.assertEqual((broker.taken, len(owed)), ([], 1))
        broker.down = False
        clock.advance(OWED_RETRY)
        self.assertEqual((broker.taken, len(owed)), (["1"], 0))
        clock.advance(OWED_RETRY * 5)
        self.assertEqual(broker.taken, ["1"])

    def test_bounded(self) -> None:
        """At most OWED_MEMORY envelopes wait; the oldest beyond that are dropped."""
        clock, broker = self.clock, _Broker()
        owed = Owed(clock, broker.publish, "test")
        for n in range(OWED_MEMORY + 3):
            owed.publish(_error(str(n)))
        self.assertEqual(len(owed), OWED_MEMORY)
        broker.down = False
        clock.advance(OWED_RETRY)
        self.assertEqual(broker.taken[0], "3")


class RouterOwesTests(ClockTestCase):
    def test_offline_answer_is_published_when_the_broker_is_back(self) -> None:
        """The router's Offline answer for an unheld charge point is owed, not only logged."""
        from ocppgw.config import parse
        from ocppgw.router.routing import Router

        config = parse("[listener:ws]\nendpoint = tcp:0\n")
        clock, mqtt = self.clock, FakeMQTT()
        router = Router(config, mqtt, clock)  # subscribes to the broker fake
        self.addCleanup(end_router, router)
        mqtt.failing = True
        mqtt.deliver("ocpp/cs/CP9/2/1", {"MessageTypeId": 2, "UniqueId": "u1",
                                          "Action": "Reset", "Payload": {}},
                     via="ocpp/cs/+/+/+")
        mqtt.failing = False
        self.assertEqual(mqtt.json(), [])
        clock.advance(OWED_RETRY)
        [(_topic, body)] = mqtt.json()
        self.assertEqual((body["ErrorCode"], body["UniqueId"]), ("Offline", "u1"))
