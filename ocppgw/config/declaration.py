# -*- test-case-name: tests.unit.config.test_declaration -*-
"""
How a configuration key is declared: :class:`Key`, in a :class:`Section`.

A key is declared once, in :data:`~ocppgw.config.keys.SECTIONS`, and all the
rest follows from that one declaration: how its value is read and its default
(:mod:`~ocppgw.config.parsing`), the model field it fills
(:mod:`~ocppgw.config.mapping`), and its entry in the reference file
etc/ocppgw.ini, with its comment (:mod:`~ocppgw.config.reference`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: The parsed keys of one section, by name.
Values = dict[str, Any]


@dataclass(frozen=True)
class Key:
    """One key of a section: its parser, default, model field and comment."""

    #: The key's raw string (stripped) to its typed value, or ValueError
    #: (:mod:`ocppgw.config.values`).
    parse: Callable[[str], Any]
    #: The default as it would be written in the file; None: the key is required.
    default: str | None
    #: The field of the section's model it fills, if not the one of its own name.
    field: str = ""
    #: True: it fills no field by itself; a derivation reads it
    #: (:mod:`~ocppgw.config.derived`).
    derived: bool = False
    #: True: an empty value is None in the model.
    optional: bool = False
    #: The value the reference file sets (not commented out), if any.
    example: str | None = None
    #: The comment above the key in the reference file; empty: none (the key
    #: shares the comment of the one before it).
    doc: str = ""

    def field_name(self, name: str) -> str | None:
        """The model field the key ``name`` fills; None if it is ``derived``."""
        if self.derived:
            return None
        return self.field or name


@dataclass(frozen=True)
class Section:
    """The keys of one section, the model they fill, and how the reference shows it."""

    #: The dataclass of :mod:`~ocppgw.config.model` its keys fill (several
    #: sections fill :class:`~ocppgw.config.model.Config` itself); None: every
    #: key is ``derived``.
    model: type[Any] | None
    keys: Mapping[str, Key]
    #: The comment above the section's header in the reference file.
    doc: str = ""
    #: A section that takes a suffix (``listener:``): the suffix the reference shows.
    suffix: str = ""
    #: The reference shows the section commented out, as an example.
    commented: bool = False
    #: At least one section of this suffixed kind is required.
    required: bool = False
