"""Curation, one package per capability over a shared core.

- `ledger/`: the SQLite ledger, the only SQL in ifa; `workspace.py` opens it.
- `ingest/` (`ifa import`, `ifa fetch`), `attributes/` (`ifa curate check-attributes`),
  `dedup/` (`ifa curate dedup`), `noise/` (`ifa model`, `ifa curate flag-noise`).
- Shared by several commands: `stats.py`, `show.py`, `evaluation.py` (`ifa eval`),
  `export.py`, `restore.py`, `history.py` (`ifa history`), `executors.py` (local processes
  or Dask) and `reports/` (report files written whole, the HTML pages).
"""
