# -*- test-case-name: tests.integration.test_first_hour -*-
"""
A charge point to try the gateway with: it connects as OCPP 1.6, sends a
BootNotification and prints the answer, then stays connected, answering the
commands a backend (or ``ocppgw-ctl call``) sends it, until Ctrl-C::

    .venv/bin/python examples/charge_point.py CP001

It answers Reset, ChangeAvailability, TriggerMessage and UnlockConnector
with Accepted (or Unlocked), without doing any of it, and prints each
command; any other command gets the ``ocpp`` package's NotImplemented.  It
needs only the ``ocpp`` and ``websockets`` packages, which ``make install``
puts into .venv.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from typing import Any

import websockets
from ocpp.exceptions import OCPPError  # type: ignore[import-untyped]
from ocpp.routing import on  # type: ignore[import-untyped]
from ocpp.v16 import ChargePoint, call, call_result  # type: ignore[import-untyped]


class ExampleChargePoint(ChargePoint):  # type: ignore[misc]
    """Accepts what a backend commands, and prints it."""

    def _command(self, action: str, **payload: Any) -> None:
        print(f"< {action} {json.dumps(payload)}", flush=True)

    @on("Reset")  # type: ignore[untyped-decorator]
    def on_reset(self, **payload: Any) -> call_result.Reset:
        self._command("Reset", **payload)
        return call_result.Reset(status="Accepted")

    @on("ChangeAvailability")  # type: ignore[untyped-decorator]
    def on_change_availability(self, **payload: Any) -> call_result.ChangeAvailability:
        self._command("ChangeAvailability", **payload)
        return call_result.ChangeAvailability(status="Accepted")

    @on("TriggerMessage")  # type: ignore[untyped-decorator]
    def on_trigger_message(self, **payload: Any) -> call_result.TriggerMessage:
        self._command("TriggerMessage", **payload)
        return call_result.TriggerMessage(status="Accepted")

    @on("UnlockConnector")  # type: ignore[untyped-decorator]
    def on_unlock_connector(self, **payload: Any) -> call_result.UnlockConnector:
        self._command("UnlockConnector", **payload)
        return call_result.UnlockConnector(status="Unlocked")


async def run(url: str, identity: str) -> None:
    """Connect, boot, and answer commands until the connection ends."""
    async with websockets.connect(f"{url}/{identity}", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        cp = ExampleChargePoint(identity, ws)
        serving = asyncio.create_task(cp.start())
        boot = call.BootNotification(charge_point_vendor="ACME", charge_point_model="One")
        try:
            answer = await cp.call(boot, suppress=False)
        except OCPPError as error:
            # make run without a backend: the gateway answers after awaiting_timeout
            print(f"BootNotification: {error.code} {error.description}", flush=True)
        else:
            print(f"BootNotification: {answer.status} (interval {answer.interval} s)", flush=True)
        print(f"{identity} stays connected and answers commands; Ctrl-C ends it", flush=True)
        # Ctrl-C closes the connection with 1000, as a charge point going away should.
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, lambda: asyncio.ensure_future(ws.close()))
        with contextlib.suppress(websockets.ConnectionClosed):
            await serving


def main(argv: list[str] | None = None) -> None:
    """Run one charge point until Ctrl-C or the gateway closes its connection."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
    parser.add_argument("identity", nargs="?", default="CP001")
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ocpp")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args.url, args.identity))
    except KeyboardInterrupt:
        pass
    except (OSError, websockets.InvalidStatus, websockets.ConnectionClosed) as error:
        raise SystemExit(f"{args.identity}: {error}") from None
    print(f"{args.identity} disconnected", flush=True)


if __name__ == "__main__":
    main()
