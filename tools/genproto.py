#!/usr/bin/env python
# -*- test-case-name: tests.unit.router.test_protobuf_roundtrip -*-
"""
Generate proto/ocppgw_pb/v1/v16.proto, v201.proto, v21.proto from the OCPP
JSON schemas of the PyPI ``ocpp`` package, with the numbers locked in
proto/ocppgw_pb/v1/numbers.json (``tools/protonumbers.py``), then the Python
modules of every .proto there into ocppgw/wire/protobuf/generated/.

Run it as ``make proto``.  The schema files are found by ocppgw/ocpp/schemas.py;
the mapping rules live in ocppgw/wire/protobuf/schema.py (shared with
the converter) and are described in docs/protobuf.md; this tool only adds
names:

- a 2.x ``$ref`` definition keeps its name (``IdTokenType``); an inline object
  or enum (all of 1.6) is named after its property (``SampledValue``,
  ``MeasurandEnum``), qualified by its parent's name when the same name would
  stand for different shapes (``BootNotificationResponseStatusEnum``);
- enum values are prefixed with their enum's name, because protobuf scopes them
  as siblings of the enum (C++ rules), and carry their wire string in the
  ``(ocppgw_pb.v1.json_value)`` option;
- a field whose property the schema requires carries
  ``(ocppgw_pb.v1.required) = true``.

Usage: genproto.py [--proto-dir DIR] [--python-dir DIR] [--schema-dir DIR] [--lock FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocppgw.ocpp.schemas import VERSION_DIRS, JSONSchema, SchemaSet  # noqa: E402
from ocppgw.ocpp.versions import SUPPORTED  # noqa: E402
from ocppgw.wire.protobuf.schema import (  # noqa: E402
    Kind,
    Prop,
    actions,
    is_message,
    load,
    message_name,
    properties,
    resolve,
)

sys.path.insert(0, str(ROOT / "tools"))
import protonumbers  # noqa: E402

#: Where the .proto files are, below proto/: also their protobuf package, with dots.
PROTO_PATH = "ocppgw_pb/v1"
PACKAGE = PROTO_PATH.replace("/", ".")
LOCK = "numbers.json"
#: Hand-written .proto files in proto/ocppgw_pb/v1/, compiled with the generated ones.
HAND_WRITTEN = ("options.proto", "message.proto")
GENERATED_IMPORT = "ocppgw.wire.protobuf.generated"

_DESCRIPTIVE = {"description", "javaType", "comment", "$id", "title", "$schema", "default"}


def _shape(node: Any, root: JSONSchema, depth: int = 0) -> Any:
    """``node`` fully resolved, without descriptive keywords: equal shapes map equally."""
    if depth > 64:
        raise ValueError("schema nests too deep (recursive $ref?)")
    if isinstance(node, dict):
        if "$ref" in node:
            node, _ = resolve(node, root)
        return {k: _shape(v, root, depth + 1) for k, v in node.items() if k not in _DESCRIPTIVE}
    if isinstance(node, list):
        return [_shape(v, root, depth + 1) for v in node]
    return node


def _key(node: JSONSchema, root: JSONSchema) -> str:
    return json.dumps(_shape(node, root), sort_keys=True)


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def _upper_snake(text: str) -> str:
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", text)
    text = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")
    return text.upper()


@dataclass
class _Type:
    """One occurrence of a message or enum type in the schemas."""

    key: str
    short: str
    is_enum: bool
    node: JSONSchema
    root: JSONSchema
    parent: _Type | None
    #: The top-level message name, for a top-level occurrence.
    fixed: str | None = None
    children: dict[str, _Type] = field(default_factory=dict)
    name: str = ""


def _collect(
    node: JSONSchema, root: JSONSchema, occ: _Type, out: list[_Type], depth: int = 0
) -> None:
    if depth > 64:
        raise ValueError("schema nests too deep (recursive $ref?)")
    for prop in properties(node, root):
        if prop.kind not in (Kind.MESSAGE, Kind.ENUM):
            continue
        is_enum = prop.kind is Kind.ENUM
        short = prop.ref_name or (_cap(prop.name) + ("Enum" if is_enum else ""))
        child = _Type(_key(prop.schema, root), short, is_enum, prop.schema, root, occ)
        occ.children[prop.name] = child
        out.append(child)
        if not is_enum:
            _collect(prop.schema, root, child, out, depth + 1)


def _assign_names(tops: list[_Type], types: list[_Type]) -> None:
    """Give every occurrence its type name (see the module docstring)."""
    reserved = {t.fixed for t in tops}
    keys_of: dict[str, set[str]] = {}
    for t in types:
        keys_of.setdefault(t.short, set()).add(t.key)
    for t in tops:
        assert t.fixed is not None
        t.name = t.fixed
    taken: dict[str, str] = {}
    for t in types:  # parents come before their children in this list
        assert t.parent is not None and t.parent.name
        if len(keys_of[t.short]) == 1 and t.short not in reserved:
            t.name = t.short
        else:
            t.name = t.parent.name + t.short
        if taken.setdefault(t.name, t.key) != t.key or t.name in reserved:
            raise SystemExit(f"genproto: type name {t.name} stands for two shapes")


def _enum_prefix(t: _Type) -> str:
    return _upper_snake(re.sub(r"(EnumType|Enum|Type)$", "", t.name) or t.name)


def _enum_values(t: _Type) -> list[tuple[str, str]]:
    prefix = _enum_prefix(t)
    out: list[tuple[str, str]] = []
    used: set[str] = set()
    for value in t.node["enum"]:
        if not isinstance(value, str):
            raise SystemExit(f"genproto: enum {t.name} has a non-string value {value!r}")
        name = f"{prefix}_{_upper_snake(value) or 'VALUE'}"
        base, n = name, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        out.append((name, value))
    return out


def _reserved(numbers: dict[str, int], names: list[str]) -> list[str]:
    """The ``reserved`` statements of removed numbers and names (never given again)."""
    if not numbers:
        return []
    listed = ", ".join(str(n) for n in sorted(numbers.values()))
    quoted = ", ".join(json.dumps(n) for n in sorted(set(names)))
    return [f"  reserved {listed};", f"  reserved {quoted};"]


def _render_enum(t: _Type, lock: protonumbers.Numbers) -> str:
    prefix = _enum_prefix(t)
    lines = [f"enum {t.name} {{", f"  {prefix}_UNSPECIFIED = 0;"]
    values = [(lock.value(t.name, value), name, value) for name, value in _enum_values(t)]
    for number, name, value in sorted(values):
        lines.append(f"  {name} = {number} [({PACKAGE}.json_value) = {json.dumps(value)}];")
    removed = lock.reserved_values(t.name)
    lines += _reserved(removed, [f"{prefix}_{_upper_snake(v) or 'VALUE'}" for v in removed])
    lines.append("}")
    return "\n".join(lines)


_SCALARS = {Kind.STRING: "string", Kind.BOOL: "bool", Kind.NUMBER: "double"}


def _field_type(prop: Prop, t: _Type) -> str:
    if prop.kind in (Kind.MESSAGE, Kind.ENUM):
        return t.children[prop.name].name
    if prop.kind is Kind.INT:
        return "sint64" if prop.integer_signed else "int64"
    if prop.kind is Kind.JSON:
        return "bytes"
    return _SCALARS[prop.kind]


def _options(prop: Prop) -> str:
    options = []
    if "_" in prop.name:
        # protoc derives json_name by dropping underscores (limit_L2 -> limitL2);
        # OCPP's names must stay as they are.
        options.append(f'json_name = "{prop.name}"')
    if prop.required:
        options.append(f"({PACKAGE}.required) = true")
    return f" [{', '.join(options)}]" if options else ""


def _note(prop: Prop) -> str:
    if prop.kind is Kind.JSON:
        return "  // JSON"
    if prop.schema.get("format") == "date-time":
        return "  // date-time, as sent"
    return ""


def _render_message(t: _Type, lock: protonumbers.Numbers) -> str:
    lines = [f"message {t.name} {{"]
    for prop in properties(t.node, t.root):
        ftype = _field_type(prop, t)
        number = lock.field(t.name, prop.name)
        decl = f"{prop.name} = {number}{_options(prop)};{_note(prop)}"
        alt = prop.alt_name
        alt_number = None if alt is None else lock.field(t.name, alt, alt_of=number)
        if prop.repeated:
            lines.append(f"  repeated {ftype} {decl}")
            if alt:
                lines.append(f"  optional bool {alt} = {alt_number};  // present, empty")
        elif prop.choice_name:
            note = "raw string" if prop.kind is Kind.ENUM else "exact text"
            lines += [
                f"  oneof {prop.choice_name} {{",
                f"    {ftype} {decl}",
                f"    string {alt} = {alt_number};  // {note}",
                "  }",
            ]
        elif prop.required or prop.kind is Kind.MESSAGE:
            lines.append(f"  {ftype} {decl}")
        else:
            lines.append(f"  optional {ftype} {decl}")
    removed = lock.reserved_fields(t.name)
    lines += _reserved(removed, list(removed))
    lines.append("}")
    return "\n".join(lines)


def render_version(
    version: str, lock: protonumbers.Numbers, schemas: SchemaSet | None = None
) -> str:
    """The .proto text of one OCPP version, numbered by (and extending) ``lock``."""
    vdir = VERSION_DIRS[version]
    tops: list[_Type] = []
    types: list[_Type] = []
    for action, (req, resp) in actions(version, schemas).items():
        for is_request, present in ((True, req), (False, resp)):
            if present is None:
                continue
            root = load(version, action, is_request, schemas)
            assert root is not None
            if not is_message(root):
                raise SystemExit(f"genproto: {version} {present} is not a closed object")
            top = _Type("", "", False, root, root, None, fixed=message_name(action, is_request))
            tops.append(top)
            _collect(root, root, top, types)
    _assign_names(tops, types)
    blocks = [_render_message(t, lock) for t in tops]
    seen: dict[str, str] = {}
    for t in sorted(types, key=lambda t: t.name):
        text = _render_enum(t, lock) if t.is_enum else _render_message(t, lock)
        if seen.setdefault(t.name, text) != text:
            raise SystemExit(f"genproto: {t.name} renders two ways")
    blocks += [seen[n] for n in sorted(seen)]
    header = [
        f"// OCPP {version[4:]} payloads: one <Action>Request and <Action>Response message",
        "// per action.  Generated by tools/genproto.py from the JSON schemas of the",
        "// PyPI ocpp package, numbered as numbers.json locks them; do not edit, run",
        "// `make proto`.  Mapping: docs/protobuf.md.",
        'syntax = "proto3";',
        "",
        f"package {PACKAGE}.{vdir};",
        "",
        f'import "{PROTO_PATH}/options.proto";',
        "",
        f'option go_package = "{PROTO_PATH}/{vdir};{vdir}pb";',
        "",
    ]
    return "\n".join(header) + "\n" + "\n\n".join(blocks) + "\n"


def _fix_imports(text: str) -> str:
    # protoc writes `from ocppgw_pb.v1 import x_pb2`; the gateway's copies live
    # in its own package (a backend's protoc output keeps the import as it is).
    return re.sub(
        rf"^from {re.escape(PACKAGE)} import ", f"from {GENERATED_IMPORT} import ", text, flags=re.M
    )


def generate(
    proto_dir: Path,
    python_dir: Path,
    schemas: SchemaSet | None = None,
    lock_file: Path | None = None,
) -> None:
    """
    Write the version .proto files and the extended lock into
    ``proto_dir``/ocppgw_pb/v1, and the Python modules of all into ``python_dir``.
    """
    src = ROOT / "proto" / PROTO_PATH
    out = proto_dir / PROTO_PATH
    out.mkdir(parents=True, exist_ok=True)
    for name in HAND_WRITTEN:
        if (out / name).resolve() != (src / name).resolve():
            shutil.copyfile(src / name, out / name)
    locks = protonumbers.read(lock_file or src / LOCK)
    for version in SUPPORTED:
        lock = locks.setdefault(VERSION_DIRS[version], protonumbers.Numbers())
        text = render_version(version, lock, schemas)
        (out / f"{VERSION_DIRS[version]}.proto").write_text(text)
    protonumbers.write(out / LOCK, locks)
    protos = [*HAND_WRITTEN, *(f"{VERSION_DIRS[v]}.proto" for v in SUPPORTED)]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={tmp}"]
        subprocess.run([*cmd, *(f"{proto_dir}/{PROTO_PATH}/{p}" for p in protos)], check=True)
        python_dir.mkdir(parents=True, exist_ok=True)
        init = python_dir / "__init__.py"
        init.write_text(
            f'"""Modules generated by protoc from proto/{PROTO_PATH}/; run `make proto`."""\n'
        )
        for p in protos:
            name = p.replace(".proto", "_pb2.py")
            text = (Path(tmp) / PROTO_PATH / name).read_text()
            (python_dir / name).write_text(_fix_imports(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proto-dir", type=Path, default=ROOT / "proto")
    default_python = ROOT / "ocppgw/wire/protobuf/generated"
    parser.add_argument("--python-dir", type=Path, default=default_python)
    parser.add_argument(
        "--schema-dir", help="OCPP schemas (v16/, v201/, v21/) instead of the ocpp package's"
    )
    parser.add_argument(
        "--lock", type=Path, help=f"the numbers to keep (default proto/{PROTO_PATH}/{LOCK})"
    )
    args = parser.parse_args()
    schemas = None if args.schema_dir is None else SchemaSet(args.schema_dir)
    generate(args.proto_dir, args.python_dir, schemas, args.lock)


if __name__ == "__main__":
    main()
