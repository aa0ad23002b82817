"""The reference file etc/ocppgw.ini is the rendering of the key declarations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ocppgw.config.reference import COMMAND, render

ROOT = Path(__file__).resolve().parents[3]


def test_committed_reference_is_current() -> None:
    """etc/ocppgw.ini is exactly what the declaration renders; if not, the message says
    which command rewrites it."""
    committed = (ROOT / "etc" / "ocppgw.ini").read_text(encoding="utf-8")
    assert committed == render(), (
        f"etc/ocppgw.ini differs from the declaration (ocppgw/config/keys*.py): "
        f"run `{COMMAND}` and commit the result"
    )


def test_packaged_copy_is_the_reference() -> None:
    """ocppgw/ocppgw.ini, shipped in the package, has the reference's text."""
    packaged = (ROOT / "ocppgw" / "ocppgw.ini").read_text(encoding="utf-8")
    assert packaged == (ROOT / "etc" / "ocppgw.ini").read_text(encoding="utf-8")


def test_module_prints_the_reference() -> None:
    """python -m ocppgw.config.reference writes the rendering to standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "ocppgw.config.reference"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert done.stdout == render()
