"""
Exactly one answer across the MQTT connection's bad moments (issue #18):
a malformed packet from the broker (path 7), a restarted gateway (path 8),
a gateway started before its broker (path 10), and a broker restarted with
persistence on (path 14).  Real mosquitto, real gateway processes, a raw
WebSocket charge point that answers every CALL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.integration.harness import (
    WAIT,
    Broker,
    Gateway,
    connect,
    free_port,
    launch_broker,
    run_async,
    start_broker,
    start_gateway,
)
from tests.integration.harness.support import (
    ReconnectingBackend,
    presence,
    restart_broker,
    start_own_broker,
    stop_broker,
)

_CLEAR = {"status": "Accepted"}


@contextlib.asynccontextmanager
async def answering_charge_point(gw: Gateway, cid: str) -> AsyncIterator[Any]:
    """A raw 1.6 charge point on ``gw`` answering every CALL with ``{"status": "Accepted"}``."""
    async with connect(gw.url(cid), ["ocpp1.6"]) as ws:

        async def answer() -> None:
            async for text in ws:
                frame = json.loads(text)
                if frame[0] == 2:
                    await ws.send(json.dumps([3, frame[1], _CLEAR]))

        task = asyncio.create_task(answer())
        try:
            yield ws
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _answers(backend: ReconnectingBackend, cid: str, unique_id: str) -> list[Any]:
    """Every answer envelope (result or error) the backend got for ``unique_id``."""
    found = []
    for m in backend.messages(
        lambda m: m.topic in (f"ocpp/cp/Reply/{cid}", f"ocpp/cp/Error/{cid}")
    ):
        body = m.json()
        if isinstance(body, dict) and body.get("UniqueId") == unique_id:
            found.append(body)
    return found


def _clear_cache(unique_id: str) -> dict[str, Any]:
    return {"MessageTypeId": 2, "UniqueId": unique_id, "Action": "ClearCache", "Payload": {}}


async def _every_answered_once(
    backend: ReconnectingBackend, cid: str, ids: list[str], timeout: float = 2 * WAIT
) -> dict[str, list[Any]]:
    """Wait until each of ``ids`` has an answer, then a settle; each one's answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_answers(backend, cid, i) for i in ids):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # a second answer would come now
    return {i: _answers(backend, cid, i) for i in ids}


def _persistent_broker(directory: Path) -> Broker:
    """
    A mosquitto that saves its sessions and queued messages when it stops and
    loads them when it starts (as docs/deploy.md asks of a production broker).
    Run as root, mosquitto drops to its own user, which cannot write into the
    test's private directory: it then keeps root (``user root``).
    """
    return start_broker(
        directory, persistent=True, extra=["autosave_interval 1", "max_queued_messages 1000"]
    )


def test_commands_published_across_a_broker_restart_each_get_one_answer(tmp_path: Path) -> None:
    """
    Path 14: with mosquitto's persistence on, CALLs published just after the
    broker restarted, before the gateway is back, are delivered from its kept
    session: each gets exactly one answer.
    """
    broker = _persistent_broker(tmp_path / "broker")
    backend = ReconnectingBackend(broker, persistent=True)
    gw = start_gateway(tmp_path / "gw", broker, {"mqtt": {"reconnect_min": "1"}})
    cid = "CPX14"

    @run_async
    async def body() -> None:
        async with answering_charge_point(gw, cid):
            await presence(backend, cid, True)
            stop_broker(broker)
            restart_broker(broker)
            # The gateway retries in 1 s: these arrive while it is away.
            async with asyncio.timeout(WAIT):
                while not backend.is_connected():
                    await asyncio.sleep(0.02)
            ids = [f"b14-{i}" for i in range(10)]
            for unique_id in ids:
                backend.publish(f"ocpp/cs/{cid}/Call/ClearCache", _clear_cache(unique_id))
            answers = await _every_answered_once(backend, cid, ids)
            assert {i: [a.get("MessageTypeId") for a in got] for i, got in answers.items()} == {
                i: [3] for i in ids
            }, answers

    try:
        body()
    finally:
        gw.stop()
        backend.close()
        stop_broker(broker)


