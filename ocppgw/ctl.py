# -*- test-case-name: tests.integration.test_ctl -*-
"""
``ocppgw-ctl``: the admin API from the command line, and ``ocppgw-config``.

    ocppgw-ctl [--url URL] [--token TOKEN | --config INI] [--json]
               list | show ID | kick ID | call ID ACTION [PAYLOAD | @file] | health
               | messages ID [filters] | trace ID [filters]

A table for people, ``--json`` for scripts.  Every error (unreachable, 401,
404, timeout, a CALLERROR) is one line on stderr and a non-zero exit status:
1 for an error the gateway answered, 2 for a usage error, 3 when the
gateway cannot be reached.  The token comes from ``--token``, else
``$OCPPGW_TOKEN``, else the ``[admin]`` section of ``--config``.

Standard library only (urllib; http.client over the UNIX socket of
``[admin] endpoint = local``, found with ``--config``): the CLI runs on a
host without Twisted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
from importlib import resources
from typing import Any
from urllib import error, parse, request

from ocppgw.ctl_records import exchanges, trace_line

DEFAULT_URL = "http://127.0.0.1:9100"
#: Seconds to wait for the gateway beyond a CALL's own timeout.
SLACK = 5.0


class CtlError(Exception):
    """What went wrong, for stderr; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def url_of_endpoint(endpoint: str) -> str:
    """``http://HOST:PORT`` of a Twisted ``tcp:PORT[:interface=ADDR]`` endpoint."""
    parts = endpoint.split(":")
    if len(parts) < 2 or parts[0] != "tcp":
        raise CtlError(f"[admin] endpoint {endpoint!r}: give --url for a non-tcp endpoint", 2)
    host = "127.0.0.1"
    for part in parts[2:]:
        if part.startswith("interface="):
            host = part.removeprefix("interface=") or host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{parts[1]}"


def _from_config(path: str) -> tuple[str | None, str | None, str | None]:
    """The URL, token and (``[admin] endpoint = local``) UNIX socket of ``path``'s gateway."""
    from ocppgw.config import ConfigError, load

    try:
        admin = load(path).admin
    except ConfigError as e:
        raise CtlError(str(e), 2) from None
    if admin.endpoint is None:
        raise CtlError(f"{path}: [admin] endpoint is empty: the admin API is off", 2)
    if admin.local is not None:
        return "http://localhost", admin.token, admin.local
    return url_of_endpoint(admin.endpoint), admin.token, None


