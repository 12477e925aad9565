"""The HTTP side of `ifa fetch`: one GET with bounded redirects, a size cap and a deadline,
and the retry policy (exponential backoff with jitter, Retry-After honoured per host).

Engine choice, measured with /tmp prototypes over `benchmarks/webserver.py` in a separate
process, 310 real JPEGs (~30 KB), 50 ms injected latency, full Pillow decode + sha256 of
every body, on the shared 2-core dev machine (images/s; noisy, best of the runs kept):

    concurrency          1     16     64
    threads + urllib3    19    296    813
    threads + httpx      18    290    424
    asyncio + httpx      18    264    116
    asyncio + aiohttp    18    307    373-708

Threads over urllib3 won or tied everywhere and need no new event loop in a library
that is otherwise synchronous; httpx's async pool collapses past ~16 connections here.
So: a thread pool, one shared urllib3 PoolManager (thread-safe, keep-alive per host).
`python -m benchmarks.fetch_bench` re-measures the engine against a plain
ThreadPoolExecutor + urllib.request loop.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

if TYPE_CHECKING:
    import urllib3


# Reasons a download can fail, with whether it is worth trying again. Image-content
# reasons (empty, not-an-image, ...) live in image_store.REASONS.
REASONS: dict[str, tuple[bool, str]] = {
    "http-404": (False, "the server says the image does not exist"),
    "http-410": (False, "the server says the image is gone for good"),
    "http-4xx": (False, "another client error (403 forbidden, 401, 400, ...)"),
    "http-429": (True, "rate-limited; retried after Retry-After (or backoff)"),
    "http-5xx": (True, "a server error; retried with backoff"),
    "http-other": (False, "an answer that is neither an image, a redirect nor an error (1xx, 3xx without Location)"),
    "timeout": (True, "no complete answer within --timeout (stalls, slow bodies, 408)"),
    "connection": (True, "refused, reset, DNS or TLS failure before the body arrived"),
    "truncated": (True, "the body stopped before its announced length (or the image data is cut off)"),
    "too-large": (False, "the body is larger than --max-bytes"),
    "too-many-redirects": (False, "more redirects than --max-redirects, or a redirect loop"),
    "bad-url": (False, "not an http(s) URL with a host (ftp:, file:, data:, malformed), here or in a redirect"),
}

REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024
USER_AGENT = "ifa-fetch/0.1 (dataset curation; one request per image)"


class FetchError(Exception):
    """One failed attempt: `reason` is a key of REASONS (or image_store.REASONS);
    `retry_after` is the server's Retry-After in seconds when it sent one."""

    def __init__(self, reason: str, detail: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.status, self.retry_after = reason, detail, status, retry_after


@dataclass(frozen=True)
class Body:
    """A complete 2xx body and where it finally came from."""

    data: bytes
    url: str
    status: int


def status_reason(code: int) -> str:
    """The failure reason for a non-2xx, non-redirect status code."""
    if code in (404, 410, 429):
        return f"http-{code}"
    if code == 408:
        return "timeout"
    if 500 <= code < 600:
        return "http-5xx"
    if 400 <= code < 500:
        return "http-4xx"
    return "http-other"


def check_url(url: str) -> str:
    """Return `url` if it is http(s) with a host; raise FetchError('bad-url') otherwise."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise FetchError("bad-url", f"{url!r} does not parse: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise FetchError("bad-url", f"{url!r} is not http or https")
    if not parts.hostname:
        raise FetchError("bad-url", f"{url!r} has no host")
    return url.strip()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpEngine:
    """GET one URL: follows at most `max_redirects` redirects (http/https only), stops
    reading past `max_bytes`, and gives each attempt `timeout` seconds in all (connect,
    headers and body; a server dripping bytes cannot stretch it much past that).
    Thread-safe: one engine serves every worker thread."""

    def __init__(self, *, timeout: float, max_bytes: int, max_redirects: int, pool_size: int):
        import urllib3  # 50 ms: loaded when a fetch starts, not with the CLI

        self.timeout, self.max_bytes, self.max_redirects = timeout, max_bytes, max_redirects
        self.pool = urllib3.PoolManager(
            num_pools=256,  # hosts kept warm at once; iMaterialist's URLs spread over a few dozen
            maxsize=pool_size, block=False, retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            headers={"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.5",
                     # Images are compressed already; identity also keeps a gzip bomb out.
                     "Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        self.pool.clear()

    def get(self, url: str) -> Body:
        """The body of `url` after redirects. Raises FetchError with a REASONS key."""
        url = check_url(url)
        seen = {url}
        deadline = time.monotonic() + self.timeout
        for _ in range(self.max_redirects + 1):
            resp = self._request(url)
            status = resp.status
            if status in REDIRECTS and resp.headers.get("Location"):
                resp.close()
                nxt = urljoin(url, resp.headers["Location"])
                try:
                    check_url(nxt)
                except FetchError as exc:
                    raise FetchError("bad-url", f"redirected to {nxt!r}, which is not http(s)", status) from exc
                if nxt in seen:
                    raise FetchError("too-many-redirects", f"redirect loop back to {nxt}", status)
                seen.add(nxt)
                url = nxt
                continue
            if not 200 <= status < 300:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                resp.close()
                raise FetchError(status_reason(status), f"HTTP {status} from {url}", status, retry_after)
            return Body(self._read(resp, url, deadline), url, status)
        raise FetchError("too-many-redirects", f"more than {self.max_redirects} redirects, last to {url}")

    def _request(self, url: str) -> urllib3.BaseHTTPResponse:
        try:
            return self.pool.request("GET", url, preload_content=False, redirect=False, retries=False)
        except Exception as exc:  # noqa: BLE001 (every transport error maps to a reason)
            raise _transport_error(exc, url) from None

    def _read(self, resp: urllib3.BaseHTTPResponse, url: str, deadline: float) -> bytes:
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            resp.close()
            raise FetchError("too-large", f"{url} announces {int(declared):,} bytes (cap {self.max_bytes:,})", resp.status)
        chunks, got = [], 0
        ok = False
        try:
            while True:
                # read1 returns what has arrived, so the deadline is checked between drips.
                chunk = resp.read1(CHUNK)
                if not chunk:
                    break
                got += len(chunk)
                if got > self.max_bytes:
                    raise FetchError("too-large", f"{url} sent more than {self.max_bytes:,} bytes", resp.status)
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise FetchError("timeout", f"{url} took longer than {self.timeout:g} s", resp.status)
            ok = True
        except FetchError:
            raise
        except Exception as exc:  # noqa: BLE001
            err = _transport_error(exc, url)
            if err.reason == "connection" and got:
                err = FetchError("truncated", f"{url}: connection lost after {got:,} bytes ({exc})", resp.status)
            raise err from None
        finally:
            if ok:
                resp.release_conn()
            else:
                resp.close()  # an unread body must not go back to the pool
        return b"".join(chunks)


def _transport_error(exc: Exception, url: str) -> FetchError:
    from urllib3 import exceptions as u3

    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = f"{url}: {type(exc).__name__}: {exc}"
    if isinstance(exc, u3.NewConnectionError):  # a subclass of ConnectTimeoutError, but a refusal
        return FetchError("connection", text)
    if isinstance(exc, (u3.TimeoutError, TimeoutError)):
        return FetchError("timeout", text)
    if isinstance(exc, (u3.IncompleteRead,)) or "IncompleteRead" in str(exc):
        return FetchError("truncated", text)
    if isinstance(exc, (u3.LocationValueError, u3.URLSchemeUnknown)):
        return FetchError("bad-url", text)
    return FetchError("connection", text)


class HostGate:
    """Per-host 'not before' times: after a 429 with Retry-After, every worker waits
    before its next request to that host, not just the one that was told to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}

    def block(self, url: str, seconds: float) -> None:
        host = urlsplit(url).netloc
        with self._lock:
            self._until[host] = max(self._until.get(host, 0.0), time.monotonic() + seconds)

    def wait(self, url: str, stop: threading.Event) -> None:
        until = self._until.get(urlsplit(url).netloc)
        if until is not None:
            stop.wait(max(0.0, until - time.monotonic()))


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: before retry k (1-based) wait a random time in
    [d/2, d], d = min(cap, base * 2**(k-1)) ("equal jitter": spreads a burst of failures
    without ever retrying at once). A Retry-After longer than that wins; one longer
    than `max_retry_after` is not waited for (the image fails as http-429 and
    `--retry-failed` tries it later)."""

    base: float = 1.0
    cap: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, retry: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        d = min(self.cap, self.base * 2 ** (retry - 1))
        wait = d / 2 + (rng or random).uniform(0, d / 2)
        return max(wait, retry_after) if retry_after is not None else wait
