"""The Recorder: records, metrics and latencies from the gateway's events, on a Clock."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from ocppgw.admin.metrics import Metrics
from ocppgw.admin.records import MAX_EVENTS, MAX_NAMES, OTHER, Recorder
from ocppgw.interfaces import NO_EVENTS, IGatewayEvents
from ocppgw.ocpp.envelope import ORIGIN_GATEWAY, Envelope
from ocppgw.ocpp.messages import CallError, FrameError, parse_frame
from tests.clocks import ClockTestCase, end_session


def samples(recorder: Recorder) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(recorder.metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def seen(recorder: Recorder, identity: str, inbound: bool, text: str) -> None:
    """A frame as the gateway reports it: its size (connection), its message (session)."""
    recorder.frame(identity, inbound, text)
    try:
        message = parse_frame(text, "ocpp1.6")
    except (FrameError, RecursionError):
        message = None
    recorder.message(identity, inbound, message)


def connected(clock: Clock) -> Recorder:
    recorder = Recorder(clock, Metrics())
    recorder.connected("CP1", "ocpp1.6", "ws", 1, "tcp4:192.0.2.1:1")
    return recorder


class RecorderTests(ClockTestCase):
    def test_interface(self) -> None:
        """The Recorder and the no-op default both provide IGatewayEvents."""
        self.assertTrue(verifyObject(IGatewayEvents, connected(self.clock)))
        self.assertTrue(verifyObject(IGatewayEvents, NO_EVENTS))

    def test_frames_counted_and_answers_timed(self) -> None:
        """A CALL out and its answer in: counted by type and action, latency observed."""
        recorder = connected(self.clock)
        seen(recorder, "CP1", False, '[2,"a","Reset",{"type":"Soft"}]')
        self.clock.advance(0.2)
        seen(recorder, "CP1", True, '[3,"a",{"status":"Accepted"}]')
        record = recorder.records["CP1"]
        self.assertEqual(record.by_type[("in", "CALLRESULT", "Reset")], 1)
        self.assertEqual((record.messages_in, record.messages_out), (1, 1))
        self.assertEqual(record.last_message_at, 0.2)
        got = samples(recorder)
        key = ("ocppgw_downstream_call_seconds_count", (("action", "Reset"),))
        self.assertEqual(got[key], 1.0)
        total = ("ocppgw_downstream_call_seconds_sum", (("action", "Reset"),))
        self.assertAlmostEqual(got[total], 0.2)
        self.assertEqual(
            got[
                (
                    "ocppgw_messages_total",
                    (("action", "Reset"), ("direction", "out"), ("type", "CALL")),
                )
            ],
            1.0,
        )

    def test_callerror_codes_and_gateway_errors(self) -> None:
        """CALLERROR frames count by code; gateway error envelopes by code, per record too."""
        recorder = connected(self.clock)
        seen(recorder, "CP1", True, '[2,"b","Heartbeat",{}]')
        seen(recorder, "CP1", False, '[4,"b","InternalError","backend did not answer",{}]')
        recorder.published(
            Envelope(
                CallError("b", "Timeout", "no answer", {}, "Heartbeat"),
                charge_point="CP1",
                origin=ORIGIN_GATEWAY,
            )
        )
        got = samples(recorder)
        self.assertEqual(
            got[("ocppgw_callerrors_total", (("code", "InternalError"), ("direction", "out")))], 1
        )
        self.assertEqual(got[("ocppgw_gateway_errors_total", (("code", "Timeout"),))], 1)
        self.assertEqual(dict(recorder.records["CP1"].errors), {"InternalError": 1, "Timeout": 1})

    def test_events_bounded_and_kept_over_reconnects(self) -> None:
        """The last 20 connection events survive reconnections; a ping timeout is named."""
        recorder = connected(self.clock)
        for _ in range(15):
            recorder.disconnected("CP1", "tcp4:192.0.2.1:1", 1000, "bye")
            recorder.connected("CP1", "ocpp1.6", "ws", 1, "tcp4:192.0.2.1:1")
        recorder.disconnected(
            "CP1",
            "tcp4:192.0.2.1:1",
            1006,
            "connection was closed uncleanly (WebSocket ping timeout)",
        )
        events = recorder.records["CP1"].events
        self.assertEqual(len(events), MAX_EVENTS)
        self.assertEqual(events[-1]["event"], "ping timeout")

    def test_takeovers_and_refusals(self) -> None:
        """Takeovers count by where, refusals by status; no identity in any label."""
        recorder = connected(self.clock)
        recorder.takeover("CP1", across=False)
        recorder.takeover("CP1", across=True)
        recorder.refused("ws", "tcp4:192.0.2.9:1", "/ocpp/CP1", "401", "bad password")
        recorder.refused("ws", "192.0.2.9:2", "", "TLS", "handshake failed")
        got = samples(recorder)
        self.assertEqual(got[("ocppgw_takeovers_total", (("where", "same"),))], 1)
        self.assertEqual(got[("ocppgw_takeovers_total", (("where", "across"),))], 1)
        self.assertEqual(got[("ocppgw_handshakes_refused_total", (("reason", "401"),))], 1)
        self.assertEqual(got[("ocppgw_handshakes_refused_total", (("reason", "TLS"),))], 1)
        self.assertNotIn("CP1", " ".join(str(labels) for _, labels in got))
        self.assertEqual(recorder.records["CP1"].events[-1]["event"], "refusal")

    def test_forward_mode_frames_latency_and_failures(self) -> None:
        """Forward mode: frames by direction, the relay's time by direction, upstream failures."""
        recorder = connected(self.clock)
        recorder.forwarded("ChargePoint", 0.0002)
        recorder.forwarded("CSMS", 0.0001)
        recorder.forwarded("CSMS", 0.0001)
        recorder.upstream_failed("404")
        recorder.upstream_failed("lost")
        got = samples(recorder)
        frames = "ocppgw_forward_frames_total"
        self.assertEqual(got[(frames, (("direction", "ChargePoint"),))], 1)
        self.assertEqual(got[(frames, (("direction", "CSMS"),))], 2)
        count = "ocppgw_forward_relay_seconds_count"
        self.assertEqual(got[(count, (("direction", "CSMS"),))], 2)
        failures = "ocppgw_forward_upstream_failures_total"
        self.assertEqual(got[(failures, (("reason", "404"),))], 1)
        self.assertEqual(got[(failures, (("reason", "lost"),))], 1)

    def test_reconnects(self) -> None:
        """The first MQTT connection is not a reconnect; the next ones are."""
        recorder = connected(self.clock)
        for _ in range(3):
            recorder.mqtt_connected()
        self.assertEqual(samples(recorder)[("ocppgw_mqtt_reconnects_total", ())], 2)

    def test_hostile_frames(self) -> None:
        """Unreadable and deeply nested frames count as INVALID, never raise."""
        recorder = connected(self.clock)
        seen(recorder, "CP1", True, "[" * 60_000)
        seen(recorder, "CP1", True, "not json")
        self.assertEqual(recorder.records["CP1"].by_type[("in", "INVALID", "")], 2)

    def test_invented_names_bounded(self) -> None:
        """
        A charge point inventing action names and error codes makes at most
        MAX_NAMES series of each (and record entries); the rest count as OTHER.
        """
        recorder = connected(self.clock)
        for i in range(MAX_NAMES + 50):
            seen(recorder, "CP1", True, f'[2,"c{i}","Act{i}",{{}}]')
            seen(recorder, "CP1", True, f'[4,"e{i}","Code{i}","",{{}}]')
        got = samples(recorder)
        actions = {
            dict(labels)["action"]
            for (name, labels) in got
            if name == "ocppgw_messages_total" and dict(labels)["type"] == "CALL"
        }
        codes = {
            dict(labels)["code"] for (name, labels) in got if name == "ocppgw_callerrors_total"
        }
        self.assertEqual(len(actions), MAX_NAMES + 1)
        self.assertIn(OTHER, actions)
        self.assertEqual(len(codes), MAX_NAMES + 1)
        key = ("ocppgw_messages_total", (("action", OTHER), ("direction", "in"), ("type", "CALL")))
        self.assertEqual(got[key], 50)
        record = recorder.records["CP1"]
        self.assertEqual(record.by_type[("in", "CALL", OTHER)], 50)
        self.assertEqual(len(record.errors), MAX_NAMES + 1)

    def test_bytes_counted_in_utf8(self) -> None:
        """Frame sizes are UTF-8 bytes: an ASCII frame its length, a non-ASCII one more."""
        recorder = connected(self.clock)
        recorder.frame("CP1", True, '[2,"a","DataTransfer",{"vendorId":"x"}]')
        out = '[3,"a",{"data":"' + "\u00e9\u20ac" + '"}]'  # é: 2 bytes, €: 3
        recorder.frame("CP1", False, out)
        record = recorder.records["CP1"]
        self.assertEqual(record.bytes_in, 39)
        self.assertEqual(record.bytes_out, len(out) + 1 + 2)
        got = samples(recorder)
        self.assertEqual(got[("ocppgw_message_bytes_total", (("direction", "in"),))], 39)


