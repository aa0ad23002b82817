"""
Forward mode (issue 20): charge points on the PyPI ``ocpp`` package relayed
by a real gateway to a central system on the ``ocpp`` package
(tests/integration/harness/csms.py), over ws and wss, with the tap read
from the broker.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.exceptions import InvalidStatus

from tests.certs import CA
from tests.integration.harness import (
    WAIT,
    Backend,
    Gateway,
    basic_auth,
    charge_point,
    connect,
    recv_frame,
    run_async,
    settle,
    wait_closed,
    wait_log,
)
from tests.integration.harness.admin import admin_gateway, ahttp
from tests.integration.harness.csms import NOW, CentralSystem, central_system
from tests.integration.harness.support import (
    ReconnectingBackend,
    no_frame,
    own_gateway,
    restart_broker,
    start_own_broker,
    stop_broker,
)

Start = Callable[..., Gateway]


class Station16(ChargePoint16):
    """
    A 1.6 charge point that accepts the central system's ChangeAvailability
    (after a short while, so that other CALLs arrive meanwhile) and answers
    GetConfiguration.
    """

    @on("ChangeAvailability")
    async def change_availability(self, connector_id: int, type: str) -> Any:
        await asyncio.sleep(0.4)
        return result16.ChangeAvailability(status="Accepted")

    @on("GetConfiguration")
    def get_configuration(self, **kw: Any) -> Any:
        return result16.GetConfiguration(
            configuration_key=[{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
        )


class Station201(ChargePoint201):
    """A 2.0.1 charging station that accepts the central system's SetVariables."""

    @on("SetVariables")
    def set_variables(self, set_variable_data: list[dict[str, Any]]) -> Any:
        return result201.SetVariables(
            set_variable_result=[
                {
                    "attribute_status": "Accepted",
                    "component": d["component"],
                    "variable": d["variable"],
                }
                for d in set_variable_data
            ]
        )


def forwarding(central: CentralSystem, scheme: str = "ws", **forward: str) -> dict[str, Any]:
    """The INI sections of a gateway whose listener forwards to ``central``."""
    return {
        "listener:ws": {"forward": "csms"},
        "forward:csms": {"url": central.url(scheme), **forward},
    }


def tapped(backend: Backend, identity: str) -> list[dict[str, Any]]:
    """The tap's envelopes of ``identity``, in the order the broker delivered them."""
    return [m.json() for m in backend.messages(lambda m: m.topic == f"ocpp/tap/{identity}")]


async def tap_count(
    backend: Backend, identity: str, n: int, wait: float = WAIT
) -> list[dict[str, Any]]:
    """The first ``n`` tap envelopes of ``identity``, waiting for them."""
    for _ in range(int(wait / 0.05)):
        found = tapped(backend, identity)
        if len(found) >= n:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(tapped(backend, identity))} tap messages, not {n}")


@run_async
async def test_a_16_session_is_relayed_byte_for_byte_and_tapped_in_order(
    gateway: Start, backend: Backend
) -> None:
    """
    Boot, authorize, a transaction and the central system's own
    ChangeAvailability go through unchanged: the central system receives
    exactly the frames the charge point sent and vice versa, and the tap
    carries each of them once, in order, with Direction, Peer and Verdict.
    """
    async with central_system() as central:
        gw = gateway(forwarding(central))
        async with charge_point(Station16, gw.url("FWD-16"), "FWD-16", "ocpp1.6") as cp:
            boot = await cp.call(call16.BootNotification("ACME", "X1"))
            assert boot.status == "Accepted" and boot.current_time == NOW
            await cp.call(call16.Authorize(id_tag="TAG"))
            start = await cp.call(call16.StartTransaction(1, "TAG", 0, NOW))
            assert start.transaction_id == 77
            session = await central.session("FWD-16")
            answer = await session.cp.call(call16.ChangeAvailability(1, "Inoperative"))
            assert answer.status == "Accepted"
            await cp.call(call16.StopTransaction(10, NOW, 77))
            await settle()
            sent_by_cp = cp.conn.sent
            received_by_cp = cp.conn.received
        got = [text for way, text in session.frames if way == "in"]
        sent = [text for way, text in session.frames if way == "out"]
        assert not central.errors
        assert got == sent_by_cp
        assert sent == received_by_cp
        assert session.subprotocol == "ocpp1.6"
        assert session.path == "/steve/FWD-16"
        envelopes = await tap_count(backend, "FWD-16", len(session.frames))
        assert len(envelopes) == len(session.frames)
        order = [
            ("ChargePoint" if way == "in" else "CSMS", json.loads(text)[1])
            for way, text in session.frames
        ]
        assert [(e["Direction"], e["UniqueId"]) for e in envelopes] == order
        peer = f"127.0.0.1:{central.port}"
        assert {e["Peer"] for e in envelopes} == {peer}
        assert {json.dumps(e["Verdict"]) for e in envelopes} == {'"accepted"'}
        assert envelopes[1]["Action"] == "BootNotification"  # an answer names its CALL's Action
        assert {(e["ChargePointId"], e["Protocol"]) for e in envelopes} == {("FWD-16", "ocpp1.6")}


