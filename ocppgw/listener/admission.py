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
   refused with 403: no downgrade (A00.FR.005);
5. with ``[auth] http_url`` (profiles 1-3), the operator's service decides
   (:mod:`ocppgw.listener.httpauth`) instead of the credentials file: the
   password is not looked up in the file, the certificate checks of step 3
   still come first; a deny is the 401 (profiles 1, 2) or 403 (profile 3) a
   wrong password or certificate gets, its reason only logged; an allow may
   name the versions this charge point may use.  A service error is a deny,
   or with ``http_on_error = file`` decided as without ``http_url``.

Failures of step 3, and denies of step 5, count against the address and the
identity (service errors do not: an outage must not lock charge points out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocppgw.listener import Refused
from ocppgw.listener.credentials import Credentials, Entry, parse_basic, verify
from ocppgw.listener.httpauth import Answer, HTTPAuth, Question
from ocppgw.listener.proxy import Source, source_of
from ocppgw.listener.ratelimit import LoginLimiter
from ocppgw.listener.tls import ForwardedCertificates, check_subject

if TYPE_CHECKING:
    # The stages read the typed configuration they are handed; config/ is above them.
    from ocppgw.config import ListenerConfig

_CHALLENGE = [("WWW-Authenticate", 'Basic realm="ocppgw", charset="UTF-8"')]

_log = Logger()


@dataclass
class Gatekeeper:
    """The admission checks of one listener."""

    listener: ListenerConfig
    credentials: Credentials | None
    #: Failed-login limits shared by every listener, if any.
    limiter: LoginLimiter | None = None
    #: The CA that client certificates forwarded by a trusted proxy must chain to.
    forwarded: ForwardedCertificates | None = None
    #: The operator's HTTP authentication service ([auth] http_url), if any.
    http: HTTPAuth | None = None

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
        offered: Sequence[str] = (),
    ) -> tuple[str, ...] | Deferred[tuple[str, ...] | None] | None:
        """
        Whether ``identity`` may connect (see the module text): None, with any
        version; a tuple, with those versions; a Deferred of either.

        :raises Refused: (or the Deferred fails with it) when it may not.
        """
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
        http = self.http if profile >= 1 else None
        password = certificate = None
        try:
            if profile in (1, 2):
                password = self._password(identity, authorization)
                if http is None:
                    self._check_password(entry, password)
            elif profile == 3:
                certificate = self._certificate(identity, entry, source, tls_certificate, over_tls)
        except Refused:
            self._failed(source, identity)
            raise
        if entry is not None and entry.profile > profile:
            # A00.FR.005: a charge point's security profile is never lowered.
            raise Refused(
                403,
                f"{identity!r} is registered at security profile {entry.profile}; "
                f"this listener has profile {profile}",
            )
        if http is None:
            return None
        question = Question(
            identity,
            self.listener.name,
            source.address,
            tuple(offered),
            username=identity if password is not None else None,
            password=password,
            cert_subject=certificate.subject.rfc4514_string() if certificate else None,
            cert_serial=format(certificate.serial_number, "x") if certificate else None,
            cert_fingerprint=certificate.fingerprint(hashes.SHA256()).hex()
            if certificate
            else None,
        )

        def answered(answer: Answer) -> tuple[str, ...] | None:
            return self._answered(answer, source, question)

        def unanswered(failure: Failure) -> None:
            self._unanswered(failure, source, question, entry)

        return http.ask(question).addCallback(answered).addErrback(unanswered)

    def _failed(self, source: Source, identity: str) -> None:
        if self.limiter is not None:
            self.limiter.failed(source.address, identity)

    def _denied(self) -> Refused:
        """A deny: what a wrong password (profiles 1, 2) or certificate (3) gets."""
        if self.listener.security_profile == 3:
            return Refused(403, "client certificate refused")
        return Refused(401, "wrong identity or password", _CHALLENGE)

    def _answered(
        self, answer: Answer, source: Source, question: Question
    ) -> tuple[str, ...] | None:
        if answer.allow:
            return answer.versions
        _log.info(
            "{cid}: the authentication service denied {peer}: {reason}",
            cid=question.identity,
            peer=source.address,
            reason=answer.reason or "(no reason given)",
        )
        self._failed(source, question.identity)
        raise self._denied()

    def _unanswered(
        self, failure: Failure, source: Source, question: Question, entry: Entry | None
    ) -> None:
        on_error = self.http.config.on_error if self.http is not None else "deny"
        _log.warn(
            "{peer}: {why}; {what}",
            peer=source.address,
            why=failure.getErrorMessage(),
            what="deciding by the credentials file" if on_error == "file" else "refused",
        )
        if on_error != "file":
            raise self._denied()
        if question.password is not None:
            try:
                self._check_password(entry, question.password)
            except Refused:
                self._failed(source, question.identity)
                raise
        return None

    def _password(self, identity: str, header: str | None) -> bytes:
        password = parse_basic(header, identity) if header else None
        if password is None:
            raise Refused(
                401,
                "HTTP Basic credentials with the charge point identity as username required",
                _CHALLENGE,
            )
        return password

    def _check_password(self, entry: Entry | None, password: bytes) -> None:
        if not verify(entry, password):
            raise Refused(401, "wrong identity or password", _CHALLENGE)

    def _certificate(
        self,
        identity: str,
        entry: Entry | None,
        source: Source,
        tls_certificate: x509.Certificate | None,
        over_tls: bool,
    ) -> x509.Certificate:
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
        return certificate
