"""A hostile web server on 127.0.0.1 for `ifa fetch`'s tests and benchmark.

It serves real image bytes and everything the web does to a crawler: errors, flaky 5xx,
429 with Retry-After, stalls, bodies cut mid-stream, HTML sent as image/jpeg, redirect
chains and loops, oversized and endless bodies. Each route is one small handler in
ROUTES; the path's first segment picks it:

    /img/NAME                  the image NAME (200, image/jpeg or image/png)
    /status/CODE               an empty-ish error page with that status
    /flaky/KEY/N/NAME          500 for the first N requests of KEY, then the image
    /ratelimit/KEY/SECS/NAME   429 with Retry-After: SECS for the first request of KEY, then the image
    /stall/SECS/NAME           waits SECS before answering
    /drip/SECS/NAME            sends headers, then one byte every SECS
    /drop/NAME                 declares the full length, sends half the body, closes
    /html                      an HTML error page served as image/jpeg
    /redirect/N/NAME           a chain of N 302s ending at /img/NAME
    /loop/A                    /loop/a -> /loop/b -> /loop/a ...
    /to/URL-QUOTED             302 to any Location (e.g. ftp://...)
    /big/BYTES                 a body of BYTES bytes with its Content-Length
    /endless                   a chunked body that never ends (no Content-Length)
    /raw/NAME                  the bytes registered as NAME, whatever they are, as image/jpeg

`latency` adds a fixed delay to every request (the benchmark's 50 ms round trip).
`hits` counts requests per path and `times` stamps them, so tests can check that 404s
are not retried and that Retry-After was waited for.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import unquote


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real image hosts do
    disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (+40 ms a request)
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet: tests and benchmarks print their own
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv = self.server
        with srv.lock:
            srv.hits[self.path] += 1
            srv.times.setdefault(self.path, []).append(time.monotonic())
        if srv.latency:
            time.sleep(srv.latency)
        parts = [unquote(p) for p in self.path.split("?")[0].strip("/").split("/")]
        route = ROUTES.get(parts[0])
        if route is None:
            return self.reply(404, b"no such route", "text/plain")
        try:
            route(self, *parts[1:])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout under test); nothing to clean up

    def reply(self, status: int, body: bytes, ctype: str = "image/jpeg", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def image(self, name: str) -> None:
        body = self.server.files.get(name)
        if body is None:
            return self.reply(404, b"not found", "text/plain")
        self.reply(200, body, "image/png" if body.startswith(b"\x89PNG") else "image/jpeg")

    def count(self, key: str) -> int:
        """How many times this KEY was asked for, this request included."""
        with self.server.lock:
            self.server.keys[key] += 1
            return self.server.keys[key]


def _status(h: _Handler, code: str) -> None:
    h.reply(int(code), f"<html><body>error {code}</body></html>".encode(), "text/html")


def _flaky(h: _Handler, key: str, n: str, name: str) -> None:
    if h.count(key) <= int(n):
        return h.reply(500, b"<html>try again</html>", "text/html")
    h.image(name)


def _ratelimit(h: _Handler, key: str, secs: str, name: str) -> None:
    if h.count(key) == 1:
        return h.reply(429, b"<html>slow down</html>", "text/html", {"Retry-After": secs})
    h.image(name)


def _stall(h: _Handler, secs: str, name: str) -> None:
    time.sleep(float(secs))
    h.image(name)


def _drip(h: _Handler, secs: str, name: str) -> None:
    body = h.server.files[name]
    h.send_response(200)
    h.send_header("Content-Type", "image/jpeg")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    for i in range(len(body)):
        h.wfile.write(body[i:i + 1])
        h.wfile.flush()
        time.sleep(float(secs))


def _drop(h: _Handler, name: str) -> None:
    body = h.server.files[name]
    h.send_response(200)
    h.send_header("Content-Type", "image/jpeg")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body[: len(body) // 2])
    h.wfile.flush()
    h.close_connection = True


def _html(h: _Handler) -> None:
    h.reply(200, b"<!DOCTYPE html><html><head><title>Image not found</title></head><body>gone</body></html>")


def _redirect(h: _Handler, n: str, name: str) -> None:
    k = int(n)
    h.reply(302, b"", "text/plain", {"Location": f"/redirect/{k - 1}/{name}" if k > 1 else f"/img/{name}"})


def _loop(h: _Handler, which: str) -> None:
    h.reply(302, b"", "text/plain", {"Location": "/loop/b" if which == "a" else "/loop/a"})


def _to(h: _Handler, *target: str) -> None:
    h.reply(302, b"", "text/plain", {"Location": "/".join(target)})


def _big(h: _Handler, n: str) -> None:
    h.reply(200, b"\xff\xd8\xff" + b"\0" * (int(n) - 3))


def _endless(h: _Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "image/jpeg")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    chunk = b"\xff\xd8\xff" + b"\0" * 65533
    while True:
        h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))


def _raw(h: _Handler, name: str) -> None:
    h.reply(200, h.server.files[name])


ROUTES: dict[str, Callable[..., None]] = {
    "img": _Handler.image, "status": _status, "flaky": _flaky, "ratelimit": _ratelimit, "stall": _stall,
    "drip": _drip, "drop": _drop, "html": _html, "redirect": _redirect, "loop": _loop, "to": _to,
    "big": _big, "endless": _endless, "raw": _raw,
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the benchmark opens 64+ connections at once

    def __init__(self, files: dict[str, bytes], latency: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files, self.latency = files, latency
        self.lock = threading.Lock()
        self.hits: Counter = Counter()
        self.times: dict[str, list[float]] = {}
        self.keys: Counter = Counter()

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up (a timeout under test, a killed fetch) is expected here.
        pass


class HostileServer:
    """Serve `files` (name -> bytes) on a free 127.0.0.1 port in a background thread.

    Use as a context manager; `url(path)` builds an absolute URL."""

    def __init__(self, files: dict[str, bytes], latency: float = 0.0) -> None:
        self._server = _Server(files, latency)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def hits(self) -> Counter:
        """path -> requests served."""
        return self._server.hits

    @property
    def times(self) -> dict[str, list[float]]:
        """path -> time.monotonic() of each request."""
        return self._server.times

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def __enter__(self) -> "HostileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_forever(folder: str, latency: float, port_file: str) -> None:
    """Entry point for a server in its own process (the benchmark), so that its work
    does not share the client's GIL: serves every file in `folder` by name and writes
    the port to `port_file`."""
    from pathlib import Path

    files = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
    server = _Server(files, latency)
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    import sys

    serve_forever(sys.argv[1], float(sys.argv[2]), sys.argv[3])