@run_async
async def test_a_201_session_with_the_central_systems_command(
    gateway: Start, backend: Backend
) -> None:
    """A 2.0.1 station boots, starts a transaction and answers SetVariables through the relay."""
    async with central_system() as central:
        gw = gateway(forwarding(central))
        url = gw.url("FWD-201")
        async with charge_point(Station201, url, "FWD-201", "ocpp2.0.1") as cp:
            boot = await cp.call(
                call201.BootNotification({"model": "X2", "vendor_name": "ACME"}, "PowerUp")
            )
            assert boot.status == "Accepted"
            await cp.call(
                call201.TransactionEvent(
                    "Started", NOW, "CablePluggedIn", 1, {"transaction_id": "T1"}
                )
            )
            session = await central.session("FWD-201")
            variable = {
                "attribute_value": "10",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            }
            result = await session.cp.call(call201.SetVariables([variable]))
            assert result.set_variable_result[0]["attribute_status"] == "Accepted"
            await settle()
        assert session.subprotocol == "ocpp2.0.1"
        envelopes = await tap_count(backend, "FWD-201", 6)
        directions = ["ChargePoint", "CSMS"] * 2 + ["CSMS", "ChargePoint"]
        assert [e["Direction"] for e in envelopes] == directions
        assert envelopes[4]["Action"] == "SetVariables"


@run_async
async def test_the_central_systems_refusal_is_the_charge_points(gateway: Start) -> None:
    """The central system answers the upgrade with 401 or 404: the charge point gets that status."""
    async with central_system() as central:
        gw = gateway(forwarding(central))
        central.refuse.update({"FWD-401": 401, "FWD-404": 404})
        for identity, status in (("FWD-401", 401), ("FWD-404", 404)):
            try:
                async with connect(gw.url(identity), ["ocpp1.6"]):
                    raise AssertionError("the upgrade was not refused")
            except InvalidStatus as e:
                assert e.response.status_code == status


@run_async
async def test_an_unreachable_central_system_is_502(gateway: Start) -> None:
    """Nothing listens at the central system's port: the charge point gets 502 at once."""
    async with central_system() as central:
        port_url = central.url()
    gw = gateway({"listener:ws": {"forward": "csms"}, "forward:csms": {"url": port_url}})
    try:
        async with connect(gw.url("FWD-502"), ["ocpp1.6"]):
            raise AssertionError("the upgrade was not refused")
    except InvalidStatus as e:
        assert e.response.status_code == 502


@run_async
async def test_the_central_system_dying_closes_the_charge_point_with_1012(gateway: Start) -> None:
    """on_csms_down = close: the central system dies mid-session; the charge point gets 1012."""
    async with central_system() as central:
        gw = gateway(forwarding(central))
        async with connect(gw.url("FWD-DIE"), ["ocpp1.6"]) as ws:
            await ws.send('[2,"h1","Heartbeat",{}]')
            assert json.loads(await ws.recv())[1] == "h1"
            await central.die()
            closed = await wait_closed(ws)
            assert closed.rcvd is not None and closed.rcvd.code == 1012


@run_async
async def test_the_charge_point_leaving_closes_the_central_systems_connection(
    gateway: Start,
) -> None:
    """The charge point closes with 1000: the central system's connection is closed with 1000."""
    async with central_system() as central:
        gw = gateway(forwarding(central))
        async with connect(gw.url("FWD-BYE"), ["ocpp1.6"]) as ws:
            session = await central.session("FWD-BYE")
            await ws.close(1000)
        await asyncio.wait_for(session.closed.wait(), WAIT)
        assert session.ws.close_code == 1000


