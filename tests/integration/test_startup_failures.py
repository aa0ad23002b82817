"""
Start-up failures that fail (issue 22, point 2): a gateway that cannot run
as configured exits non-zero within seconds, with one line naming the
section, the key, the value and the cause, no traceback, and no twistd
usage text; and a bare port is an endpoint (``PORT`` is ``tcp:PORT``).
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    TWISTD,
    Broker,
    free_port,
    launch_gateway,
    render_ini,
    stop_process,
)

#: A start-up failure ends the process within this many seconds.
EXIT_WITHIN = 10.0


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port that another socket listens on for the whole test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _ini(broker: Broker, directory: Path, **sections: dict[str, str]) -> str:
    merged: dict[str, dict[str, str]] = {
        "gateway": {"id": f"it-{uuid.uuid4().hex[:12]}", "journal": str(directory / "journal")},
        "listener:ws": {"endpoint": f"tcp:{free_port()}:interface=127.0.0.1"},
        "mqtt": {"broker": broker.url},
        "admin": {"endpoint": ""},
    }
    for name, keys in sections.items():
        merged.setdefault(name.replace("_", ":"), {}).update(keys)
    return render_ini(merged)


def _refused(directory: Path, ini: str) -> tuple[str, str]:
    """Run ``twistd ocppgw`` on ``ini``; it must exit 1 in time. Its stdout and stderr."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "ocppgw.ini"
    config.write_text(ini, encoding="utf-8")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(TWISTD), "-n", "--pidfile=", "ocppgw", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=directory,
    )
    try:
        out, err = proc.communicate(timeout=EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        stop_process(proc)  # type: ignore[arg-type]
        out, err = proc.communicate()
        raise AssertionError(f"still running after {EXIT_WITHIN} s:\n{out}\n{err}") from None
    took = time.monotonic() - started
    assert proc.returncode == 1, f"exit status {proc.returncode}:\n{out}\n{err}"
    assert took < EXIT_WITHIN
    for text in (out, err):
        assert "Traceback" not in text and "Unhandled Error" not in text, text
        assert "Usage:" not in text and "--config" not in text, f"usage text printed:\n{text}"
    return out, err


def _one_line(text: str, *names: str) -> str:
    """The one line of ``text`` that holds every one of ``names``."""
    lines = [line for line in text.splitlines() if all(n in line for n in names)]
    assert len(lines) == 1, f"want one line naming {names}, got {lines}:\n{text}"
    return lines[0]


WORKERS = pytest.mark.parametrize("workers", ["1", "2"])


@WORKERS
def test_listener_port_in_use_exits(broker, tmp_path, taken_port, workers):
    """A charge point listener whose port is taken: exit 1, one line naming key, value, cause."""
    endpoint = f"tcp:{taken_port}:interface=127.0.0.1"
    ini = _ini(broker, tmp_path, gateway={"workers": workers}, listener_ws={"endpoint": endpoint})
    out, err = _refused(tmp_path, ini)
    _one_line(out + err, "[listener:ws] endpoint", endpoint, "Address already in use")


@WORKERS
def test_admin_port_in_use_exits(broker, tmp_path, taken_port, workers):
    """The admin endpoint's port is taken: exit 1, one line naming key, value, cause."""
    endpoint = f"tcp:{taken_port}:interface=127.0.0.1"
    ini = _ini(broker, tmp_path, gateway={"workers": workers}, admin={"endpoint": endpoint})
    out, err = _refused(tmp_path, ini)
    _one_line(out + err, "[admin] endpoint", endpoint, "Address already in use")
    assert "worker 0 started" not in out, out


def test_missing_mosquitto_exits(broker, tmp_path):
    """The embedded broker's mosquitto binary is missing: exit 1, one line naming it."""
    missing = str(tmp_path / "no-such-mosquitto")
    ini = _ini(broker, tmp_path, mqtt={"broker": "embedded", "mosquitto": missing})
    out, err = _refused(tmp_path, ini)
    assert out == "", out
    _one_line(err, "[mqtt] mosquitto", missing, "not an executable file")


@WORKERS
def test_non_loopback_embedded_host_without_credentials_exits(broker, tmp_path, workers):
    """embedded_host off loopback without [mqtt] username/password: exit 1, one line naming it."""
    mqtt = {"broker": "embedded", "embedded_host": "0.0.0.0", "embedded_port": str(free_port())}
    ini = _ini(broker, tmp_path, gateway={"workers": workers}, mqtt=mqtt)
    out, err = _refused(tmp_path, ini)
    assert out == "", out
    _one_line(err, "[mqtt] embedded_host", "0.0.0.0", "not a loopback address", "username")


@WORKERS
def test_embedded_port_taken_by_mosquitto_exits(broker, tmp_path, workers):
    """
    embedded_port taken by another mosquitto (the tests' broker): exit 1 within
    seconds, one line naming the key, the port, the process holding it (name
    and pid) and the [mqtt] broker line that would use it instead.
    """
    mqtt = {"broker": "embedded", "embedded_port": str(broker.port)}
    ini = _ini(broker, tmp_path, gateway={"workers": workers}, mqtt=mqtt)
    out, err = _refused(tmp_path, ini)
    _one_line(
        out + err,
        f"[mqtt] embedded_port: {broker.port} on 127.0.0.1 is already in use",
        f"by mosquitto (pid {broker.proc.pid})",
        f"[mqtt] broker = mqtt://127.0.0.1:{broker.port}",
    )
    assert "starting embedded mosquitto" not in out + err, out + err


def test_bad_key_is_one_line_without_usage_text(broker, tmp_path):
    """An invalid INI value: exit 1, its one named line on stderr, no twistd usage text."""
    ini = _ini(broker, tmp_path, listener_ws={"path": "no-slash"})
    out, err = _refused(tmp_path, ini)
    assert out == "", out
    assert len(err.strip().splitlines()) == 1, err
    _one_line(err, "[listener:ws] path", "no-slash")


def test_bare_port_is_a_tcp_endpoint(broker, tmp_path):
    """``endpoint = PORT`` listens on tcp:PORT: the gateway starts and accepts there."""
    port = free_port()
    ini = _ini(broker, tmp_path, listener_ws={"endpoint": str(port)})
    name = ini.split("id = ", 1)[1].split("\n", 1)[0]
    gw = launch_gateway(tmp_path, ini, port, name)
    try:
        assert "Traceback" not in gw.log()
    finally:
        gw.stop()
