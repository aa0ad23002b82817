"""
Declared, bounded, reproducible dependencies (docs/deploy.md, "Dependencies").

Every third-party module the code imports is a distribution setup.cfg
declares, each declared requirement has a lower and an upper bound, and the
two committed version files agree with those ranges: requirements/lock.txt
(what ``make install`` installs) pins versions inside them, and
requirements/oldest.txt (what ``make test-oldest`` runs the unit suite on)
pins each lower bound exactly.  The last tests break setup.cfg on purpose
and show that each check says so.
"""

from __future__ import annotations

import ast
import configparser
import re
import sys
from collections.abc import Iterable
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
SETUP_CFG = ROOT / "setup.cfg"
LOCK = ROOT / "requirements" / "lock.txt"
OLDEST = ROOT / "requirements" / "oldest.txt"
DEPLOY = ROOT / "docs" / "deploy.md"

#: Our own top-level packages, and protoc's output for proto/ (ocppgw_pb),
#: which examples/protobuf_backend.py imports from a directory the user chose.
OWN = {"ocppgw", "tests", "ocppgw_pb"}

#: Where code is imported from, and which groups of setup.cfg may provide its
#: imports: the package itself only install_requires; the tests, tools and
#: examples also the test extra (what `make install` installs); bench/ also
#: the bench extra (what `make bench` adds).
RUNTIME_ROOTS = ("ocppgw", "twisted/plugins")
TEST_ROOTS = ("tests", "tools", "examples")
BENCH_ROOTS = ("bench",)


def declared(text: str) -> dict[str, list[Requirement]]:
    """The requirements of a setup.cfg, by group: ``install_requires`` and each extra's name."""
    parser = configparser.ConfigParser()
    parser.read_string(text)
    groups = {"install_requires": _requirements(parser["options"]["install_requires"])}
    for extra, value in parser["options.extras_require"].items():
        groups[extra] = _requirements(value)
    return groups


