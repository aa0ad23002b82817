# -*- test-case-name: tests.unit.test_speedups -*-
"""
The optional speed-ups, and which of them run.

A speed-up uses a private part of a dependency (paho-mqtt, Autobahn, automat,
CPython's ``json``, prometheus-client) where profiling found the public path
slow.  Each lives in a module of its own beside the stage it serves (its
name ends ``_fast.py``), and each has a public path that is correct on its
own.  Before a speed-up is used, :func:`check` asks three things:

- is it wanted (the environment variable ``OCPPGW_SPEEDUPS`` is not ``off``);
- is the installed library a version it was tested with (its ``tested``
  range, a PEP 440 specifier);
- does the library have the shape it needs (its own ``shape`` check: the
  private names exist and behave as expected).

If any answer is no, the public path runs, and :func:`report` (called at
start-up) logs one line naming the speed-up, the library's version and why.
``/metrics`` shows each one (``ocppgw_speedup_enabled{name=...}``), and the
admin API's gateway view lists them.

Stage: below every other (it imports nothing of ocppgw, and no Twisted), so
any stage may ask it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

#: The environment variable that turns every speed-up off (``off``, ``0``,
#: ``no``, ``false``), or some of them (``-NAME``, separated by spaces or
#: commas, such as ``-paho_internals,-json_encoder``); anything else, or
#: nothing, leaves them on.
ENVIRONMENT = "OCPPGW_SPEEDUPS"

_OFF = frozenset({"off", "0", "no", "false"})
_ON = frozenset({"on", "1", "yes", "true"})


@dataclass(frozen=True)
class Speedup:
    """One speed-up's verdict."""

    #: Its name, as in ``ocppgw_speedup_enabled{name=...}``.
    name: str
    #: The distribution whose private part it uses (``python`` for the stdlib).
    library: str
    #: The installed version of that library.
    version: str
    #: The versions it was tested with (a PEP 440 specifier).
    tested: str
    #: Whether it runs.
    enabled: bool
    #: Why it does not run ("" when it does).
    why: str = ""


_checked: dict[str, Speedup] = {}


def wanted(environ: dict[str, str] | None = None, name: str | None = None) -> bool:
    """
    Whether speed-ups are wanted (``OCPPGW_SPEEDUPS`` is not ``off``) and,
    given a ``name``, that one (the variable does not hold ``-name``).
    """
    value = (os.environ if environ is None else environ).get(ENVIRONMENT, "")
    words = set(value.replace(",", " ").lower().split())
    if words & _OFF:
        return False
    return name is None or f"-{name.lower()}" not in words


def installed(library: str) -> str:
    """The installed version of ``library`` (``python``: the interpreter's)."""
    if library == "python":
        return platform.python_version()
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return "not installed"


def check(name: str, library: str, tested: str, shape: Callable[[], bool]) -> bool:
    """
    Whether the speed-up ``name`` may run: wanted, ``library``'s installed
    version within ``tested``, and ``shape()`` true (an exception counts as
    false).  The verdict is kept for :func:`report` and :func:`speedups`;
    a second check of the same name gives the first verdict.
    """
    known = _checked.get(name)
    if known is not None:
        return known.enabled
    version = installed(library)
    why = ""
    if not wanted():
        why = f"{ENVIRONMENT}=off"
    elif not wanted(name=name):
        why = f"{ENVIRONMENT} holds -{name}"
    elif not _within(version, tested):
        why = f"{library} {version} is not a version it was tested with ({tested})"
    else:
        try:
            fits = shape()
        except Exception as e:  # a library whose private parts changed
            fits, why = False, f"{type(e).__name__}: {e}"
        if not fits:
            why = f"{library} {version} lacks the private parts it needs" + (
                f" ({why})" if why else ""
            )
    _checked[name] = Speedup(name, library, version, tested, not why, why)
    return not why


def _within(version: str, tested: str) -> bool:
    try:
        return Version(version) in SpecifierSet(tested)
    except InvalidVersion:
        return False


def speedups() -> list[Speedup]:
    """Every speed-up checked so far, by name."""
    return [_checked[name] for name in sorted(_checked)]


def report(log: Callable[[str], None], environ: dict[str, str] | None = None) -> None:
    """
    One line for each speed-up that does not run, naming it, its library and
    why; and one for each word of ``OCPPGW_SPEEDUPS`` that means nothing (a
    ``-NAME`` naming no speed-up, or a typo), so a switch never fails silently.
    """
    for speedup in speedups():
        if not speedup.enabled:
            log(f"speed-up {speedup.name} is off, the public path runs: {speedup.why}")
    value = (os.environ if environ is None else environ).get(ENVIRONMENT, "")
    known = sorted(_checked)
    for word in value.replace(",", " ").split():
        lower = word.lower()
        if lower in _OFF or lower in _ON or (lower[:1] == "-" and lower[1:] in known):
            continue
        log(
            f"{ENVIRONMENT}: {word!r} means nothing here and is ignored; use off, or -NAME "
            f"with NAME one of {', '.join(known)}"
        )


def forget() -> None:
    """Forget every verdict (tests only: each check runs again)."""
    _checked.clear()


__all__ = ["ENVIRONMENT", "Speedup", "check", "forget", "installed", "report", "speedups", "wanted"]
