"""The charge point's status when the central system's upgrade fails (ocppgw.forward.upstream)."""

from __future__ import annotations

from OpenSSL import SSL
from twisted.python.failure import Failure

from ocppgw.forward.upstream import UpstreamProtocol


def protocol(status_line: str | None = None, lost: Exception | None = None) -> UpstreamProtocol:
    made = UpstreamProtocol()
    if status_line is not None:
        made.http_status_line = status_line
    if lost is not None:
        made.lost_reason = Failure(lost)
    return made


def test_the_central_systems_refusal_is_passed_on() -> None:
    """A 4xx or 5xx status line is the charge point's status, with its reason."""
    assert protocol("HTTP/1.1 401 Unauthorized").status() == (401, "Unauthorized")
    assert protocol("HTTP/1.1 404 Not Found").status() == (404, "Not Found")
    assert protocol("HTTP/1.1 503").status() == (503, "")


def test_any_other_answer_is_a_bad_gateway() -> None:
    """A redirect, or a 200 instead of 101: 502, naming what came."""
    code, reason = protocol("HTTP/1.1 302 Found").status()
    assert code == 502 and "302 Found" in reason


def test_a_certificate_that_does_not_verify_is_a_bad_gateway() -> None:
    """The TLS handshake failed (no status line): 502 naming TLS."""
    failed = SSL.Error([("SSL routines", "", "certificate verify failed")])
    code, reason = protocol(lost=failed).status()
    assert code == 502 and "TLS" in reason


def test_a_connection_closed_during_the_upgrade_is_a_bad_gateway() -> None:
    """No status line and no TLS error: 502."""
    assert protocol().status() == (502, "central system closed the connection during the handshake")
