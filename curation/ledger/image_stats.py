"""The picture-statistics cache of `ifa curate check-images` (the SQL of that command)."""

from __future__ import annotations

from typing import Iterable, Sequence

from .core import Ledger, _where

# Images check-images looks at: active ones, and those its own rules set aside, so a rerun
# reports the same images and re-applying changes nothing.
_CANDIDATE = "(i.status = 'active' OR i.status_rule IN ({}))"


def _candidates(splits: Sequence[str] | None, own_rules: Sequence[str]) -> tuple[str, list]:
    where, params = _where(splits, None, prefix="i.")
    rules = _CANDIDATE.format(",".join("?" * len(own_rules)) or "NULL")
    return where + (" AND " if where else "WHERE ") + rules, [*params, *own_rules]


def stats_candidates(ledger: Ledger, splits: Sequence[str] | None, own_rules: Sequence[str], version: int) -> dict[str, list]:
    """The images to measure, as {column: list}, ordered by pk: pk, image_id, split, path
    (None without a local file), and the cached file's bytes and mtime_ns (None when nothing
    usable is cached for that path at `version`)."""
    where, params = _candidates(splits, own_rules)
    return ledger.columns(
        "SELECT i.pk, i.image_id, i.split, i.path, s.bytes AS cached_bytes, s.mtime_ns AS cached_mtime_ns "
        "FROM images i LEFT JOIN image_stats s ON s.image_pk = i.pk AND s.path = i.path AND s.version = ? "
        f"{where} ORDER BY i.pk", [version, *params])


def save_stats(ledger: Ledger, rows: Iterable[tuple[int, str, int, int, int, bytes | None, bytes | None, str | None]]) -> None:
    """Store measured files in one transaction: (pk, path, bytes, mtime_ns, version, stats,
    thumb_hash, reason) each, replacing what was cached for that image."""
    with ledger.transaction() as conn:
        conn.executemany("INSERT OR REPLACE INTO image_stats (image_pk, path, bytes, mtime_ns, version, stats, "
                         "thumb_hash, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def read_stats(ledger: Ledger, splits: Sequence[str] | None, own_rules: Sequence[str], version: int) -> dict[str, list]:
    """The cached statistics of the same images as `stats_candidates`, in the same order, as
    {column: list}: pk, stats, thumb_hash, reason (None where nothing current is cached)."""
    where, params = _candidates(splits, own_rules)
    return ledger.columns(
        "SELECT i.pk, s.stats, s.thumb_hash, s.reason FROM images i "
        "LEFT JOIN image_stats s ON s.image_pk = i.pk AND s.path = i.path AND s.version = ? "
        f"{where} ORDER BY i.pk", [version, *params])
