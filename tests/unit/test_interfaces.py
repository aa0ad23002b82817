# -*- test-case-name: tests.unit.test_interfaces -*-
"""The contracts between the layers, checked with verifyObject on the real classes and the fakes."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyObject

from ocppgw.config import parse
from ocppgw.interfaces import IChargePointConnection, IChargePointSession, IMQTTClient, IRouter
from ocppgw.mqtt.client import MQTTClient
from ocppgw.router.routing import Router
from ocppgw.session.rules import Phase, Session
from tests.clocks import ClockTestCase, end_router, end_session
from tests.fakes import FakeConnection, FakeMQTT, FakeRouter
from tests.unit.test_connection import open_connection

CONFIG = parse("[listener:ws]\nendpoint = tcp:8080\n")


class RealClassesTests(ClockTestCase):
    def test_connection(self) -> None:
        """The Autobahn protocol provides IChargePointConnection once open."""
        connection, _ = open_connection()
        self.assertTrue(verifyObject(IChargePointConnection, connection))

    def test_session(self) -> None:
        """Session provides IChargePointSession, the connection's view of it."""
        session = Session("CP1", "ocpp1.6", FakeConnection(), FakeRouter(), self.clock)
        self.addCleanup(end_session, session)
        self.assertTrue(verifyObject(IChargePointSession, session))

    def test_router(self) -> None:
        """Router provides IRouter."""
        router = Router(CONFIG, FakeMQTT(), self.clock)
        self.addCleanup(end_router, router)
        self.assertTrue(verifyObject(IRouter, router))

    def test_mqtt_client(self) -> None:
        """MQTTClient provides IMQTTClient."""
        client = MQTTClient(CONFIG.mqtt, self.clocks.add(MemoryReactorClock()))
        self.assertTrue(verifyObject(IMQTTClient, client))


class FakesTests(ClockTestCase):
    def test_fakes(self) -> None:
        """The fakes provide the interfaces they stand in for."""
        self.assertTrue(verifyObject(IChargePointConnection, FakeConnection()))
        self.assertTrue(verifyObject(IRouter, FakeRouter()))
        self.assertTrue(verifyObject(IMQTTClient, FakeMQTT()))

    def test_fake_connection_refuses_when_closing(self) -> None:
        """Like Autobahn, the fake sends nothing after a close frame, and tells its session."""
        connection = FakeConnection()
        session = Session("CP1", "ocpp1.6", connection, FakeRouter(), self.clock)
        self.addCleanup(end_session, session)
        connection.session = session
        connection.peer_closes()
        connection.send_frame("[2]")
        self.assertEqual((connection.frames, connection.refused), ([], ["[2]"]))
        self.assertIs(session.phase, Phase.CLOSING)
