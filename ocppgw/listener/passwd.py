# -*- test-case-name: tests.unit.listener.test_passwd -*-
"""
``ocppgw-passwd``: manage the charge point credentials file.

    ocppgw-passwd --file FILE set IDENTITY            # password read from stdin
    ocppgw-passwd --file FILE set IDENTITY --hex KEY  # an OCPP 1.6 AuthorizationKey
    ocppgw-passwd --file FILE set IDENTITY --generate            # new key, printed once
    ocppgw-passwd --file FILE set IDENTITY --generate key        # the same
    ocppgw-passwd --file FILE set IDENTITY --generate password   # new 2.x password, printed once
    ocppgw-passwd --file FILE set IDENTITY --profile 2 --serial SN123
    ocppgw-passwd --file FILE delete IDENTITY
    ocppgw-passwd --file FILE list

``--profile N`` registers the identity at security profile N (1-3): listeners
of a lower profile refuse it (A00.FR.005).  A new identity gets profile 1; an
existing one keeps its profile (and serial) unless told otherwise, so a
password change never lowers it.

A password has 16 to 40 characters and a ``--hex`` key 16 to 20 bytes (32-40
hex digits), as the OCPP 1.6 security whitepaper (A00.FR.205, §7.2) and
2.0.1 (BasicAuthPassword) ask.  ``--weak`` stores one outside that range for
a legacy charger that cannot take better; the file marks it ``weak`` and the
gateway counts such entries in its log at every load.
"""

from __future__ import annotations

import argparse
import binascii
import os
import secrets
import sys

from ocppgw.listener.credentials import CredentialsError, make_entry, read_file, write_file
from ocppgw.ocpp.identity import IdentityError, check_identity

#: The 2.0.1 passwordString characters (alphanumerics and the identifierString
#: specials), without ':' so that no charger splitting "user:password" on the
#: last colon can get it wrong.
PASSWORD_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + "*-_=+|@."


def generate_key() -> str:
    """A 1.6 AuthorizationKey: 20 random bytes as 40 hex digits (A00.FR.205, §7.2)."""
    return secrets.token_hex(20)


def generate_password(length: int = 40) -> str:
    """A 2.x BasicAuthPassword: ``length`` (16-40) random passwordString characters."""
    if not 16 <= length <= 40:
        raise ValueError("a BasicAuthPassword has 16 to 40 characters")
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


#: OCPP 2.0.1 BasicAuthPassword, 1.6 security whitepaper §7.2: 16-40 characters.
MIN_PASSWORD, MAX_PASSWORD = 16, 40
#: A00.FR.205: a key of at least 16 bytes; the AuthorizationKey holds 20 at most.
MIN_KEY_BYTES, MAX_KEY_BYTES = 16, 20

_ADVICE = "use --generate for a good one, or --weak for a legacy charger that cannot take it"


def _fail(message: str) -> int:
    print(f"ocppgw-passwd: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ocppgw-passwd",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--file", required=True, help="the credentials file ([auth] credentials)")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("set", help="add an identity or change its password")
    s.add_argument("identity")
    how = s.add_mutually_exclusive_group()
    how.add_argument(
        "--hex",
        metavar="KEY",
        help="an OCPP 1.6 AuthorizationKey in hex (the raw bytes are the password)",
    )
    how.add_argument(
        "--generate",
        nargs="?",
        const="key",
        choices=("key", "password"),
        help="make one and print it once: key (the default) = a 1.6 AuthorizationKey "
        "(40 hex digits, which 2.x chargers can use as their password), "
        "password = a 2.x BasicAuthPassword (--length characters)",
    )
    s.add_argument("--length", type=int, default=40, help="length of a generated password (16-40)")
    s.add_argument(
        "--profile",
        type=int,
        choices=(1, 2, 3),
        help="the security profile (new identities: 1; existing keep theirs)",
    )
    s.add_argument(
        "--serial",
        help="the charge point's serial number, for listeners with cert_identity = serial",
    )
    s.add_argument(
        "--weak",
        action="store_true",
        help="accept a password outside 16-40 characters (a --hex key under 16 bytes) "
        "for a legacy charger; the entry is marked weak",
    )
    d = sub.add_parser("delete", help="remove an identity")
    d.add_argument("identity")
    sub.add_parser("list", help="list the identities and their profiles")
    args = parser.parse_args(argv)

    try:
        entries = read_file(args.file) if os.path.exists(args.file) else {}
    except CredentialsError as e:
        return _fail(str(e))

    if args.command == "list":
        for identity in sorted(entries):
            entry = entries[identity]
            extra = f"\tserial={entry.serial}" if entry.serial is not None else ""
            extra += "\tweak" if entry.weak else ""
            print(f"{identity}\tprofile={entry.profile}{extra}")
        return 0
    try:
        check_identity(args.identity)
    except IdentityError as e:
        return _fail(f"{args.identity!r}: {e}")
    if args.command == "delete":
        if args.identity not in entries:
            return _fail(f"no such identity: {args.identity}")
        del entries[args.identity]
        write_file(args.file, entries)
        return 0
    shown = None
    weak = False
    if args.generate == "key":
        shown = generate_key()
        password = binascii.unhexlify(shown)
    elif args.generate == "password":
        try:
            shown = generate_password(args.length)
        except ValueError as e:
            return _fail(f"--length: {e}")
        password = shown.encode("ascii")
    elif args.hex is not None:
        key = args.hex.strip()
        try:
            password = binascii.unhexlify(key)
        except (binascii.Error, ValueError):
            return _fail("--hex: not an even number of hexadecimal digits")
        if not 1 <= len(password) <= MAX_KEY_BYTES:
            return _fail("--hex: an AuthorizationKey is at most 20 bytes (40 hex digits)")
        weak = len(password) < MIN_KEY_BYTES
        if weak and not args.weak:
            return _fail(
                f"--hex: the key has {len(password)} bytes; the OCPP security whitepaper "
                f"asks for at least {MIN_KEY_BYTES} (A00.FR.205): {_ADVICE}"
            )
    else:
        text = sys.stdin.readline().rstrip("\r\n")
        if not text:
            return _fail("no password on standard input")
        password = text.encode("utf-8")
        weak = not MIN_PASSWORD <= len(text) <= MAX_PASSWORD
        if weak and not args.weak:
            return _fail(
                f"the password has {len(text)} characters; OCPP asks for "
                f"{MIN_PASSWORD} to {MAX_PASSWORD} (BasicAuthPassword, A00.FR.205): {_ADVICE}"
            )
    old = entries.get(args.identity)
    profile = args.profile or (old.profile if old is not None else 1)
    serial: str | None = old.serial if old is not None else None
    if args.serial is not None:
        if not args.serial:
            return _fail("--serial: must not be empty")
        serial = args.serial
    entries[args.identity] = make_entry(args.identity, password, profile, serial, weak)
    write_file(args.file, entries)
    if shown is not None:
        # Printed once: only the salted hash is kept.
        print(shown)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
