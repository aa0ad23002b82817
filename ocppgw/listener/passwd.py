# -*- test-case-name: tests.unit.listener.test_passwd -*-
"""
``ocppgw-passwd``: manage the charge point credentials file.

    ocppgw-passwd --file FILE set IDENTITY            # password read from stdin
    ocppgw-passwd --file FILE set IDENTITY --hex KEY  # an OCPP 1.6 AuthorizationKey
    ocppgw-passwd --file FILE set IDENTITY --generate key        # new 1.6 key, printed once
    ocppgw-passwd --file FILE set IDENTITY --generate password   # new 2.x password, printed once
    ocppgw-passwd --file FILE set IDENTITY --profile 2 --serial SN123
    ocppgw-passwd --file FILE delete IDENTITY
    ocppgw-passwd --file FILE list

``--profile N`` registers the identity at security profile N (1-3): listeners
of a lower profile refuse it (A00.FR.005).  A new identity gets profile 1; an
existing one keeps its profile (and serial) unless told otherwise, so a
password change never lowers it.
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
        choices=("key", "password"),
        help="make one and print it once: key = a 1.6 AuthorizationKey (40 hex digits), "
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
        if not 1 <= len(password) <= 20:
            return _fail("--hex: an AuthorizationKey is at most 20 bytes (40 hex digits)")
    else:
        text = sys.stdin.readline().rstrip("\r\n")
        if not text:
            return _fail("no password on standard input")
        password = text.encode("utf-8")
    old = entries.get(args.identity)
    profile = args.profile or (old.profile if old is not None else 1)
    serial: str | None = old.serial if old is not None else None
    if args.serial is not None:
        if not args.serial:
            return _fail("--serial: must not be empty")
        serial = args.serial
    entries[args.identity] = make_entry(args.identity, password, profile, serial)
    write_file(args.file, entries)
    if shown is not None:
        # Printed once: only the salted hash is kept.
        print(shown)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
