"""Reading the event log and the import problems for `ifa history` (SQL lives in ledger/)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import pandas as pd

    from .core import Ledger


def events(ledger: "Ledger", since: str | None = None) -> "pd.DataFrame":
    """Events oldest first (columns of `Ledger.events_frame`), from `since` (an ISO UTC
    time, compared as text like the stored times) when given."""
    sql = "SELECT event_id, time, command, kind, image_id, label_id, old, new, reason, rule FROM events"
    if since is None:
        return ledger.frame(sql + " ORDER BY event_id")
    return ledger.frame(sql + " WHERE time >= ? ORDER BY event_id", (since,))


def import_issues(ledger: "Ledger", import_ids: Sequence[int]) -> "pd.DataFrame":
    """The problems the given imports recorded: import_id, image_id, problem, detail, action,
    in the order each import wrote them."""
    ids = [int(i) for i in import_ids]
    if not ids:
        return ledger.frame("SELECT import_id, image_id, problem, detail, action FROM import_issues WHERE false")
    return ledger.frame(
        "SELECT import_id, image_id, problem, detail, action FROM import_issues "
        f"WHERE import_id IN ({','.join('?' * len(ids))}) ORDER BY import_id, rowid", ids)
