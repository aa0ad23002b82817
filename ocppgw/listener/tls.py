# -*- test-case-name: tests.unit.listener.test_tls -*-
"""
TLS of the wss listeners: security profiles 2 and 3.

Listeners (OCPP 1.6 security whitepaper §2.4-2.6, OCPP 2.0.1 Part 2 A00):

- TLS 1.2 or newer only (A00.FR.312 allows 1.0/1.1 only for 1.6 charge
  points that cannot do better; this gateway does not).
- The TLS 1.2 suites of A00.FR.317: ECDHE-ECDSA and ECDHE-RSA with
  AES-128/256-GCM, and RSA key exchange with AES-128/256-GCM; TLS 1.3 suites
  are OpenSSL's defaults.
- One RSA and one ECDSA certificate on the same context (A00.FR.317: the
  CSMS must support both kinds of suites); OpenSSL picks by the client's
  offer.  ``tls_cert`` and ``tls_key`` list them pairwise.
- No TLS compression (A00.FR.320).
- Profile 3: the client must present a certificate that chains to ``tls_ca``
  (A00.FR.403); a missing, untrusted or expired one fails the TLS handshake
  with an alert, logged with the reason.
- Revocation (``tls_crl``, :mod:`ocppgw.listener.crl`): the verify callback
  fails the handshake of a certificate a list revokes (counted as
  ``TLS revoked``, logged once per serial); new lists close the open
  connections whose certificate they revoke (1008).

:class:`ServerTLS` builds a new ``SSL.Context`` on :meth:`ServerTLS.reload`
(SIGHUP): new handshakes use it, established connections keep theirs.
"""

from __future__ import annotations

import datetime
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ocppgw.interfaces import IGatewayEvents
from ocppgw.listener.crl import RevocationLists

_log = Logger()

#: A00.FR.317's TLS 1.2 suites, strongest key exchange first.
TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
    ]
)

#: OpenSSL X509_V_ERR_* codes worth a readable name in the log.
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate (not issued by tls_ca)",
    21: "unable to verify the first certificate",
    23: "certificate revoked",
    26: "unsupported certificate purpose",
}


class TLSConfigError(Exception):
    """Certificates or keys that cannot be used; the text names the file."""


def _load_pem_certs(path: str) -> list[x509.Certificate]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TLSConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TLSConfigError(f"{path} holds no PEM certificate") from None
    return certs


def _key_kind(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ECDSA"
    return type(key).__name__


def server_context(
    name: str,
    pairs: Sequence[tuple[str, str]],
    ca: str | None,
    verify: Callable[[SSL.Connection, Any, int, int, int], bool] | None = None,
) -> SSL.Context:
    """
    A server context serving each (certificate chain file, key file) of
    ``pairs``; with ``ca``, client certificates are required and verified.

    :raises TLSConfigError: naming the file at fault.
    """
    if not pairs:
        raise TLSConfigError("no certificate")
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    ctx.set_cipher_list(TLS12_CIPHERS.encode("ascii"))
    # Session resumption with client certificates needs a session id context.
    ctx.set_session_id(b"ocppgw-" + name.encode("utf-8")[:24])
    kinds: dict[str, str] = {}
    for cert_path, key_path in pairs:
        leaf = _load_pem_certs(cert_path)[0]
        kind = _key_kind(leaf)
        if kind not in ("RSA", "ECDSA"):
            raise TLSConfigError(f"{cert_path}: a {kind} key; RSA or ECDSA expected")
        if kind in kinds:
            raise TLSConfigError(
                f"{cert_path} and {kinds[kind]} are both {kind}; "
                "give at most one RSA and one ECDSA certificate"
            )
        kinds[kind] = cert_path
        try:
            ctx.use_certificate_chain_file(cert_path.encode())
        except SSL.Error as e:
            raise TLSConfigError(f"{cert_path}: unusable certificate chain: {e}") from None
        try:
            ctx.use_privatekey_file(key_path.encode())
            ctx.check_privatekey()
        except SSL.Error:
            raise TLSConfigError(f"{key_path}: not a readable private key of {cert_path}") from None
    if ca is not None:
        _load_pem_certs(ca)  # a clear error for a bad file
        try:
            ctx.load_verify_locations(ca)
        except SSL.Error as e:
            raise TLSConfigError(f"{ca}: unusable CA file: {e}") from None
        ctx.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify or _log_verify_failure
        )
    return ctx