def test_calls_queued_for_a_restarting_gateway_each_get_one_answer(tmp_path: Path) -> None:
    """
    Path 8: CALLs the broker queued in the session of a gateway that was
    restarted (same [gateway] id, the only instance) are delivered to the
    new run, which answers each exactly once (Offline: the charge point is
    not back).
    """
    broker = _persistent_broker(tmp_path / "broker")
    backend = ReconnectingBackend(broker)
    name = f"it-{uuid.uuid4().hex[:8]}"
    # The charge point leaves first: its subscription stays for offline_ttl
    # (60 s), so it is in the session the stopping gateway leaves behind.
    extra = {"gateway": {"id": name}}
    cid = "CPX8"
    ids = [f"b8-{i}" for i in range(5)]

    @run_async
    async def body() -> None:
        gw = start_gateway(tmp_path / "gw1", broker, extra)
        try:
            async with answering_charge_point(gw, cid):
                await presence(backend, cid, True)
        finally:
            gw.stop()
        for unique_id in ids:
            backend.publish(f"ocpp/cs/{cid}/Call/ClearCache", _clear_cache(unique_id))
        gw = start_gateway(tmp_path / "gw2", broker, extra)
        try:
            answers = await _every_answered_once(backend, cid, ids)
        finally:
            gw.stop()
        codes = {
            i: [a.get("ErrorCode", a.get("MessageTypeId")) for a in got]
            for i, got in answers.items()
        }
        assert codes == {i: ["Offline"] for i in ids}, answers

    try:
        body()
    finally:
        backend.close()
        stop_broker(broker)


def test_a_gateway_started_before_its_broker_connects_at_once(tmp_path: Path) -> None:
    """
    Path 10: the broker refuses at first; the gateway says "refused", keeps a
    charge point's CALL in its buffer, connects within reconnect_min (0.5 s)
    of the broker accepting, and the CALL is answered.
    """
    # The backend's session (its subscription to #) is made first and kept by
    # the broker across its absence, so the CALL the gateway publishes the
    # moment it connects is queued for the backend even if the backend's own
    # reconnect comes later (without it, a backend slower to subscribe than
    # the gateway to publish never saw the CALL).
    directory = tmp_path / "broker"
    first = start_broker(directory, persistent=True)
    port = first.port
    backend = ReconnectingBackend(first, persistent=True)
    backend.answer("Authorize", {"idTagInfo": {"status": "Accepted"}})
    stop_broker(first)
    absent = Broker(port, None, directory / "mosquitto.log")  # type: ignore[arg-type]
    gw = start_gateway(
        tmp_path / "gw", absent, {"upstream": {"awaiting_timeout": "5"}}, mqtt_connected=False
    )
    broker: Broker | None = None

    @run_async
    async def body() -> None:
        nonlocal broker
        async with connect(gw.url("CPX10"), ["ocpp1.6"]) as ws:
            await ws.send(json.dumps([2, "au-1", "Authorize", {"idTag": "TAG1"}]))
            await asyncio.sleep(1.5)  # refused, again and again
            broker = launch_broker(directory, port)
            accepted = time.monotonic()
            async with asyncio.timeout(WAIT):
                while "MQTT connected" not in gw.log():
                    await asyncio.sleep(0.02)
            took = time.monotonic() - accepted
            assert took < 0.5 + 0.5, f"connected {took:.2f} s after the broker accepted"
            # The CALL waited in the buffer: answered now (or Timeout within awaiting_timeout).
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5 + WAIT))
            assert frame[:2] == [3, "au-1"], frame
        log = gw.log()
        assert "refused the connection" in log, log
        assert "no connection within" not in log, log

    try:
        body()
    finally:
        gw.stop()
        backend.close()
        if broker is not None:
            stop_broker(broker)


