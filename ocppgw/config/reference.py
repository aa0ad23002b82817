# -*- test-case-name: tests.unit.config.test_reference -*-
"""
The reference file etc/ocppgw.ini, rendered from the declaration of the keys
(:data:`~ocppgw.config.keys.SECTIONS`): every section and key, its default
(commented out) or its example value, and the comment of each.

``make ini`` (``python -m ocppgw.config.reference > etc/ocppgw.ini``) writes
it; ocppgw/ocppgw.ini, the copy shipped in the package, is a link to it.
"""

from __future__ import annotations

import inspect
import sys

from ocppgw.config.declaration import Section
from ocppgw.config.keys import PREAMBLE, SECTIONS

#: The command that writes the reference file, for messages that ask for it.
COMMAND = "make ini"


def render() -> str:
    """The text of the reference file."""
    blocks = [_comment(PREAMBLE)]
    blocks += [_section(name, section) for name, section in SECTIONS.items()]
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"


def _section(name: str, section: Section) -> list[str]:
    """A section's comment, its header and its keys; commented out if an example."""
    off = "#" if section.commented else ""
    lines = [*_comment(section.doc), f"{off}[{name}{section.suffix}]"]
    for key_name, key in section.keys.items():
        lines += _comment(key.doc)
        if key.example is not None:
            lines.append(f"{off}{key_name} = {key.example}")
        else:
            lines.append(f"#{key_name} =" + (f" {key.default}" if key.default else ""))
    return lines


def _comment(doc: str) -> list[str]:
    """The lines of ``doc`` (indented like a docstring) as INI comment lines."""
    if not doc:
        return []
    return [f"# {line}" if line else "#" for line in inspect.cleandoc(doc).split("\n")]


if __name__ == "__main__":
    sys.stdout.write(render())