def _requirements(value: str) -> list[Requirement]:
    lines = (line.strip() for line in value.splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


def names(requirements: Iterable[Requirement]) -> set[str]:
    """The canonical distribution names of ``requirements``."""
    return {canonicalize_name(r.name) for r in requirements}


def imports(path: Path) -> set[str]:
    """The top-level names of the absolute imports in the module at ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@cache
def providers() -> dict[str, frozenset[str]]:
    """The installed distributions (canonical names) that provide each top-level module."""
    return {
        module: frozenset(canonicalize_name(d) for d in dists)
        for module, dists in packages_distributions().items()
    }


def undeclared(roots: Iterable[str], allowed: set[str]) -> dict[str, set[str]]:
    """
    The third-party modules imported under ``roots`` that no distribution in
    ``allowed`` provides, each with the files importing it.  A module is
    third-party unless it is in the standard library, one of ours (``OWN``) or
    a sibling of the importing file (a script's own directory is on its path).
    A module no installed distribution provides counts as provided by the
    distribution of its own name (bench/'s, when the bench extra is not installed).
    """
    missing: dict[str, set[str]] = {}
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            siblings = {p.stem for p in path.parent.iterdir()}
            for module in imports(path) - OWN - siblings:
                if module in sys.stdlib_module_names:
                    continue
                dists = providers().get(module, frozenset({canonicalize_name(module)}))
                if not dists & allowed:
                    missing.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return missing


def unbounded(groups: dict[str, list[Requirement]]) -> list[str]:
    """The declared requirements that lack a lower (>=) or an upper (<) bound."""
    return [
        f"{group}: {r}"
        for group, requirements in groups.items()
        for r in requirements
        if sorted(s.operator for s in r.specifier) != ["<", ">="]
    ]


def lower_bound(requirement: Requirement) -> Version:
    """The version a requirement's ``>=`` names."""
    (bound,) = (s.version for s in requirement.specifier if s.operator == ">=")
    return Version(bound)


def pins(path: Path) -> dict[str, Version]:
    """The ``name==version`` lines of a requirements file, by canonical name."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and name.strip() and version.strip(), f"{path.name}: not a pin: {line!r}"
            found[canonicalize_name(name.strip())] = Version(version.strip())
    return found


def outside_lock(groups: dict[str, list[Requirement]], lock: dict[str, Version]) -> list[str]:
    """The declared requirements the lock does not pin, or pins outside their range."""
    wrong = []
    for requirement in (r for rs in groups.values() for r in rs):
        pinned = lock.get(canonicalize_name(requirement.name))
        if pinned is None or not requirement.specifier.contains(pinned, prereleases=True):
            wrong.append(f"{requirement} locked at {pinned}")
    return wrong


def off_lower_bound(groups: dict[str, list[Requirement]], oldest: dict[str, Version]) -> list[str]:
    """
    The declared requirements whose oldest pin is not their lower bound
    (or missing), and the oldest pins of anything not declared.
    """
    requirements = {canonicalize_name(r.name): r for rs in groups.values() for r in rs}
    wrong = [f"{name}=={v}: not declared" for name, v in oldest.items() if name not in requirements]
    for name, requirement in requirements.items():
        if oldest.get(name) != lower_bound(requirement):
            wrong.append(f"{requirement}: oldest pin {oldest.get(name)}")
    return wrong


def groups_now() -> dict[str, list[Requirement]]:
    return declared(SETUP_CFG.read_text(encoding="utf-8"))


def test_the_package_imports_only_what_install_requires_declares() -> None:
    """Every third-party module imported in ocppgw/ and twisted/plugins/ is an install_requires."""
    assert undeclared(RUNTIME_ROOTS, names(groups_now()["install_requires"])) == {}


def test_tests_tools_and_bench_import_only_declared_distributions() -> None:
    """
    tests/, tools/ and examples/ import only install_requires and the test
    extra; bench/ also the bench extra.
    """
    groups = groups_now()
    testing = names(groups["install_requires"]) | names(groups["test"])
    assert undeclared(TEST_ROOTS, testing) == {}
    assert undeclared(BENCH_ROOTS, testing | names(groups["bench"])) == {}


def missing_packages(setup_cfg: str) -> set[str]:
    """The packages of ocppgw/ (directories with an __init__.py) that setup.cfg does not list."""
    parser = configparser.ConfigParser()
    parser.read_string(setup_cfg)
    listed = {p.strip() for p in parser["options"]["packages"].splitlines() if p.strip()}
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "ocppgw").rglob("__init__.py")
    }
    return found - listed


def test_every_package_of_ocppgw_is_in_the_wheel() -> None:
    """
    setup.cfg lists its packages by hand (``find:`` would drop twisted/plugins),
    so each directory of ocppgw/ with an __init__.py must be there, or the
    wheel installs a gateway that fails on its first import of it.
    """
    missing = missing_packages(SETUP_CFG.read_text())
    assert not missing, f"setup.cfg [options] packages lacks {sorted(missing)}"


def test_a_package_left_out_of_setup_cfg_is_found() -> None:
    """The check above finds a package missing from the list."""
    text = SETUP_CFG.read_text().replace("    ocppgw.forward\n", "")
    assert missing_packages(text) == {"ocppgw.forward"}


def test_every_requirement_has_a_lower_and_an_upper_bound() -> None:
    """Each requirement of install_requires and of every extra says >= and <, nothing else."""
    assert unbounded(groups_now()) == []


def test_the_lock_pins_every_declared_requirement_inside_its_range() -> None:
    """requirements/lock.txt pins each declared distribution, at a version its range admits."""
    assert outside_lock(groups_now(), pins(LOCK)) == []


def test_the_oldest_file_pins_exactly_the_lower_bounds() -> None:
    """requirements/oldest.txt pins each declared distribution at its lower bound, nothing else."""
    assert off_lower_bound(groups_now(), pins(OLDEST)) == []


def test_deploy_md_lists_the_runtime_ranges() -> None:
    """docs/deploy.md's "Dependencies" table gives each install_requires its range, no other."""
    section = DEPLOY.read_text(encoding="utf-8").split("## Dependencies", 1)[1].split("\n## ")[0]
    cells = re.findall(r"\| ([A-Za-z][\w.-]*)(?: \(`\w+`\))? \| ([<>=!~0-9.,]+) ", section)
    listed = {canonicalize_name(name): SpecifierSet(spec) for name, spec in cells}
    runtime = {canonicalize_name(r.name): r.specifier for r in groups_now()["install_requires"]}
    assert listed == runtime


def _broken(old: str, new: str) -> dict[str, list[Requirement]]:
    text = SETUP_CFG.read_text(encoding="utf-8")
    assert old in text
    return declared(text.replace(old, new))


def test_an_undeclared_import_is_found() -> None:
    """Without automat in install_requires, its import in ocppgw.session.lifecycle is named."""
    groups = _broken("    automat>=", "    # automat>=")
    missing = undeclared(RUNTIME_ROOTS, names(groups["install_requires"]))
    assert missing == {"automat": {"ocppgw/session/lifecycle.py"}}


def test_a_missing_upper_bound_is_found() -> None:
    """With paho-mqtt's upper bound dropped, the check names paho-mqtt."""
    groups = _broken("paho-mqtt>=2.2.0,<3", "paho-mqtt>=2.2.0")
    assert unbounded(groups) == ["install_requires: paho-mqtt>=2.2.0"]


def test_a_lock_outside_the_range_is_found() -> None:
    """With protobuf's upper bound below the locked version, the check names protobuf."""
    locked = pins(LOCK)["protobuf"]
    groups = _broken("protobuf>=7.35.1,<8", f"protobuf>=7.35.1,<{locked}")
    wrong = outside_lock(groups, pins(LOCK))
    assert len(wrong) == 1 and wrong[0].startswith("protobuf"), wrong


def test_a_raised_lower_bound_without_the_oldest_pin_is_found() -> None:
    """With jsonschema's lower bound raised in setup.cfg only, the check names jsonschema."""
    groups = _broken("jsonschema>=4.23.0,<5", "jsonschema>=4.24.0,<5")
    wrong = off_lower_bound(groups, pins(OLDEST))
    assert len(wrong) == 1 and wrong[0].startswith("jsonschema"), wrong
