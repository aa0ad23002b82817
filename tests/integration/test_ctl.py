"""``ocppgw-ctl`` as a subprocess against a running gateway: output, and exit status per error."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16

from tests.integration.harness import BIN, Gateway, charge_point, connect, free_port, run_async
from tests.integration.harness.admin import TOKEN, admin_gateway

CTL = str(BIN / "ocppgw-ctl")


async def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([CTL, *args], capture_output=True, text=True, timeout=30)

    return await asyncio.to_thread(run)


class Unlocking16(ChargePoint16):
    @on(Action16.unlock_connector)
    def on_unlock(self, connector_id: int) -> Any:
        return result16.UnlockConnector(status="Unlocked")


@run_async
async def test_commands(gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    """list, show, call (inline and @file), kick and health, as a table and as --json."""
    gw, url = admin_gateway(gateway)
    identity = f"ctl-{uuid.uuid4().hex[:8]}"
    auth = ["--url", url, "--token", TOKEN]
    async with charge_point(Unlocking16, gw.url(identity), identity, "ocpp1.6"):
        listed = await ctl(*auth, "list", "--identity-like", "ctl-%")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines()[0].split()[:3] == ["IDENTITY", "VERSION", "STATE"]
        assert any(line.split()[:3] == [identity, "ocpp1.6", "connected"]
                   for line in listed.stdout.splitlines())
        as_json = await ctl(*auth, "--json", "list")
        assert identity in [c["identity"] for c in json.loads(as_json.stdout)]
        shown = await ctl(*auth, "--json", "show", identity)
        assert json.loads(shown.stdout)["events"][0]["event"] == "connect"
        called = await ctl(*auth, "call", identity, "UnlockConnector", '{"connectorId": 1}')
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout) == {"status": "Unlocked"}
        (tmp_path / "p.json").write_text('{"connectorId": 2}')
        from_file = await ctl(*auth, "--json", "call", identity, "UnlockConnector",
                              f"@{tmp_path / 'p.json'}", "--timeout", "5")
        assert json.loads(from_file.stdout)["type"] == "CALLRESULT"
        invalid = await ctl(*auth, "call", identity, "UnlockConnector", '{"connectorId": "x"}')
        assert invalid.returncode == 1 and "400" in invalid.stderr
        assert "connectorId" in invalid.stderr
        kicked = await ctl(*auth, "kick", identity)
        assert kicked.returncode == 0 and "closed" in kicked.stdout
        await asyncio.sleep(0.3)
    gone = await ctl(*auth, "kick", identity)
    assert gone.returncode == 1 and "404" in gone.stderr
    health = await ctl("--url", url, "health")
    assert health.returncode == 0 and health.stdout.startswith("ok")


@run_async
async def test_errors(gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    """Unreachable, 401, 404 and a timeout each give one clear line and a non-zero exit."""
    gw, url = admin_gateway(gateway)
    nowhere = await ctl("--url", f"http://127.0.0.1:{free_port()}", "--token", "x", "list")
    assert nowhere.returncode == 3 and "cannot reach the gateway" in nowhere.stderr
    wrong = await ctl("--url", url, "--token", "wrong", "list")
    assert wrong.returncode == 1 and "401" in wrong.stderr
    missing = await ctl("--url", url, "--token", TOKEN, "show", "nobody")
    assert missing.returncode == 1 and "404" in missing.stderr and "nobody" in missing.stderr
    identity = f"ctl-mute-{uuid.uuid4().hex[:6]}"
    async with connect(gw.url(identity), ["ocpp1.6"]):
        slow = await ctl("--url", url, "--token", TOKEN, "call", identity, "UnlockConnector",
                         '{"connectorId": 1}', "--timeout", "1")
    assert slow.returncode == 1 and "504" in slow.stderr, slow.stderr
    # --config reads the URL and token from the gateway's INI file.
    configured = await ctl("--config", str(gw.config_path), "health")
    assert configured.returncode == 0, configured.stderr