class _Splice:
    """
    A TCP proxy between the gateway and mosquitto that can slip bytes into
    what the gateway reads (a malformed packet the broker never sends).
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.port = 0
        self.to_gateway: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._broker.port)
        self.to_gateway.append(writer)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        for task in (pump(reader, up_writer), pump(up_reader, writer)):
            t = asyncio.create_task(task)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    def inject(self, data: bytes) -> None:
        """Send ``data`` to the gateway on its latest connection, as if from the broker."""
        self.to_gateway[-1].write(data)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self.to_gateway:
            writer.close()
        for task in list(self._tasks):
            task.cancel()


def _health(port: int) -> int:
    """The HTTP status of the gateway's /healthz."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_a_malformed_puback_drops_and_reestablishes_the_connection(tmp_path: Path) -> None:
    """
    Path 7: a PUBACK shorter than its packet id (malformed, MQTT 5.0 §3.4.2)
    ends the broker connection at once; /healthz says 503 until the gateway
    has reconnected (reconnect_min later), then 200, and CALLs flow again.
    """
    broker = start_own_broker(tmp_path / "broker")
    backend = ReconnectingBackend(broker)
    backend.answer("Authorize", {"idTagInfo": {"status": "Accepted"}})
    admin = free_port()

    @run_async
    async def body() -> None:
        splice = _Splice(broker)
        await splice.start()
        via = Broker(splice.port, broker.proc, broker.log_path)
        gw = await asyncio.to_thread(  # the splice runs on this loop meanwhile
            start_gateway,
            tmp_path / "gw",
            via,
            {
                "mqtt": {"reconnect_min": "2"},
                "dnstream": {"offline_group": ""},  # one MQTT connection: the one spliced
                "admin": {"endpoint": f"tcp:{admin}:interface=127.0.0.1"},
            },
        )
        try:
            async with connect(gw.url("CPX7"), ["ocpp1.6"]) as ws:
                await presence(backend, "CPX7", True)
                assert await asyncio.to_thread(_health, admin) == 200
                splice.inject(b"\x40\x01\x00")
                statuses = []
                for _ in range(10):  # within 1 s, before the reconnect 2 s later
                    statuses.append(await asyncio.to_thread(_health, admin))
                    if statuses[-1] == 503:
                        break
                    await asyncio.sleep(0.1)
                assert statuses[-1] == 503, statuses
                async with asyncio.timeout(WAIT):
                    while gw.log().count("MQTT connected") < 2:
                        await asyncio.sleep(0.05)
                    while await asyncio.to_thread(_health, admin) != 200:
                        await asyncio.sleep(0.1)
                await ws.send(json.dumps([2, "au-7", "Authorize", {"idTag": "TAG7"}]))
                frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                assert frame[:2] == [3, "au-7"], frame
            log = gw.log()
            assert "dropping the connection" in log or "MQTT connection lost" in log, log
        finally:
            gw.stop()
            await splice.close()

    try:
        body()
    finally:
        backend.close()
        stop_broker(broker)


def test_a_call_before_the_broker_is_answered_within_awaiting_timeout(tmp_path: Path) -> None:
    """
    Path 10: with no broker at all, a charge point's CALL waits in the buffer
    and gets its CALLERROR after awaiting_timeout, never a hang.
    """
    port = free_port()
    absent = Broker(port, None, tmp_path / "none.log")  # type: ignore[arg-type]
    gw = start_gateway(
        tmp_path / "gw", absent, {"upstream": {"awaiting_timeout": "2"}}, mqtt_connected=False
    )

    @run_async
    async def body() -> None:
        async with connect(gw.url("CPX10b"), ["ocpp1.6"]) as ws:
            sent = time.monotonic()
            await ws.send(json.dumps([2, "au-2", "Authorize", {"idTag": "TAG2"}]))
            frame = json.loads(await asyncio.wait_for(ws.recv(), 2 + WAIT))
            took = time.monotonic() - sent
            assert frame[:2] == [4, "au-2"], frame
            assert 1.5 < took < 2 + 2, f"answered after {took:.2f} s"

    try:
        body()
    finally:
        gw.stop()
    assert "refused the connection" in gw.log()


def test_a_restarted_gateway_answers_once_for_what_its_last_run_held(tmp_path: Path) -> None:
    """
    Paths 8 and 14: the session a restarted gateway resumes still holds the
    last run's subscription for a charge point that is gone; a CALL for it
    published after the restart gets exactly one Offline (from that
    subscription or the catch-all, never both).
    """
    broker = _persistent_broker(tmp_path / "broker")
    backend = ReconnectingBackend(broker)
    extra = {"gateway": {"id": f"it-{uuid.uuid4().hex[:8]}"}}
    cid = "CPX8b"

    @run_async
    async def body() -> None:
        gw = start_gateway(tmp_path / "gw1", broker, extra)
        try:
            async with answering_charge_point(gw, cid):
                await presence(backend, cid, True)
        finally:
            gw.stop()
        gw = start_gateway(tmp_path / "gw2", broker, extra)
        try:
            await asyncio.sleep(1.0)  # the new run has read presence
            backend.publish(f"ocpp/cs/{cid}/Call/ClearCache", _clear_cache("b8b-1"))
            answers = await _every_answered_once(backend, cid, ["b8b-1"])
        finally:
            gw.stop()
        codes = [a.get("ErrorCode", a.get("MessageTypeId")) for a in answers["b8b-1"]]
        assert codes == ["Offline"], answers

    try:
        body()
    finally:
        backend.close()
        stop_broker(broker)


