# -*- test-case-name: tests.unit.ocpp.test_validation,tests.unit.router.test_protobuf_roundtrip -*-
"""
Where the OCPP JSON schema files are, which actions they describe, and reading one.

This is the one module that locates schema files: the validator
(:mod:`ocppgw.ocpp.validation`) reads the set it is configured with, the
protobuf mapping (:mod:`ocppgw.wire.protobuf.schema`, and through it
``tools/genproto.py``) always the packaged one, :func:`packaged`, which the
generated modules match.

Locations
    By default the schemas shipped as package data of the PyPI ``ocpp``
    package (``ocpp/v16/schemas``, ``ocpp/v201/schemas``, ``ocpp/v21/schemas``)
    are used; they are located with :func:`importlib.resources.files`, which
    imports only ``ocpp/__init__.py`` (empty), not the library itself.  A
    ``schema_dir`` override holds ``v16/``, ``v201/`` and ``v21/``
    subdirectories with the same file names (``v16/schemas/`` etc. also
    works, so the ``ocpp`` package directory itself can be named).  The
    override replaces the packaged schemas; there is no fall-back to them.

File names
    1.6 ``<Action>.json`` (request) and ``<Action>Response.json``; 2.x
    ``<Action>Request.json`` and ``<Action>Response.json``, plus
    ``<Action>.json`` for a 2.1 SEND-only message with no response
    (``NotifyPeriodicEventStream``, 2.1 Part 4 §4.2.5).  An action has a
    request schema; a name ending in ``Request`` or ``Response`` is a schema's,
    not an action's.  Actions are looked up in a listing of the directory,
    never joined into a path, so an Action from the wire cannot name another
    file.  Files are read as ``utf-8-sig``: some published schema sets start
    with a byte-order mark.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from ocppgw.ocpp.versions import OCPP16, OCPP21, OCPP201

#: The subdirectory of each version, in the ``ocpp`` package and an override;
#: also the name of its ``.proto`` file and protobuf package (``ocppgw.v16``).
VERSION_DIRS: Mapping[str, str] = {OCPP16: "v16", OCPP201: "v201", OCPP21: "v21"}

JSONSchema = dict[str, Any]

#: The request schema file of an action, and its response schema file if any.
ActionFiles = tuple[str, str | None]


class SchemaError(Exception):
    """A schema file that cannot be read or is not a valid JSON schema."""


class SchemaSet:
    """
    The schema files of every version, in the ``ocpp`` package or ``schema_dir``.

    Directories are listed on first use and the listing kept; a file is read
    each time it is loaded.

    :param schema_dir: a directory with ``v16/``, ``v201/`` and ``v21/``
        subdirectories of schema files, used instead of the ``ocpp`` package's.
    :raises ValueError: ``schema_dir`` is not a directory or holds none of the
        version subdirectories.
    """

    def __init__(self, schema_dir: str | None = None) -> None:
        self._roots = _packaged_roots() if schema_dir is None else _override_roots(schema_dir)
        self._files: dict[str, frozenset[str]] = {}
        self._actions: dict[str, Mapping[str, ActionFiles]] = {}

    def files(self, version: str) -> frozenset[str]:
        """
        The names of every schema file of ``version`` (none if it has no directory).

        :raises ValueError: ``version`` is not one of the supported versions.
        """
        files = self._files.get(version)
        if files is None:
            root = self._root(version)
            if root is None or not root.is_dir():
                files = frozenset()
            else:
                files = frozenset(
                    entry.name
                    for entry in root.iterdir()
                    if entry.name.endswith(".json") and entry.is_file()
                )
            self._files[version] = files
        return files

    def actions(self, version: str) -> Mapping[str, ActionFiles]:
        """
        Every action of ``version``, sorted, with its schema file names.

        :raises ValueError: ``version`` is not one of the supported versions.
        """
        found = self._actions.get(version)
        if found is None:
            found = self._actions[version] = _pair(version, self.files(version))
        return found

    def file_name(self, version: str, action: str, request: bool) -> str | None:
        """
        The schema file of ``action``'s request (or response), or ``None``.

        :raises ValueError: ``version`` is not one of the supported versions.
        """
        files = self.actions(version).get(action)
        if files is None:
            return None
        return files[0] if request else files[1]

    def load(self, version: str, name: str) -> JSONSchema:
        """
        The schema in file ``name`` of ``version`` (a name :meth:`files` lists).

        :raises SchemaError: the file cannot be read, or holds no JSON object.
        """
        root = self._root(version)
        assert root is not None
        try:
            schema = json.loads((root / name).read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as e:
            raise SchemaError(f"{version} schema {name}: {e}") from e
        if not isinstance(schema, dict):
            raise SchemaError(f"{version} schema {name}: not a JSON object")
        return schema

    def _root(self, version: str) -> Traversable | None:
        try:
            return self._roots[version]
        except KeyError:
            raise ValueError(
                f"unknown OCPP version {version!r}; known: {', '.join(VERSION_DIRS)}"
            ) from None


@cache
def packaged() -> SchemaSet:
    """The schemas of the ``ocpp`` package, which the protobuf mapping is made from."""
    return SchemaSet()


def _packaged_roots() -> dict[str, Traversable | None]:
    package = importlib.resources.files("ocpp")
    return {version: package / sub / "schemas" for version, sub in VERSION_DIRS.items()}


def _override_roots(schema_dir: str) -> dict[str, Traversable | None]:
    base = Path(schema_dir)
    if not base.is_dir():
        raise ValueError(f"schema directory {schema_dir!r} does not exist")
    roots: dict[str, Traversable | None] = {}
    for version, sub in VERSION_DIRS.items():
        nested = base / sub / "schemas"
        root = nested if nested.is_dir() else base / sub
        roots[version] = root if root.is_dir() else None
    if not any(roots.values()):
        raise ValueError(
            f"schema directory {schema_dir!r} has none of the subdirectories "
            + ", ".join(VERSION_DIRS.values())
        )
    return roots


def _pair(version: str, names: Iterable[str]) -> dict[str, ActionFiles]:
    """The actions that schema files ``names`` describe (see the module docstring)."""
    requests: dict[str, str] = {}
    responses: dict[str, str] = {}
    # Sorted, a 2.x <Action>Request.json comes after <Action>.json and wins.
    for name in sorted(names):
        stem = name.removesuffix(".json")
        if stem.endswith("Response"):
            responses[stem.removesuffix("Response")] = name
        elif version != OCPP16 and stem.endswith("Request"):
            requests[stem.removesuffix("Request")] = name
        else:
            # 1.6 names requests after the action; 2.1 names its one SEND
            # (NotifyPeriodicEventStream) the same way.
            requests[stem] = name
    return {
        action: (request, responses.get(action))
        for action, request in sorted(requests.items())
        if action and not action.endswith(("Request", "Response"))
    }


__all__ = ["VERSION_DIRS", "ActionFiles", "JSONSchema", "SchemaError", "SchemaSet", "packaged"]
