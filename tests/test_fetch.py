"""`ifa fetch` against a real, hostile HTTP server on 127.0.0.1 (benchmarks/webserver.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from ifa.benchmarks.webserver import HostileServer
from ifa.curation.ingest import fetch, importing
from ifa.curation.ingest.downloader import Backoff, parse_retry_after
from ifa.curation.ingest.fetch import FetchSettings, fetch_images
from ifa.curation.ingest.image_store import ImageStore, sniff, verify
from ifa.curation.ingest.downloader import FetchError
from ifa.curation.ledger import fetches as ledger_fetches
from ifa.sample import IMAGES_DIR

# Short everything: a 1 s attempt, 2 retries, 50 ms first backoff.
FAST = FetchSettings(concurrency=8, timeout=1.0, retries=2, max_bytes=2_000_000, max_redirects=3,
                     backoff=Backoff(base=0.05, cap=0.2, max_retry_after=5.0))
PHOTOS = sorted(IMAGES_DIR.iterdir())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    """Real photos (JPEG, one as PNG) plus bodies that only look like images."""
    out = {p.name: p.read_bytes() for p in PHOTOS[:6]}
    buf = io.BytesIO()
    Image.open(PHOTOS[6]).save(buf, "PNG")
    out["photo.png"] = buf.getvalue()
    jpeg = PHOTOS[7].read_bytes()
    out["cut.jpg"] = jpeg[: len(jpeg) * 6 // 10]  # the server's copy is truncated
    out["junk.jpg"] = jpeg[:200] + random.Random(0).randbytes(20_000)  # a JPEG's start, then garbage
    out["empty"] = b""
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")  # 100 Mpx in a few KB
    out["bomb.png"] = bomb.getvalue()
    return out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _import(ws, tmp_path: Path, urls: dict[str, str], split: str = "train") -> None:
    data = {"images": [{"imageId": k, "url": v} for k, v in urls.items()]}
    path = tmp_path / f"{split}-urls.json"
    path.write_text(json.dumps(data))
    importing.import_imat(ws, path, split)


def _hostile_urls(srv: HostileServer, names: list[str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(image_id -> url, good image_id -> served file name, bad image_id -> expected reason)."""
    a, b, c, d, e, f = names
    good = {"good-a": (f"img/{a}", a), "good-b": (f"img/{b}", b), "png": ("img/photo.png", "photo.png"),
            "same-as-a": (f"img/{a}?copy", a), "flaky": (f"flaky/k1/1/{c}", c),
            "rate-limited": (f"ratelimit/k2/1/{d}", d), "chain": (f"redirect/3/{e}", e)}
    bad = {"e404": ("status/404", "http-404"), "e410": ("status/410", "http-410"), "e403": ("status/403", "http-4xx"),
           "e500": ("status/500", "http-5xx"), "stall": (f"stall/3/{f}", "timeout"), "drip": (f"drip/0.05/{f}", "timeout"),
           "dropped": (f"drop/{f}", "truncated"), "html": ("html", "not-an-image"),
           "long-chain": (f"redirect/5/{e}", "too-many-redirects"), "loop": ("loop/a", "too-many-redirects"),
           "to-ftp": ("to/ftp://example.org/a.jpg", "bad-url"), "big": ("big/3000000", "too-large"),
           "endless": ("endless", "too-large"), "empty": ("raw/empty", "empty"), "cut": ("raw/cut.jpg", "truncated"),
           "junk": ("raw/junk.jpg", "decode-error"), "bomb": ("img/bomb.png", "decompression-bomb"),
           "long-429": (f"ratelimit/k3/3600/{a}", "http-429")}
    urls = {k: srv.url(p) for k, (p, _) in {**good, **bad}.items()}
    urls["ftp"] = "ftp://127.0.0.1/a.jpg"
    urls["refused"] = f"http://127.0.0.1:{_closed_port()}/a.jpg"
    reasons = {k: r for k, (_, r) in bad.items()} | {"ftp": "bad-url", "refused": "connection"}
    return urls, {k: n for k, (_, n) in good.items()}, reasons


