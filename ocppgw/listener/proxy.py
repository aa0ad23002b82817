# -*- test-case-name: tests.unit.listener.test_proxy,tests.integration.test_proxy_forwarding -*-
"""
Reverse proxies in front of a listener: which headers to believe, and from whom.

A listener's ``trusted_proxies`` lists the networks of its proxies.  Only a
request whose TCP peer is in one of them has its ``X-Forwarded-For``,
``X-Forwarded-Proto`` and client-certificate header (``client_cert_header``,
default ``X-Client-Cert``: the URL-encoded PEM, as nginx's
``$ssl_client_escaped_cert``) honoured; from anyone else they are ignored.

The remote address is found the way that cannot be spoofed through a proxy
that appends: ``X-Forwarded-For`` is read from the right, skipping addresses
that are themselves trusted proxies; the first one that is not is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from ocppgw.listener import Refused

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_CERT_HEADER = "X-Client-Cert"


def parse_networks(value: str) -> tuple[Network, ...]:
    """CIDR networks separated by spaces or commas (``10.0.0.0/8 ::1``)."""
    networks = []
    for item in value.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP network (e.g. 10.0.0.0/8 or ::1)") from None
    return tuple(networks)


def parse_address(text: str) -> Address:
    """An address as proxies write it: ``1.2.3.4``, ``1.2.3.4:5``, ``::1``, ``[::1]:5``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: Address, trusted: tuple[Network, ...]) -> bool:
    return any(address in network for network in trusted)


@dataclass(frozen=True)
class Source:
    """Where a handshake comes from, as far as the listener may believe."""

    #: The client's address: for logs, presence and rate limits.
    address: str
    #: The TCP peer's address when it is a trusted proxy that forwarded the request.
    proxy: str | None = None
    #: A trusted proxy said the client connected over TLS (X-Forwarded-Proto).
    forwarded_tls: bool = False
    #: The client certificate (PEM) a trusted, TLS-offloading proxy forwarded.
    client_cert_pem: str | None = None


def source_of(
    peer_host: str,
    headers: Mapping[str, str],
    trusted: tuple[Network, ...],
    cert_header: str = DEFAULT_CERT_HEADER,
) -> Source:
    """
    Where a request came from: from TCP peer ``peer_host`` with (lower-cased)
    ``headers``.

    :raises Refused: 400 when a trusted proxy sends an unreadable
        X-Forwarded-For.
    """
    if not trusted:
        return Source(peer_host)  # the default: nothing to parse, nothing believed
    try:
        peer = parse_address(peer_host)
    except ValueError:
        return Source(peer_host)  # not an IP peer (a UNIX socket): nothing is forwarded
    if not is_trusted(peer, trusted):
        return Source(str(peer))
    client: Address = peer
    forwarded = headers.get("x-forwarded-for")
    if forwarded:
        try:
            hops = [parse_address(hop) for hop in forwarded.split(",")]
        except ValueError:
            raise Refused(400, "unreadable X-Forwarded-For from a trusted proxy") from None
        client = hops[0]
        for hop in reversed(hops):
            if not is_trusted(hop, trusted):
                client = hop
                break
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    pem = unquote(headers.get(cert_header.lower(), "")).strip()
    return Source(
        address=str(client),
        proxy=str(peer),
        forwarded_tls=proto in ("https", "wss"),
        client_cert_pem=pem if pem.startswith("-----BEGIN") else None,
    )
