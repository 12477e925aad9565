"""The picture-statistics cache of `ifa curate check-images` (the SQL of that command)."""

from __future__ import annotations

from typing import Iterable, Sequence

from .core import Ledger, _where

# Images check-images looks at: active ones, and those its own rules set aside, so a rerun
# reports the same images and re-applying changes nothing.
_CANDIDATE = "(i.status = 'active' OR i.status_rule IN ({}))"


def stats_candidates(ledger: Ledger, splits: Sequence[str] | None, own_rules: Sequence[str], version: int) -> dict[str, list]:
    """The images to measure, as {column: list}: pk, image_id, split, path (None without a
    local file), and the cached file's bytes and mtime_ns (None when nothing usable is
    cached for that path at `version`)."""
    where, params = _where(splits, None, prefix="i.")
    rules = _CANDIDATE.format(",".join("?" * len(own_rules)) or "NULL")
    where += (" AND " if where else "WHERE ") + rules
    return ledger.columns(
        "SELECT i.pk, i.image_id, i.split, i.path, s.bytes AS cached_bytes, s.mtime_ns AS cached_mtime_ns "
        "FROM images i LEFT JOIN image_stats s ON s.image_pk = i.pk AND s.path = i.path AND s.version = ? "
        f"{where} ORDER BY i.pk", [version, *params, *own_rules])


def save_stats(ledger: Ledger, rows: Iterable[tuple[int, str, int, int, int, bytes | None, bytes | None, str | None]]) -> None:
    """Store measured files in one transaction: (pk, path, bytes, mtime_ns, version, stats,
    thumb_hash, reason) each, replacing what was cached for that image."""
    with ledger.transaction() as conn:
        conn.executemany("INSERT OR REPLACE INTO image_stats (image_pk, path, bytes, mtime_ns, version, stats, "
                         "thumb_hash, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def read_stats(ledger: Ledger, pks: Sequence[int]) -> dict[str, list]:
    """Cached statistics of the images `pks` as {column: list}: pk, stats, thumb_hash, reason."""
    ledger.conn.execute("CREATE TEMP TABLE IF NOT EXISTS wanted_pks (pk INTEGER PRIMARY KEY)")
    ledger.conn.execute("DELETE FROM wanted_pks")
    ledger.conn.executemany("INSERT INTO wanted_pks VALUES (?)", ((int(p),) for p in pks))
    out = ledger.columns("SELECT s.image_pk AS pk, s.stats, s.thumb_hash, s.reason FROM image_stats s "
                         "JOIN wanted_pks w ON w.pk = s.image_pk ORDER BY s.image_pk")
    ledger.conn.execute("DELETE FROM wanted_pks")
    return out
