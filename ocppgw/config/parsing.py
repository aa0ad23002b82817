# -*- test-case-name: tests.unit.config.test_config,tests.unit.config.test_admin_config -*-
"""
Reading the INI file: :func:`parse` checks every section and key against
:data:`~ocppgw.config.keys.SECTIONS` and parses each value, then builds the
typed values of :mod:`ocppgw.config.model` (:func:`~ocppgw.config.mapping.build`);
:func:`load` reads the file first.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping

from ocppgw.config import model
from ocppgw.config.declaration import Key, Section, Values
from ocppgw.config.keys import SECTIONS
from ocppgw.config.mapping import build
from ocppgw.config.values import ConfigError


def _spec_for(section: str) -> Section | None:
    if section in SECTIONS and not section.endswith(":"):
        return SECTIONS[section]
    base, sep, suffix = section.partition(":")
    if sep and suffix and base + ":" in SECTIONS:
        return SECTIONS[base + ":"]
    return None


def _read(parser: configparser.ConfigParser) -> dict[str, Values]:
    """Every section of the file, each key parsed, defaults filled in."""
    out: dict[str, Values] = {}
    for section in parser.sections():
        found = _spec_for(section)
        if found is None:
            known = ", ".join(f"[{s}NAME]" if s.endswith(":") else f"[{s}]" for s in SECTIONS)
            raise ConfigError(f"[{section}]: unknown section; known sections: {known}")
        out[section] = _read_section(parser, section, found.keys)
    for name, spec in SECTIONS.items():
        if not name.endswith(":") and name not in out:
            out[name] = {
                k: key.parse(key.default) for k, key in spec.keys.items() if key.default is not None
            }
    return out


def _read_section(
    parser: configparser.ConfigParser, section: str, keys: Mapping[str, Key]
) -> Values:
    values: Values = {}
    items = dict(parser.items(section, raw=True))
    for k in items:
        if k not in keys:
            raise ConfigError(
                f"[{section}] {k}: unknown key; known keys: {', '.join(sorted(keys))}"
            )
    for k, key in keys.items():
        raw = items.get(k)
        if raw is None:
            if key.default is None:
                raise ConfigError(f"[{section}] {k}: required key is missing")
            raw = key.default
        try:
            values[k] = key.parse(raw.strip())
        except ValueError as e:
            raise ConfigError(f"[{section}] {k}: {e}") from None
    return values


def parse(text: str, source: str = "<string>", base_dir: str = ".") -> model.Config:
    """
    The configuration in the INI ``text``; relative file names in it are
    relative to ``base_dir`` (the directory of the file).

    :raises ConfigError: the first problem, naming its section and key.
    """
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        parser.read_string(text, source=source)
    except configparser.Error as e:
        raise ConfigError(f"{source}: {e}") from None
    return build(model.Config, _read(parser), base_dir)


def load(path: str) -> model.Config:
    """The configuration in the file at ``path``; see :func:`parse`."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {path} is not UTF-8 text") from None
    return parse(text, source=path, base_dir=os.path.dirname(os.path.abspath(path)))
