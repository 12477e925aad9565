"""The workspace ledger (SQLite). The only code in ifa that writes SQL lives here."""

from .core import BUSY_TIMEOUT_S, CHANGE_KINDS, Change, FileInfo, Ledger, now
from .schema import MIGRATIONS, SPLITS

__all__ = ["BUSY_TIMEOUT_S", "CHANGE_KINDS", "Change", "FileInfo", "Ledger", "MIGRATIONS", "SPLITS", "now"]