class _UNIXConnection(http.client.HTTPConnection):
    """HTTP over the UNIX socket at ``path`` (``[admin] endpoint = local``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """The admin API over HTTP."""

    def __init__(self, url: str, token: str | None, unix: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        #: The UNIX socket to reach the gateway by, instead of ``url``'s host.
        self.unix = unix

    def request(
        self, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = request.Request(self.url + path, data=data, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.unix is not None:
            status, payload = self._over_unix(req, timeout)
        else:
            try:
                with request.urlopen(req, timeout=timeout) as answer:
                    return answer.status, self._json(answer.read())
            except error.HTTPError as e:
                status, payload = e.code, self._json(e.read())
            except (error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise CtlError(f"cannot reach the gateway at {self.url}: {reason}", 3) from None
        if status == 401:
            raise CtlError(f"401 unauthorized: {payload.get('error', 'wrong or missing token')}")
        return status, payload

    def _over_unix(self, req: Any, timeout: float) -> tuple[int, Any]:
        assert self.unix is not None
        connection = _UNIXConnection(self.unix, timeout)
        try:
            connection.request(
                req.get_method(), req.selector, body=req.data, headers=dict(req.header_items())
            )
            answer = connection.getresponse()
            return answer.status, self._json(answer.read())
        except OSError as e:
            reason = e.strerror or e
            raise CtlError(f"cannot reach the gateway at {self.unix}: {reason}", 3) from None
        finally:
            connection.close()

    @staticmethod
    def _json(data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError:
            return {"error": data.decode("utf-8", "replace")[:200]}


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _check(status: int, body: Any, ok: tuple[int, ...] = (200,)) -> Any:
    if status not in ok:
        raise CtlError(f"{status}: {body.get('error', body) if isinstance(body, dict) else body}")
    return body


def _payload(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise CtlError(f"cannot read payload file {text[1:]}: {e.strerror}", 2) from None
    try:
        payload = json.loads(text)
    except ValueError as e:
        raise CtlError(f"payload is not JSON: {e}", 2) from None
    if not isinstance(payload, dict):
        raise CtlError("payload must be a JSON object", 2)
    return payload


def trace(client: Client, path: str, as_json: bool, out: Any) -> int:
    """Print each record of a ``follow=true`` stream as it comes, until interrupted."""
    req = request.Request(client.url + path)
    if client.token:
        req.add_header("Authorization", f"Bearer {client.token}")
    try:
        with request.urlopen(req) as stream:
            for line in stream:
                if line.startswith(b"data: "):
                    record = json.loads(line[6:])
                    print(json.dumps(record) if as_json else trace_line(record), file=out)
                    out.flush()
    except error.HTTPError as e:
        _check(e.code, Client._json(e.read()))
    except (error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CtlError(f"cannot reach the gateway at {client.url}: {reason}", 3) from None
    except KeyboardInterrupt:
        pass
    return 0


def run(args: argparse.Namespace, out: Any) -> int:
    url, token = args.url, args.token or os.environ.get("OCPPGW_TOKEN")
    unix = None
    if args.config:
        config_url, config_token, unix = _from_config(args.config)
        url, token = url or config_url, token or config_token
        unix = None if args.url else unix
    client = Client(url or DEFAULT_URL, token, unix)
    quoted = parse.quote(getattr(args, "id", "") or "", safe="")
    show: Any
    if args.command == "health":
        status, body = client.request("GET", "/healthz")
        show = (
            body
            if args.json
            else f"{body.get('status')}: "
            + "; ".join(body.get("reasons", [f"gateway {body.get('gateway_id')} is healthy"]))
        )
        print(show if not args.json else json.dumps(body, indent=2), file=out)
        return 0 if status == 200 else 1
    if args.command == "list":
        query = {
            k: v
            for k, v in (
                ("version", args.version),
                ("state", args.state),
                ("identity_like", args.identity_like),
            )
            if v
        }
        rows: list[dict[str, Any]] = []
        cursor = None
        while len(rows) < args.max:
            page = {**query, "limit": str(min(1000, args.max - len(rows)))}
            if cursor:
                page["cursor"] = cursor
            body = _check(*client.request("GET", "/api/v1/chargepoints?" + parse.urlencode(page)))
            rows += body["chargepoints"]
            cursor = body.get("next_cursor")
            if not cursor:
                break
        columns = [
            "identity",
            "version",
            "state",
            "listener",
            "remote_address",
            "connected_since",
            "last_message_at",
            "queue_length",
        ]
        print(json.dumps(rows, indent=2) if args.json else _table(rows, columns), file=out)
        return 0
    if args.command == "show":
        body = _check(*client.request("GET", f"/api/v1/chargepoints/{quoted}"))
        if args.json:
            print(json.dumps(body, indent=2), file=out)
            return 0
        for key, value in body.items():
            if key not in ("messages", "events", "errors"):
                print(f"{key:18} {'' if value is None else value}", file=out)
        print(f"{'errors':18} {body['errors'] or '-'}", file=out)
        print(
            "\nmessages:\n" + _table(body["messages"], ["direction", "type", "action", "count"]),
            file=out,
        )
        print(
            "\nevents:\n" + _table(body["events"], ["time", "event", "code", "reason", "peer"]),
            file=out,
        )
        return 0
    if args.command in ("messages", "trace"):
        names = ("action", "direction", "unique_id", "type", "since", "until")
        query = {k: str(v) for k in names if (v := getattr(args, k)) is not None}
        path = f"/api/v1/chargepoints/{quoted}/messages?"
        if args.command == "trace":
            return trace(
                client, path + parse.urlencode({**query, "follow": "true"}), args.json, out
            )
        query["limit"] = str(args.limit)
        records = _check(*client.request("GET", path + parse.urlencode(query)))
        if args.json:
            print(json.dumps(records, indent=2), file=out)
            return 0
        columns = ["time", "from", "action", "unique_id", "answer", "latency_ms", "verdict"]
        print(_table(exchanges(records), columns), file=out)
        return 0
    if args.command == "kick":
        path = f"/api/v1/chargepoints/{quoted}?" + parse.urlencode({"code": args.code})
        body = _check(*client.request("DELETE", path))
        print(json.dumps(body) if args.json else f"{args.id}: closed ({args.code})", file=out)
        return 0
    # call
    request_body = {"action": args.action, "payload": _payload(args.payload)}
    if args.timeout is not None:
        request_body["timeout"] = args.timeout
    status, body = client.request(
        "POST",
        f"/api/v1/chargepoints/{quoted}/calls",
        request_body,
        timeout=(args.timeout or 60.0) + SLACK,
    )
    body = _check(status, body)
    if args.json:
        print(json.dumps(body, indent=2), file=out)
    elif body.get("type") == "CALLRESULT":
        print(json.dumps(body["payload"], indent=2), file=out)
    else:
        print(f"CALLERROR {body.get('error_code')}: {body.get('error_description')}", file=out)
    return 0 if body.get("type") == "CALLRESULT" else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ocppgw-ctl", description="Operate an ocppgw gateway.")
    p.add_argument("--url", help=f"the admin endpoint (default: from --config, else {DEFAULT_URL})")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--token", help="the [admin] token (default: $OCPPGW_TOKEN)")
    who.add_argument("--config", metavar="INI", help="read the URL and token from this INI file")
    p.add_argument("--json", action="store_true", help="JSON output, for scripts")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="the charge points connected or in their grace period")
    ls.add_argument("--version")
    ls.add_argument("--state", choices=["connected", "grace"])
    ls.add_argument("--identity-like", help="SQL LIKE pattern: %% any run, _ one character")
    ls.add_argument("--max", type=int, default=10_000, help="at most this many (default 10000)")
    sub.add_parser("show", help="one charge point in detail").add_argument("id")
    kick = sub.add_parser("kick", help="close a charge point's connection")
    kick.add_argument("id")
    kick.add_argument("--code", type=int, default=1000, help="WebSocket close code (1000)")
    call = sub.add_parser("call", help="send a CALL and print its answer")
    call.add_argument("id")
    call.add_argument("action")
    call.add_argument("payload", nargs="?", help="JSON object, or @FILE (default {})")
    call.add_argument("--timeout", type=float, help="seconds to wait for the answer")
    sub.add_parser("health", help="the gateway's /healthz")
    history = sub.add_parser("messages", help="a charge point's recent exchanges (flight recorder)")
    follow = sub.add_parser("trace", help="follow a charge point's messages live, as tail -f")
    for command in (history, follow):
        command.add_argument("id")
        command.add_argument("--action")
        command.add_argument(
            "--direction", choices=["FromChargePoint", "ToChargePoint", "ToBackend", "FromBackend"]
        )
        command.add_argument("--unique-id")
        command.add_argument("--type", type=int, choices=[2, 3, 4, 5, 6], help="MessageTypeId")
    history.add_argument("--since", help="RFC 3339, e.g. 2026-12-06T14:00:00Z")
    history.add_argument("--until", help="RFC 3339")
    history.add_argument("--limit", type=int, default=100, help="the newest records (100)")
    follow.set_defaults(since=None, until=None)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        status = run(args, sys.stdout)
    except CtlError as e:
        print(f"ocppgw-ctl: {e}", file=sys.stderr)
        status = e.status
    sys.exit(status)


def default_config() -> str:
    """The documented default configuration shipped with the package."""
    return resources.files("ocppgw").joinpath("ocppgw.ini").read_text(encoding="utf-8")


def print_config() -> None:
    """``ocppgw-config``: print the default configuration, every key documented."""
    sys.stdout.write(default_config())
