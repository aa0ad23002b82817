# -*- test-case-name: tests.unit.listener.test_passwd,tests.unit.listener.test_admission -*-
"""
Charge point credentials: salted hashes, never plaintext.

The credentials file holds one identity a line::

    # identity  hash                                   options
    CP001       sha256$<salt, base64>$<digest, base64>  profile=1
    CP002       sha256$<salt, base64>$<digest, base64>  profile=3 serial=SN%2012
    CP003       sha256$<salt, base64>$<digest, base64>  profile=1 weak

``profile`` is the security profile the identity is registered at (a listener
of a lower profile refuses it, A00.FR.005); ``serial`` (percent-encoded) is
the charge point's serial number, which its client certificate's CN must hold
on a listener with ``cert_identity = serial`` (A00.FR.405).  ``weak`` marks a
password outside the whitepaper's 16-40 characters (a 1.6 key under 16
bytes), stored with ``ocppgw-passwd --weak`` for a legacy charger; the
gateway logs how many it loaded.  A file without it reads as before.

A line that does not parse is reported by file and line number only: what
is on it may be a password pasted in by mistake (SEC A01.FR.08/09).

The identity is percent-encoded (so it may contain any character, spaces and
``:`` included).  The digest is SHA-256 over salt + password bytes.  A fast
hash is deliberate: OCPP passwords are machine-made random keys of 16 bytes
or more (OCPP 1.6 security whitepaper A00.FR.205, 2.0.1 BasicAuthPassword of
16-40 characters), so brute force is met by their entropy and by rate limits,
and handshake storms must stay cheap.

HTTP Basic (RFC 7617) gives the password as bytes.  OCPP 1.6 sends the
AuthorizationKey as its raw bytes (OCPP-J 1.6 §6.2.2: "20-byte key"); some
chargers send its hex text instead.  A presented password is therefore also
tried hex-decoded, so a key stored with ``--hex`` works either way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass
from urllib.parse import quote, unquote

from twisted.logger import Logger

_log = Logger()

SCHEME = "sha256"
_HEX = re.compile(rb"(?:[0-9A-Fa-f]{2})+")


class CredentialsError(Exception):
    """The credentials file cannot be read; the text names file and line."""


@dataclass(frozen=True)
class Entry:
    identity: str
    salt: bytes
    digest: bytes
    #: The security profile the identity is registered at (OCPP A00.FR.005).
    profile: int = 1
    #: The serial number its client certificate's CN holds (A00.FR.405), if recorded.
    serial: str | None = None
    #: Outside the whitepaper's 16-40 characters: stored with ``--weak``.
    weak: bool = False

    def matches(self, password: bytes) -> bool:
        candidates = [password]
        if _HEX.fullmatch(password):
            candidates.append(binascii.unhexlify(password))
        ok = False
        for candidate in candidates:
            ok |= hmac.compare_digest(_digest(self.salt, candidate), self.digest)
        return ok

    def line(self) -> str:
        b64 = base64.b64encode
        return (
            f"{quote(self.identity, safe='')} "
            f"{SCHEME}${b64(self.salt).decode()}${b64(self.digest).decode()} "
            f"profile={self.profile}"
            + (f" serial={quote(self.serial, safe='')}" if self.serial is not None else "")
            + (" weak" if self.weak else "")
        )


def _digest(salt: bytes, password: bytes) -> bytes:
    return hashlib.sha256(salt + password).digest()


def make_entry(
    identity: str,
    password: bytes,
    profile: int = 1,
    serial: str | None = None,
    weak: bool = False,
) -> Entry:
    """A new entry for ``identity`` with a fresh random salt."""
    salt = secrets.token_bytes(16)
    return Entry(identity, salt, _digest(salt, password), profile, serial, weak)


def parse_line(line: str, where: str) -> Entry | None:
    """The entry on one line of the file, None for blank and comment lines."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields = text.split()
    if len(fields) < 2:
        raise CredentialsError(
            f"{where}: expected IDENTITY HASH [profile=N] [serial=S] [weak]; "
            "set passwords with ocppgw-passwd, never by hand"
        )
    identity = unquote(fields[0])
    scheme, _, rest = fields[1].partition("$")
    salt_b64, _, digest_b64 = rest.partition("$")
    if scheme != SCHEME or not rest:
        # Not echoed: a plaintext password pasted in would land in the log.
        raise CredentialsError(
            f"{where}: the second field is not a {SCHEME}$SALT$DIGEST hash; "
            "set passwords with ocppgw-passwd, never by hand"
        )
    try:
        salt = base64.b64decode(salt_b64, validate=True)
        digest = base64.b64decode(digest_b64, validate=True)
    except binascii.Error:
        raise CredentialsError(f"{where}: hash is not valid base64") from None
    if len(digest) != 32 or not salt:
        raise CredentialsError(f"{where}: hash has the wrong length")
    profile = 1
    serial = None
    weak = False
    for n, option in enumerate(fields[2:], 3):
        key, _, value = option.partition("=")
        if key == "profile" and value in ("1", "2", "3"):
            profile = int(value)
        elif key == "serial" and value:
            serial = unquote(value)
        elif option == "weak":
            weak = True
        else:
            # Not echoed, for the same reason as a bad hash.
            raise CredentialsError(
                f"{where}: field {n} is not an option (expected profile=1|2|3, serial=S or weak)"
            )
    return Entry(identity, salt, digest, profile, serial, weak)


