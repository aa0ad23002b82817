# -*- test-case-name: tests.unit.forward.test_address -*-
"""
Where the central system is, for one charge point, and what it is told:

- ``${cid}`` in the URL is the identity with RFC 3986's unreserved characters
  (§2.3: ``A-Z a-z 0-9 - . _ ~``) kept and every other byte of its UTF-8
  percent-encoded (§2.1), so an identity can never change the URL's shape;
- the Authorization header: the charge point's own (``passthrough``), none,
  or HTTP Basic from the credentials file (RFC 7617); over plain ``ws://``
  none unless ``allow_plain_auth``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import quote, urlsplit


def upstream_url(template: str, identity: str) -> str:
    """``template`` with ``${cid}`` replaced by ``identity``, percent-encoded (RFC 3986 §2)."""
    return template.replace("${cid}", quote(identity, safe="", encoding="utf-8"))


def peer_of(url: str) -> str:
    """``host:port`` of a ws:// or wss:// URL (the default port of its scheme if none)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class CredentialsFileError(ValueError):
    """A credentials file that cannot be used; the text names the file and line."""


def read_credentials(path: str) -> Mapping[str, tuple[str, str]]:
    """
    The ``identity user password`` lines of ``path`` (``#`` comments and blank
    lines ignored), by identity.

    :raises CredentialsFileError: unreadable, or a line of another shape.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CredentialsFileError(f"cannot read {path}: {e}") from None
    out: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) != 3:
            raise CredentialsFileError(
                f"{path} line {number}: expected 'identity user password', got {len(words)} word(s)"
            )
        out[words[0]] = (words[1], words[2])
    return out


def authorization(
    mode: str,
    url: str,
    allow_plain: bool,
    identity: str,
    offered: str | None,
    credentials: Mapping[str, tuple[str, str]],
) -> str | None:
    """The Authorization header to send the central system, if any."""
    if mode == "none" or (url.startswith("ws:") and not allow_plain):
        return None
    if mode == "passthrough":
        return offered
    found = credentials.get(identity)
    if found is None:
        return None
    user, password = found
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"
