# -*- test-case-name: tests.integration.test_tls_revocation -*-
"""
Certificate revocation lists of a profile 3 listener (``tls_crl``).

The lists (PEM or DER) must each be signed by a CA of ``tls_ca``.  A client
certificate is revoked when a list of its issuer names its serial number.
The check runs in the TLS verify callback (:class:`ocppgw.listener.tls.ServerTLS`),
so a revoked certificate fails the handshake with an alert.

A list past its nextUpdate: with ``tls_crl_expired = refuse`` loading fails
(:class:`CRLError`: the gateway does not start, a
reload keeps the previous lists); with ``warn`` it is used, with a warning.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.logger import Logger

_log = Logger()


class CRLError(Exception):
    """A list that cannot be used; the text names the file."""


_PEM_BEGIN = b"-----BEGIN X509 CRL-----"


def _read_crls(path: str) -> list[x509.CertificateRevocationList]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CRLError(f"cannot read {path}: {e.strerror}") from None
    try:
        if _PEM_BEGIN in data:
            blocks = data.split(_PEM_BEGIN)[1:]
            return [x509.load_pem_x509_crl(_PEM_BEGIN + block) for block in blocks]
        return [x509.load_der_x509_crl(data)]
    except ValueError:
        raise CRLError(f"{path} holds no readable CRL (PEM or DER)") from None


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    key = ca.public_key()
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return False
    return crl.is_signature_valid(key)


class RevocationLists:
    """
    The serials that ``paths``' lists revoke, by issuer; re-read by
    :meth:`reload` or, when a file changed, by :meth:`refresh`.
    """

    def __init__(
        self,
        section: str,
        paths: Sequence[str],
        ca: str,
        on_expired: str,
        now: Callable[[], float],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._section = section
        self._paths = list(paths)
        self._ca = ca
        self._on_expired = on_expired
        self._now = now
        #: Called after new lists came into use (by reload or refresh).
        self.on_change = on_change
        self._mtimes = self._stat()
        self._revoked = self._load()

    def _stat(self) -> list[int | None]:
        mtimes: list[int | None] = []
        for path in self._paths:
            try:
                mtimes.append(os.stat(path).st_mtime_ns)
            except OSError:
                mtimes.append(None)
        return mtimes

    def _load(self) -> frozenset[tuple[bytes, int]]:
        try:
            with open(self._ca, "rb") as f:
                cas = x509.load_pem_x509_certificates(f.read())
        except (OSError, ValueError) as e:
            raise CRLError(f"{self._ca}: cannot read the CA certificates: {e}") from None
        now = datetime.datetime.fromtimestamp(self._now(), datetime.UTC)
        revoked: set[tuple[bytes, int]] = set()
        for path in self._paths:
            for crl in _read_crls(path):
                issuers = [c for c in cas if c.subject == crl.issuer and _signed_by(crl, c)]
                if not issuers:
                    raise CRLError(
                        f"{path}: CRL of {crl.issuer.rfc4514_string()} is not signed by a CA "
                        f"in {self._ca}"
                    )
                after = crl.next_update_utc
                if after is not None and after < now:
                    name = crl.issuer.rfc4514_string()
                    why = f"{path}: CRL of {name} expired at {after:%Y-%m-%dT%H:%M:%SZ}"
                    if self._on_expired == "refuse":
                        raise CRLError(f"{why} (tls_crl_expired = refuse)")
                    _log.warn(
                        "{section} tls_crl: {why}; used anyway (tls_crl_expired = warn)",
                        section=self._section,
                        why=why,
                    )
                issuer = crl.issuer.public_bytes()
                revoked.update((issuer, entry.serial_number) for entry in crl)
        return frozenset(revoked)

    def reload(self) -> None:
        """
        Read the files again.

        :raises CRLError: the previous lists stay in use.
        """
        mtimes = self._stat()
        revoked = self._load()
        self._mtimes, self._revoked = mtimes, revoked
        self.on_change()

    def refresh(self) -> bool:
        """
        Re-read the files if one changed since the last read; True if new lists
        are in use.  A failure is logged and the previous lists stay (until the
        files change again).
        """
        mtimes = self._stat()
        if mtimes == self._mtimes:
            return False
        try:
            revoked = self._load()
        except CRLError as e:
            self._mtimes = mtimes
            _log.error(
                "{section} tls_crl changed but cannot be used, keeping the previous lists: {e}",
                section=self._section,
                e=e,
            )
            return False
        self._mtimes, self._revoked = mtimes, revoked
        _log.info("{section} tls_crl: re-read after a file changed", section=self._section)
        self.on_change()
        return True

    def revoked(self, cert: x509.Certificate) -> bool:
        """True when a list of ``cert``'s issuer names its serial number."""
        return (cert.issuer.public_bytes(), cert.serial_number) in self._revoked
