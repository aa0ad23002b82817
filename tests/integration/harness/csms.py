"""
A central system written by others, for forward mode (issue 20): the PyPI
``ocpp`` package's ``ChargePoint`` on the server side of a ``websockets``
server (as the ``ocpp`` package's own central system example runs it), 1.6
and 2.0.1, over ws or wss, in the test's event loop.

It answers BootNotification, Heartbeat, Authorize, StatusNotification,
StartTransaction, StopTransaction, MeterValues (1.6) and TransactionEvent
(2.0.1), records each connection's request (path, headers, subprotocol) and
every text frame both ways, and can send its own CALLs, refuse upgrades
with a status, or die.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as Server16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as Server201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

NOW = "2026-01-02T03:04:05.000Z"


class Central16(Server16):
    """OCPP 1.6 central system handlers."""

    @on("BootNotification")
    def on_boot(self, charge_point_vendor: str, charge_point_model: str, **kw: Any) -> Any:
        return result16.BootNotification(current_time=NOW, interval=300, status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self) -> Any:
        return result16.Heartbeat(current_time=NOW)

    @on("Authorize")
    def on_authorize(self, id_tag: str) -> Any:
        return result16.Authorize(id_tag_info={"status": "Accepted"})

    @on("StatusNotification")
    def on_status(self, **kw: Any) -> Any:
        return result16.StatusNotification()

    @on("StartTransaction")
    def on_start_transaction(self, **kw: Any) -> Any:
        return result16.StartTransaction(transaction_id=77, id_tag_info={"status": "Accepted"})

    @on("StopTransaction")
    def on_stop_transaction(self, **kw: Any) -> Any:
        return result16.StopTransaction()

    @on("MeterValues")
    def on_meter_values(self, **kw: Any) -> Any:
        return result16.MeterValues()


class Central201(Server201):
    """OCPP 2.0.1 central system handlers."""

    @on("BootNotification")
    def on_boot(self, charging_station: dict[str, Any], reason: str, **kw: Any) -> Any:
        return result201.BootNotification(current_time=NOW, interval=300, status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self) -> Any:
        return result201.Heartbeat(current_time=NOW)

    @on("Authorize")
    def on_authorize(self, id_token: dict[str, Any], **kw: Any) -> Any:
        return result201.Authorize(id_token_info={"status": "Accepted"})

    @on("StatusNotification")
    def on_status(self, **kw: Any) -> Any:
        return result201.StatusNotification()

    @on("TransactionEvent")
    def on_transaction_event(self, **kw: Any) -> Any:
        return result201.TransactionEvent()


class Recording:
    """The server's connection as the ``ocpp`` package sees it, every text frame recorded."""

    def __init__(self, ws: ServerConnection, frames: list[tuple[str, str]]) -> None:
        self.ws = ws
        self.frames = frames

    async def send(self, message: str) -> None:
        self.frames.append(("out", message))
        await self.ws.send(message)

    async def recv(self) -> str | bytes:
        message = await self.ws.recv()
        if isinstance(message, str):
            self.frames.append(("in", message))
        return message


@dataclass
class Session:
    """One charge point's connection to the central system."""

    path: str
    headers: dict[str, str]
    subprotocol: str | None
    ws: ServerConnection
    cp: Any
    #: ("in" | "out", text), in order.
    frames: list[tuple[str, str]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class CentralSystem:
    """The central system: its sessions by identity (the last path segment)."""

    def __init__(self) -> None:
        self.sessions: dict[str, list[Session]] = {}
        #: Status to refuse upgrades with, by identity (401, 404, ...).
        self.refuse: dict[str, int] = {}
        self.arrived = asyncio.Condition()
        self.server: Server | None = None
        #: What went wrong in the handlers (a test asserts there is nothing).
        self.errors: list[str] = []
        self.port = 0

    def url(self, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/steve/${{cid}}"

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        identity = request.path.rsplit("/", 1)[-1]
        status = self.refuse.get(identity)
        if status is not None:
            return connection.respond(HTTPStatus(status), "refused by the central system\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        identity = request.path.rsplit("/", 1)[-1]
        frames: list[tuple[str, str]] = []
        conn = Recording(ws, frames)
        cls = Central16 if ws.subprotocol == "ocpp1.6" else Central201
        cp = cls(identity, conn, response_timeout=8)
        session = Session(
            request.path, dict(request.headers.raw_items()), ws.subprotocol, ws, cp, frames
        )
        async with self.arrived:
            self.sessions.setdefault(identity, []).append(session)
            self.arrived.notify_all()
        try:
            await cp.start()
        except Exception as e:  # recorded: a failing test shows it
            if not isinstance(e, ConnectionClosed):
                self.errors.append(f"{identity}: {e!r}")
        finally:
            session.closed.set()

    async def session(self, identity: str, timeout: float = 8) -> Session:
        """The newest session of ``identity``, once it arrived."""
        async with self.arrived:
            await asyncio.wait_for(
                self.arrived.wait_for(lambda: identity in self.sessions), timeout
            )
        return self.sessions[identity][-1]

    async def die(self) -> None:
        """Stop: every connection dropped, no more accepted."""
        assert self.server is not None
        self.server.close(close_connections=True)
        await self.server.wait_closed()


@contextlib.asynccontextmanager
async def central_system(
    tls: ssl.SSLContext | None = None, port: int = 0
) -> AsyncIterator[CentralSystem]:
    """A central system on loopback ``port`` (0: any free one; wss with ``tls``), then stopped."""
    central = CentralSystem()
    async with serve(
        central.handler,
        "127.0.0.1",
        port,
        subprotocols=["ocpp2.0.1", "ocpp1.6"],  # type: ignore[list-item]
        process_request=central.process_request,
        ssl=tls,
        ping_interval=None,
    ) as server:
        central.server = server
        central.port = server.sockets[0].getsockname()[1]
        yield central