def test_a_call_older_than_awaiting_timeout_is_answered_expired(tmp_path: Path) -> None:
    """
    Path 8: a downstream CALL whose ``Timestamp`` says the backend sent it
    longer than ``awaiting_timeout`` ago (as a resumed session's queue can
    deliver it) is answered once, ``Expired``, and never reaches the charge
    point; a fresh one beside it is delivered and answered by the charge point.
    """
    broker = start_broker(tmp_path / "broker")
    backend = ReconnectingBackend(broker)
    cid = "CPX8c"

    def stamped(unique_id: str, age: float) -> dict[str, Any]:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - age))
        return {**_clear_cache(unique_id), "Timestamp": f"{when}.000Z"}

    @run_async
    async def body() -> None:
        gw = start_gateway(tmp_path / "gw", broker, {"dnstream": {"awaiting_timeout": "10"}})
        received: list[str] = []
        try:
            async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
                await presence(backend, cid, True)
                backend.publish(f"ocpp/cs/{cid}/Call/ClearCache", stamped("old", 60))
                backend.publish(f"ocpp/cs/{cid}/Call/ClearCache", stamped("new", 0))
                while "new" not in received:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                    received.append(frame[1])
                    await ws.send(json.dumps([3, frame[1], _CLEAR]))
                answers = await _every_answered_once(backend, cid, ["old", "new"])
        finally:
            gw.stop()
        assert received == ["new"]
        codes = {i: [a.get("ErrorCode", a.get("MessageTypeId")) for a in got]
                 for i, got in answers.items()}
        assert codes == {"old": ["Expired"], "new": [3]}, answers

    try:
        body()
    finally:
        backend.close()
        stop_broker(broker)


def test_calls_held_by_a_killed_gateway_are_answered_by_its_next_run(tmp_path: Path) -> None:
    """
    A gateway killed (SIGKILL) while a backend CALL is in flight on its charge
    point and another waits behind it: the broker took both as delivered, so
    only the gateway knew of them.  Its next run (same [gateway] id and
    journal) answers each once: Disconnected for the one sent, Shutdown for
    the one never sent.
    """
    broker = start_broker(tmp_path / "broker")
    backend = ReconnectingBackend(broker)
    extra = {"gateway": {"id": f"it-{uuid.uuid4().hex[:8]}", "journal": str(tmp_path / "j")}}
    cid = "CPX8k"

    @run_async
    async def body() -> None:
        gw = start_gateway(tmp_path / "gw1", broker, extra)
        try:
            async with connect(gw.url(cid), ["ocpp1.6"]) as ws:
                await presence(backend, cid, True)
                backend.publish(f"ocpp/cs/{cid}/Call/ClearCache", _clear_cache("held-1"))
                backend.publish(f"ocpp/cs/{cid}/Call/ClearCache", _clear_cache("held-2"))
                frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                assert frame[1] == "held-1", frame
                await asyncio.sleep(0.3)  # held-2 reaches the gateway's queue
                assert gw.proc is not None
                gw.proc.kill()
                gw.proc.wait()
        finally:
            gw.stop()
        gw = start_gateway(tmp_path / "gw2", broker, extra)
        try:
            answers = await _every_answered_once(backend, cid, ["held-1", "held-2"])
        finally:
            gw.stop()
        codes = {
            i: [a.get("ErrorCode", a.get("MessageTypeId")) for a in got]
            for i, got in answers.items()
        }
        assert codes == {"held-1": ["Disconnected"], "held-2": ["Shutdown"]}, answers

    try:
        body()
    finally:
        backend.close()
        stop_broker(broker)
