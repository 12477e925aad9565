"""Throughput of `ifa fetch` against a local server with injected latency, beside a peer.

    python -m benchmarks.fetch_bench [--latency 0.05] [--images DIR] [--n 2000] [--rerun]

The server (benchmarks/webserver.py) runs in its own process and adds `--latency`
seconds to every request (50 ms: a far CDN). Each URL is distinct (`?i=`), the bodies are
real photos (the bundled sample, or `--images`, e.g. ../shared/data/clothing-cc0/images).

  ifa fetch   the whole command's library call on a fresh workspace: GET with retries
              and redirects, size cap, magic bytes, full Pillow decode, sha256,
              content-addressed write (fsync + rename), ledger batches and journal;
  peer        ThreadPoolExecutor + urllib.request: GET, sha256, full Pillow decode and the
              same content-addressed write (fsync + rename), no retries, no ledger.

`ideal` is concurrency / latency, what the round trip alone allows. `--rerun` also times
a second run over the same workspace (everything skipped). Numbers depend on the
machine: the server shares its cores with the client.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from ifa.curation.ingest import importing
from ifa.curation.ingest.fetch import FetchSettings, fetch_images
from ifa.curation.workspace import Workspace
from ifa.sample import IMAGES_DIR


def start_server(folder: Path, latency: float) -> tuple[subprocess.Popen, int]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen([sys.executable, "-m", "ifa.benchmarks.webserver", str(folder), str(latency), str(port_file)])
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the benchmark server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def urls_for(port: int, names: list[str], n: int) -> list[str]:
    return [f"http://127.0.0.1:{port}/img/{names[i % len(names)]}?i={i}" for i in range(n)]


def run_ifa(urls: list[str], concurrency: int, root: Path, rerun: bool) -> tuple[float, float | None]:
    shutil.rmtree(root, ignore_errors=True)
    ws = Workspace.init(root, command="bench")
    listing = root / "urls.json"
    listing.write_text(json.dumps({"images": [{"imageId": f"i{k}", "url": u} for k, u in enumerate(urls)]}))
    importing.import_imat(ws, listing, "train")
    settings = FetchSettings(concurrency=concurrency, timeout=30.0)
    t = time.perf_counter()
    r = fetch_images(ws, settings=settings)
    dt = time.perf_counter() - t
    assert r.fetched == len(urls) and not r.failed, r
    again = None
    if rerun:
        t = time.perf_counter()
        r2 = fetch_images(ws, settings=settings)
        again = time.perf_counter() - t
        assert r2.skipped == len(urls)
    ws.close()
    return len(urls) / dt, again


def run_peer(urls: list[str], concurrency: int, root: Path) -> float:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)

    def one(url: str) -> None:
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = resp.read()
        digest = hashlib.sha256(body).hexdigest()
        with Image.open(io.BytesIO(body)) as im:
            im.load()
        dest = root / digest[:2] / digest[2:4] / f"{digest}.jpg"
        if dest.exists():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{digest}.{os.getpid()}.{id(body)}.tmp"
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)

    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, urls))
    return len(urls) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added to every request")
    ap.add_argument("--images", type=Path, default=IMAGES_DIR, help="folder of photos to serve")
    ap.add_argument("--n", type=int, default=2000, help="URLs per run at concurrency >= 16 (100 at 1)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--rerun", action="store_true", help="also time a rerun that skips everything")
    args = ap.parse_args()

    names = sorted(p.name for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    proc, port = start_server(args.images, args.latency)
    work = Path(tempfile.mkdtemp(prefix="ifa-fetch-bench-"))
    rows = []
    try:
        for c in args.concurrency:
            n = min(args.n, 100) if c == 1 else args.n
            urls = urls_for(port, names, n)
            ifa_rate, again = run_ifa(urls, c, work / "ws", args.rerun)
            peer_rate = run_peer(urls_for(port, names, n), c, work / "peer")
            rows.append((c, n, ifa_rate, peer_rate, c / args.latency if args.latency else float("nan"), again))
            print(f"  concurrency {c}: ifa {ifa_rate:.1f} img/s, peer {peer_rate:.1f} img/s", file=sys.stderr, flush=True)
    finally:
        proc.kill()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nifa fetch vs ThreadPoolExecutor + urllib.request; {len(names)} photos from {args.images}, "
          f"{args.latency * 1000:.0f} ms latency per request, {os.cpu_count()} CPUs")
    head = f"{'concurrency':>11} {'urls':>6} {'ifa img/s':>10} {'peer img/s':>11} {'ifa/peer':>9} {'ideal':>7}"
    if args.rerun:
        head += f" {'rerun s':>8}"
    print(head)
    for c, n, a, b, ideal, again in rows:
        line = f"{c:>11} {n:>6} {a:>10.1f} {b:>11.1f} {a / b:>9.2f} {ideal:>7.0f}"
        if args.rerun:
            line += f" {again:>8.2f}"
        print(line)


if __name__ == "__main__":
    main()
