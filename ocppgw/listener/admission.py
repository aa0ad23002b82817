# -*- test-case-name: tests.unit.listener.test_admission -*-
"""
Who may connect: the checks of a handshake, after the identity and the
subprotocol are known and before the 101 response.

In order, for a listener of ``security_profile`` N:

1. profile 2 or 3 needs TLS: the listener's own, or a trusted TLS-offloading
   proxy's (``X-Forwarded-Proto: https``); else 403;
2. a source address or identity over its failed-login limit gets 429 with
   ``Retry-After``, before any password or certificate is looked at;
3. profile 1 and 2: HTTP Basic, username = identity (A00.FR.204/303); else
   401 with ``WWW-Authenticate``; profile 3: the client certificate (the TLS
   peer's, or the one a trusted TLS-offloading proxy forwarded) must verify
   against ``tls_ca`` (A00.FR.403), its CN must be the identity (or, with
   ``cert_identity = serial``, the serial number registered for it,
   A00.FR.405) and its O the ``cpo_name`` when set (A00.FR.404); else 403;
4. an identity registered at a higher profile than the listener's is
   refused with 403: no downgrade (A00.FR.005).

Failures of step 3 count against the address and the identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509

from ocppgw.listener import Refused
from ocppgw.listener.credentials import Credentials, Entry, parse_basic, verify
from ocppgw.listener.proxy import Source, source_of
from ocppgw.listener.ratelimit import LoginLimiter
from ocppgw.listener.tls import ForwardedCertificates, check_subject

if TYPE_CHECKING:
    # The stages read the typed configuration they are handed; config/ is above them.
    from ocppgw.config import ListenerConfig

_CHALLENGE = [("WWW-Authenticate", 'Basic realm="ocppgw", charset="UTF-8"')]


@dataclass
class Gatekeeper:
    """The admission checks of one listener."""

    listener: ListenerConfig
    credentials: Credentials | None
    #: Failed-login limits shared by every listener, if any.
    limiter: LoginLimiter | None = None
    #: The CA that client certificates forwarded by a trusted proxy must chain to.
    forwarded: ForwardedCertificates | None = None

    def source(self, peer_host: str, headers: Mapping[str, str]) -> Source:
        """Where the request comes from (see :mod:`ocppgw.listener.proxy`)."""
        return source_of(
            peer_host, headers, self.listener.trusted_proxies, self.listener.client_cert_header
        )

    def admit(
        self,
        identity: str,
        source: Source,
        authorization: str | None,
        tls_certificate: x509.Certificate | None,
        over_tls: bool,
    ) -> None:
        """:raises Refused: when ``identity`` may not connect; see the module text."""
        profile = self.listener.security_profile
        if profile >= 2 and not over_tls and not source.forwarded_tls:
            raise Refused(403, f"security profile {profile} requires TLS (wss://)")
        if profile >= 1 and self.limiter is not None:
            wait = self.limiter.retry_after(source.address, identity)
            if wait is not None:
                raise Refused(
                    429,
                    f"too many failed logins; retry in {wait} s",
                    [("Retry-After", str(wait))],
                )
        # One look at the credentials file per handshake (it is re-read when it changed).
        entry = self.credentials.get(identity) if self.credentials is not None else None
        try:
            if profile in (1, 2):
                self._basic(identity, entry, authorization)
            elif profile == 3:
                self._certificate(identity, entry, source, tls_certificate, over_tls)
        except Refused:
            if self.limiter is not None:
                self.limiter.failed(source.address, identity)
            raise
        if entry is not None and entry.profile > profile:
            # A00.FR.005: a charge point's security profile is never lowered.
            raise Refused(
                403,
                f"{identity!r} is registered at security profile {entry.profile}; "
                f"this listener has profile {profile}",
            )

    def _basic(self, identity: str, entry: Entry | None, header: str | None) -> None:
        password = parse_basic(header, identity) if header else None
        if password is None:
            raise Refused(
                401,
                "HTTP Basic credentials with the charge point identity as username required",
                _CHALLENGE,
            )
        if not verify(entry, password):
            raise Refused(401, "wrong identity or password", _CHALLENGE)

    def _certificate(
        self,
        identity: str,
        entry: Entry | None,
        source: Source,
        tls_certificate: x509.Certificate | None,
        over_tls: bool,
    ) -> None:
        if over_tls:
            # OpenSSL verified the chain in the handshake (A00.FR.403).
            certificate = tls_certificate
            if certificate is None:
                raise Refused(403, "a client certificate is required (security profile 3)")
        else:
            if source.client_cert_pem is None or self.forwarded is None:
                raise Refused(403, "a client certificate is required (security profile 3)")
            certificate, why = self.forwarded.verify(source.client_cert_pem)
            if certificate is None:
                raise Refused(403, why or "client certificate rejected")
        if self.listener.cert_identity == "serial":
            if entry is None or entry.serial is None:
                raise Refused(403, f"no serial number is registered for {identity!r}")
            expected = entry.serial
        else:
            expected = identity
        why = check_subject(certificate, expected, self.listener.cpo_name)
        if why is not None:
            raise Refused(403, why)
