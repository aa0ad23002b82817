"""The flight recorder (issue 21): its bounds, its redaction, and its records as read."""

from __future__ import annotations

import json
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from ocppgw.admin.flight import HISTORY_OVERHEAD, OVERHEAD, STEP, FlightRecorder, cost
from ocppgw.admin.history import Filters, records, select, time_text
from ocppgw.admin.metrics import Metrics
from ocppgw.admin.records import Recorder
from ocppgw.admin.redact import Redactor
from ocppgw.admin.release import heap_trimmer
from ocppgw.config.model import RecorderConfig
from ocppgw.ocpp.messages import Call, CallError, CallResult
from tests.clocks import ClockTestCase


def config(**kw: object) -> RecorderConfig:
    values: dict[str, object] = {
        "per_station": 200,
        "max_memory": 64 * 1024 * 1024,
        "keep": 3600.0,
        "redact": ("idTag", "idToken.idToken"),
    }
    values.update(kw)
    return RecorderConfig(**values)  # type: ignore[arg-type]


AUTHORIZE = '[2,"42","Authorize",{"idTag":"ABC123"}]'


class RedactorTests(ClockTestCase):
    def test_named_key_at_any_depth(self) -> None:
        """A single name replaces that key's string value at any depth, nothing else of the text."""
        redact = Redactor(["idTag"], key=b"k")
        text = '[2, "1", "StartTransaction", {"idTag" : "A1", "x": {"idTag":"B2"}, "n": "A1"}]'
        out = redact(text)
        self.assertEqual(
            out,
            f'[2, "1", "StartTransaction", {{"idTag" : "{redact.hash("A1")}", '
            f'"x": {{"idTag":"{redact.hash("B2")}"}}, "n": "A1"}}]',
        )

    def test_dotted_path(self) -> None:
        """idToken.idToken replaces an idToken object's idToken member, not idToken elsewhere."""
        redact = Redactor(["idToken.idToken"], key=b"k")
        text = (
            '[2,"1","Authorize",'
            '{"idToken":{"idToken":"T9","type":"ISO14443"},"other":{"idToken":"Z"}}]'
        )
        out = redact(text)
        self.assertNotIn("T9", out)
        self.assertIn('"idToken":"Z"', out)
        self.assertIn('"type":"ISO14443"', out)

    def test_frame_inside_an_envelope(self) -> None:
        """A frame carried as a JSON string in an envelope has its fields redacted too."""
        redact = Redactor(["idTag", "idToken.idToken"], key=b"k")
        inner = '[2,"1","Authorize",{"idToken":{"idToken":"T9"},"idTag":"A1"}]'
        out = redact(json.dumps({"Frame": inner, "Payload": {"idTag": "A1"}}))
        self.assertNotIn("T9", out)
        self.assertNotIn("A1", out)
        self.assertEqual(out.count(redact.hash("A1")), 2)

    def test_same_value_same_hash_within_a_run_only(self) -> None:
        """The same value gives the same hash under one key, another under another key."""
        one, two = Redactor(["idTag"]), Redactor(["idTag"])
        self.assertEqual(one.hash("A"), one.hash("A"))
        self.assertNotEqual(one.hash("A"), one.hash("B"))
        self.assertNotEqual(one.hash("A"), two.hash("A"))

    def test_text_without_the_fields_is_the_same_object(self) -> None:
        """A frame that names no redacted key is stored as it is, not copied."""
        redact = Redactor(["idTag"])
        text = '[2,"1","Heartbeat",{}]'
        self.assertIs(redact(text), text)

    def test_keys_with_and_without_a_common_start(self) -> None:
        """
        Keys that begin alike (idTag, idToken) and keys that do not (idTag,
        token) are each redacted where they occur, and a frame with none of
        them is stored as it is.
        """
        for fields in (["idTag", "idToken.idToken"], ["idTag", "token"]):
            redact = Redactor(fields, key=b"k")
            text = '[2,"1","X",{"idTag":"A1","token":"B2","idToken":{"idToken":"C3"}}]'
            out = redact(text)
            self.assertNotIn('"A1"', out)
            self.assertEqual('"B2"' in out, "token" not in fields)
            self.assertEqual('"C3"' in out, "idToken.idToken" not in fields)
            plain = '[2,"1","Heartbeat",{"id":"x"}]'
            self.assertIs(redact(plain), plain)

    def test_unparseable_text_is_redacted_too(self) -> None:
        """An invalid frame still has every value of a redacted key replaced."""
        redact = Redactor(["idToken.idToken"], key=b"k")
        out = redact('[2,"1","Authorize",{"idToken":{"idToken":"SECRET"}')
        self.assertNotIn("SECRET", out)


