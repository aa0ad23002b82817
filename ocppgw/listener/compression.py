# -*- test-case-name: tests.unit.listener.test_compression -*-
"""
permessage-deflate (RFC 7692) as a ``[listener:NAME]`` accepts it: what the
gateway answers to a charge point's offer, on Autobahn's public
``perMessageCompressionAccept`` hook.

With ``compression = on`` the first permessage-deflate offer is accepted with
parameters that bound the memory of a compressing connection:

- the gateway compresses every message on its own, and says so
  (``server_no_context_takeover``, which a server may include unasked,
  §7.1.1.1), with a window of at most ``compression_window_bits``
  (``server_max_window_bits``, at most what the client asked, §7.1.2.1) and
  zlib memory level ``compression_mem_level``;
- the charge point is asked to do the same (``client_no_context_takeover``,
  which a server may include unasked, §7.1.1.2) and, only where its offer
  has ``client_max_window_bits`` (§7.1.2.2), to use
  ``compression_window_bits``.

A message that inflates past ``max_frame_size`` is still refused with 1009:
Autobahn bounds each decompression by the message limit (the factory's
``maxMessagePayloadSize``).  With ``compression = off`` every offer is
declined and the connection runs uncompressed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

if TYPE_CHECKING:
    # The stages read the typed configuration they are handed; config/ is above them.
    from ocppgw.config import ListenerConfig

#: What ``perMessageCompressionAccept`` gets (Autobahn's parsed offers) and answers.
Accept = Callable[[list[Any]], Any]


def decline(offers: list[Any]) -> None:
    """``compression = off``: no offer is accepted; the 101 has no extension."""
    return None


def answer(offer: PerMessageDeflateOffer, window_bits: int, mem_level: int, max_size: int) -> Any:
    """
    The accept of one permessage-deflate ``offer`` (RFC 7692 §7); a message
    inflating past ``max_size`` octets is refused.
    """
    # The gateway's own window: the configured one, or the smaller one the client asked.
    own_bits = min(window_bits, offer.request_max_window_bits or window_bits)
    # The response declares what the client's offer asked of the server
    # (Autobahn writes it from the offer): the same offer with the gateway's
    # own choices, both of which a server may announce unasked.
    announced = PerMessageDeflateOffer(
        accept_no_context_takeover=offer.accept_no_context_takeover,
        accept_max_window_bits=offer.accept_max_window_bits,
        request_no_context_takeover=True,
        request_max_window_bits=own_bits,
    )
    return PerMessageDeflateOfferAccept(
        announced,
        request_no_context_takeover=offer.accept_no_context_takeover,
        request_max_window_bits=window_bits if offer.accept_max_window_bits else 0,
        no_context_takeover=True,
        window_bits=own_bits,
        mem_level=mem_level,
        max_message_size=max_size,
    )


def deflate_accept(listener: ListenerConfig) -> Accept:
    """The ``perMessageCompressionAccept`` of ``listener``."""
    if not listener.compression:
        return decline
    window_bits = listener.compression_window_bits
    mem_level = listener.compression_mem_level
    max_size = listener.max_frame_size

    def accept(offers: list[Any]) -> Any:
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                return answer(offer, window_bits, mem_level, max_size)
        return None

    return accept
