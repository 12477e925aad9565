"""`ifa fetch`: download every image URL in the ledger into the content-addressed store.

Resumable at a million images:
- images with a local file are skipped; a plain rerun also skips images whose last try
  failed (`retry_failed=True` tries them again);
- outcomes are committed to the ledger in batches (BATCH_SIZE images or BATCH_SECONDS,
  whichever comes first), so a kill -9 loses at most the batch in flight;
- every stored file is also appended (one line, flushed) to `images/.fetch-journal`
  before it joins a batch; the next run rehashes the journal's files whose ledger rows
  a kill lost and records them without downloading them again;
- a lock file keeps two fetches off one workspace (the journal has one writer).

A worker thread does everything for one image (GET with retries, verify, store); the
calling thread alone talks to the ledger. See downloader.py for why threads + urllib3.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from threading import Event
from typing import Iterator

from ...errors import IfaError
from ...progress import SILENT, Progress
from . import downloader, image_store
from .downloader import Backoff, FetchError, HostGate, HttpEngine
from .image_store import ImageStore
from ..ledger import FileInfo, check_splits
from ..ledger import fetches as ledger_fetches
from ..ledger.fetches import Candidate, FetchRecord
from .. import reports
from ..workspace import Workspace

# Every failure reason: (retried within a run?, what it means). One registry for the
# worker, `--help`, the README and the --json `failed` keys.
REASONS: dict[str, tuple[bool, str]] = dict(sorted({**downloader.REASONS, **image_store.REASONS}.items()))

# A commit every 500 images or 2 s: at ~500 images/s that is one small transaction a
# second, and a kill -9 costs at most that batch (which the journal then recovers).
BATCH_SIZE = 500
BATCH_SECONDS = 2.0
PAGE = 5000  # candidates read from the ledger at a time
JOURNAL = ".fetch-journal"
LOCK = ".fetch.lock"


@dataclass(frozen=True)
class FetchSettings:
    """How hard to pull. `retries` is retries after the first attempt; `timeout` is the
    whole of one attempt (connect, headers, body) in seconds; a batch of outcomes is
    committed every `batch_size` images or `batch_seconds`, whichever comes first."""

    concurrency: int = 32
    timeout: float = 20.0
    retries: int = 3
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    backoff: Backoff = Backoff()
    batch_size: int = BATCH_SIZE
    batch_seconds: float = BATCH_SECONDS

    def check(self) -> None:
        problems = []
        if not 1 <= self.concurrency <= 1024:
            problems.append(f"--concurrency must be between 1 and 1024 (got {self.concurrency})")
        if self.timeout <= 0:
            problems.append(f"--timeout must be positive (got {self.timeout})")
        if self.retries < 0:
            problems.append(f"--retries must be 0 or more (got {self.retries})")
        if self.max_bytes <= 0:
            problems.append(f"--max-bytes must be positive (got {self.max_bytes})")
        if self.batch_size < 1 or self.batch_seconds <= 0:
            problems.append("batches need at least one image and a positive time")
        if self.max_redirects < 0:
            problems.append(f"--max-redirects must be 0 or more (got {self.max_redirects})")
        if problems:
            raise IfaError("; ".join(problems) + ".")


@dataclass
class FetchResult:
    """What a fetch run did, over the images with a URL (in `split` when given):
    fetched + skipped + sum(failed) covers them all unless `interrupted`.

    fetched: stored by this run (`recovered` of them from a killed run's journal);
    skipped: already had a local file; failed: reason -> images whose last try failed,
    this run's and earlier ones not retried (`not_retried` of them); without_url: images
    with neither a file nor a URL; report: CSV of every failed image."""

    fetched: int = 0
    skipped: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    recovered: int = 0
    not_retried: int = 0
    without_url: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    images_per_s: float = 0.0
    split: str | None = None
    report: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Outcome:
    candidate: Candidate
    attempts: int
    file: FileInfo | None = None
    record: FetchRecord | None = None  # None: interrupted before an answer; not recorded


def fetch_images(ws: Workspace, split: str | None = None, settings: FetchSettings = FetchSettings(),
                 retry_failed: bool = False, progress: Progress = SILENT) -> FetchResult:
    """Download every image that has a URL and no local file into `ws.images_dir`,
    recording path, sha256, size and dimensions (and each image's outcome) in the ledger.

    split: only this split. retry_failed: also try images whose last try failed.
    Returns a FetchResult. Raises IfaError for a bad split or setting, when another fetch
    is running on the workspace, or when the store cannot be written (disk full, ...);
    what was fetched before that is kept. A KeyboardInterrupt commits what is done first."""
    check_splits(split)
    settings.check()
    ws.images_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(ws.images_dir / LOCK):
        run = _Run(ws, split, settings, retry_failed, progress)
        return run.go()


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    # flock dies with the process, so a kill -9 never leaves the workspace locked.
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IfaError(f"Another `ifa fetch` is running on {lock_path.parent.parent}; "
                           "wait for it to finish (or stop it) and run this again.") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class _Journal:
    """Append-only lines of files stored but maybe not yet committed to the ledger."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = open(path, "a", encoding="utf-8")

    def entries(self) -> list[dict]:
        out = []
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # the line a kill cut short
        return out

    def append(self, file: FileInfo, attempts: int, final_url: str | None, http_status: int | None) -> None:
        self.fh.write(json.dumps({**asdict(file), "attempts": attempts, "final_url": final_url,
                                  "http_status": http_status}) + "\n")
        self.fh.flush()  # in the kernel's hands now: survives a kill -9 of this process

    def reset(self) -> None:
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class _Run:
    def __init__(self, ws: Workspace, split: str | None, settings: FetchSettings, retry_failed: bool,
                 progress: Progress) -> None:
        self.ws, self.ledger, self.split, self.settings = ws, ws.ledger, split, settings
        self.retry_failed, self.progress = retry_failed, progress
        self.store = ImageStore(ws.images_dir)
        self.stop = Event()
        self.gate = HostGate()
        self.result = FetchResult(split=split)
        self.failed: Counter = Counter()
        self.files: list[FileInfo] = []
        self.records: list[FetchRecord] = []
        self.last_commit = time.monotonic()
        self.recovered_ids: set[str] = set()

    # ---- the run --------------------------------------------------------------------------
    def go(self) -> FetchResult:
        started = time.monotonic()
        self.store.clear_partial()
        self.journal = _Journal(self.ws.images_dir / JOURNAL)
        self.engine = HttpEngine(timeout=self.settings.timeout, max_bytes=self.settings.max_bytes,
                                 max_redirects=self.settings.max_redirects, pool_size=self.settings.concurrency)
        try:
            self.result.recovered = self._recover()
            self.result.fetched = self.result.recovered
            self.result.without_url = ledger_fetches.without_source_count(self.ledger, self.split)
            total = ledger_fetches.pending_count(self.ledger, self.split, self.retry_failed)
            with self.progress.task("fetching", total=total) as task:
                self.task, self.total, self.started = task, total, time.monotonic()
                self._download_all()
        except BaseException:  # Ctrl-C, or a store that cannot be written
            self.result.interrupted = True
            raise
        finally:
            self._commit()
            self.engine.close()
            self.journal.close()
            self._finish(started)
        return self.result

    def _download_all(self) -> None:
        max_inflight = self.settings.concurrency * 4
        inflight: set[Future] = set()
        with ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="ifa-fetch") as pool:
            try:
                for cand in self._to_fetch():
                    while len(inflight) >= max_inflight:
                        self._collect(inflight)
                    inflight.add(pool.submit(self._fetch_one, cand))
                while inflight:
                    self._collect(inflight)
            except BaseException:
                # Ctrl-C or a store failure: workers stop at their next step; what they
                # finished is still recorded by the caller's final commit.
                self.stop.set()
                for f in inflight:
                    f.cancel()
                pool.shutdown(wait=True)
                for f in inflight:
                    if f.done() and not f.cancelled() and f.exception() is None:
                        self._handle(f.result())
                raise

    def _to_fetch(self) -> Iterator[Candidate]:
        after = 0
        while True:
            page = ledger_fetches.candidates(self.ledger, self.split, after, PAGE)
            if not page:
                return
            after = page[-1].pk
            for cand in page:
                if cand.path:
                    if os.path.exists(cand.path):
                        # recovered files count as fetched (by this run), not as skipped
                        self.result.skipped += cand.image_id not in self.recovered_ids
                        continue
                    self.total += 1  # its file is gone: fetch it again
                    self.task.update(total=self.total)
                elif cand.fetch_status == "failed" and not self.retry_failed:
                    self.result.not_retried += 1
                    self.failed[cand.fetch_reason] += 1
                    continue
                yield cand

    def _collect(self, inflight: set[Future]) -> None:
        """Handle the finished futures, taking each out of `inflight` before handling it, so
        a Ctrl-C that lands here never has the cleanup handle (and count) it twice."""
        done, _ = wait(inflight, timeout=0.5, return_when=FIRST_COMPLETED)
        for f in done:
            inflight.discard(f)
            try:
                outcome = f.result()
            except OSError as exc:
                raise IfaError(f"Could not write to {self.store.root}: {exc}. Free space or fix permissions, "
                               "then rerun `ifa fetch`; what was fetched so far is kept.") from exc
            self._handle(outcome)
        if len(self.records) >= self.settings.batch_size or time.monotonic() - self.last_commit >= self.settings.batch_seconds:
            self._commit()
            self._show_rate()

    def _handle(self, outcome: _Outcome) -> None:
        if outcome.record is None:
            return
        if outcome.file is not None:
            self.journal.append(outcome.file, outcome.attempts, outcome.record.final_url, outcome.record.http_status)
            self.files.append(outcome.file)
            self.result.fetched += 1
        else:
            self.failed[outcome.record.reason] += 1
        self.records.append(outcome.record)
        self.task.advance()

    def _commit(self) -> None:
        if self.records:
            ledger_fetches.record(self.ledger, self.files, self.records)
            self.journal.reset()  # every line in it is in the ledger now
        self.files, self.records = [], []
        self.last_commit = time.monotonic()

    def _show_rate(self) -> None:
        done = self.result.fetched - self.result.recovered + sum(self.failed.values()) - self.result.not_retried
        rate = done / max(1e-9, time.monotonic() - self.started)
        failed = sum(self.failed.values()) - self.result.not_retried
        self.task.update(description=f"fetching {rate:,.0f} img/s, {failed:,} failed")

    # ---- one image (worker thread) -----------------------------------------------------------
    def _fetch_one(self, cand: Candidate) -> _Outcome:
        s = self.settings
        attempts = 0
        while not self.stop.is_set():
            self.gate.wait(cand.url, self.stop)
            attempts += 1
            try:
                body = self.engine.get(cand.url)
                facts = image_store.verify(body.data, s.max_bytes)
                path = self.store.put(body.data, facts)
            except FetchError as exc:
                retry, detail = REASONS[exc.reason][0], exc.detail
                if retry and exc.retry_after is not None:
                    if exc.retry_after > s.backoff.max_retry_after:
                        retry = False
                        detail += f"; Retry-After {exc.retry_after:.0f} s is longer than this run waits " \
                                  f"({s.backoff.max_retry_after:.0f} s): rerun with --retry-failed later"
                    else:
                        self.gate.block(cand.url, exc.retry_after)  # the whole host waits, not one worker
                if not retry or attempts > s.retries:
                    return _Outcome(cand, attempts, record=FetchRecord(
                        cand.image_id, "failed", attempts, exc.reason, exc.status, None, detail[:500]))
                if self.stop.wait(s.backoff.delay(attempts, exc.retry_after)):
                    break
                continue
            file = FileInfo(cand.image_id, str(path), facts.sha256, facts.bytes, facts.width, facts.height)
            return _Outcome(cand, attempts, file, FetchRecord(cand.image_id, "fetched", attempts,
                                                              http_status=body.status, final_url=body.url))
        return _Outcome(cand, attempts)

    # ---- recovery and the end -------------------------------------------------------------------
    def _recover(self) -> int:
        """Record files a killed run stored (journal lines) whose ledger rows it lost."""
        entries = self.journal.entries()
        files, records = [], []
        for e in entries:
            row = self.ledger.image(e.get("image_id", ""))
            if row is None or (row["path"] and os.path.exists(row["path"])):
                continue  # already committed, or the image is no longer in the ledger
            path = Path(e["path"])
            try:
                if path.stat().st_size != e["bytes"] or self.store.rehash(path) != e["sha256"]:
                    continue  # not the file the journal describes: fetch it again
            except OSError:
                continue
            files.append(FileInfo(e["image_id"], e["path"], e["sha256"], e["bytes"], e["width"], e["height"]))
            records.append(FetchRecord(e["image_id"], "fetched", int(e.get("attempts", 1)),
                                       http_status=e.get("http_status"), final_url=e.get("final_url")))
        if records:
            ledger_fetches.record(self.ledger, files, records)
        self.journal.reset()
        self.recovered_ids = {r.image_id for r in records}
        return len(records)

    def _finish(self, started: float) -> None:
        r = self.result
        r.failed = dict(sorted(self.failed.items()))
        r.seconds = round(time.monotonic() - started, 3)
        r.images_per_s = round((r.fetched - r.recovered) / r.seconds, 2) if r.seconds else 0.0
        summary = {k: v for k, v in r.to_dict().items() if k not in ("report", "split")}
        ledger_fetches.record_run(self.ledger, summary, self.split)
        # After the run is recorded, and atomically: a kill leaves no report or a whole one.
        failures = ledger_fetches.failures(self.ledger, self.split)
        r.report = str(reports.write_csv(self.ws.report_path("fetch", "csv"), failures))