class ParsedOnceTests(ClockTestCase):
    def test_frame_parsed_once_through_a_session(self) -> None:
        """A frame in and the CALL out are each parsed (JSON decoded) at most once, yet counted."""
        import json
        from unittest import mock

        from ocppgw.ocpp.versions import OCPP16
        from ocppgw.session.rules import Session, SessionOptions
        from tests.fakes import FakeConnection, FakeRouter

        recorder = connected(self.clock)
        connection = FakeConnection()
        session = Session(
            "CP1", OCPP16, connection, FakeRouter(), self.clock, SessionOptions(events=recorder)
        )
        self.addCleanup(end_session, session)
        from ocppgw.ocpp import jsontext

        text = '[2,"1","Heartbeat",{}]'
        # Every JSON text is decoded by a JSONDecoder's decode() (json.loads'
        # included) or by jsontext's own fast path.
        decode = json.JSONDecoder.decode
        with (
            mock.patch.object(
                json.JSONDecoder, "decode", autospec=True, side_effect=decode
            ) as decoded,
            mock.patch.object(jsontext, "_decode", side_effect=jsontext._decode) as fast,
        ):
            recorder.frame("CP1", True, text)  # what the connection reports: its size
            session.frame_received(text)
        self.assertEqual(decoded.call_count + fast.call_count, 1)
        record = recorder.records["CP1"]
        self.assertEqual(record.by_type[("in", "CALL", "Heartbeat")], 1)
        self.assertEqual((record.messages_in, record.bytes_in), (1, len(text)))