class BoundsTests(ClockTestCase):
    def test_per_station(self) -> None:
        """Only the newest per_station frames of a charge point are kept, not counted as dropped."""
        flight = FlightRecorder(config(per_station=3), self.clock)
        for n in range(5):
            flight.frame("cp", True, f'[2,"{n}","Heartbeat",{{}}]')
        frames = flight.histories["cp"].frames
        self.assertEqual([json.loads(f[2])[1] for f in frames], ["2", "3", "4"])
        self.assertEqual((flight.records, flight.dropped), (3, 0))
        self.assertEqual(flight.bytes, HISTORY_OVERHEAD + sum(cost(f[2]) for f in frames))

    def test_max_memory_drops_oldest_of_largest(self) -> None:
        """Over max_memory, the oldest frames of the largest history go first, counted."""
        frame = "x" * 800  # cost 1000
        budget = 10_000 + 2 * HISTORY_OVERHEAD
        flight = FlightRecorder(config(max_memory=budget), self.clock)
        flight.frame("small", True, frame)
        for _ in range(9):
            flight.frame("big", True, frame)
        self.assertEqual((flight.bytes, flight.dropped), (budget, 0))
        flight.frame("big", True, frame)  # over: down to 90% of it, the big one's oldest first
        self.assertEqual(flight.dropped, 3)
        self.assertEqual(flight.bytes, 8 * (800 + OVERHEAD) + 2 * HISTORY_OVERHEAD)
        self.assertEqual(len(flight.histories["small"].frames), 1)
        self.assertEqual(len(flight.histories["big"].frames), 7)
        self.assertLessEqual(flight.bytes, budget * 9 // 10)

    def test_drops_spread_over_the_frames_after(self) -> None:
        """
        The frame that takes the total over max_memory drops what brings it
        back within and STEP more; each frame after it drops at most STEP
        until the total is 90% of max_memory; then none until it is over again.
        """
        frame = "x" * 800  # cost 1000
        budget = 100_000 + 10 * HISTORY_OVERHEAD  # 90%: 99,000
        flight = FlightRecorder(config(max_memory=budget), self.clock)
        for n in range(100):
            flight.frame(f"cp{n % 10}", True, frame)
        self.assertEqual((flight.bytes, flight.dropped), (budget, 0))
        flight.frame("cp0", True, frame)  # 111,000: one to be within, STEP more
        self.assertEqual((flight.dropped, flight.bytes), (1 + STEP, budget - STEP * 1000))
        flight.frame("cp1", True, frame)  # 103,000: four to reach 99,000
        self.assertEqual((flight.dropped, flight.bytes), (5 + STEP, budget * 9 // 10))
        flight.frame("cp2", True, frame)  # 100,000: within, no pass on
        self.assertEqual((flight.dropped, flight.bytes), (5 + STEP, budget * 9 // 10 + 1000))

    @settings(max_examples=200, deadline=None)
    @given(
        budget=st.integers(1_000, 30_000),
        frames=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 3_000)), max_size=120),
    )
    def test_never_over_the_budget(self, budget: int, frames: list[tuple[int, int]]) -> None:
        """
        Whatever frames come, of whatever sizes for whichever charge points,
        after each the total is within max_memory and is what the histories
        hold, and no frame drops more than its own excess and STEP frames.
        """
        flight = FlightRecorder(config(max_memory=budget, per_station=50), self.clock)
        for station, size in frames:
            dropped = flight.dropped
            flight.frame(f"cp{station}", True, "x" * size)
            held = sum(h.bytes + HISTORY_OVERHEAD for h in flight.histories.values())
            self.assertLessEqual(flight.bytes, budget)
            self.assertEqual(flight.bytes, held)
            self.assertEqual(
                flight.records, sum(len(h.frames) for h in flight.histories.values())
            )
            # Frames cost at least OVERHEAD each; a new history costs HISTORY_OVERHEAD too.
            excess = (size + OVERHEAD + HISTORY_OVERHEAD) // OVERHEAD + 1
            self.assertLessEqual(flight.dropped - dropped, excess + STEP)

    def test_dropped_memory_given_back(self) -> None:
        """
        Once a quarter of max_memory was dropped to stay within it, the
        heap's free memory is given back, at most once a second; never
        without drops.
        """
        released: list[float] = []

        def release() -> float:
            released.append(self.clock.seconds())
            return 0.001  # quick: the next may come a second later

        budget = 20_000 + HISTORY_OVERHEAD  # a quarter: 5,250; a pass drops to 18,900
        flight = FlightRecorder(config(max_memory=budget), self.clock, release)
        frame = "x" * 800  # cost 1000

        def send(n: int) -> None:
            for _ in range(n):
                flight.frame("cp", True, frame)

        send(20)
        self.assertEqual((flight.dropped, released), (0, []))
        send(1)  # over: a pass drops 4 frames, 4,000 bytes
        self.assertEqual((flight.dropped, released), (4, []))
        send(4)  # a second pass: 8,000 dropped since the start
        self.assertEqual((flight.dropped, released), (8, [0.0]))
        send(8)  # two more passes within the same second
        self.assertEqual((flight.dropped, released), (16, [0.0]))
        self.clock.advance(1)
        send(4)
        self.assertEqual((flight.dropped, released), (20, [0.0, 1.0]))

    def test_slow_release_waits_longer(self) -> None:
        """A release that took t seconds is not called again for t / 1% (at most 1% of the time)."""
        released: list[float] = []

        def release() -> float:
            released.append(self.clock.seconds())
            return 0.05  # 50 ms: the next waits 5 seconds

        budget = 20_000 + HISTORY_OVERHEAD
        flight = FlightRecorder(config(max_memory=budget), self.clock, release)
        for _ in range(25):  # two passes: 8,000 dropped, a quarter
            flight.frame("cp", True, "x" * 800)
        self.assertEqual(released, [0.0])
        self.clock.advance(4.9)
        for _ in range(8):
            flight.frame("cp", True, "x" * 800)
        self.assertEqual(released, [0.0])
        self.clock.advance(0.1)
        for _ in range(4):
            flight.frame("cp", True, "x" * 800)
        self.assertEqual(released, [0.0, 5.0])

    def test_heap_trimmer(self) -> None:
        """
        Where the C library has malloc_trim (glibc), heap_trimmer calls it
        and answers how long it took, in seconds; elsewhere it is None.
        """
        trimmer = heap_trimmer()
        if trimmer is not None:
            took = trimmer()
            self.assertGreaterEqual(took, 0.0)
            self.assertLess(took, 5.0)

    def test_keep_counts_from_disconnect(self) -> None:
        """A disconnected charge point's history is kept keep seconds, then forgotten."""
        flight = FlightRecorder(config(keep=60), self.clock)
        flight.frame("cp", True, AUTHORIZE)
        self.clock.advance(1000)
        flight.disconnected("cp")
        self.clock.advance(59)
        self.assertIsNotNone(flight.history("cp"))
        self.clock.advance(1)
        self.assertIsNone(flight.history("cp"))
        self.assertEqual((flight.bytes, flight.records), (0, 0))

    def test_reconnect_keeps_history(self) -> None:
        """A charge point that reconnects within keep continues its history."""
        flight = FlightRecorder(config(keep=60), self.clock)
        flight.frame("cp", True, AUTHORIZE)
        flight.disconnected("cp")
        self.clock.advance(30)
        flight.connected("cp")
        self.clock.advance(100)
        flight.disconnected("other")
        history = flight.history("cp")
        assert history is not None
        self.assertEqual(len(history.frames), 1)

    def test_off(self) -> None:
        """per_station 0: the Recorder holds no flight recorder."""
        flight = FlightRecorder(config(per_station=0), self.clock)
        recorder = Recorder(self.clock, Metrics(), flight)
        self.assertIsNone(recorder.flight)

    def test_metrics(self) -> None:
        """/metrics has the recorder's bytes, records and dropped_total, as they are."""
        metrics = Metrics()
        flight = FlightRecorder(config(max_memory=2500), self.clock)
        Recorder(self.clock, metrics, flight).frame("cp", True, "y" * 700)
        flight.frame("cp", True, "y" * 700)
        text = generate_latest(metrics.registry).decode()
        self.assertIn(f"ocppgw_recorder_bytes {900 + HISTORY_OVERHEAD}.0", text)
        self.assertIn("ocppgw_recorder_records 1.0", text)
        self.assertIn("ocppgw_recorder_dropped_total 1.0", text)


class ReadingTests(ClockTestCase):
    def exchange(self) -> FlightRecorder:
        """An Authorize relayed to the backend and answered, then a refused CALL and junk."""
        flight = FlightRecorder(config(), self.clock)
        self.clock.advance(1_700_000_000)
        flight.frame("cp", True, AUTHORIZE)
        call = Call("42", "Authorize", {"idTag": "ABC123"})
        flight.relayed("cp", True, "ocpp/up/cp", b'{"idTag":"ABC123"}', call)
        self.clock.advance(0.05)
        flight.relayed("cp", False, "ocpp/dn/cp", b'{"s":1}', CallResult("42", {}))
        self.clock.advance(0.01)
        flight.frame("cp", False, '[3,"42",{"idTagInfo":{"status":"Accepted"}}]')
        flight.frame("cp", True, '[2,"43","Nope",{}]')
        flight.frame("cp", False, '[4,"43","NotImplemented","Unknown action",{}]')
        flight.frame("cp", True, "not json")
        return flight

    def test_records(self) -> None:
        """Each frame is a record with its fields; answers carry their CALL's Action and latency."""
        flight = self.exchange()
        out = select(flight.histories["cp"].frames, Filters())
        self.assertEqual(
            out[0],
            {
                "Time": "2023-11-14T22:13:20.000Z",
                "Direction": "FromChargePoint",
                "MessageTypeId": 2,
                "UniqueId": "42",
                "Action": "Authorize",
                "Topic": None,
                "Frame": f'[2,"42","Authorize",{{"idTag":"{flight.redact.hash("ABC123")}"}}]',
                "Verdict": "accepted",
                "LatencyMs": None,
            },
        )
        self.assertEqual(
            [(r["Direction"], r["MessageTypeId"], r["Action"], r["LatencyMs"]) for r in out],
            [
                ("FromChargePoint", 2, "Authorize", None),
                ("ToBackend", 2, "Authorize", None),
                ("FromBackend", 3, "Authorize", 50),
                ("ToChargePoint", 3, "Authorize", 60),
                ("FromChargePoint", 2, "Nope", None),
                ("ToChargePoint", 4, "Nope", 0),
                ("FromChargePoint", None, None, None),
            ],
        )
        self.assertEqual(out[1]["Topic"], "ocpp/up/cp")
        self.assertNotIn("ABC123", json.dumps(out))

    def test_verdicts(self) -> None:
        """A CALL the gateway answered with a CALLERROR is refused with it; junk too."""
        out = select(self.exchange().histories["cp"].frames, Filters())
        self.assertEqual(
            out[4]["Verdict"], {"ErrorCode": "NotImplemented", "ErrorDescription": "Unknown action"}
        )
        self.assertEqual(out[6]["Verdict"]["ErrorCode"], "FormatViolation")
        self.assertEqual(out[0]["Verdict"], "accepted")

    def test_filters(self) -> None:
        """Each filter selects its records; limit keeps the newest."""
        frames = self.exchange().histories["cp"].frames

        def pick(**kw: object) -> list[tuple[str, str | None]]:
            chosen = select(frames, Filters(**kw))  # type: ignore[arg-type]
            return [(r["Direction"], r["UniqueId"]) for r in chosen]

        self.assertEqual(pick(action="Nope"), [("FromChargePoint", "43"), ("ToChargePoint", "43")])
        self.assertEqual(pick(direction="ToBackend"), [("ToBackend", "42")])
        self.assertEqual(pick(unique_id="43", type=4), [("ToChargePoint", "43")])
        self.assertEqual(pick(limit=2), [("ToChargePoint", "43"), ("FromChargePoint", None)])
        start = 1_700_000_000_000
        self.assertEqual(len(pick(since=start + 50)), 5)
        self.assertEqual(len(pick(until=start + 50)), 3)

    def test_downstream_verdicts(self) -> None:
        """
        A backend CALL the gateway answered with its own error (never sent to
        the charge point) is refused with it; an undecodable payload is refused.
        """
        flight = FlightRecorder(config(), self.clock)
        flight.relayed("cp", False, "dn", b"{}", Call("d1", "Reset", {}))
        flight.relayed("cp", True, "up", b"{}", CallError("d1", "Offline", "not connected"))
        flight.relayed("cp", False, "dn", b"junk", None)
        out = records(flight.histories["cp"].frames)
        refusal = {"ErrorCode": "Offline", "ErrorDescription": "not connected"}
        self.assertEqual(out[0]["Verdict"], refusal)
        self.assertEqual((out[1]["Action"], out[1]["Verdict"]), ("Reset", "accepted"))
        self.assertEqual(out[2]["Verdict"]["ErrorCode"], "FormatViolation")

    def test_binary_payload(self) -> None:
        """A payload that is not UTF-8 is base64 without redaction, withheld with it."""
        plain = FlightRecorder(config(redact=()), self.clock)
        plain.relayed("cp", True, "t", b"\xff\x00", None)
        record = records(plain.histories["cp"].frames)[0]
        self.assertEqual((record["Frame"], record["Encoding"]), ("/wA=", "base64"))
        redacting = FlightRecorder(config(), self.clock)
        redacting.relayed("cp", True, "t", b"\xff\x00", None)
        self.assertIsNone(records(redacting.histories["cp"].frames)[0]["Frame"])

    def test_time_text(self) -> None:
        """Times are RFC 3339 UTC with milliseconds."""
        self.assertEqual(time_text(1_765_029_723_123), "2025-12-06T14:02:03.123Z")


class FollowTests(ClockTestCase):
    def test_follow_and_stop(self) -> None:
        """A follower is told of each new frame of its charge point only, until it stops."""
        flight = FlightRecorder(config(), self.clock)
        flight.frame("cp", True, "[1]")
        told: list[str] = []
        stop = flight.follow("cp", lambda history: told.append(history.frames[-1][2]))  # type: ignore[arg-type]
        flight.frame("other", True, "[2]")
        flight.frame("cp", False, "[3]")
        stop()
        flight.frame("cp", True, "[4]")
        self.assertEqual(told, ["[3]"])


class MemoryTests(ClockTestCase):
    def test_budget_holds_for_real_memory(self) -> None:
        """
        10,000 charge points sending 1 KB frames beyond per_station: the memory
        the recorder really holds (tracemalloc) stays within max_memory + 10%.
        """
        budget = 8 * 1024 * 1024
        flight = FlightRecorder(config(max_memory=budget, per_station=3), self.clock)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(5):
                for station in range(10_000):
                    text = f'[2,"{n}","DataTransfer",{{"data":"{"x" * 1000}"}}]'
                    flight.frame(f"cp-{station}", True, text)
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        self.assertGreater(flight.dropped, 0)
        self.assertLess(len(flight.histories), 10_000)  # emptied ones are let go too
        self.assertLessEqual(flight.bytes, budget)
        self.assertLessEqual(held, budget * 1.1)