@run_async
async def test_passthrough_basic_auth_is_seen_by_the_central_system(gateway: Start) -> None:
    """
    auth = passthrough over ws:// with allow_plain_auth: the central system
    gets the charge point's Authorization header; without it, none.
    """
    header = basic_auth(b"FWD-AUTH", b"secret-password-16")
    async with central_system() as central:
        gw = gateway(forwarding(central, allow_plain_auth="true"))
        async with connect(gw.url("FWD-AUTH"), ["ocpp1.6"], additional_headers=header):
            session = await central.session("FWD-AUTH")
        assert session.headers.get("Authorization") == header["Authorization"]
        plain = gateway(forwarding(central))
        async with connect(plain.url("FWD-NOAUTH"), ["ocpp1.6"], additional_headers=header):
            session = await central.session("FWD-NOAUTH")
        assert "Authorization" not in session.headers
        assert "allow_plain_auth = true" in gw.log()


@run_async
async def test_the_identity_is_percent_encoded_in_the_url(gateway: Start) -> None:
    """${cid}: unreserved characters kept, the rest (here ':' and '*') percent-encoded."""
    async with central_system() as central:
        gw = gateway(forwarding(central))
        async with connect(gw.url("FWD.a-b_c~d%3Ae*f"), ["ocpp1.6"]):
            await asyncio.sleep(0.2)
        assert list(central.sessions) == ["FWD.a-b_c~d%3Ae%2Af"]


