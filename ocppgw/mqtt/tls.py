# -*- test-case-name: tests.unit.listener.test_tls -*-
"""
TLS of the MQTT client.

paho needs an ``ssl.SSLContext``, so this uses the standard ``ssl`` module:
TLS 1.2 or newer, the broker's chain verified against ``[mqtt] tls_ca`` (or
the system's CAs), and the broker's hostname (or IP address, as an IP SAN)
verified with service-identity as the handshake ends (driven by the
reactor in :mod:`ocppgw.mqtt.connect`).
"""

from __future__ import annotations

import ipaddress
import ssl

from cryptography import x509
from service_identity import VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)


class BrokerTLSError(Exception):
    """The MQTT client's CA, certificate or key cannot be used; the text names the file."""


class _VerifiedSSLSocket(ssl.SSLSocket):
    """Checks the broker's hostname with service-identity as the handshake ends."""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        der = self.getpeercert(binary_form=True)
        hostname = self.server_hostname
        if der is None or hostname is None:
            raise ssl.SSLCertVerificationError("the broker presented no certificate")
        cert = x509.load_der_x509_certificate(der)
        try:
            try:
                address = ipaddress.ip_address(hostname)
            except ValueError:
                verify_certificate_hostname(cert, hostname)
            else:
                # An IP broker address must be an IP SAN (RFC 6125 has no CN fallback).
                verify_certificate_ip_address(cert, str(address))
        except (VerificationError, ValueError) as e:
            raise ssl.SSLCertVerificationError(
                f"the broker's certificate is not valid for {hostname!r}: {e}"
            ) from None


def mqtt_client_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """
    An ``ssl.SSLContext`` for paho: TLS 1.2+, the broker's chain verified
    against ``ca`` (or the system's CAs), its hostname by service-identity,
    and our client certificate when ``cert`` is given.

    :raises BrokerTLSError: naming the file at fault.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    # service-identity checks the name (in _VerifiedSSLSocket), not the ssl module.
    ctx.check_hostname = False
    ctx.sslsocket_class = _VerifiedSSLSocket
    try:
        if ca:
            ctx.load_verify_locations(cafile=ca)
        else:
            ctx.load_default_certs()
    except (OSError, ssl.SSLError) as e:
        raise BrokerTLSError(f"{ca}: unusable CA file: {e}") from None
    if cert:
        try:
            ctx.load_cert_chain(cert, key or None)
        except (OSError, ssl.SSLError) as e:
            raise BrokerTLSError(f"{cert} / {key}: unusable certificate or key: {e}") from None
    return ctx
