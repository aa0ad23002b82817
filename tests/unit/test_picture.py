"""
The README's picture, docs/architecture.svg, is the rendering of its source,
docs/architecture.toml, by tools/draw_architecture.py (``make picture``).
"""

from __future__ import annotations

import importlib.util
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    path = ROOT / "tools" / "draw_architecture.py"
    spec = importlib.util.spec_from_file_location("draw_architecture", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_svg_is_the_rendering_of_its_source() -> None:
    """docs/architecture.svg is exactly what `make picture` writes from docs/architecture.toml."""
    source = tomllib.loads((ROOT / "docs" / "architecture.toml").read_text(encoding="utf-8"))
    committed = (ROOT / "docs" / "architecture.svg").read_text(encoding="utf-8")
    assert committed == _tool().render(source), "run `make picture`, commit docs/architecture.svg"


def test_picture_draws_charge_points_gateway_broker_and_backends() -> None:
    """The SVG parses, and its boxes name charge points, ocppgw, the MQTT broker and backends."""
    root = ET.parse(ROOT / "docs" / "architecture.svg").getroot()
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"charge point", "ocppgw", "MQTT broker", "backend"} <= texts, texts
    assert len(list(root.iter("{http://www.w3.org/2000/svg}line"))) == 8
