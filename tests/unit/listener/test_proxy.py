"""Trusted proxies: which forwarded headers are believed, and from whom."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from ocppgw.listener import Refused
from ocppgw.listener.proxy import parse_address, parse_networks, source_of

TRUSTED = parse_networks("10.0.0.0/8, 192.0.2.7 ::1")
PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


def test_untrusted_peer_headers_are_ignored() -> None:
    """From a peer outside trusted_proxies, every forwarded header is ignored."""
    o = source_of(
        "203.0.113.9",
        {"x-forwarded-for": "198.51.100.1", "x-forwarded-proto": "https",
         "x-client-cert": quote(PEM)},
        TRUSTED,
    )
    assert (o.address, o.proxy, o.forwarded_tls, o.client_cert_pem) == (
        "203.0.113.9", None, False, None)


def test_no_trusted_proxies_means_nothing_is_believed() -> None:
    """With the default (empty) trusted_proxies even a private peer is not believed."""
    o = source_of("10.1.1.1", {"x-forwarded-for": "198.51.100.1"}, ())
    assert o.address == "10.1.1.1" and o.proxy is None


def test_trusted_peer_headers_are_honoured() -> None:
    """From a trusted proxy: the forwarded address, TLS flag and certificate are used."""
    o = source_of(
        "10.1.2.3",
        {"x-forwarded-for": "198.51.100.1", "x-forwarded-proto": "https",
         "x-client-cert": quote(PEM)},
        TRUSTED,
    )
    assert (o.address, o.proxy, o.forwarded_tls) == ("198.51.100.1", "10.1.2.3", True)
    assert o.client_cert_pem == PEM.strip()


def test_rightmost_untrusted_hop_wins() -> None:
    """A client cannot spoof its address by prepending to X-Forwarded-For."""
    o = source_of("10.0.0.1", {"x-forwarded-for": "1.2.3.4, 198.51.100.1, 10.9.9.9"}, TRUSTED)
    assert o.address == "198.51.100.1"


def test_custom_certificate_header_and_ports() -> None:
    """client_cert_header names the header; hops may carry ports and brackets."""
    o = source_of("::1", {"x-ssl-client-cert": quote(PEM), "x-forwarded-for": "[2001:db8::5]:443"},
               TRUSTED, "X-SSL-Client-Cert")
    assert o.client_cert_pem is not None and o.address == "2001:db8::5"
    assert str(parse_address("192.0.2.1:8080")) == "192.0.2.1"
    assert str(parse_address("::ffff:10.0.0.1")) == "10.0.0.1"


def test_garbage_from_trusted_proxy_is_refused() -> None:
    """An unreadable X-Forwarded-For from a trusted proxy is a 400, not a guess."""
    with pytest.raises(Refused) as e:
        source_of("10.0.0.1", {"x-forwarded-for": "not-an-ip"}, TRUSTED)
    assert e.value.code == 400


def test_parse_networks_errors() -> None:
    """A bad network names the bad item."""
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300/8'"):
        parse_networks("10.0.0.0/8 10.0.0.300/8")
