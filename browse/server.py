"""The HTTP side of `ifa browse`: the standard library's threading server, loopback by
default, a random token on every request.

Stack: `http.server` (no dependency to add; neither Starlette/uvicorn nor Flask is in the
venv). Its own cost per request is well under the ledger's (benchmarks/browse_bench.py
reports server time beside round trips), and the pages are server-rendered with a little
JavaScript, so nothing is built at install time.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..errors import IfaError
from .app import BrowseApp, Request, Response, error_response, parse_target

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class BrowseServer:
    """A started server: where it listens and the URL (with the token) to open."""

    host: str
    port: int
    token: str
    url: str
    httpd: ThreadingHTTPServer
    app: BrowseApp

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="ifa-browse", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.app.close()


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def start(root: Path, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> BrowseServer:
    """Listen on host:port (port 0: a free one) for the workspace at `root` and return the
    server, not yet serving (`serve_forever` or `start_in_thread`). Raises IfaError when the
    workspace is missing or the port is taken."""
    app = BrowseApp(root, token or secrets.token_urlsafe(24))
    handler = type("Handler", (_Handler,), {"app": app, "loopback_only": is_loopback(host)})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
    try:
        httpd = server_class((host, port), handler)
    except OSError as exc:
        app.close()
        raise IfaError(f"Cannot listen on {host}:{port} ({exc.strerror}); pick another --port.") from None
    app.warm()
    bound = httpd.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    return BrowseServer(host, bound, app.token, f"http://{shown}:{bound}/?token={app.token}", httpd, app)


class _Handler(BaseHTTPRequestHandler):
    app: BrowseApp
    loopback_only: bool
    protocol_version = "HTTP/1.1"
    server_version = "ifa-browse"

    def log_message(self, format, *args) -> None:  # the terminal shows the startup line only
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        path, query = parse_target(self.path)
        refusal = self._refusal(query)
        if refusal is not None:
            self._send(refusal)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(error_response(413, "The request body is too large."))
            return
        body = self.rfile.read(length) if length else b""
        query.pop("token", None)
        start = time.perf_counter()
        response = self.app.handle(Request(method, path, query, body))
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
        self._send(response)

    def _refusal(self, query: dict[str, list[str]]) -> Response | None:
        """Why this request is refused (a foreign Host header, a missing or wrong token), or None."""
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if self.loopback_only and host not in LOOPBACK_NAMES:
            return error_response(403, f"Host {host!r} is refused: ifa browse answers on this machine only; "
                                       "start it with --host to serve other hosts.")
        given = self.headers.get("Authorization", "")
        token = given[7:] if given.startswith("Bearer ") else (query.get("token") or [""])[-1]
        if not hmac.compare_digest(token.encode(), self.app.token.encode()):
            return error_response(401, "The access token is missing or wrong: open the URL `ifa browse` printed "
                                       "(with ?token=), or send Authorization: Bearer <token>.")
        return None

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")  # the token is in page URLs
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)
