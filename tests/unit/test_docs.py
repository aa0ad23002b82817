"""
The README and docs/ (issue 22, points 6, 7 and 8): every link stays inside the
repository and finds its file and heading; every block a reader is told to
type or run (shell, Python, a Dockerfile; every block of docs/deploy.md, the
recipes page) names the test that runs it or says it is an untested
example; the README opens with what the gateway is, the picture and the two
set-up commands, in that order; docs/monitoring.md explains every panel of
the Grafana dashboard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Fenced blocks whose language makes them something to type or run.
COMMANDS = {"sh", "bash", "shell", "console", "dockerfile", "python"}
#: Pages whose every fenced block is a recipe.
RECIPES = {"deploy.md"}
TEST_REF = re.compile(r"(tests/[\w/]+\.py)((?:::\w+)+)?")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_stay_in_the_repository_and_resolve(page: Path) -> None:
    """Each relative link has no ../, names a file that exists, and its #anchor is a heading."""
    for target in _links(page):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        assert "../" not in target, f"{page.name}: {target} leaves the page's tree"
        path, _, anchor = target.partition("#")
        found = (page.parent / path) if path else page
        assert found.exists(), f"{page.name}: {target} names no file"
        if anchor:
            assert found.suffix == ".md", f"{page.name}: {target}"
            assert anchor in _anchors(found), f"{page.name}: {target}: no such heading"


def _blocks(page: Path) -> list[tuple[int, str, str]]:
    """(line number, language, the paragraph or comment right before) of each fenced block."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, inside = [], False
    for n, line in enumerate(lines):
        if not line.startswith("```"):
            continue
        if inside:
            inside = False
            continue
        inside = True
        before, k = [], n - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        while k >= 0 and lines[k].strip() and not lines[k].startswith("```"):
            before.insert(0, lines[k])
            k -= 1
        found.append((n + 1, line[3:].strip(), "\n".join(before)))
    return found


def _test_exists(path: str, names: str | None) -> bool:
    file = ROOT / path
    if not file.exists():
        return False
    text = file.read_text(encoding="utf-8")
    return all(re.search(rf"def {name}\b", text) for name in (names or "").split("::")[1:])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_block_is_tested_or_marked_an_example(page: Path) -> None:
    """
    A shell, Python or Dockerfile block (any block on docs/deploy.md) follows
    a paragraph or comment naming an existing test (tests/....py::test_name)
    or saying "untested example".
    """
    for line, language, before in _blocks(page):
        if language not in COMMANDS and page.name not in RECIPES:
            continue
        where = f"{page.name}:{line} ({language or 'no language'})"
        if re.search(r"untested example", before, re.I):
            continue
        refs = TEST_REF.findall(before)
        assert refs, f"{where}: neither a test named before it nor 'untested example'"
        missing = [p + (n or "") for p, n in refs if not _test_exists(p, n)]
        assert not missing, f"{where}: no such test: {missing}"


def test_readme_opens_with_what_it_is_the_picture_and_the_two_commands() -> None:
    """What it is, the picture, `make run` and `make test` as before, the demo, a command, next."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = (
        "```sh\n"
        "make run    # install (venv, mosquitto) and run the gateway with etc/ocppgw.ini\n"
        "make test   # install and run lint, type checks and the whole test suite\n"
        "```\n"
    )
    order = [
        text.index("ocppgw is an OCPP-J gateway."),
        text.index("](docs/architecture.svg)"),
        text.index(commands),
        text.index("make demo\n"),
        text.index("ocppgw-ctl --config etc/ocppgw.ini call CP001 Reset"),
        text.index("## Where to go next"),
    ]
    assert order == sorted(order), order
    # The first screen: the picture and the commands within the first 20 lines.
    assert text[: text.index(commands) + len(commands)].count("\n") <= 20


def test_monitoring_page_explains_every_dashboard_panel() -> None:
    """docs/monitoring.md has a row for each panel of docs/grafana-dashboard.json, by its title."""
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    page = (ROOT / "docs" / "monitoring.md").read_text(encoding="utf-8")
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert titles and [t for t in titles if f"\n| {t} |" not in page] == []
