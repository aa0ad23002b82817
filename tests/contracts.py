"""
An import-linter contract type of our own: no module but the allowed ones
imports the global reactor.

import-linter sees external packages only as a whole (``twisted``), so the
contract reads the import lines it records for each import of ``twisted``.
Logic gets time and I/O through an injected reactor (STYLE.md's habit of
Twisted's own application code); only ``twistd``'s entry point may take the
global one.
"""

from __future__ import annotations

import re
from typing import Any

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck

#: ``from twisted.internet import reactor`` (also in a parenthesised list),
#: ``import twisted.internet.reactor``, ``from twisted.internet.reactor import ...``.
_GLOBAL_REACTOR = re.compile(
    r"from\s+twisted\.internet\s+import\s+\(?[^#]*\breactor\b"
    r"|import\s+twisted\.internet\.reactor\b"
    r"|from\s+twisted\.internet\.reactor\s+import\b"
)


class GlobalReactorContract(Contract):
    """
    Only ``allowed_modules`` import ``twisted.internet.reactor``.

    Configuration options:
        - allowed_modules: the modules that may import the global reactor.
    """

    type_name = "global_reactor"

    allowed_modules = fields.SetField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        allowed = {str(m) for m in self.allowed_modules}  # type: ignore[attr-defined]
        root = self.session_options["root_packages"][0]
        offenders: list[dict[str, Any]] = []
        for importer in sorted(graph.find_descendants(root) | {root}):
            if importer in allowed or "twisted" not in graph.find_modules_directly_imported_by(
                importer
            ):
                continue
            for detail in graph.get_import_details(importer=importer, imported="twisted"):
                if _GLOBAL_REACTOR.search(detail["line_contents"]):
                    offenders.append(detail)
        return ContractCheck(kept=not offenders, metadata={"offenders": offenders})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for detail in check.metadata["offenders"]:
            output.print_error(
                f"{detail['importer']}:{detail['line_number']}: "
                f"{detail['line_contents'].strip()} (take the reactor as an argument)"
            )
            output.new_line()
