"""Raw label values kept as quarantined labels: names and ids the taxonomy lacks that no
SQLite integer can hold.

The labels table is keyed by an integer label id. An unknown integer id (-3, 999) is
stored as it is; an unknown name ('Banana Hat') or an id of 2**63 and more gets a
stand-in id below RAW_LABEL_BASE, one per distinct raw text, so the label is visible in
`ifa show`, flagged by the unknown-label rule and restorable, and never exported.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .core import Ledger

# Far below any id a label map uses (and below -2**62, the few JSON ids this low are kept
# as raw text too, so a stand-in never collides with a real id).
RAW_LABEL_BASE = -(1 << 62)
INT64_MAX = (1 << 63) - 1


def is_raw_label(label_id: int) -> bool:
    """True for a stand-in id of a raw label value."""
    return int(label_id) <= RAW_LABEL_BASE


def storable_id(value: int) -> bool:
    """Whether an integer label id is stored as itself (else it is kept as raw text)."""
    return RAW_LABEL_BASE < value <= INT64_MAX


def stand_in_ids(conn: sqlite3.Connection, raws: Iterable[str]) -> dict[str, int]:
    """Inside a write transaction: the stand-in id of each raw text, adding new ones."""
    raws = sorted(set(raws))
    if not raws:
        return {}
    conn.execute("INSERT OR IGNORE INTO raw_label_names(raw) SELECT value FROM json_each(?)", (json.dumps(raws),))
    rows = conn.execute("SELECT raw, seq FROM raw_label_names WHERE raw IN (SELECT value FROM json_each(?))",
                        (json.dumps(raws),)).fetchall()
    return {raw: RAW_LABEL_BASE - seq for raw, seq in rows}


def raw_label_names(ledger: Ledger, label_ids: Iterable[int]) -> dict[int, str]:
    """stand-in id -> the raw text it stands for, for the stand-ins among `label_ids`."""
    seqs = sorted({RAW_LABEL_BASE - int(i) for i in label_ids if is_raw_label(i)})
    if not seqs:
        return {}
    rows = ledger.query("SELECT seq, raw FROM raw_label_names WHERE seq IN (SELECT value FROM json_each(?))",
                        (json.dumps(seqs),))
    return {RAW_LABEL_BASE - seq: raw for seq, raw in rows}