@pytest.mark.slow
def test_hostile_web(ws, tmp_path, files):
    names = [p.name for p in PHOTOS[:6]]
    with HostileServer(files) as srv:
        urls, good, bad = _hostile_urls(srv, names)
        _import(ws, tmp_path, urls)
        r = fetch_images(ws, settings=FAST)

        assert r.fetched == len(good) and r.skipped == 0 and not r.interrupted
        assert r.failed == dict(sorted(__import__("collections").Counter(bad.values()).items()))
        for iid, name in good.items():
            row = ws.ledger.image(iid)
            body = files[name]
            assert row["sha256"] == sha(body) and row["bytes"] == len(body)
            assert Path(row["path"]).read_bytes() == body
            assert Path(row["path"]) == ImageStore(ws.images_dir).path_for(sha(body), "png" if name.endswith(".png") else "jpg")
            assert (row["width"], row["height"]) == Image.open(io.BytesIO(body)).size
        assert ws.ledger.image("same-as-a")["path"] == ws.ledger.image("good-a")["path"]  # one file, two ids
        for iid, reason in bad.items():
            row = ledger_fetches.fetch_row(ws.ledger, iid)
            assert row["status"] == "failed" and row["reason"] == reason, (iid, row)
            assert ws.ledger.image(iid)["path"] is None

        def attempts(iid):
            return ledger_fetches.fetch_row(ws.ledger, iid)["attempts"]

        # Retried reasons use every retry; the rest are tried once.
        for iid in ("e500", "stall", "drip", "dropped", "cut", "refused"):
            assert attempts(iid) == FAST.retries + 1, iid
        for iid in ("e404", "e410", "e403", "html", "loop", "big", "junk", "bomb", "empty", "ftp", "long-429"):
            assert attempts(iid) == 1, iid
        assert srv.hits["/status/404"] == 1 and srv.hits["/status/500"] == FAST.retries + 1
        assert attempts("flaky") == 2 and attempts("rate-limited") == 2 and attempts("chain") == 1
        # Retry-After: 1 was waited for (the backoff alone is 25-50 ms).
        t = srv.times[f"/ratelimit/k2/1/{names[3]}"]
        assert t[1] - t[0] >= 0.95
        assert "Retry-After" in ledger_fetches.fetch_row(ws.ledger, "long-429")["last_error"]
        assert ledger_fetches.fetch_row(ws.ledger, "chain")["final_url"].endswith(f"/img/{names[4]}")
        # Nothing half-written is left, and every stored file is named by its content.
        assert not list((ws.images_dir / ".partial").iterdir())
        stored = [p for p in ws.images_dir.glob("??/??/*") if p.is_file()]
        assert len(stored) == len(set(good.values())) and all(sha(p.read_bytes()) == p.stem for p in stored)
        report = Path(r.report).read_text()
        assert "e404" in report and "good-a" not in report

        # A rerun skips what is fetched and leaves earlier failures alone.
        hits = sum(srv.hits.values())
        again = fetch_images(ws, settings=FAST)
        assert (again.fetched, again.skipped, again.not_retried) == (0, len(good), len(bad))
        assert again.failed == r.failed and sum(srv.hits.values()) == hits


def test_retry_failed_tries_again_and_adds_attempts(ws, tmp_path, files):
    name = PHOTOS[0].name
    with HostileServer(files) as srv:
        _import(ws, tmp_path, {"flaky": srv.url(f"flaky/k/3/{name}"), "gone": srv.url("status/404")})
        first = fetch_images(ws, settings=FAST)  # 3 attempts, all 500
        assert first.failed == {"http-404": 1, "http-5xx": 1}
        plain = fetch_images(ws, settings=FAST)
        assert plain.fetched == 0 and plain.not_retried == 2
        retried = fetch_images(ws, settings=FAST, retry_failed=True)
        assert retried.fetched == 1 and retried.failed == {"http-404": 1} and retried.not_retried == 0
    row = ledger_fetches.fetch_row(ws.ledger, "flaky")
    assert row["status"] == "fetched" and row["reason"] is None and row["attempts"] == 4
    assert ws.ledger.image("flaky")["sha256"] == sha(files[name])
    assert ledger_fetches.fetch_row(ws.ledger, "gone")["attempts"] == 2
    assert [e for e in ws.ledger.events_frame()["kind"] if e == "fetch"] == ["fetch"] * 3


