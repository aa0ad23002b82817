"""
The wheel, installed into a fresh virtual environment, gives ``twistd`` the
``ocppgw`` plugin (STYLE.md, packaging facts): not the checkout, the wheel;
and the default configuration (``ocppgw-config``) and ``ocppgw-ctl`` come with it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.integration.harness import ROOT

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


def test_wheel_installs_the_twistd_plugin(tmp_path):
    """The built wheel holds twisted/plugins/ocppgw_plugin.py, and twistd finds "ocppgw" in it."""
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
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    assert "twisted/plugins/ocppgw_plugin.py" in names, sorted(names)
    assert "ocppgw/tap.py" in names, sorted(names)
    # Neither namespace may ship an __init__.py: it would overwrite Twisted's.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, 120)
    _run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheels[0])], tmp_path, env, 600)

    # Run from tmp_path: the checkout's twisted/plugins must not be on sys.path.
    probe = json.loads(_run([str(venv / "bin" / "python"), "-c", _PROBE], tmp_path, env, 120))
    site = os.path.realpath(venv)
    assert "ocppgw" in probe["tapnames"], probe
    assert "web" in probe["tapnames"], f"Twisted's own plugins are gone: {probe}"
    assert probe["module"] == "ocppgw.tap", probe
    assert probe["makeService"], probe
    assert probe["plugin_file"].startswith(site + os.sep), probe
    assert probe["ocppgw_file"].startswith(site + os.sep), probe

    reactors = _run([str(venv / "bin" / "twistd"), "--help-reactors"], tmp_path, env, 120)
    assert re.search(r"^\s*ocppgw\s", reactors, re.MULTILINE), reactors
    help_text = _run([str(venv / "bin" / "twistd"), "ocppgw", "--help"], tmp_path, env, 120)
    assert "--config" in help_text, help_text
    passwd_help = _run([str(venv / "bin" / "ocppgw-passwd"), "--help"], tmp_path, env, 120)
    assert "set" in passwd_help, passwd_help

    # The wheel alone carries the documented default configuration.
    assert "ocppgw/ocppgw.ini" in names, sorted(names)
    shipped = _run([str(venv / "bin" / "ocppgw-config")], tmp_path, env, 120)
    assert shipped == (ROOT / "etc" / "ocppgw.ini").read_text(encoding="utf-8")
    ctl_help = _run([str(venv / "bin" / "ocppgw-ctl"), "--help"], tmp_path, env, 120)
    assert "kick" in ctl_help and "health" in ctl_help, ctl_help
    missing = subprocess.run(
        [str(venv / "bin" / "twistd"), "-n", "ocppgw", "--config", "nowhere.ini"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert missing.returncode != 0 and "nowhere.ini" in missing.stdout + missing.stderr