def read_file(path: str) -> dict[str, Entry]:
    """Every entry of the credentials file at ``path``."""
    entries: dict[str, Entry] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                entry = parse_line(line, f"{path}:{n}")
                if entry is not None:
                    entries[entry.identity] = entry
    except OSError as e:
        raise CredentialsError(f"cannot read credentials file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"credentials file {path} is not UTF-8 text") from None
    return entries


def write_file(path: str, entries: dict[str, Entry]) -> None:
    """Replace the file at ``path`` atomically, readable by its owner only."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(
            "# ocppgw credentials: IDENTITY (percent-encoded) HASH [profile=N] [serial=S] [weak]\n"
        )
        for identity in sorted(entries):
            f.write(entries[identity].line() + "\n")
    os.replace(tmp, path)


class Credentials:
    """
    The credentials file, re-read when it changes on disk, so that
    ``ocppgw-passwd`` takes effect without a restart.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        #: (mtime, size) of the file last tried, good or not.
        self._stamp: tuple[float, int] | None = None
        self._entries: dict[str, Entry] = {}
        self.reload()

    def reload(self) -> None:
        """
        Read the file now; a bad file keeps the previous entries and raises.
        Either way the file as it is now counts as tried: a broken file is
        not re-read on every handshake, only once it changes again.
        """
        try:
            st = os.stat(self._path)
        except OSError as e:
            raise CredentialsError(
                f"cannot read credentials file {self._path}: {e.strerror}"
            ) from None
        self._stamp = (st.st_mtime, st.st_size)
        if not stat.S_ISREG(st.st_mode):
            # A FIFO or device would block the reactor in open().
            raise CredentialsError(f"credentials file {self._path} is not a regular file")
        self._entries = read_file(self._path)
        weak = self.weak()
        # SEC §7.2 / A00.FR.205: 16-40 characters; a legacy charger's shorter
        # password is allowed with --weak, and said here at every load.
        (_log.warn if weak else _log.info)(
            "[auth] credentials loaded: {n} identities, {weak} weak "
            "(passwords outside 16-40 characters, set with ocppgw-passwd --weak)",
            n=len(self._entries),
            weak=weak,
        )

    def weak(self) -> int:
        """How many of the loaded entries are marked weak."""
        return sum(1 for entry in self._entries.values() if entry.weak)

    def _fresh(self) -> None:
        try:
            st = os.stat(self._path)
        except OSError:
            return
        if (st.st_mtime, st.st_size) != self._stamp:
            try:
                self.reload()
            except CredentialsError as e:
                # Logged once: the stamp of the broken file is remembered.
                _log.error("credentials file unusable, keeping the last good one: {e}", e=e)

    def get(self, identity: str) -> Entry | None:
        self._fresh()
        return self._entries.get(identity)

    def check(self, identity: str, password: bytes) -> bool:
        """True when ``password`` is ``identity``'s password."""
        return verify(self.get(identity), password)


def verify(entry: Entry | None, password: bytes) -> bool:
    """True when ``password`` is ``entry``'s; the same work when there is no entry."""
    if entry is None:
        # Spend the same work as a real check, so timing tells nothing.
        _digest(b"\0" * 16, password)
        return False
    return entry.matches(password)


def parse_basic(header: str, identity: str) -> bytes | None:
    """
    The password in an HTTP Basic ``Authorization`` header whose username is
    ``identity`` (A00.FR.204: the username equals the identity), else None.

    The credentials are split on the known ``identity:`` prefix rather than the
    first colon, since a 1.6 identity may itself hold a colon.
    """
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    prefix = identity.encode("utf-8") + b":"
    if not decoded.startswith(prefix):
        return None
    return decoded[len(prefix) :]