def test_type_names_are_the_message_types() -> None:
    """The records name each message by its MessageType, for every message class."""
    from ocppgw.admin.records import _KINDS
    from ocppgw.ocpp.messages import Call, CallError, CallResult, CallResultError, Send

    for message in (
        Call("1", "A", {}),
        CallResult("1", {}),
        CallError("1", "GenericError"),
        CallResultError("1", "GenericError"),
        Send("1", "A", {}),
    ):
        assert _KINDS[type(message)] == message.message_type.name


def test_fast_counting_exposes_what_the_public_api_does() -> None:
    """
    Counting through Labelled's adders gives the same /metrics text as
    prometheus-client's own labels().inc() and observe(), bucket edges and
    the +Inf bucket included (the _created timestamps aside).
    """
    from prometheus_client import generate_latest

    from ocppgw.admin.metrics import LATENCY_BUCKETS, Metrics

    fast, plain = Metrics(), Metrics()
    amounts = [0.0, 0.005, 0.0051, 0.01, 1, 29.9, 30, 60, 61, 1e9, *LATENCY_BUCKETS]
    for n, amount in enumerate(amounts):
        action = "Heartbeat" if n % 2 else "MeterValues"
        fast.upstream_latency_of(action)(amount)
        plain.upstream_latency.labels(action).observe(amount)
        fast.bytes_of("in")(n)
        plain.bytes.labels("in").inc(n)
        fast.messages_of("out", "CALL", action)(1)
        plain.messages.labels("out", "CALL", action).inc()

    def text(m: Metrics) -> list[str]:
        lines = generate_latest(m.registry).decode().splitlines()
        return [line for line in lines if "_created" not in line and "process_" not in line]

    assert text(fast) == text(plain)
    assert any('le="+Inf"' in line for line in text(fast))


def test_without_the_values_it_knows_it_uses_the_public_api() -> None:
    """A child without prometheus-client's MutexValue is counted through its own inc/observe."""
    from ocppgw.admin.metrics import Labelled
    from ocppgw.admin.metrics_fast import adder

    class Child:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def inc(self, amount: float = 1) -> None:
            self.seen.append(amount)

        observe = inc

    child = Child()

    class Metric:
        def labels(self, *values: str) -> Child:
            return child

    Labelled(Metric())("a")(2)
    assert adder(child, histogram=True) is None
    assert child.seen == [2]
