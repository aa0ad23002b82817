"""
The wheel, installed into a fresh virtual environment, gives ``twistd`` the
``ocppgw`` plugin (STYLE.md, packaging facts): not the checkout, the wheel;
and the default configuration (``ocppgw-config``) and ``ocppgw-ctl`` come with it.
A gateway run from that environment, in a directory outside the checkout, on
the INI ``ocppgw-config`` printed, reaches a broker and stops cleanly
(docs/deploy.md, "Installing without the repository"; issue 22, point 8).

The wheel is built once per module (``python -m build``, from a copy of the
checkout) and installed with its dependencies by the venv's own pip, from the
package index pip is configured with; ``--system-site-packages`` stays off, so
nothing comes from the checkout's .venv.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ocpp import v16

from tests.integration.harness import (
    ROOT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    WAIT,
    Backend,
    Broker,
    accepts,
    charge_point,
    free_port,
    read_log,
    run_async,
    start_broker,
    stop_process,
)

_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "dropin.cache",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "bench",
)

_PROBE = """
import importlib, json, os
from twisted.plugin import getPlugins
from twisted.application.service import IServiceMaker
makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
maker = makers.get("ocppgw")
import twisted.plugins.ocppgw_plugin as plugin_module
import ocppgw
tap = importlib.import_module(maker.module) if maker is not None else None
print(json.dumps({
    "tapnames": sorted(makers),
    "module": maker.module if maker is not None else None,
    "plugin_file": os.path.realpath(plugin_module.__file__),
    "ocppgw_file": os.path.realpath(ocppgw.__file__),
    "makeService": callable(getattr(tap, "makeService", None)),
}))
"""


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(args)} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    return done.stdout


@dataclass
class Installed:
    """The built wheel, and a fresh venv with it installed."""

    wheel: Path
    venv: Path
    #: The environment without PYTHONPATH, PYTHONHOME or VIRTUAL_ENV.
    env: dict[str, str]
    #: A directory outside the checkout to run commands from.
    cwd: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel built from a copy of the checkout, installed into a new venv."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    # Build from a copy, so the checkout gets no build/ or *.egg-info.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)],
        tmp_path,
        env,
        300,
    )
    wheels = list(dist.glob("ocppgw-*.whl"))
    assert len(wheels) == 1, wheels
    # The source copy goes before anything runs: nothing may be found there.
    shutil.rmtree(src)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, 120)
    _run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheels[0])], tmp_path, env, 600)
    # Run from a directory of its own: the checkout's twisted/plugins must not be on sys.path.
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    yield Installed(wheels[0], venv, env, cwd)


def test_wheel_installs_the_twistd_plugin(installed: Installed) -> None:
    """The built wheel holds twisted/plugins/ocppgw_plugin.py, and twistd finds "ocppgw" in it."""
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert "twisted/plugins/ocppgw_plugin.py" in names, sorted(names)
    assert "ocppgw/tap.py" in names, sorted(names)
    # Neither namespace may ship an __init__.py: it would overwrite Twisted's.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names

    cwd, env = installed.cwd, installed.env
    probe = json.loads(_run([installed.bin("python"), "-c", _PROBE], cwd, env, 120))
    site = os.path.realpath(installed.venv)
    assert "ocppgw" in probe["tapnames"], probe
    assert "web" in probe["tapnames"], f"Twisted's own plugins are gone: {probe}"
    assert probe["module"] == "ocppgw.tap", probe
    assert probe["makeService"], probe
    assert probe["plugin_file"].startswith(site + os.sep), probe
    assert probe["ocppgw_file"].startswith(site + os.sep), probe

    reactors = _run([installed.bin("twistd"), "--help-reactors"], cwd, env, 120)
    assert re.search(r"^\s*ocppgw\s", reactors, re.MULTILINE), reactors
    help_text = _run([installed.bin("twistd"), "ocppgw", "--help"], cwd, env, 120)
    assert "--config" in help_text, help_text
    passwd_help = _run([installed.bin("ocppgw-passwd"), "--help"], cwd, env, 120)
    assert "set" in passwd_help, passwd_help

    # The wheel alone carries the documented default configuration.
    assert "ocppgw/ocppgw.ini" in names, sorted(names)
    shipped = _run([installed.bin("ocppgw-config")], cwd, env, 120)
    assert shipped == (ROOT / "etc" / "ocppgw.ini").read_text(encoding="utf-8")
    ctl_help = _run([installed.bin("ocppgw-ctl"), "--help"], cwd, env, 120)
    assert "kick" in ctl_help and "health" in ctl_help, ctl_help
    missing = subprocess.run(
        [installed.bin("twistd"), "-n", "ocppgw", "--config", "nowhere.ini"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )
    assert missing.returncode != 0 and "nowhere.ini" in missing.stdout + missing.stderr


def _set(ini: str, section: str, line: str, value: str) -> str:
    """
    ``ini`` with the first line of ``section`` that starts with ``line`` (e.g.
    ``#broker = embedded``, ``endpoint = ``) replaced by ``value``.
    """
    start = ini.index(f"\n[{section}]\n")
    at = ini.index(f"\n{line}", start) + 1
    end = ini.index("\n", at)
    return ini[:at] + value + ini[end:]


def _mapped_files(pid: int) -> set[str]:
    """The files process ``pid`` has mapped (its shared libraries, extension modules)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {line.split(maxsplit=5)[5] for line in maps.splitlines() if "/" in line}


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto of this test on a free loopback port."""
    broker = start_broker(tmp_path / "mosquitto")
    yield broker
    stop_process(broker.proc)


@run_async
async def test_installed_gateway_runs_on_the_default_ini(
    installed: Installed, own_broker: Broker, tmp_path: Path
) -> None:
    """
    ``ocppgw-config > ocppgw.ini`` with an id, a listener and a broker set, then
    ``twistd -n ocppgw --config ocppgw.ini`` from the venv, outside the checkout:
    the gateway loads nothing from the checkout, relays a BootNotification to
    the broker, answers ``ocppgw-ctl --config ocppgw.ini health``, and on
    SIGTERM stops within the stop timeout with status 0 and no traceback.
    """
    cwd, env = installed.cwd, installed.env
    name = f"it-wheel-{os.getpid()}"
    port = free_port()
    ini = _run([installed.bin("ocppgw-config")], cwd, env, 120)
    ini = _set(ini, "gateway", "#id =", f"id = {name}")
    ini = _set(ini, "gateway", "#journal =", f"journal = {tmp_path / 'journal'}")
    ini = _set(
        ini, "listener:ws", "endpoint = ", f"endpoint = tcp:{port}:interface=127.0.0.1",
    )
    ini = _set(ini, "mqtt", "#broker = embedded", f"broker = {own_broker.url}")
    config = cwd / "ocppgw.ini"
    config.write_text(ini, encoding="utf-8")
    log_path = tmp_path / "gateway.log"
    backend = Backend(own_broker)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [installed.bin("twistd"), "-n", "--pidfile=", "ocppgw", "--config", "ocppgw.ini"],
            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not ("MQTT connected" in read_log(log_path) and accepts(port)):
            assert proc.poll() is None and time.monotonic() < deadline, (
                f"the installed gateway did not start ({proc.returncode}):\n{read_log(log_path)}"
            )
            await asyncio.sleep(0.05)
        checkout = {str(ROOT), os.path.realpath(ROOT / ".venv")}
        from_checkout = [
            f for f in _mapped_files(proc.pid) if any(f.startswith(c + os.sep) for c in checkout)
        ]
        assert from_checkout == [], f"the gateway maps files of the checkout: {from_checkout}"
        site = os.path.realpath(installed.venv) + os.sep
        assert any(f.startswith(site) for f in _mapped_files(proc.pid)), "no library of the venv"

        backend.answer(
            "BootNotification",
            {"status": "Accepted", "currentTime": "2026-01-02T03:04:05Z", "interval": 300},
        )
        url = f"ws://127.0.0.1:{port}/ocpp/WHEEL-CP"
        async with charge_point(v16.ChargePoint, url, "WHEEL-CP", "ocpp1.6") as cp:
            answer = await cp.call(v16.call.BootNotification("M", "ACME"), suppress=False)
        assert answer.status == "Accepted", answer
        await backend.wait_for(
            lambda m: m.topic == "ocpp/cp/WHEEL-CP/BootNotification", "the CALL on the broker"
        )
        health = await asyncio.to_thread(
            _run, [installed.bin("ocppgw-ctl"), "--config", "ocppgw.ini", "health"], cwd, env, WAIT
        )
        assert "ok" in health, health

        proc.send_signal(signal.SIGTERM)
        status = await asyncio.to_thread(proc.wait, STOP_TIMEOUT)
        assert status == 0, f"exit status {status}:\n{read_log(log_path)}"
        assert not accepts(port)
        assert "Traceback" not in read_log(log_path), read_log(log_path)
    finally:
        backend.close()
        stop_process(proc)
