"""
The WebSocket handshake: subprotocol negotiation and the charge point
identity in the URL (OCPP-J 1.6 §3.1.1, §3.2; 2.0.1 Part 4 §3.1.1, §3.2).
"""

from __future__ import annotations

import time

from websockets.exceptions import InvalidStatus

from tests.integration.harness import connect, recv_frame, run_async, settle, wait_closed

NOW = "2026-01-02T03:04:05.000Z"


async def _status(url: str, subprotocols: tuple[str, ...] | None = ("ocpp1.6",)) -> int:
    """The HTTP status of a refused handshake (101 if it was accepted); None: no header."""
    try:
        async with connect(url, None if subprotocols is None else list(subprotocols)):
            return 101
    except InvalidStatus as e:
        return e.response.status_code


@run_async
async def test_unknown_subprotocol_is_closed_at_once(gateway, backend):
    """Offering only ocpp9.9 completes the handshake without a subprotocol, then gets closed."""
    gw = gateway()
    cid = "it-hs-unknown-proto"
    async with connect(gw.url(cid), ["ocpp9.9"]) as ws:
        assert ws.subprotocol is None
        started = time.monotonic()
        closed = await wait_closed(ws, timeout=5)
    assert time.monotonic() - started < 3, "the gateway took its time to close"
    assert closed.rcvd is not None, f"the gateway dropped TCP without a close frame: {closed}"
    assert closed.rcvd.code != 1000, f"closed as if all was well: {closed}"
    await settle()
    assert backend.about(cid) == [], backend.describe()


@run_async
async def test_first_supported_offer_is_chosen(gateway):
    """Among several offers, the first that the gateway speaks is negotiated."""
    gw = gateway()
    async with connect(gw.url("it-hs-offers"), ["ocpp9.9", "ocpp2.0.1", "ocpp1.6"]) as ws:
        assert ws.subprotocol == "ocpp2.0.1"


@run_async
async def test_no_subprotocol_offered_gets_400(gateway):
    """A client offering no subprotocol at all is refused with HTTP 400."""
    gw = gateway()
    # subprotocols=None: websockets sends no Sec-WebSocket-Protocol header.
    assert await _status(gw.url("it-hs-no-proto"), None) == 400


#: (path, expected HTTP status)
BAD_PATHS = [
    ("/ocpp/" + "x" * 49, 400),  # longer than 48 characters
    ("/ocpp/a%2Fb", 400),  # a slash once decoded
    ("/ocpp/a/b", 400),  # two path segments
    ("/ocpp/a+b", 400),  # an MQTT wildcard
    ("/ocpp/a%2Bb", 400),
    ("/ocpp/a%23b", 400),  # the other MQTT wildcard
    ("/ocpp/a%00b", 400),  # a control character
    ("/ocpp/%FF", 400),  # not UTF-8
    ("/ocpp/", 400),  # empty
    ("/other/CP1", 404),
    ("/ocppx/CP1", 404),
    ("/CP1", 404),
]


@run_async
async def test_bad_identity_or_path_is_refused(gateway, backend):
    """An unusable identity in the URL gets HTTP 400, a path outside the endpoint 404."""
    gw = gateway()
    wrong = []
    for path, status in BAD_PATHS:
        got = await _status(f"ws://127.0.0.1:{gw.port}{path}")
        if got != status:
            wrong.append(f"{path}: HTTP {got}, expected {status}")
    assert not wrong, "\n".join(wrong)
    await settle()
    assert backend.messages(lambda m: m.topic.startswith("ocpp/cp/")) == []


@run_async
async def test_percent_encoded_identity_is_decoded(gateway, backend):
    """CP%201 is accepted and bridged as the identity "CP 1"; 48 characters are accepted too."""
    gw = gateway()
    for encoded, cid in [("CP%201", "CP 1"), ("y" * 48, "y" * 48)]:
        backend.answer("Heartbeat", {"currentTime": NOW}, cid=cid)
        async with connect(gw.url(encoded), ["ocpp1.6"]) as ws:
            assert ws.subprotocol == "ocpp1.6"
            await ws.send(f'[2,"hs-{len(cid)}","Heartbeat",{{}}]')
            assert await recv_frame(ws) == [3, f"hs-{len(cid)}", {"currentTime": NOW}]
        env = await backend.envelope(f"ocpp/cp/{cid}/Heartbeat", UniqueId=f"hs-{len(cid)}")
        assert env["ChargePointId"] == cid
