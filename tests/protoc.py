"""
The protobuf profile as a backend team sees it: proto/ compiled by protoc into
a directory of one's own, and the example backend (examples/protobuf_backend.py),
which imports only that output.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROTO = ROOT / "proto"
EXAMPLE = ROOT / "examples" / "protobuf_backend.py"


def protoc(out: Path, proto: Path = PROTO, *extra: str) -> Path:
    """
    Run the command docs/protobuf.md documents, from ``out`` (not the checkout),
    writing Python modules into ``out``; return ``out``.
    """
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(str(p) for p in (proto / "ocppgw_pb" / "v1").glob("*.proto"))
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto}", f"--python_out={out}"]
    subprocess.run([*cmd, *extra, *files], cwd=out, check=True, capture_output=True, timeout=120)
    return out


def example_backend(out: Path) -> ModuleType:
    """examples/protobuf_backend.py, importing the modules that :func:`protoc` wrote to ``out``."""
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    spec = importlib.util.spec_from_file_location("protobuf_backend", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Compiled:
    """
    The example backend on protoc's output, and through it protoc's modules
    (``message_pb2``, ``v16_pb2``, ...), once :meth:`load` has run: a test
    module names them at import, and a fixture loads them from the directory
    a session fixture compiled into.
    """

    example: ModuleType

    def load(self, out: Path) -> None:
        """Load the example backend on the modules that :func:`protoc` wrote to ``out``."""
        self.example = example_backend(out)

    def __getattr__(self, name: str) -> Any:
        if name == "example":
            raise AttributeError("protoc's modules are not loaded yet: a fixture calls load()")
        return getattr(self.example, name)
