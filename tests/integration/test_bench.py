"""The benchmark scripts still run: 2 charge points, 1 second (benchmarks are not tests)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.harness import ROOT


def test_bench_quick_runs(tmp_path):
    """bench/run.py --quick measures echo, ocpp CS, gateway and floor: CALLRESULTs, no failure."""
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path)],
        check=True,
        timeout=90,
        capture_output=True,
    )
    (found,) = tmp_path.glob("*.json")
    runs = json.loads(found.read_text())["closed"]
    assert [r["server"] for r in runs] == ["echo", "ocppcs", "gateway", "floor"]
    assert all(r["conns"] == 2 and r["round_trips"] > 0 and r["failures"] == 0 for r in runs), runs
    assert "| ocppgw | 2 |" in (tmp_path / "latest.md").read_text()
