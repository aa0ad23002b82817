"""
``ocppgw-passwd``: manage the charge point credentials file.

    ocppgw-passwd --file FILE set IDENTITY            # password read from stdin
    ocppgw-passwd --file FILE set IDENTITY --hex KEY  # an OCPP 1.6 AuthorizationKey
    ocppgw-passwd --file FILE delete IDENTITY
    ocppgw-passwd --file FILE list
"""

from __future__ import annotations

import argparse
import binascii
import os
import sys

from ocppgw.auth import CredentialsError, make_entry, read_file, write_file
from ocppgw.websocket import Refused, check_identity


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
    s.add_argument(
        "--hex",
        metavar="KEY",
        help="an OCPP 1.6 AuthorizationKey in hex (the raw bytes are the password)",
    )
    d = sub.add_parser("delete", help="remove an identity")
    d.add_argument("identity")
    sub.add_parser("list", help="list the identities")
    args = parser.parse_args(argv)

    try:
        entries = read_file(args.file) if os.path.exists(args.file) else {}
    except CredentialsError as e:
        return _fail(str(e))

    if args.command == "list":
        for identity in sorted(entries):
            print(f"{identity}\tprofile={entries[identity].profile}")
        return 0
    try:
        check_identity(args.identity)
    except Refused as e:
        return _fail(f"{args.identity!r}: {e.reason}")
    if args.command == "delete":
        if args.identity not in entries:
            return _fail(f"no such identity: {args.identity}")
        del entries[args.identity]
        write_file(args.file, entries)
        return 0
    if args.hex is not None:
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
    profile = entries[args.identity].profile if args.identity in entries else 1
    entries[args.identity] = make_entry(args.identity, password, profile)
    write_file(args.file, entries)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