def test_local_images_are_skipped_without_a_request(sample_ws):
    # The sample's URLs point to the internet; its files are local, so nothing is requested.
    r = fetch_images(sample_ws, settings=FAST)
    assert (r.fetched, r.skipped, r.failed) == (0, 310, {})


def test_split_filter_and_refetch_of_a_vanished_file(ws, tmp_path, files):
    a, b = PHOTOS[0].name, PHOTOS[1].name
    with HostileServer(files) as srv:
        _import(ws, tmp_path, {"t1": srv.url(f"img/{a}")}, "train")
        _import(ws, tmp_path, {"v1": srv.url(f"img/{b}")}, "validation")
        r = fetch_images(ws, "validation", FAST)
        assert r.fetched == 1 and ws.ledger.image("t1")["path"] is None
        Path(ws.ledger.image("v1")["path"]).unlink()
        r = fetch_images(ws, "validation", FAST)
        assert r.fetched == 1 and Path(ws.ledger.image("v1")["path"]).is_file()


def test_second_fetch_on_the_same_workspace_is_refused(ws):
    with fetch._exclusive(ws.images_dir / fetch.LOCK):
        with pytest.raises(fetch.IfaError, match="Another `ifa fetch` is running"):
            fetch_images(ws, settings=FAST)


def test_bad_settings_and_split(ws):
    with pytest.raises(fetch.IfaError, match="--concurrency"):
        fetch_images(ws, settings=FetchSettings(concurrency=0))
    with pytest.raises(fetch.IfaError, match="Unknown split"):
        fetch_images(ws, "trian")


def test_verify_formats_and_rejections(files):
    assert verify(files[PHOTOS[0].name], 10**7).ext == "jpg"
    assert verify(files["photo.png"], 10**7).ext == "png"
    for fmt, ext in (("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif")):
        buf = io.BytesIO()
        Image.open(PHOTOS[0]).convert("RGB").resize((64, 48)).save(buf, fmt)
        v = verify(buf.getvalue(), 10**7)
        assert (v.ext, v.width, v.height) == (ext, 64, 48) and sniff(buf.getvalue()).pillow == fmt
    cases = {b"": "empty", files[PHOTOS[0].name]: "too-large", b"<html>": "not-an-image",
             files["cut.jpg"]: "truncated", files["junk.jpg"]: "decode-error", files["bomb.png"]: "decompression-bomb"}
    for body, reason in cases.items():
        with pytest.raises(FetchError) as exc:
            verify(body, 20_000 if reason == "too-large" else 10**7)
        assert exc.value.reason == reason


def test_backoff_and_retry_after():
    b = Backoff(base=1.0, cap=8.0)
    for k, (lo, hi) in {1: (0.5, 1), 2: (1, 2), 3: (2, 4), 4: (4, 8), 9: (4, 8)}.items():
        waits = [b.delay(k) for _ in range(200)]
        assert lo <= min(waits) and max(waits) <= hi and len(set(waits)) > 1  # jittered
    assert b.delay(1, retry_after=5.0) == 5.0
    assert parse_retry_after("7") == 7.0 and parse_retry_after("soon") is None
    assert 50 < parse_retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))) <= 60


def test_cli_json(tmp_path, files, cli):
    ws_dir = str(tmp_path / "ws")
    assert cli("init", "--workspace", ws_dir).exit_code == 0
    with HostileServer(files) as srv:
        urls = {"ok": srv.url(f"img/{PHOTOS[0].name}"), "missing": srv.url("status/404")}
        (tmp_path / "t.json").write_text(json.dumps({"images": [{"imageId": k, "url": v} for k, v in urls.items()]}))
        assert cli("import", "imat", str(tmp_path / "t.json"), "--split", "test", "-w", ws_dir).exit_code == 0
        data = cli.json("fetch", "-w", ws_dir, "--json", "--timeout", "2", "--retries", "1", "--backoff", "0.05")
    assert (data["fetched"], data["skipped"], data["failed"]) == (1, 0, {"http-404": 1})
    bad = cli("fetch", "-w", ws_dir, "--concurrency", "0")
    assert bad.exit_code != 0