def _log_verify_failure(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
    # A00.FR.403/407: the chain must verify; OpenSSL decides, we say why.
    if not ok:
        protocol = conn.get_app_data()
        _log.info(
            "TLS: refused client certificate from {peer}: {why} (depth {depth}, subject {subject})",
            peer=peer_of(protocol),
            why=_VERIFY_ERRORS.get(errno, f"verify error {errno}"),
            depth=depth,
            subject=_subject_text(cert),
        )
    return bool(ok)


def _subject_text(cert: Any) -> str:
    try:
        return str(cert.to_cryptography().subject.rfc4514_string())
    except Exception:
        return "?"


def peer_of(protocol: Any) -> str:
    try:
        address = protocol.transport.getPeer()
        return f"{address.host}:{address.port}"
    except Exception:
        return "?"


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    The TLS side of one listener; :meth:`reload` picks up new certificate
    files, :attr:`revocation` (with ``tls_crl``) the revocation lists.
    """

    def __init__(
        self,
        name: str,
        certs: Sequence[str],
        keys: Sequence[str],
        ca: str | None = None,
        crls: Sequence[str] = (),
        crl_expired: str = "refuse",
        now: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self._pairs = list(zip(certs, keys, strict=True))
        self._ca = ca
        #: Live TLS connections, to close those whose certificate gets revoked.
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        #: Handshakes refused for a revoked certificate (for the metric's reason).
        self._revoked_handshakes: weakref.WeakSet[Any] = weakref.WeakSet()
        self._logged: set[tuple[bytes, int]] = set()
        self.revocation: RevocationLists | None = None
        if crls and ca is not None:
            # A CRLError (naming the file) goes to the caller.
            self.revocation = RevocationLists(
                f"[listener:{name}]", crls, ca, crl_expired, now or _wall_clock, self._close_revoked
            )
        self._context = server_context(name, self._pairs, ca, self._verify)

    @property
    def requires_client_certificate(self) -> bool:
        return self._ca is not None

    def reload(self) -> None:
        """
        Read the files again; new handshakes use them, established
        connections keep their context.

        :raises TLSConfigError: the old context stays in use.
        """
        self._context = server_context(self.name, self._pairs, self._ca, self._verify)

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        if self.revocation is not None:
            self.revocation.refresh()
        conn = SSL.Connection(self._context, None)
        conn.set_app_data(tlsProtocol)
        if tlsProtocol is not None:
            self._connections.add(tlsProtocol)
        return conn

    def refusal_reason(self, tls_protocol: Any) -> str:
        """The metric's reason for a failed handshake: ``TLS revoked`` or ``TLS``."""
        return "TLS revoked" if tls_protocol in self._revoked_handshakes else "TLS"

    def _verify(self, conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
        if not ok or depth != 0 or self.revocation is None:
            return _log_verify_failure(conn, cert, errno, depth, ok)
        leaf = cert.to_cryptography()
        if not self.revocation.revoked(leaf):
            return True
        protocol = conn.get_app_data()
        self._revoked_handshakes.add(protocol)
        key = (leaf.issuer.public_bytes(), leaf.serial_number)
        if key not in self._logged:
            self._logged.add(key)
            _log.warn(
                "TLS: refused revoked client certificate serial {serial:X} "
                "(subject {subject}) from {peer}",
                serial=leaf.serial_number,
                subject=_subject_text(cert),
                peer=peer_of(protocol),
            )
        return False

    def _close_revoked(self) -> None:
        """New lists came into use: close connections whose certificate they revoke (1008)."""
        revocation = self.revocation
        if revocation is None:
            return
        for tls_protocol in list(self._connections):
            handle = tls_protocol.getHandle()
            peer_cert = None if handle is None else handle.get_peer_certificate()
            if peer_cert is None:
                # Gone already, or still in its handshake (the verify callback checks it).
                continue
            leaf = peer_cert.to_cryptography()
            if not revocation.revoked(leaf):
                continue
            self._connections.discard(tls_protocol)
            wrapped = tls_protocol.wrappedProtocol
            _log.warn(
                "TLS: closing {peer}: its client certificate serial {serial:X} is now revoked",
                peer=peer_of(wrapped),
                serial=leaf.serial_number,
            )
            close = getattr(wrapped, "close", None)
            if close is not None:
                close(1008, "certificate revoked")
            else:
                tls_protocol.transport.loseConnection()


def _wall_clock() -> float:
    return datetime.datetime.now(datetime.UTC).timestamp()


def handshake_failed(
    events: IGatewayEvents, listener: str, peer: str, reason: Failure, transport: Any = None
) -> None:
    """
    A TLS handshake with ``peer`` failed: logged with its reason (A00.FR.407:
    why it ended), and counted as a refusal.  Twisted's TLS hands the error
    to the protocol it wraps as the reason its connection was lost.
    """
    why = reason.getErrorMessage()
    _log.info("TLS handshake with {peer} failed: {why}", peer=peer, why=why)
    tls = getattr(getattr(transport, "factory", None), "tls", None)
    status = tls.refusal_reason(transport) if isinstance(tls, ServerTLS) else "TLS"
    events.refused(listener, peer, "", status, str(reason.value))


class TLSListenerFactory(TLSMemoryBIOFactory):
    """``factory``'s connections wrapped in server-side TLS from ``tls``."""

    def __init__(self, tls: ServerTLS, factory: Any) -> None:
        super().__init__(tls, False, factory)
        self.tls = tls


# --- client certificates (profile 3) ---


def _attributes(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(oid)]


def check_subject(
    cert: x509.Certificate,
    expected_cn: str,
    cpo_name: str | None,
) -> str | None:
    """
    Why ``cert`` does not belong to the charge point, or None if it does.

    The subject must hold exactly one CN, equal to ``expected_cn`` (A00.FR.405),
    and, when ``cpo_name`` is set, an O equal to it (A00.FR.404).
    """
    cns = _attributes(cert.subject, NameOID.COMMON_NAME)
    if len(cns) != 1:
        return f"certificate subject has {len(cns)} CN attributes, expected one"
    if cns[0] != expected_cn:
        return f"certificate CN {cns[0]!r} is not {expected_cn!r}"
    if cpo_name is not None:
        orgs = _attributes(cert.subject, NameOID.ORGANIZATION_NAME)
        if cpo_name not in orgs:
            return f"certificate O {orgs!r} does not hold the CPO name {cpo_name!r}"
    return None


class ForwardedCertificates:
    """
    Verifies client certificates that a TLS-offloading proxy forwarded in a
    header, against ``tls_ca``, the way OpenSSL verifies them in a handshake.
    """

    def __init__(self, ca: str, clock: Any) -> None:
        self._ca = ca
        self._clock = clock
        self._anchors = [crypto.X509.from_cryptography(c) for c in _load_pem_certs(ca)]

    def reload(self) -> None:
        self._anchors = [crypto.X509.from_cryptography(c) for c in _load_pem_certs(self._ca)]

    def verify(self, pem: str) -> tuple[x509.Certificate | None, str | None]:
        """(the leaf certificate, None) if ``pem`` verifies, else (None, why)."""
        try:
            chain = x509.load_pem_x509_certificates(pem.encode("ascii", "replace"))
        except ValueError:
            return None, "forwarded client certificate is not readable PEM"
        store = crypto.X509Store()
        for anchor in self._anchors:
            store.add_cert(anchor)
        store.set_time(datetime.datetime.fromtimestamp(self._clock.seconds(), datetime.UTC))
        leaf = chain[0]
        context = crypto.X509StoreContext(
            store,
            crypto.X509.from_cryptography(leaf),
            [crypto.X509.from_cryptography(c) for c in chain[1:]],
        )
        try:
            context.verify_certificate()
        except crypto.X509StoreContextError as e:
            return None, f"forwarded client certificate rejected: {e}"
        return leaf, None
