"""The review queue: images a rule wants a person to look at in a review round.

A rule with action "review" (see `ifa curate check-attributes`) queues images here; a
review round (`ifa review create --images-from FILE`) takes them. One row per (image,
rule); every status change is logged as an event `review_<status>` carrying the rule, so
`ifa curate restore --rule R` can cancel what R queued.

Statuses: pending (waiting), sent (a round took it), done (reviewed), cancelled (undone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

from ...errors import IfaError
from .core import Ledger, now

if TYPE_CHECKING:  # pandas loads when a frame is built (Ledger.frame), not with the ledger
    import pandas as pd

REVIEW_STATUSES = ("pending", "sent", "done", "cancelled")


def enqueue_review(ledger: Ledger, items: pd.DataFrame) -> int:
    """Queue images for review. `items`: image_id, rule, reason. An (image, rule) already
    queued (pending, sent or done) is left alone; a cancelled one is queued again. One
    event per image queued. Returns how many were queued. Raises IfaError naming unknown
    image ids (nothing is queued then)."""
    if not len(items):
        return 0
    stamp = now()
    with ledger.transaction() as conn:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS pending_review (image_id TEXT, rule TEXT, reason TEXT, pk INTEGER)")
        conn.execute("DELETE FROM pending_review")
        conn.executemany("INSERT INTO pending_review(image_id, rule, reason) VALUES (?,?,?)",
                         zip(items["image_id"].astype(str), items["rule"].astype(str), items["reason"].astype(str)))
        conn.execute("UPDATE pending_review SET pk = (SELECT pk FROM images WHERE images.image_id = pending_review.image_id)")
        missing = [r[0] for r in conn.execute("SELECT image_id FROM pending_review WHERE pk IS NULL LIMIT 5")]
        if missing:
            raise IfaError(f"The ledger has no image {', '.join(map(repr, missing))}; nothing was queued for review.")
        # Only rows that are new or were cancelled take effect; events first, while the old status is visible.
        fresh = ("FROM pending_review p LEFT JOIN review_queue q ON q.image_pk = p.pk AND q.rule = p.rule "
                 "WHERE q.status IS NULL OR q.status = 'cancelled'")
        conn.execute(
            "INSERT INTO events(time, command, kind, image_id, old, new, reason, rule) "
            f"SELECT DISTINCT ?, ?, 'review_pending', p.image_id, q.status, 'pending', p.reason, p.rule {fresh}",
            (stamp, ledger.command),
        )
        return conn.execute(
            "INSERT INTO review_queue(image_pk, rule, reason, time, command, status) "
            f"SELECT DISTINCT p.pk, p.rule, p.reason, ?, ?, 'pending' {fresh} "
            "ON CONFLICT(image_pk, rule) DO UPDATE SET status = 'pending', reason = excluded.reason, "
            "time = excluded.time, command = excluded.command WHERE review_queue.status = 'cancelled'",
            (stamp, ledger.command),
        ).rowcount


def review_queue(ledger: Ledger, rules: Sequence[str] | None = None, statuses: Sequence[str] | None = ("pending",),
                 image_id: str | None = None) -> pd.DataFrame:
    """Queued images: image_id, split, rule, reason, time, command, status (oldest first).
    `rules`/`statuses` None means any."""
    where, params = [], []
    if rules is not None:
        where.append(f"q.rule IN ({','.join('?' * len(rules))})")
        params += list(rules)
    if statuses is not None:
        _check_statuses(statuses)
        where.append(f"q.status IN ({','.join('?' * len(statuses))})")
        params += list(statuses)
    if image_id is not None:
        where.append("i.image_id = ?")
        params.append(str(image_id))
    return ledger.frame(
        "SELECT i.image_id, i.split, q.rule, q.reason, q.time, q.command, q.status, q.image_pk FROM review_queue q "
        f"JOIN images i ON i.pk = q.image_pk {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY q.time, q.image_pk",
        params,
    )


def set_review_status(ledger: Ledger, status: str, *, rule: str | None = None, image_ids: Iterable[str] | None = None,
                      from_statuses: Sequence[str] = ("pending",), reason: str = "") -> pd.DataFrame:
    """Move queue rows whose status is in `from_statuses` (and that match `rule` and/or
    `image_ids`) to `status`, one event each. Returns the rows changed: image_id, rule.
    E.g. a review round marks what it took as "sent"; restore cancels what a rule queued.
    Raises IfaError for an unknown status or when neither rule nor image_ids is given."""
    _check_statuses([status, *from_statuses])
    if rule is None and image_ids is None:
        raise IfaError("Say which queued images to change: a rule, image ids, or both.")
    where = [f"q.status IN ({','.join('?' * len(from_statuses))})"]
    params: list = list(from_statuses)
    if rule is not None:
        where.append("q.rule = ?")
        params.append(rule)
    with ledger.transaction() as conn:
        if image_ids is not None:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS review_ids (image_id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM review_ids")
            conn.executemany("INSERT OR IGNORE INTO review_ids VALUES (?)", ((str(i),) for i in image_ids))
            where.append("i.image_id IN (SELECT image_id FROM review_ids)")
        rows = conn.execute(
            f"SELECT q.image_pk, i.image_id, q.rule, q.status FROM review_queue q JOIN images i ON i.pk = q.image_pk "
            f"WHERE {' AND '.join(where)} ORDER BY q.image_pk, q.rule",
            params,
        ).fetchall()
        stamp = now()
        conn.executemany(
            "INSERT INTO events(time, command, kind, image_id, old, new, reason, rule) VALUES (?,?,?,?,?,?,?,?)",
            ((stamp, ledger.command, f"review_{status}", iid, old, status, reason, r) for _, iid, r, old in rows),
        )
        conn.executemany("UPDATE review_queue SET status = ? WHERE image_pk = ? AND rule = ?",
                         ((status, pk, r) for pk, _, r, _ in rows))
    import pandas as pd
    return pd.DataFrame([(iid, r) for _, iid, r, _ in rows], columns=["image_id", "rule"])


def _check_statuses(statuses: Iterable[str]) -> None:
    for s in statuses:
        if s not in REVIEW_STATUSES:
            raise IfaError(f"Unknown review status {s!r}; use one of {', '.join(REVIEW_STATUSES)}.")