# ---- kill -9 in the middle, then rerun ------------------------------------------------------
KILLED_RUN = textwrap.dedent("""
    import sys
    from ifa.curation.workspace import Workspace
    from ifa.curation.ingest.fetch import FetchSettings, fetch_images
    from ifa.curation.ingest.downloader import Backoff
    with Workspace.open(sys.argv[1], command="fetch") as ws:
        fetch_images(ws, settings=FetchSettings(concurrency=4, timeout=1.0, retries=1, batch_size=25,
                     batch_seconds=60, backoff=Backoff(0.05, 0.1, 2.0)))
""")


def _journal_lines(ws) -> int:
    try:
        return sum(1 for line in open(ws.images_dir / fetch.JOURNAL) if line.endswith("\n"))
    except FileNotFoundError:
        return 0


def _committed(ws) -> int:
    with sqlite3.connect(f"file:{ws.db_path}?mode=ro", uri=True, timeout=5) as conn:
        try:
            return conn.execute("SELECT count(*) FROM fetches").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun(ws, tmp_path):
    photos = {p.name: p.read_bytes() for p in PHOTOS[:150]}
    with HostileServer(photos, latency=0.03) as srv:
        urls = {f"p{i}": srv.url(f"img/{name}?i={i}") for i, name in enumerate(photos)}
        bad = {f"b{i}": srv.url(f"status/{404 if i % 2 else 410}?i={i}") for i in range(20)}
        _import(ws, tmp_path, urls | bad)
        proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(ws.root)])
        try:
            # Kill once a batch is committed and the next one is half done (only in the journal).
            deadline = time.monotonic() + 60
            while not (_committed(ws) >= 25 and _journal_lines(ws) >= 10):
                assert proc.poll() is None, "the fetch finished before it could be killed"
                assert time.monotonic() < deadline, "the fetch made no progress"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        journaled = _journal_lines(ws)
        # Whatever the kill left, nothing under a final name is half-written.
        for p in ws.images_dir.glob("??/??/*"):
            assert sha(p.read_bytes()) == p.stem
        requests_before = sum(srv.hits.values())

        r = fetch_images(ws, settings=FAST)
    assert r.recovered >= min(journaled, 10) and not r.interrupted
    total = sum(1 for _ in ws.ledger.images_frame()["image_id"])
    assert r.fetched + r.skipped + sum(r.failed.values()) == total
    for iid, url in urls.items():
        row = ws.ledger.image(iid)
        name = url.split("/img/")[1].split("?")[0]
        assert row["sha256"] == sha(photos[name]) and Path(row["path"]).read_bytes() == photos[name]
    for iid, url in bad.items():
        assert ledger_fetches.fetch_row(ws.ledger, iid)["reason"] == ("http-404" if "/status/404" in url else "http-410")  # not "404" in url: the port may hold it
    # Each URL was asked for once, give or take the few in flight at the kill: the
    # journal's files were recovered, not downloaded again.
    asked_twice = sum(1 for n in srv.hits.values() if n > 1)
    assert asked_twice <= 4 * 4 and sum(srv.hits.values()) >= requests_before
    assert not list((ws.images_dir / ".partial").iterdir())
    assert _journal_lines(ws) == 0


@pytest.mark.slow
def test_ctrl_c_commits_what_is_done(ws, tmp_path):
    photos = {p.name: p.read_bytes() for p in PHOTOS[:100]}
    with HostileServer(photos, latency=0.05) as srv:
        _import(ws, tmp_path, {f"p{i}": srv.url(f"img/{n}") for i, n in enumerate(photos)})
        ws.close()
        proc = subprocess.Popen([sys.executable, "-c", "from ifa.cli.app import main; main()", "fetch",
                                 "-w", str(ws.root), "--concurrency", "4"], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while _journal_lines(ws) < 10:  # done but not yet committed (batches are 2 s apart)
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr  # Typer exits 130 on Ctrl-C
    fetched = ws.ledger.query("SELECT count(*) FROM images WHERE path IS NOT NULL")[0][0]
    assert 10 <= fetched < 100 and _journal_lines(ws) == 0  # everything done was committed
    assert ws.ledger.query("SELECT count(*) FROM fetches")[0][0] == fetched
    event = json.loads(ws.ledger.events_frame().query("kind == 'fetch'")["new"].iloc[-1])
    assert event["interrupted"] and event["fetched"] == fetched
