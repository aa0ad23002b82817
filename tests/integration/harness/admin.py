"""The admin endpoint in integration tests: a gateway with it on, and plain HTTP to it."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.integration.harness import WAIT, Gateway, Sections, free_port

TOKEN = "it-admin-token"


def with_admin(port: int, extra: Sections | None = None, **admin: str) -> Sections:
    """The sections of a gateway whose admin endpoint listens on ``port``."""
    sections: Sections = {
        "admin": {"endpoint": f"tcp:{port}:interface=127.0.0.1", "token": TOKEN, **admin}
    }
    for section, keys in (extra or {}).items():
        sections.setdefault(section, {}).update(keys)
    return sections


def admin_gateway(start: Callable[..., Gateway], extra: Sections | None = None,
                  **admin: str) -> tuple[Gateway, str]:
    """A gateway with its admin endpoint on a free port, and that endpoint's URL."""
    port = free_port()
    gw = start(with_admin(port, extra, **admin))
    return gw, f"http://127.0.0.1:{port}"


def http(
    method: str, url: str, body: Any = None, token: str | None = TOKEN, timeout: float = WAIT
) -> tuple[int, Any, dict[str, str]]:
    """(status, parsed JSON body or text, headers) of one request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw, headers = r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        status, raw, headers = e.code, e.read(), dict(e.headers)
    text = raw.decode()
    try:
        return status, json.loads(text), headers
    except ValueError:
        return status, text, headers


async def ahttp(method: str, url: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    """:func:`http` off the event loop, so charge points keep answering meanwhile."""
    status, parsed, _ = await asyncio.to_thread(http, method, url, body, **kw)
    return status, parsed
