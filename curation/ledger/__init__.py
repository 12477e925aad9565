"""The workspace ledger (SQLite). The only code in ifa that writes SQL lives here."""

# What a damaged, locked or read-only ledger raises past the checks in core.py; the CLI turns it
# into one line (cli/failures.py) without touching SQLite itself.
from sqlite3 import DatabaseError as LedgerDatabaseError

from .core import BUSY_TIMEOUT_S, CHANGE_KINDS, Change, FileInfo, Ledger, now
from .schema import MIGRATIONS, SPLITS, check_splits, id_list

__all__ = ["LedgerDatabaseError", "BUSY_TIMEOUT_S", "CHANGE_KINDS", "Change", "FileInfo", "Ledger", "MIGRATIONS", "SPLITS", "check_splits", "id_list", "now"]
