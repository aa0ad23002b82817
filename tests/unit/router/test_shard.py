"""``${shard}``: a stable hash of the identity modulo ``[upstream] shards``."""

from __future__ import annotations

import zlib

from ocppgw.config import ConfigError, parse
from ocppgw.router.routing import Router
from ocppgw.router.topics import TopicTemplate, shard
from ocppgw.session.rules import Session
from tests.clocks import ClockTestCase, end_router
from tests.fakes import FakeConnection, FakeMQTT

BASE = "[listener:ws]\nendpoint = tcp:8080\n[gateway]\nid = gw1\n"


class ShardTests(ClockTestCase):
    def test_stable_crc32_modulo(self) -> None:
        """shard() is CRC-32 of the UTF-8 identity modulo shards, in 0..shards-1."""
        self.assertEqual(shard("CP1", 4), str(zlib.crc32(b"CP1") % 4))
        self.assertEqual(shard("CP1", 1), "0")
        values = {shard(f"CP{i}", 8) for i in range(200)}
        self.assertEqual(values, {str(k) for k in range(8)})

    def test_upstream_topic_carries_the_shard(self) -> None:
        """A CALL of a charge point is published on the topic of its shard."""
        mqtt = FakeMQTT()
        config = parse(BASE + "[upstream]\ntopic = ocpp/cp/${shard}/${cid}/${action}\nshards = 4\n")
        router = Router(config, mqtt, self.clock)
        self.addCleanup(end_router, router)
        connection = FakeConnection()
        session = Session("CP7", "ocpp1.6", connection, router, self.clock)
        router.directory.add(session, "tcp4:192.0.2.1:5555")
        session.frame_received('[2,"1","Heartbeat",{}]')
        topics = [t for t, _ in mqtt.json() if t.startswith("ocpp/cp/")]
        self.assertEqual(topics, [f"ocpp/cp/{shard('CP7', 4)}/CP7/Heartbeat"])

    def test_downstream_catch_all_wildcards_the_shard(self) -> None:
        """In a downstream template, ${shard} is the charge point's shard, + for all."""
        template = TopicTemplate.parse("ocpp/cs/${shard}/${cid}/+", downstream=True)
        self.assertEqual(template.subscription({"cid": "A", "shard": "3"}), "ocpp/cs/3/A/+")
        self.assertEqual(template.subscription({}, any_cid=True), "ocpp/cs/+/+/+")
        self.assertEqual(template.charge_point_of("ocpp/cs/3/A/x"), "A")

    def test_shards_must_be_positive(self) -> None:
        """[upstream] shards = 0 is an error naming the key."""
        with self.assertRaises(ConfigError) as e:
            parse(BASE + "[upstream]\nshards = 0\n")
        self.assertIn("[upstream] shards", str(e.exception))
