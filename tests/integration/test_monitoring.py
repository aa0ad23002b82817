"""
docs/monitoring.md as an operator uses it (issue 22, point 7): its scrape
configuration and alert rules, copied as printed, pass ``promtool check``;
a real Prometheus on that configuration scrapes a real gateway whose
``[admin]`` section is the printed one (only the port and the token file's
path differ), and evaluates every rule without an error; ``/metrics`` needs
the token; and every metric name of the rules and of the Grafana dashboard
is one the gateway serves.

promtool and prometheus come from Debian's ``prometheus`` package, which
``make test`` installs (the Makefile's ``prometheus`` target).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.harness import ROOT, Gateway, free_port, read_log, stop_process

DOC = ROOT / "docs" / "monitoring.md"
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
TOKEN = "it-monitoring-token-0123456789abcdef"
#: Prometheus scrapes and evaluates every 15 s (as printed), at an offset of its own.
PROMETHEUS_WAIT = 40.0


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def _printed(directory: Path) -> dict[str, Path]:
    """The YAML files of docs/monitoring.md, each under the name its first line gives."""
    files = {}
    for block in _blocks("yaml"):
        first = block.splitlines()[0]
        assert first.startswith("# /etc/prometheus/"), first
        name = first.rsplit("/", 1)[1]
        (directory / name).write_text(block, encoding="utf-8")
        files[name] = directory / name
    assert set(files) == {"prometheus.yml", "ocppgw-alerts.yml"}, files
    (directory / "ocppgw.token").write_text(TOKEN + "\n", encoding="utf-8")
    return files


def _tool(name: str) -> str:
    found = shutil.which(name) or f"/usr/bin/{name}"
    assert Path(found).exists(), f"{name} is missing: make test-deps installs it (apt prometheus)"
    return found


def test_promtool_accepts_the_printed_configuration_and_rules(tmp_path: Path) -> None:
    """``promtool check config`` and ``promtool check rules`` exit 0 on the files as printed."""
    files = _printed(tmp_path)
    promtool = _tool("promtool")
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "ocppgw-alerts.yml"]):
        done = subprocess.run(
            [promtool, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"promtool {args}:\n{done.stdout}\n{done.stderr}"
        assert "SUCCESS" in done.stdout + done.stderr
    assert files["prometheus.yml"].read_text().count("ocppgw-alerts.yml") == 1


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _wait(what: str, probe: Callable[[], Any], describe: Callable[[], str]) -> Any:
    deadline = time.monotonic() + PROMETHEUS_WAIT
    while not (found := probe()):
        assert time.monotonic() < deadline, f"{what} within {PROMETHEUS_WAIT} s:\n{describe()}"
        time.sleep(0.5)
    return found


def _served(metrics: str) -> set[str]:
    """The sample names /metrics can serve: each family's, with its type's suffixes."""
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", metrics, re.M):
        names.add(family)
        if kind == "counter":
            names.add(family + "_total")
        if kind == "histogram":
            names.update(family + s for s in ("_bucket", "_sum", "_count"))
    return names


def test_prometheus_scrapes_the_gateway_as_printed(
    gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    """
    A gateway with the printed ``[admin]`` section and Prometheus with the
    printed files: the target is up, every alert rule is evaluated with
    health ok, /metrics without the token is 401, and the rules and the
    dashboard use only metric names the gateway serves.
    """
    (ini,) = _blocks("ini")
    admin = dict(re.findall(r"^(\w+) = (.*)$", ini, re.M))
    assert admin == {
        "endpoint": "tcp:9310:interface=127.0.0.1",
        "token_file": "/etc/ocppgw/admin.token",
    }, admin
    files = _printed(tmp_path)
    port = free_port()
    gw = gateway({"admin": {
        "endpoint": admin["endpoint"].replace("9310", str(port)),
        "token_file": str(tmp_path / "ocppgw.token"),
    }})
    url = f"http://127.0.0.1:{port}/metrics"
    assert _get(url)[0] == 401
    status, metrics = _get(url, TOKEN)
    assert status == 200, metrics

    config = files["prometheus.yml"]
    config.write_text(config.read_text().replace("127.0.0.1:9310", f"127.0.0.1:{port}"))
    web = free_port()
    log_path = tmp_path / "prometheus.log"
    with open(log_path, "wb") as log:
        prometheus = subprocess.Popen(
            [
                _tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{web}",
            ],
            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        )
    api = f"http://127.0.0.1:{web}/api/v1"

    def describe() -> str:
        return f"prometheus log:\n{read_log(log_path)[-3000:]}\ngateway log:\n{gw.log()[-2000:]}"

    def targets() -> list[Any] | None:
        try:
            status, body = _get(f"{api}/targets")
        except OSError:
            return None
        active = json.loads(body)["data"]["activeTargets"] if status == 200 else []
        return active if active and all(t["health"] == "up" for t in active) else None

    def rules() -> list[Any] | None:
        groups = json.loads(_get(f"{api}/rules")[1])["data"]["groups"]
        found = [r for g in groups for r in g["rules"]]
        evaluated = found and all(not r["lastEvaluation"].startswith("0001") for r in found)
        return found if evaluated else None

    try:
        (target,) = _wait("the gateway's target up", targets, describe)
        assert target["labels"]["job"] == "ocppgw", target
        evaluated = _wait("every rule evaluated", rules, describe)
        assert len(evaluated) == 8, evaluated
        assert all(r["health"] == "ok" for r in evaluated), evaluated
    finally:
        stop_process(prometheus)

    served = _served(metrics)
    rules_text = files["ocppgw-alerts.yml"].read_text()
    used = set(re.findall(r"\bocppgw_[a-z_]+", rules_text + DASHBOARD.read_text()))
    assert used and used <= served, f"not served: {sorted(used - served)}"
