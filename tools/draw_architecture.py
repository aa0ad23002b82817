"""
Render docs/architecture.toml (boxes, arrows, labels) into
docs/architecture.svg, the README's picture: ``make picture``, or

    .venv/bin/python tools/draw_architecture.py [SOURCE [OUTPUT]]

The output depends on the source alone (no fonts are measured, nothing of
the machine goes in), so tests/unit/test_picture.py can compare the
committed SVG with a fresh rendering.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "docs" / "architecture.toml"
OUTPUT = ROOT / "docs" / "architecture.svg"

#: Fill and stroke of each box style.
STYLES = {
    "device": ("#e8f1fb", "#2f6db5"),
    "gateway": ("#fff4dc", "#c47f00"),
    "broker": ("#eaf6ea", "#2e8b3d"),
    "backend": ("#f3ecfa", "#7a48b0"),
    "side": ("#f4f4f4", "#777777"),
}
LINE = 17  # px between text lines
FONT = "font-family='DejaVu Sans, Verdana, Arial, sans-serif'"


def _text(x: float, y: float, lines: list[str], first_bold: bool = False) -> list[str]:
    """Centred lines of text, the block's middle at y."""
    top = y - (len(lines) - 1) * LINE / 2
    out = []
    for i, line in enumerate(lines):
        if not line:
            continue
        weight = " font-weight='bold'" if first_bold and i == 0 else ""
        out.append(
            f"<text x='{x:g}' y='{top + i * LINE + 5:g}' text-anchor='middle'{weight}>"
            f"{escape(line)}</text>"
        )
    return out


def _arrow(src: dict[str, Any], dst: dict[str, Any]) -> str:
    """A two-headed line from the side of ``src`` that faces ``dst`` to ``dst``."""
    if dst["x"] >= src["x"] + src["w"]:  # to the right: level where the boxes overlap
        y1 = src["y"] + src["h"] / 2
        in_range = dst["y"] <= y1 <= dst["y"] + dst["h"]
        y2 = y1 if in_range else dst["y"] + dst["h"] / 2
        x1, x2 = src["x"] + src["w"], dst["x"]
    else:  # above: vertical, at the source's middle
        x = src["x"] + src["w"] / 2
        x1, y1, x2, y2 = x, src["y"], x, dst["y"] + dst["h"]
    return (
        f"<line x1='{x1:g}' y1='{y1:g}' x2='{x2:g}' y2='{y2:g}' stroke='#444444' "
        "stroke-width='1.6' marker-start='url(#head)' marker-end='url(#head)'/>"
    )


def render(source: dict[str, Any]) -> str:
    """The SVG text of one picture source."""
    width, height = source["width"], source["height"]
    boxes = {box["id"]: box for box in source["box"]}
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' font-size='13' {FONT}>",
        f"<title>{escape(source['title'])}</title>",
        "<defs><marker id='head' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' "
        "fill='#444444'/></marker></defs>",
        f"<rect width='{width}' height='{height}' fill='#ffffff'/>",
    ]
    for arrow in source["arrow"]:
        out.append(_arrow(boxes[arrow["from"]], boxes[arrow["to"]]))
    for box in source["box"]:
        fill, stroke = STYLES[box["style"]]
        out.append(
            f"<rect x='{box['x']}' y='{box['y']}' width='{box['w']}' height='{box['h']}' "
            f"rx='8' fill='{fill}' stroke='{stroke}' stroke-width='1.6'/>"
        )
        middle_x, middle_y = box["x"] + box["w"] / 2, box["y"] + box["h"] / 2
        out += _text(middle_x, middle_y, box["lines"], first_bold=True)
    for label in source.get("label", []):
        out.append("<g fill='#333333' font-size='12' font-style='italic'>")
        out += _text(label["x"], label["y"], label["lines"])
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> None:
    """Render SOURCE (default docs/architecture.toml) into OUTPUT (docs/architecture.svg)."""
    source = Path(argv[0]) if argv else SOURCE
    output = Path(argv[1]) if len(argv) > 1 else OUTPUT
    output.write_text(render(tomllib.loads(source.read_text(encoding="utf-8"))), encoding="utf-8")
    print(f"wrote {output}")


if __name__ == "__main__":
    main(sys.argv[1:])