@run_async
async def test_over_wss_the_certificate_is_verified(gateway: Start, tmp_path: Path) -> None:
    """wss:// with tls_ca: relayed; without it (the system's CAs do not know the CA): 502."""
    ca = CA()
    cert, key = ca.issue("localhost", server=True, dns=("localhost",), ips=("127.0.0.1",)).write(
        tmp_path, "csms"
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    async with central_system(context) as central:
        trusted = gateway(forwarding(central, "wss", tls_ca=str(ca.write(tmp_path / "ca.pem"))))
        async with connect(trusted.url("FWD-TLS"), ["ocpp2.0.1"]) as ws:
            assert ws.subprotocol == "ocpp2.0.1"
            await ws.send('[2,"h1","Heartbeat",{}]')
            assert json.loads(await ws.recv())[1] == "h1"
        untrusted = gateway(forwarding(central, "wss"))
        try:
            async with connect(untrusted.url("FWD-NOTLS"), ["ocpp2.0.1"]):
                raise AssertionError("the upgrade was not refused")
        except InvalidStatus as e:
            assert e.response.status_code == 502
        assert "FWD-NOTLS" not in central.sessions


@run_async
async def test_a_central_system_that_does_not_answer_in_time_is_503(gateway: Start) -> None:
    """It accepts TCP but never answers the upgrade: 503 after connect_timeout (1 s)."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        gw = gateway(
            {
                "listener:ws": {"forward": "csms"},
                "forward:csms": {"url": f"ws://127.0.0.1:{port}/${{cid}}", "connect_timeout": "1"},
            }
        )
        started = asyncio.get_running_loop().time()
        try:
            async with connect(gw.url("FWD-503"), ["ocpp1.6"]):
                raise AssertionError("the upgrade was not refused")
        except InvalidStatus as e:
            assert e.response.status_code == 503
        assert 0.9 < asyncio.get_running_loop().time() - started < 3


@run_async
async def test_the_tap_loses_and_repeats_nothing_across_a_broker_restart(tmp_path: Path) -> None:
    """
    The broker stops mid-session and comes back: the relay goes on meanwhile,
    and the tap carries every frame exactly once, in order (the gateway's
    publish window buffered them; the backend's session was kept). At
    ``[mqtt] qos = 2`` and a QoS 2 subscription: QoS 1 is at least once on
    either leg, a copy after a lost PUBACK.
    """
    broker = start_own_broker(tmp_path / "mqtt", persistent=True)

    class ExactlyOnce(ReconnectingBackend):
        subscribe_qos = 2

    backend = ExactlyOnce(broker, persistent=True)
    try:
        async with central_system() as central:
            sections = {**forwarding(central), "mqtt": {"qos": "2"}}
            with own_gateway(tmp_path / "gw", broker, sections) as gw:
                async with connect(gw.url("FWD-MQ"), ["ocpp1.6"]) as ws:
                    for i in range(15):
                        if i == 5:
                            stop_broker(broker)
                        if i == 10:
                            restart_broker(broker)
                        await ws.send(f'[2,"h{i}","Heartbeat",{{}}]')
                        assert json.loads(await ws.recv())[1] == f"h{i}"
                    envelopes = await tap_count(backend, "FWD-MQ", 30, wait=15)
                    await settle(0.5)
        envelopes = tapped(backend, "FWD-MQ")
        expected = [(d, f"h{i}") for i in range(15) for d in ("ChargePoint", "CSMS")]
        assert [(e["Direction"], e["UniqueId"]) for e in envelopes] == expected
    finally:
        backend.close()
        stop_broker(broker)


@run_async
async def test_a_backend_command_takes_its_turn_and_its_answer_goes_to_the_backend(
    gateway: Start, backend: Backend
) -> None:
    """
    A backend's GetConfiguration over MQTT, under the same UniqueId as the
    central system's ChangeAvailability in flight: it waits for that one's
    answer, then goes; the backend gets its answer on the reply topic, the
    central system only its own; the tap has it all as Backend and ChargePoint.
    """
    async with central_system() as central:
        gw = gateway(forwarding(central))
        async with charge_point(Station16, gw.url("FWD-CMD"), "FWD-CMD", "ocpp1.6") as cp:
            await cp.call(call16.BootNotification("ACME", "X1"))
            session = await central.session("FWD-CMD")
            mine = asyncio.create_task(
                session.cp.call(call16.ChangeAvailability(0, "Operative"), unique_id="same-id")
            )
            await asyncio.sleep(0.1)
            backend.publish(
                "ocpp/cs/FWD-CMD/Call/GetConfiguration",
                {"MessageTypeId": 2, "UniqueId": "same-id", "Action": "GetConfiguration",
                 "Payload": {"key": ["HeartbeatInterval"]}},
            )
            assert (await mine).status == "Accepted"
            reply = await backend.envelope("ocpp/cp/Reply/FWD-CMD", UniqueId="same-id")
            assert reply["Payload"]["configurationKey"][0]["value"] == "300"
            assert reply["Action"] == "GetConfiguration"
            await settle()
            received = [json.loads(t) for t in cp.conn.received]
        assert [f[2] for f in received if f[0] == 2] == ["ChangeAvailability", "GetConfiguration"]
        answers = [json.loads(t) for way, t in session.frames if way == "in" and t.startswith("[3")]
        assert [a[2] for a in answers] == [{"status": "Accepted"}]  # never the backend's answer
        assert not [m for m in backend.messages(lambda m: m.topic.startswith("ocpp/cp/FWD"))]
        envelopes = tapped(backend, "FWD-CMD")
        assert [(e["Direction"], e.get("Action")) for e in envelopes][2:] == [
            ("CSMS", "ChangeAvailability"),
            ("ChargePoint", "ChangeAvailability"),
            ("Backend", "GetConfiguration"),
            ("ChargePoint", "GetConfiguration"),
        ]
        assert envelopes[4]["Peer"] == ""


@run_async
async def test_a_backend_command_the_charge_point_does_not_answer_times_out(
    gateway: Start, backend: Backend
) -> None:
    """MQTT mode's timeout applies: no answer within awaiting_timeout, a Timeout envelope."""
    async with central_system() as central:
        gw = gateway({**forwarding(central), "dnstream": {"awaiting_timeout": "1"}})
        async with connect(gw.url("FWD-TO"), ["ocpp1.6"]) as ws:
            await central.session("FWD-TO")
            backend.publish(
                "ocpp/cs/FWD-TO/Call/Reset",
                {"MessageTypeId": 2, "UniqueId": "r1", "Action": "Reset",
                 "Payload": {"type": "Soft"}},
            )
            assert await recv_frame(ws) == [2, "r1", "Reset", {"type": "Soft"}]
            error = await backend.envelope("ocpp/cp/Error/FWD-TO", UniqueId="r1")
            assert error["ErrorCode"] == "Timeout" and error["Origin"] == "gateway"


@run_async
async def test_a_newer_connection_wins_and_the_older_ones_central_system_is_closed(
    gateway: Start,
) -> None:
    """Takeover: the identity connects again; the old connection and its upstream are closed."""
    async with central_system() as central:
        gw = gateway(forwarding(central))
        async with connect(gw.url("FWD-TAKE"), ["ocpp1.6"]) as old:
            first = await central.session("FWD-TAKE")
            async with connect(gw.url("FWD-TAKE"), ["ocpp1.6"]) as new:
                await wait_closed(old)
                await asyncio.wait_for(first.closed.wait(), WAIT)
                await new.send('[2,"h1","Heartbeat",{}]')
                assert json.loads(await new.recv())[1] == "h1"
                assert len(central.sessions["FWD-TAKE"]) == 2
                assert not central.sessions["FWD-TAKE"][1].closed.is_set()


@run_async
async def test_admin_shows_the_central_system_and_kick_closes_both_sides(
    gateway: Start,
) -> None:
    """
    GET /api/v1/chargepoints/{id} shows the central system's connection;
    DELETE closes the charge point and its upstream; /metrics counts frames
    by direction and the refused upstream connections.
    """
    async with central_system() as central:
        central.refuse["FWD-ADM404"] = 404
        gw, url = admin_gateway(gateway, forwarding(central))
        async with connect(gw.url("FWD-ADM"), ["ocpp1.6"]) as ws:
            await ws.send('[2,"h1","Heartbeat",{}]')
            assert json.loads(await ws.recv())[1] == "h1"
            session = await central.session("FWD-ADM")
            status, body = await ahttp("GET", url + "/api/v1/chargepoints/FWD-ADM")
            assert status == 200
            assert body["forward"]["central_system"] == {
                "peer": f"127.0.0.1:{central.port}",
                "state": "open",
            }
            status, _ = await ahttp("DELETE", url + "/api/v1/chargepoints/FWD-ADM")
            assert status in (200, 202, 204)
            await wait_closed(ws)
            await asyncio.wait_for(session.closed.wait(), WAIT)
        try:
            async with connect(gw.url("FWD-ADM404"), ["ocpp1.6"]):
                raise AssertionError("the upgrade was not refused")
        except InvalidStatus as e:
            assert e.response.status_code == 404
        status, text = await ahttp("GET", url + "/metrics")
        assert 'ocppgw_forward_frames_total{direction="ChargePoint"} 1.0' in text
        assert 'ocppgw_forward_frames_total{direction="CSMS"} 1.0' in text
        assert 'ocppgw_forward_upstream_failures_total{reason="404"} 1.0' in text
        assert 'ocppgw_forward_relay_seconds_count{direction="CSMS"} 1.0' in text


@run_async
async def test_a_takeover_across_instances_closes_the_older_upstream(gateway: Start) -> None:
    """The identity connects to a second gateway on the same broker: the first lets go of both."""
    async with central_system() as central:
        first_gw = gateway(forwarding(central))
        second_gw = gateway(forwarding(central))
        async with connect(first_gw.url("FWD-ACROSS"), ["ocpp1.6"]) as old:
            first = await central.session("FWD-ACROSS")
            await settle(0.5)  # the first instance's presence is on the broker
            async with connect(second_gw.url("FWD-ACROSS"), ["ocpp1.6"]) as new:
                await wait_closed(old)
                await asyncio.wait_for(first.closed.wait(), WAIT)
                await new.send('[2,"h1","Heartbeat",{}]')
                assert json.loads(await new.recv())[1] == "h1"


@run_async
async def test_enforce_refuses_invalid_frames_from_either_side(
    gateway: Start, backend: Backend
) -> None:
    """
    validation = enforce: the charge point's Authorize without idTag gets a
    CALLERROR from the gateway and never reaches the central system; the
    central system's Reset without type is answered to it the same way.
    """
    async with central_system() as central:
        gw = gateway(forwarding(central, validation="enforce"))
        async with connect(gw.url("FWD-ENF"), ["ocpp1.6"]) as ws:
            session = await central.session("FWD-ENF")
            await ws.send('[2,"a1","Authorize",{}]')
            answer = await recv_frame(ws)
            assert answer[:2] == [4, "a1"] and answer[2] == "OccurenceConstraintViolation"
            await ws.send('[2,"a2","Authorize",{"idTag":"TAG"}]')
            assert (await recv_frame(ws))[:2] == [3, "a2"]
            await session.ws.send('[2,"r1","Reset",{}]')
            await settle()
            got = [json.loads(t) for way, t in session.frames if way == "in"]
            assert got[0] == [2, "a2", "Authorize", {"idTag": "TAG"}]
            assert got[1][:3] == [4, "r1", "OccurenceConstraintViolation"]
            assert len(got) == 2
            await no_frame(ws)  # the Reset never reached the charge point
            envelopes = await tap_count(backend, "FWD-ENF", 4)
            verdicts = [(e["UniqueId"], e["Verdict"]) for e in envelopes]
            assert verdicts[0][0] == "a1" and verdicts[0][1]["ErrorCode"] == answer[2]
            assert verdicts[3][0] == "r1" and verdicts[3][1]["ErrorCode"] != "accepted"


@run_async
async def test_hold_keeps_the_charge_point_and_reconnects(gateway: Start, backend: Backend) -> None:
    """
    on_csms_down = hold: the central system dies; the charge point stays
    connected, its CALL gets InternalError (and the tap says so); a central
    system back on the same port gets the next CALL.
    """
    async with central_system() as central:
        gw = gateway(forwarding(central, on_csms_down="hold"))
        port = central.port
        async with connect(gw.url("FWD-HOLD"), ["ocpp1.6"]) as ws:
            await central.session("FWD-HOLD")
            await central.die()
            await settle(0.3)
            await ws.send('[2,"h1","Heartbeat",{}]')
            answer = await recv_frame(ws)
            assert answer[:3] == [4, "h1", "InternalError"]
            async with central_system(port=port) as again:
                session = await again.session("FWD-HOLD", timeout=WAIT)
                await ws.send('[2,"h2","Heartbeat",{}]')
                assert (await recv_frame(ws))[:2] == [3, "h2"]
                assert [json.loads(t)[1] for way, t in session.frames if way == "in"] == ["h2"]
        envelopes = tapped(backend, "FWD-HOLD")
        held = [e for e in envelopes if e["UniqueId"] == "h1"]
        assert held[0]["Verdict"]["ErrorCode"] == "InternalError"


@run_async
async def test_a_mirror_gets_copies_and_its_answers_only_reach_the_tap(
    gateway: Start, backend: Backend
) -> None:
    """
    A mirror (a second ocpp-package central system) gets a copy of every
    CALL of the charge point, whose answers come from the central system
    only; the mirror's answers are in the tap; its ChangeAvailability is
    refused, its GetConfiguration (mirror_calls) answered to it.
    """
    async with central_system() as central, central_system() as mirror:
        gw = gateway(forwarding(central, mirrors=mirror.url(), mirror_calls="GetConfiguration"))
        async with charge_point(Station16, gw.url("FWD-MIR"), "FWD-MIR", "ocpp1.6") as cp:
            await cp.call(call16.BootNotification("ACME", "X1"))
            await cp.call(call16.Heartbeat())
            watching = await mirror.session("FWD-MIR")
            assert watching.subprotocol == "ocpp1.6"
            assert "Authorization" not in watching.headers
            await settle()
            copies = [json.loads(t)[2] for way, t in watching.frames if way == "in"]
            assert copies == ["BootNotification", "Heartbeat"]
            assert len(cp.conn.received) == 2  # one answer each: the central system's
            change = '[2,"m1","ChangeAvailability",{"connectorId":0,"type":"Operative"}]'
            await watching.ws.send(change)
            config = await watching.cp.call(call16.GetConfiguration(key=["HeartbeatInterval"]))
            assert config.configuration_key[0]["value"] == "300"
            await settle()
        mirrored = [json.loads(t) for way, t in watching.frames if way == "in"]
        assert [4, "m1", "NotSupported"] == mirrored[2][:3]
        assert all(f[2] != "ChangeAvailability" for f in map(json.loads, cp.conn.received))
        envelopes = tapped(backend, "FWD-MIR")
        from_mirror = [e for e in envelopes if e["Direction"] == "Mirror"]
        assert [e.get("Action") for e in from_mirror][:2] == ["BootNotification", "Heartbeat"]
        assert {e["Peer"] for e in from_mirror} == {f"127.0.0.1:{mirror.port}"}


@run_async
async def test_a_dead_mirror_delays_nothing(gateway: Start) -> None:
    """Nothing listens at the mirror's port: the charge point and central system go on as usual."""
    async with central_system() as gone:
        dead = gone.url()
    async with central_system() as central:
        gw = gateway(forwarding(central, mirrors=dead))
        async with connect(gw.url("FWD-DEAD"), ["ocpp1.6"]) as ws:
            for i in range(3):
                await ws.send(f'[2,"h{i}","Heartbeat",{{}}]')
                assert (await recv_frame(ws, timeout=1))[:2] == [3, f"h{i}"]


@run_async
async def test_two_workers_forward_and_tap(gateway: Start, backend: Backend) -> None:
    """[gateway] workers = 2 sharing the port: every charge point is relayed and tapped."""
    async with central_system() as central:
        gw = gateway({**forwarding(central), "gateway": {"workers": "2"}})
        wait_log(gw, r"worker \d: .*MQTT connected", 2)
        wait_log(gw, r"worker \d: .*starting on", 2)
        for n in range(6):
            async with connect(gw.url(f"FWD-W{n}"), ["ocpp1.6"]) as ws:
                await ws.send(f'[2,"h{n}","Heartbeat",{{}}]')
                assert (await recv_frame(ws))[:2] == [3, f"h{n}"]
        for n in range(6):
            await tap_count(backend, f"FWD-W{n}", 2)


@run_async
async def test_sigterm_closes_both_sides(gateway: Start) -> None:
    """SIGTERM: the charge point is let go (going away) and its central system connection closed."""
    async with central_system() as central:
        gw = gateway(forwarding(central))
        async with connect(gw.url("FWD-TERM"), ["ocpp1.6"]) as ws:
            session = await central.session("FWD-TERM")
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            closed = await wait_closed(ws)
            assert closed.rcvd is not None and closed.rcvd.code in (1001, 1012)
            await asyncio.wait_for(session.closed.wait(), WAIT)
        assert await asyncio.to_thread(gw.proc.wait, 10) == 0


@run_async
async def test_credentials_from_a_file_and_a_client_certificate(
    gateway: Start, tmp_path: Path
) -> None:
    """
    auth = credentials over wss: the central system gets HTTP Basic from the
    file, and the gateway's client certificate (tls_cert, tls_key), which it
    requires; an identity the file does not list connects without a header.
    SIGHUP re-reads the file: a broken one is kept out, a new password used.
    """
    ca = CA()
    server = ca.issue("localhost", server=True, dns=("localhost",), ips=("127.0.0.1",))
    cert, key = server.write(tmp_path, "csms")
    client_cert, client_key = ca.issue("ocppgw").write(tmp_path, "gateway")
    bundle = ca.write(tmp_path / "ca.pem")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(bundle)
    context.verify_mode = ssl.CERT_REQUIRED
    users = tmp_path / "users"
    users.write_text("# identity user password\nFWD-CRED csms-user csms-password\n")
    async with central_system(context) as central:
        gw = gateway(
            forwarding(
                central,
                "wss",
                auth="credentials",
                credentials=str(users),
                tls_ca=str(bundle),
                tls_cert=str(client_cert),
                tls_key=str(client_key),
            )
        )
        async with connect(gw.url("FWD-CRED"), ["ocpp1.6"]):
            listed = await central.session("FWD-CRED")
        async with connect(gw.url("FWD-NOCRED"), ["ocpp1.6"]):
            unlisted = await central.session("FWD-NOCRED")
        expected = basic_auth(b"csms-user", b"csms-password")["Authorization"]
        assert listed.headers.get("Authorization") == expected
        assert "Authorization" not in unlisted.headers
        # SIGHUP reads the file again: a broken one is refused (the old kept,
        # its line not echoed), a good one is used for the next handshake.
        assert gw.proc is not None
        users.write_text("FWD-CRED csms-user secret-typo-0123 extra\n")
        gw.proc.send_signal(signal.SIGHUP)
        await asyncio.to_thread(
            wait_log, gw, r"reload of \[forward:csms\] credentials failed, keeping", 1
        )
        assert "secret-typo-0123" not in gw.log()
        users.write_text("FWD-CRED csms-user renewed-password\n")
        gw.proc.send_signal(signal.SIGHUP)
        await asyncio.to_thread(wait_log, gw, r"reloaded \[forward:csms\] credentials", 1)
        async with connect(gw.url("FWD-CRED"), ["ocpp1.6"]):
            renewed = await central.session("FWD-CRED")
        expected = basic_auth(b"csms-user", b"renewed-password")["Authorization"]
        assert renewed.headers.get("Authorization") == expected
        without = gateway(forwarding(central, "wss", tls_ca=str(bundle)))
        try:
            async with connect(without.url("FWD-NOCERT"), ["ocpp1.6"]):
                raise AssertionError("the upgrade was not refused")
        except InvalidStatus as e:
            assert e.response.status_code == 502
