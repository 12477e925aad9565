"""The ledger's side of `ifa fetch`: which images still need a file, and what each try did.

Images to fetch are read a page at a time by primary key (keyset pagination), so a
million-image ledger is never held in memory; outcomes are written a batch at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .core import FileInfo, Ledger, now

if TYPE_CHECKING:  # pandas loads when a frame is built (Ledger.frame), not with the ledger
    import pandas as pd


@dataclass(frozen=True)
class Candidate:
    """An image with a URL, as the ledger has it now."""

    pk: int
    image_id: str
    url: str
    path: str | None
    fetch_status: str | None  # 'fetched' | 'failed' | None (never tried)
    fetch_reason: str | None


@dataclass(frozen=True)
class FetchRecord:
    """The outcome of one image's try in this run. `reason` is None when fetched."""

    image_id: str
    status: str  # 'fetched' | 'failed'
    attempts: int
    reason: str | None = None
    http_status: int | None = None
    final_url: str | None = None
    last_error: str | None = None


def _split_clause(split: str | None, prefix: str = "i.") -> tuple[str, list]:
    return (f" AND {prefix}split = ?", [split]) if split else ("", [])


def candidates(ledger: Ledger, split: str | None, after_pk: int, limit: int) -> list[Candidate]:
    """Up to `limit` images with a URL and pk > after_pk (any status), in pk order."""
    clause, params = _split_clause(split)
    rows = ledger.query(
        "SELECT i.pk, i.image_id, i.url, i.path, f.status, f.reason FROM images i "
        "LEFT JOIN fetches f ON f.image_pk = i.pk "
        f"WHERE i.pk > ? AND i.url IS NOT NULL AND trim(i.url) != ''{clause} ORDER BY i.pk LIMIT ?",
        [after_pk, *params, limit],
    )
    return [Candidate(*r) for r in rows]


def pending_count(ledger: Ledger, split: str | None, retry_failed: bool) -> int:
    """Images with a URL and no file recorded, less earlier failures unless retried."""
    clause, params = _split_clause(split)
    failed = "" if retry_failed else " AND (f.status IS NULL OR f.status != 'failed')"
    return ledger.query(
        "SELECT count(*) FROM images i LEFT JOIN fetches f ON f.image_pk = i.pk "
        f"WHERE i.url IS NOT NULL AND trim(i.url) != '' AND i.path IS NULL{failed}{clause}",
        params,
    )[0][0]


def without_source_count(ledger: Ledger, split: str | None) -> int:
    """Images that have neither a local file nor a URL: nothing can fetch them."""
    clause, params = _split_clause(split, "")
    return ledger.query(
        f"SELECT count(*) FROM images WHERE (url IS NULL OR trim(url) = '') AND path IS NULL{clause}", params
    )[0][0]


def record(ledger: Ledger, files: Sequence[FileInfo], outcomes: Sequence[FetchRecord]) -> None:
    """Write one batch in one transaction: the files' path/sha256/size/dimensions and
    every outcome (attempts add up across runs; the last reason wins)."""
    stamp = now()
    with ledger.transaction() as conn:
        if files:
            ledger.record_files(files)
        conn.executemany(
            "INSERT INTO fetches(image_pk, status, reason, attempts, http_status, final_url, last_error, time) "
            "SELECT pk, ?, ?, ?, ?, ?, ?, ? FROM images WHERE image_id = ? "
            "ON CONFLICT(image_pk) DO UPDATE SET status = excluded.status, reason = excluded.reason, "
            "attempts = fetches.attempts + excluded.attempts, http_status = excluded.http_status, "
            "final_url = excluded.final_url, last_error = excluded.last_error, time = excluded.time",
            ((o.status, o.reason, o.attempts, o.http_status, o.final_url, o.last_error, stamp, o.image_id)
             for o in outcomes),
        )


def failures(ledger: Ledger, split: str | None = None) -> pd.DataFrame:
    """Every image whose last fetch failed and that still has no file: image_id, split,
    url, reason, attempts, http_status, last_error, time."""
    clause, params = _split_clause(split)
    return ledger.frame(
        "SELECT i.image_id, i.split, i.url, f.reason, f.attempts, f.http_status, f.last_error, f.time "
        "FROM fetches f JOIN images i ON i.pk = f.image_pk "
        f"WHERE f.status = 'failed' AND i.path IS NULL{clause} ORDER BY i.pk",
        params,
    )


def failure_counts(ledger: Ledger, split: str | None = None) -> dict[str, int]:
    """reason -> images whose last fetch failed for it (and that still have no file)."""
    clause, params = _split_clause(split)
    rows = ledger.query(
        "SELECT f.reason, count(*) FROM fetches f JOIN images i ON i.pk = f.image_pk "
        f"WHERE f.status = 'failed' AND i.path IS NULL{clause} GROUP BY f.reason ORDER BY f.reason",
        params,
    )
    return dict(rows)


def fetch_row(ledger: Ledger, image_id: str) -> dict | None:
    """The fetches row of one image as a dict, or None when it was never tried."""
    cur = ledger.conn.execute(
        "SELECT f.status, f.reason, f.attempts, f.http_status, f.final_url, f.last_error, f.time "
        "FROM fetches f JOIN images i ON i.pk = f.image_pk WHERE i.image_id = ?",
        (image_id,),
    )
    row = cur.fetchone()
    return dict(zip([d[0] for d in cur.description], row)) if row else None


def record_run(ledger: Ledger, summary: dict, split: str | None) -> None:
    """One event per fetch run with its counts (per-image outcomes live in `fetches`)."""
    ledger.append_event("fetch", new=json.dumps(summary, sort_keys=True),
                        reason=f"fetch of {split or 'every split'}", rule="fetch")
