"""The workspace ledger (SQLite). The only code in ifa that writes SQL lives here.

One API shape: the `Ledger` object owns the connection, transactions, migrations, the event
log and the core tables (imports, images, labels); every other family of tables is a module
here, named for it, of plain functions that take the ledger first (`fetches.record(ledger,
...)`, `hashes.save_fingerprints(ledger, ...)`). Rows that leave are dataclasses, typed
column sets, arrays or frames. (review.py's ReviewStore class is the exception for now.)
"""

# What a damaged, locked or read-only ledger raises past the checks in core.py; the CLI turns it
# into one line (cli/failures.py) without touching SQLite itself.
from sqlite3 import DatabaseError as LedgerDatabaseError

from .core import BUSY_TIMEOUT_S, CHANGE_KINDS, RESTORED_BY_HAND, Change, FileInfo, Ledger, by_hand_reason, now
from .schema import MIGRATIONS, SPLITS, check_splits, id_list

__all__ = ["LedgerDatabaseError", "BUSY_TIMEOUT_S", "CHANGE_KINDS", "RESTORED_BY_HAND", "Change", "FileInfo", "Ledger", "by_hand_reason", "MIGRATIONS", "SPLITS", "check_splits", "id_list", "now"]
