# -*- test-case-name: tests.unit.test_interfaces -*-
"""The contracts between the layers, checked with verifyObject on the real classes and the fakes."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from ocppgw.config import parse
from ocppgw.interfaces import IChargePointConnection, IChargePointSession, IMQTTClient, IRouter
from ocppgw.mqtt.client import MQTTClient
from ocppgw.router.routing import Router
from ocppgw.session.rules import Phase, Session
from tests.fakes import FakeConnection, FakeMQTT, FakeRouter
from tests.unit.test_connection import open_connection

CONFIG = parse("[listener:ws]\nendpoint = tcp:8080\n")


class RealClassesTests(SynchronousTestCase):
    def test_connection(self) -> None:
        """The Autobahn protocol provides IChargePointConnection once open."""
        connection, _ = open_connection()
        self.assertTrue(verifyObject(IChargePointConnection, connection))

    def test_session(self) -> None:
        """Session provides IChargePointSession, the connection's view of it."""
        session = Session("CP1", "ocpp1.6", FakeConnection(), FakeRouter(), Clock())
        self.assertTrue(verifyObject(IChargePointSession, session))

    def test_router(self) -> None:
        """Router provides IRouter."""
        self.assertTrue(verifyObject(IRouter, Router(CONFIG, FakeMQTT(), Clock())))

    def test_mqtt_client(self) -> None:
        """MQTTClient provides IMQTTClient."""
        self.assertTrue(verifyObject(IMQTTClient, MQTTClient(CONFIG.mqtt, MemoryReactorClock())))


class FakesTests(SynchronousTestCase):
    def test_fakes(self) -> None:
        """The fakes provide the interfaces they stand in for."""
        self.assertTrue(verifyObject(IChargePointConnection, FakeConnection()))
        self.assertTrue(verifyObject(IRouter, FakeRouter()))
        self.assertTrue(verifyObject(IMQTTClient, FakeMQTT()))

    def test_fake_connection_refuses_when_closing(self) -> None:
        """Like Autobahn, the fake sends nothing after a close frame, and tells its session."""
        connection = FakeConnection()
        session = Session("CP1", "ocpp1.6", connection, FakeRouter(), Clock())
        connection.session = session
        connection.peer_closes()
        connection.send_frame("[2]")
        self.assertEqual((connection.frames, connection.refused), ([], ["[2]"]))
        self.assertIs(session.phase, Phase.CLOSING)
