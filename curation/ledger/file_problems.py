"""What the ledger knows about image files that cannot be read: the `unreadable_files`
table, which dedup fills per (image, sha256 of the file that failed to decode).

A problem counts for an image while its current file is the one that failed: the file
last read at the image's path (file_stats), else the sha256 the images table holds. A
replaced or repaired file has another sha256, so its old problem no longer shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .core import Ledger

_CURRENT = ("u.image_pk = i.pk AND u.sha256 = coalesce((SELECT f.sha256 FROM file_stats f "
            "WHERE f.image_pk = i.pk AND f.path = i.path), i.sha256)")


def file_problem(ledger: Ledger, image_id: str) -> dict | None:
    """{"reason", "detail"} when the image's current file is known unreadable, else None."""
    rows = ledger.query(f"SELECT u.reason, u.detail FROM images i JOIN unreadable_files u ON {_CURRENT} "
                        "WHERE i.image_id = ? ORDER BY u.time DESC LIMIT 1", (str(image_id),))
    return {"reason": rows[0][0], "detail": rows[0][1]} if rows else None


def unreadable_active(ledger: Ledger, splits: Sequence[str] | None = None) -> dict[str, int]:
    """split -> number of active images whose current file is known unreadable (splits
    without any are left out)."""
    where, params = "", []
    if splits:
        where, params = f"AND i.split IN ({','.join('?' * len(splits))})", list(splits)
    rows = ledger.query(f"SELECT i.split, count(DISTINCT i.pk) FROM images i JOIN unreadable_files u ON {_CURRENT} "
                        f"WHERE i.status = 'active' {where} GROUP BY i.split", params)
    return {split: n for split, n in rows}
