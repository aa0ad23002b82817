"""The revocation lists of a profile 3 listener (``tls_crl``): reading, checking, re-reading."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ocppgw.listener.crl import CRLError, RevocationLists
from tests.certs import CA


def lists(ca_file: Path, *paths: Path, on_expired: str = "refuse",
          changes: list[int] | None = None) -> RevocationLists:
    seen = changes if changes is not None else []
    return RevocationLists("[listener:t]", [str(p) for p in paths], str(ca_file), on_expired,
                           time.time, lambda: seen.append(1))


def test_pem_der_and_several_lists(tmp_path: Path) -> None:
    """PEM and DER files, and a PEM file with two lists, all count; other serials do not."""
    one, two = CA("one"), CA("two")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(one.cert_pem() + two.cert_pem())
    a, b, c, good = one.issue("A"), one.issue("B"), two.issue("C"), one.issue("G")
    (tmp_path / "both.pem").write_bytes(one.crl((a.cert,)) + two.crl((c.cert,)))
    (tmp_path / "one.der").write_bytes(one.crl((b.cert,), der=True))
    crls = lists(ca_file, tmp_path / "both.pem", tmp_path / "one.der")
    assert crls.revoked(a.cert) and crls.revoked(b.cert) and crls.revoked(c.cert)
    assert not crls.revoked(good.cert)


def test_list_of_another_ca_is_refused(tmp_path: Path) -> None:
    """A list not signed by a CA of tls_ca is an error naming the file."""
    ca, rogue = CA(), CA("rogue")
    ca_file = ca.write(tmp_path / "ca.pem")
    (tmp_path / "rogue.crl").write_bytes(rogue.crl())
    with pytest.raises(CRLError, match=r"rogue\.crl: CRL of CN=rogue is not signed by a CA"):
        lists(ca_file, tmp_path / "rogue.crl")


def test_unreadable_list_is_refused(tmp_path: Path) -> None:
    """A file that holds no CRL is an error naming the file."""
    ca_file = CA().write(tmp_path / "ca.pem")
    (tmp_path / "bad.crl").write_bytes(b"not a crl")
    with pytest.raises(CRLError, match=r"bad\.crl holds no readable CRL"):
        lists(ca_file, tmp_path / "bad.crl")


def test_expired_list_refused_or_used(tmp_path: Path) -> None:
    """An expired list: ``refuse`` raises naming it; ``warn`` uses it."""
    ca = CA()
    ca_file = ca.write(tmp_path / "ca.pem")
    old = ca.issue("O")
    (tmp_path / "old.crl").write_bytes(ca.crl((old.cert,), expired=True))
    with pytest.raises(CRLError, match=r"old\.crl: .* expired at .*\(tls_crl_expired = refuse\)"):
        lists(ca_file, tmp_path / "old.crl")
    assert lists(ca_file, tmp_path / "old.crl", on_expired="warn").revoked(old.cert)


def test_refresh_rereads_a_changed_file_and_keeps_lists_on_error(tmp_path: Path) -> None:
    """
    refresh() re-reads only a changed file and then tells on_change; a changed
    file that cannot be used keeps the previous lists and tells nothing.
    """
    ca = CA()
    ca_file = ca.write(tmp_path / "ca.pem")
    a, b = ca.issue("A"), ca.issue("B")
    path = tmp_path / "ca.crl"
    path.write_bytes(ca.crl((a.cert,)))
    changes: list[int] = []
    crls = lists(ca_file, path, changes=changes)
    assert crls.refresh() is False and changes == []
    path.write_bytes(ca.crl((a.cert, b.cert)))
    os.utime(path, ns=(1, 1))
    assert crls.refresh() is True and changes == [1] and crls.revoked(b.cert)
    path.write_bytes(ca.crl((), expired=True))
    os.utime(path, ns=(2, 2))
    assert crls.refresh() is False and changes == [1] and crls.revoked(b.cert)
    with pytest.raises(CRLError):
        crls.reload()
    assert crls.revoked(a.cert) and changes == [1]
