"""
The admin API's default endpoint (issue 22, point 1): ``[admin] endpoint =
local``, a UNIX socket named after the gateway id, so two gateways with
minimal INIs run side by side on one host, ``ocppgw-ctl --config FILE``
reaches each, and a second gateway of the same id is refused at start.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    BIN,
    TWISTD,
    connect,
    free_port,
    launch_gateway,
    render_ini,
    run_async,
    wait_closed,
)

CTL = str(BIN / "ocppgw-ctl")


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """$OCPPGW_RUNTIME_DIR of the gateways and ocppgw-ctl: short (a socket path has 108
    bytes), and this test's own (as root the default is /run/ocppgw)."""
    directory = Path(tempfile.mkdtemp(prefix="ogw-"))
    monkeypatch.setenv("OCPPGW_RUNTIME_DIR", str(directory / "ocppgw"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _minimal(name: str, port: int, broker_url: str) -> str:
    """An id, a listener, a broker; the journal off only to keep the host's state untouched."""
    return render_ini(
        {
            "gateway": {"id": name, "journal": "off"},
            "listener:ws": {"endpoint": str(port)},
            "mqtt": {"broker": broker_url},
        }
    )


def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CTL, *args], capture_output=True, text=True, timeout=30)


def test_two_gateways_with_minimal_inis_each_answer_ctl(broker, tmp_path, runtime):
    """Two minimal gateways both run; ocppgw-ctl --config FILE list and health reach each."""
    gateways = []
    try:
        for n in range(2):
            name, port = f"it-{uuid.uuid4().hex[:12]}", free_port()
            ini = _minimal(name, port, broker.url)
            gateways.append(launch_gateway(tmp_path / f"gw{n}", ini, port, name))
        for gw in gateways:
            socket = runtime / "ocppgw" / f"{gw.name}.sock"
            assert stat.S_IMODE(socket.stat().st_mode) == 0o600
            assert stat.S_IMODE(socket.parent.stat().st_mode) == 0o700
            listed = _ctl("--config", str(gw.config_path), "list")
            assert listed.returncode == 0, listed.stderr
            assert listed.stdout.startswith("IDENTITY"), listed.stdout
            health = _ctl("--config", str(gw.config_path), "health")
            assert health.returncode == 0, health.stderr
            assert health.stdout.strip() == f"ok: gateway {gw.name} is healthy", health.stdout
    finally:
        for gw in gateways:
            gw.stop()
    for gw in gateways:
        assert "Traceback" not in gw.log(), gw.log()


def test_a_second_gateway_of_the_same_id_is_refused(broker, tmp_path, runtime):
    """Same gateway id twice: the second exits 1, one line naming [admin] endpoint and why."""
    name, port = f"it-{uuid.uuid4().hex[:12]}", free_port()
    first = launch_gateway(tmp_path / "first", _minimal(name, port, broker.url), port, name)
    try:
        config = tmp_path / "second.ini"
        config.write_text(_minimal(name, free_port(), broker.url), encoding="utf-8")
        second = subprocess.run(
            [str(TWISTD), "-n", "--pidfile=", "ocppgw", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=15,
            cwd=tmp_path,
        )
        output = second.stdout + second.stderr
        assert second.returncode == 1, output
        assert "Traceback" not in output, output
        lines = [line for line in output.splitlines() if "[admin] endpoint" in line]
        assert len(lines) == 1 and "Cannot acquire lock" in lines[0], output
        # The first one still answers.
        assert _ctl("--config", str(first.config_path), "list").returncode == 0
    finally:
        first.stop()


@pytest.mark.parametrize("workers", [1, 2])
@run_async
async def test_the_audit_line_names_the_local_caller(broker, tmp_path, runtime, workers):
    """
    ocppgw-ctl kick over the local socket: the gateway's audit line names the
    caller by the pid and uid of the ocppgw-ctl process (SO_PEERCRED), not
    an empty UNIX address; with workers, the supervisor's line does (the
    worker sees only the supervisor).
    """
    name, port = f"it-{uuid.uuid4().hex[:12]}", free_port()
    ini = _minimal(name, port, broker.url)
    if workers > 1:
        ini = ini.replace("[gateway]\n", f"[gateway]\nworkers = {workers}\n", 1)
        assert f"workers = {workers}" in ini, ini
    gw = launch_gateway(tmp_path / "gw", ini, port, name)
    try:
        async with connect(gw.url("it-audit"), ["ocpp1.6"]) as ws:
            ctl = await asyncio.create_subprocess_exec(
                CTL, "--config", str(gw.config_path), "kick", "it-audit",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(ctl.communicate(), 30)
            assert ctl.returncode == 0, (out, err)
            await wait_closed(ws)
        caller = f"local socket (pid {ctl.pid}, uid {os.getuid()})"
        if workers == 1:
            line = f"it-audit: closed by the admin API (1000) for {caller}"
        else:
            line = f"admin API DELETE /api/v1/chargepoints/it-audit?code=1000 for {caller}"
        gw.wait_log(line)
    finally:
        gw.stop()
    assert "UNIXAddress" not in gw.log(), gw.log()
