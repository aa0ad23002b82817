"""
The README's way in (issue 22, point 6), command by command as a reader
types them: ``make demo``; ``mosquitto_sub`` watching the broker;
``examples/charge_point.py CP001`` booting and staying connected;
``ocppgw-ctl --config INI list`` and ``ocppgw-ctl --config INI call CP001
Reset '{"type": "Soft"}'`` answered by that charge point; a Reset CALL sent
with ``mosquitto_pub``, whose answer ``mosquitto_sub`` shows; Ctrl-C to
each.  And ``make run``, started and stopped with Ctrl-C.
Only the ports and the gateway id differ from etc/ocppgw.ini (free ones, so
that tests run beside each other), and so ``CONFIG=``, ``--url`` and ``-p``
are added to the README's commands.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.integration.harness import (
    BIN,
    ROOT,
    STOP_TIMEOUT,
    WAIT,
    accepts,
    free_port,
    render_ini,
)
from tests.integration.harness.support import PrintingProcess, kill_embedded_broker

CTL = str(BIN / "ocppgw-ctl")


def _ctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CTL, "--config", str(config), *args],
        capture_output=True, text=True, timeout=WAIT, check=False,
    )


def _no_traceback(*outputs: list[str]) -> None:
    for lines in outputs:
        text = "\n".join(lines)
        assert "Traceback" not in text and "Unhandled" not in text, text


def _embedded_ini(tmp_path: Path, name: str, ws_port: int, mqtt_port: int) -> Path:
    """etc/ocppgw.ini's set-up on free ports: a listener and the embedded broker."""
    config = tmp_path / "ocppgw.ini"
    config.write_text(
        render_ini(
            {
                "gateway": {
                    "id": f"it-{name}-{uuid.uuid4().hex[:8]}",
                    "journal": str(tmp_path / "journal"),
                },
                "listener:ws": {"endpoint": f"tcp:{ws_port}:interface=127.0.0.1"},
                "mqtt": {"broker": "embedded", "embedded_port": str(mqtt_port)},
            }
        ),
        encoding="utf-8",
    )
    return config


def test_demo_charge_point_and_a_first_command(tmp_path: Path) -> None:
    """
    The charge point example prints its accepted boot and stays connected;
    ``ocppgw-ctl list`` shows it; ``ocppgw-ctl call ... Reset`` prints its
    Accepted and exits 0 (the charge point printed the Reset); the broker
    carried the boot and the answer to the Reset; a CALL published with
    mosquitto_pub reaches the charge point, and its answer, with the
    Action, is on ocpp/cp/Reply/CP001; Ctrl-C ends the charge
    point (closing with 1000) and the demo, and nothing printed a traceback.
    """
    ws_port, mqtt_port = free_port(), free_port()
    config = _embedded_ini(tmp_path, "first", ws_port, mqtt_port)
    demo = PrintingProcess(
        [
            # -o: never reinstall the venv from here (it may be shared with other checkouts);
            # make install is what every make test runs first.
            "make", "-s", "-C", str(ROOT), "-o", ".venv/.installed", "demo",
            f"CONFIG={config}", f"DEMO_MQTT_PORT={mqtt_port}",
        ],
        tmp_path,
        group=True,
    )
    watch = cp = None
    try:
        demo.wait_line("subscribed to ocpp/cp/+/+", timeout=3 * WAIT)
        watch = PrintingProcess(
            ["mosquitto_sub", "-p", str(mqtt_port), "-v", "-t", "#"], tmp_path, group=True
        )
        cp = PrintingProcess(
            [
                sys.executable, "-u", str(ROOT / "examples" / "charge_point.py"), "CP001",
                "--url", f"ws://127.0.0.1:{ws_port}/ocpp",
            ],
            tmp_path,
            group=True,
        )
        cp.wait_line("BootNotification: Accepted (interval 300 s)")
        cp.wait_line("CP001 stays connected")

        listed = _ctl(config, "list")
        assert listed.returncode == 0 and "CP001" in listed.stdout, listed
        reset = _ctl(config, "call", "CP001", "Reset", '{"type": "Soft"}')
        assert reset.returncode == 0, reset
        assert '"status": "Accepted"' in reset.stdout, reset
        cp.wait_line('< Reset {"type": "Soft"}')
        watch.wait_line("ocpp/cp/CP001/BootNotification ")
        watch.wait_line("ocpp/cp/Reply/CP001 ")
        command = (
            '{"MessageTypeId":2,"UniqueId":"cmd-1","Action":"Reset","Payload":{"type":"Hard"}}'
        )
        topic = "ocpp/cs/CP001/Call/Reset"
        subprocess.run(
            ["mosquitto_pub", "-p", str(mqtt_port), "-t", topic, "-m", command],
            check=True, timeout=WAIT,
        )
        cp.wait_line('< Reset {"type": "Hard"}')
        answer = watch.wait_line('ocpp/cp/Reply/CP001 {"MessageTypeId":3,"UniqueId":"cmd-1"')
        assert '"Action":"Reset"' in answer and '"status":"Accepted"' in answer, answer

        os.killpg(cp.proc.pid, signal.SIGINT)
        assert cp.proc.wait(STOP_TIMEOUT) == 0, cp.output()
        assert cp.output()[-1] == "CP001 disconnected", cp.output()
        closed = [line for line in demo.output() if "CP001: disconnected" in line]
        assert closed and closed[0].endswith("close code 1000"), demo.output()
        os.killpg(demo.proc.pid, signal.SIGINT)
        demo.proc.wait(3 * STOP_TIMEOUT)
        assert not accepts(ws_port) and not accepts(mqtt_port)
        _no_traceback(demo.output(), cp.output(), watch.output())
    finally:
        for process in (watch, cp, demo):
            if process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.proc.pid, signal.SIGKILL)
                process.proc.wait()
        kill_embedded_broker(mqtt_port)


def test_make_run_starts_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """
    ``make run`` starts the gateway with its embedded broker (a charge point
    connects, the MQTT client is connected); one Ctrl-C stops both, with no
    traceback.
    """
    ws_port, mqtt_port = free_port(), free_port()
    config = _embedded_ini(tmp_path, "run", ws_port, mqtt_port)
    run = PrintingProcess(
        ["make", "-s", "-C", str(ROOT), "-o", ".venv/.installed", "run", f"CONFIG={config}"],
        tmp_path,
        group=True,
    )
    try:
        deadline = time.monotonic() + 2 * WAIT
        while not (accepts(ws_port) and any("MQTT connected" in x for x in run.output())):
            assert run.proc.poll() is None and time.monotonic() < deadline, run.output()
            time.sleep(0.1)
        os.killpg(run.proc.pid, signal.SIGINT)
        run.proc.wait(3 * STOP_TIMEOUT)
        assert not accepts(ws_port) and not accepts(mqtt_port)
        assert any("Received SIGINT, shutting down." in x for x in run.output()), run.output()
        _no_traceback(run.output())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
        kill_embedded_broker(mqtt_port)
