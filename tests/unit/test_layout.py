"""
The layout of ocppgw/ and its import contracts (docs/design.md).

The contracts themselves are in pyproject.toml and run by ``make contracts``;
these tests show that they hold on the tree and that they catch a forbidden
import, on a copy of the package with one line added.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ocppgw"
GENERATED = PACKAGE / "wire" / "protobuf" / "generated"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: Where each contract is broken on purpose, and the contract that must say so.
VIOLATIONS = [
    ("ocpp/messages.py", "import twisted.internet.defer\n", "The OCPP-J domain does no I/O"),
    ("session/__init__.py", "import autobahn\n", "The session knows neither"),
    ("session/__init__.py", "import paho.mqtt.client\n", "The session knows neither"),
    ("wire/raw.py", "import ocppgw.router.topics\n", "Codecs know no topic"),
    ("mqtt/client.py", "import ocppgw.router.routing\n", "Stages in flow order"),
    ("ocpp/versions.py", "import ocppgw.session\n", "Stages in flow order"),
    ("router/routing.py", "from twisted.internet import reactor\n", "global reactor"),
    ("session/__init__.py", "import twisted.internet.reactor\n", "global reactor"),
]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter with the project's contracts on the package under ``root``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": f"{root}:{ROOT}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_contracts_hold() -> None:
    """Every import contract is kept by the package as it is."""
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.split("Contracts:")[-1].replace("0 broken", "")


@pytest.mark.parametrize(("module", "line", "contract"), VIOLATIONS)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    """Adding one forbidden import to a copy of the package breaks the contract that forbids it."""
    shutil.copytree(PACKAGE, tmp_path / "ocppgw", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "ocppgw" / module
    target.write_text(target.read_text() + "\n" + line)
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout


def test_no_module_over_400_lines() -> None:
    """No hand-written module of ocppgw/ is longer than 400 lines."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if GENERATED not in p.parents and (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}


def test_each_package_says_its_stage() -> None:
    """Every package of ocppgw/ opens with a docstring that names its stage and its imports."""
    for init in PACKAGE.rglob("__init__.py"):
        if GENERATED in init.parents or init.parent == PACKAGE:
            continue
        text = init.read_text()
        if init.parent.parent == PACKAGE:
            assert "Stage:" in text and "may import" in text.lower(), init


def _has_code(path: Path) -> bool:
    """Whether a module holds more than its docstring."""
    import ast

    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def test_each_module_names_its_tests() -> None:
    """Every module with code starts with a test-case-name header naming test modules that exist."""
    missing: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if GENERATED in path.parents or not _has_code(path):
            continue
        first = path.read_text().splitlines()[0]
        if not first.startswith("# -*- test-case-name:"):
            missing.append(f"{path.relative_to(ROOT)}: no header")
            continue
        names = first.removeprefix("# -*- test-case-name:").removesuffix("-*-").split(",")
        for name in (n.strip() for n in names):
            if not (ROOT / (name.replace(".", "/") + ".py")).is_file():
                missing.append(f"{path.relative_to(ROOT)}: {name} does not exist")
    assert missing == []


def test_no_module_imports_another_modules_private_name() -> None:
    """No module of ocppgw/ imports a ``_private`` name from another ocppgw module."""
    import ast

    private = [
        f"{path.relative_to(ROOT)}: {node.module}.{alias.name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if GENERATED not in path.parents
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ocppgw")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert private == []
