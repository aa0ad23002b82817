"""docs/grafana-dashboard.json: a Grafana dashboard over metrics the gateway has."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ocppgw.admin.metrics import Metrics, State

ROOT = Path(__file__).resolve().parents[3]


def test_dashboard_uses_only_our_metrics() -> None:
    """Every panel query names ocppgw_ metrics that /metrics exports, and ids are unique."""
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["schemaVersion"] >= 30
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    metrics = Metrics(State(dict, int, int, bool, int, int))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    exported = {
        f.name + suffix
        for f in metrics.registry.collect()
        for suffix in suffixes.get(f.type, ("",))
    }
    for panel in panels:
        for target in panel["targets"]:
            names = set(re.findall(r"\bocppgw_\w+", target["expr"]))
            assert names, target
            assert names <= exported, (panel["title"], names - exported)
