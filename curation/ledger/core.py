"""The workspace ledger: one SQLite file (WAL) that is the single source of truth.

Only this package writes SQL. Every state change goes through `apply_changes`, which
updates a status (never deletes) and appends one event per real change in the same
transaction, so a change is either fully recorded or not at all.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from urllib.parse import quote
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from ...errors import IfaError, WorkspaceBusy
from .raw_labels import stand_in_ids, storable_id
from .schema import MIGRATIONS

if TYPE_CHECKING:
    import pandas as pd

    from .staging import ImportStaging

# How long a second ifa process waits for the write lock before saying "workspace busy";
# IFA_BUSY_TIMEOUT (seconds) overrides it.
BUSY_TIMEOUT_S = 10.0

CHANGE_KINDS = ("set_aside", "restore_image", "drop_label", "add_label", "restore_label")
# How a restore by image (`ifa curate restore --image ID`) begins its event's reason: a person
# looked at that image and wants it back, so a rule that honours it (dedup) does not set it
# aside again. A restore by rule is an undo of a whole run, not a judgement of one image.
RESTORED_BY_HAND = "restored by hand"


def by_hand_reason(status_reason: str | None, reason: str = "", where: str = "") -> str:
    """The reason of a restore by hand: RESTORED_BY_HAND (and `where`, e.g. "in ifa browse"),
    then the person's reason or, without one, what had set the image aside (status_reason)."""
    said = reason.strip() or f"was set aside: {status_reason or ''}"
    return f"{RESTORED_BY_HAND}{' ' + where if where else ''}; {said}"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Change:
    """One requested state change. `rule` names what decided it (a rule id, a round, a
    duplicate cluster); `reason` says why in words; `source` is the label's origin for
    add_label."""

    kind: str
    image_id: str
    label_id: int | None = None
    reason: str = ""
    rule: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CHANGE_KINDS:
            raise ValueError(f"unknown change kind {self.kind!r}")
        if self.kind in ("drop_label", "add_label", "restore_label") and self.label_id is None:
            raise ValueError(f"{self.kind} needs a label_id")


@dataclass(frozen=True)
class FileInfo:
    """What is known about an image's file once it is local."""

    image_id: str
    path: str
    sha256: str
    bytes: int
    width: int | None
    height: int | None


class Ledger:
    """Open (and migrate) the ledger at `path`. `command` is recorded on every event.

    read_only=True is for commands that only read: when the file or its folder cannot be
    written (a read-only file system, a backup mounted read-only) the ledger is opened
    read-only instead of failing, so `ifa stats` and `ifa show` still work there.

    Raises IfaError when the file is empty (0 bytes), is not an SQLite database, or must be
    written and cannot be; WorkspaceBusy when another process holds the write lock past
    BUSY_TIMEOUT_S.
    """

    def __init__(self, path: Path, command: str = "library", busy_timeout: float | None = None,
                 read_only: bool = False):
        self.path = Path(path)
        self.command = command
        if busy_timeout is None:
            busy_timeout = float(os.environ.get("IFA_BUSY_TIMEOUT", BUSY_TIMEOUT_S))
        self.busy_timeout = busy_timeout
        self._depth = 0
        _check_ledger_file(self.path)
        self.read_only = read_only and self.path.exists() and not _writable(self.path)
        if not read_only and self.path.exists() and not _writable(self.path):
            raise IfaError(f"{self.path} cannot be written (a read-only file or file system, or no permission on it or "
                           "its folder), and this command changes the ledger. Run it where the workspace is writable; "
                           "read-only commands such as `ifa stats` and `ifa show` work as they are.")
        self.conn = self._connect(busy_timeout)
        try:
            if not self.read_only:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA foreign_keys=ON")
                self.conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
                self.migrate()
            else:
                self._check_schema()
        except sqlite3.OperationalError as exc:
            self.conn.close()
            raise self._busy(exc) from None
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            self.conn.close()
            raise IfaError(f"{self.path} is not a readable ifa ledger (SQLite: {exc}). Restore it from a backup, "
                           "or move it away and run `ifa init` to start a new workspace.") from None

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so the write lock is
        # taken up front, not on the first write halfway through a transaction.
        if not self.read_only:
            return sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        # A WAL database opened mode=ro still needs its -shm file, which a read-only folder
        # cannot hold; immutable=1 then reads the file as it is. Nothing can write to it
        # meanwhile (the folder is read-only), so there is nothing to lock against.
        uri = "file:" + quote(str(self.path.resolve()))
        for params in ("?mode=ro", "?mode=ro&immutable=1"):
            conn = sqlite3.connect(uri + params, uri=True, timeout=busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.OperationalError:
                conn.close()
        raise IfaError(f"{self.path} cannot be opened, even read-only; check its permissions.")

    def _check_schema(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            self.migrate()  # says "written by a newer ifa"
        if version < len(MIGRATIONS):
            raise IfaError(f"{self.path} was written by an older ifa and must be upgraded, which needs write access. "
                           "Run `ifa init` on it once where it is writable.")

    # ---- connection and transactions ----------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _busy(self, exc: sqlite3.OperationalError) -> Exception:
        if "locked" in str(exc) or "busy" in str(exc):
            return WorkspaceBusy(
                f"The workspace {self.path.parent} is busy: another ifa command is writing to it. "
                "Wait for it to finish, then run this again."
            )
        if "readonly" in str(exc) or "read-only" in str(exc) or "unable to open" in str(exc):
            return IfaError(f"{self.path} cannot be written (SQLite: {exc}); this command changes the ledger. "
                            "Run it where the workspace is writable.")
        return exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing block; nested uses join the outermost transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._busy(exc) from exc
        self._depth = 1
        try:
            yield self.conn
        except BaseException as exc:
            self._depth = 0
            self._rollback()
            if isinstance(exc, sqlite3.OperationalError) and _is_full(exc):
                raise self._full(exc) from None
            raise
        self._depth = 0
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise (self._full(exc) if _is_full(exc) else self._busy(exc)) from exc

    def _rollback(self) -> None:
        """ROLLBACK when a transaction is still open: SQLite ends one itself on some errors
        (a full disk), and a second ROLLBACK's "no transaction is active" would hide them."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _full(self, exc: sqlite3.OperationalError) -> IfaError:
        return IfaError(f"The disk holding {self.path.parent} is full (SQLite: {exc}); the ledger is unchanged. "
                        "Free some space there (or move the workspace to a larger disk) and run this again.")

    @contextmanager
    def snapshot(self) -> Iterator["Ledger"]:
        """Every read inside the block sees the ledger at one instant, whatever other
        processes commit meanwhile: one read transaction (WAL gives it snapshot isolation,
        and writers are not blocked). Commands that read the ledger to write an output
        (export, stats, history, reports) read inside one, so a file they write never mixes
        two states. Nested uses, and uses inside `transaction()`, join the outer block."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN")
        try:
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the first read fixes the snapshot
        except sqlite3.OperationalError as exc:
            self.conn.execute("ROLLBACK")
            raise self._busy(exc) from exc
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")  # ends the read (a joined transaction's TEMP tables are all it may hold)

    def migrate(self) -> int:
        """Apply the migrations this ledger lacks; returns the schema version."""
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise IfaError(
                f"{self.path} was written by a newer ifa (schema {version}, this one knows {len(MIGRATIONS)}). "
                "Upgrade ifa to use this workspace."
            )
        for target in range(version + 1, len(MIGRATIONS) + 1):
            with self.transaction() as conn:
                for statement in _statements(MIGRATIONS[target - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")
        return len(MIGRATIONS)

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def frame(self, sql: str, params: Sequence = (), columns: Sequence[str] | None = None) -> pd.DataFrame:
        import pandas as pd  # 0.3 s: loaded by the commands that read frames, not by `ifa show`
        cur = self.conn.execute(sql, params)
        names = list(columns) if columns else [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=names)

    def columns(self, sql: str, params: Sequence = ()) -> dict[str, list]:
        """Rows as one list per column, keyed by column name (every column present, empty
        lists when no row matched): for column-wise reads that need no pandas (dedup)."""
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        values = list(zip(*rows)) if rows else [()] * len(names)
        return {name: list(col) for name, col in zip(names, values)}

    def records(self, sql: str, params: Sequence = ()) -> list[dict]:
        """Rows as dicts keyed by column name: for small reads that need no pandas."""
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    # ---- meta -----------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # ---- events ---------------------------------------------------------------------
    def append_event(self, kind: str, *, image_id: str | None = None, label_id: int | None = None,
                     old: str | None = None, new: str | None = None, reason: str = "", rule: str = "",
                     command: str | None = None) -> None:
        """Record one event outside `apply_changes` (an import, a round created, ...)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO events(time, command, kind, image_id, label_id, old, new, reason, rule) VALUES (?,?,?,?,?,?,?,?,?)",
                (now(), command or self.command, kind, image_id, label_id, old, new, reason, rule),
            )

    _EVENTS = "SELECT event_id, time, command, kind, image_id, label_id, old, new, reason, rule FROM events"

    def events_frame(self, image_id: str | None = None) -> pd.DataFrame:
        """The event log (oldest first), optionally for one image. label_id is a nullable
        Int64 column: as float64 (pandas' choice for ints with gaps) the stand-in ids of raw
        labels, below -2**62, would lose their last digits."""
        import pandas as pd
        sql = self._EVENTS + (" WHERE image_id = ? ORDER BY event_id" if image_id is not None else " ORDER BY event_id")
        cur = self.conn.execute(sql, (image_id,) if image_id is not None else ())
        names = [d[0] for d in cur.description]
        columns = list(zip(*cur.fetchall())) or [()] * len(names)
        data = {n: pd.array(list(c), dtype="Int64") if n == "label_id" else list(c) for n, c in zip(names, columns)}
        return pd.DataFrame(data, columns=names)

    def image_events(self, image_id: str) -> list[dict]:
        """One image's events, oldest first, as dicts (columns of `events_frame`)."""
        return self.records(self._EVENTS + " WHERE image_id = ? ORDER BY event_id", (image_id,))

    # ---- imports ----------------------------------------------------------------------
    def record_import(self, *, format: str, source: str, split: str, images: Iterable[tuple] = (),
                      labels: Iterable[tuple[str, list[int]]] = (), quarantined: list[tuple[str, int | str, str]],
                      issues: list[tuple], key_style: str | None = None, int_ids: bool = False,
                      summary: dict | None = None, staging: "ImportStaging | None" = None) -> dict[str, int | None]:
        """Write one import in a single transaction, recording only what it changed.

        images and labels may be lists or iterators (read once, 100k rows at a time, so an
        import need not hold every row at once), or come from `staging` (ledger/staging.py:
        an import staged in TEMP tables, its images with their paths and set-aside reasons and
        its known labels moved in by INSERT ... SELECT; then images and labels are not given).
        images: (image_id, url, path, status 'active'|'set_aside', status_reason); an
            image_id already in the ledger is left as it is (a rerun adds only what is
            missing; an image's missing url or path is filled in).
        labels: (image_id, [label ids]) of active labels; quarantined: (image_id, label id or
            raw text, reason) kept with status 'quarantined' (raw text, and ids SQLite cannot
            hold, under a stand-in id: ledger/raw_labels.py). Existing (image, label) rows
            keep their status.
        issues: (image_id, problem, detail, action), stored with the import.
        Returns counts of what this call did: images_added, images_existing, images_filled
        (url or path filled in), labels_added (active label rows), quarantined_added, set_aside (images
        added set aside), and import_id. When it would change nothing (a rerun of a completed
        import), nothing is written, not even the import's row, event or issues, and
        import_id is None: a rerun never counts what it did not do.
        """
        if staging is not None:
            write_images, write_labels = staging.writers(split, self.command)
        else:
            write_images, write_labels = self._row_writers(images, labels, split)
        with self.transaction() as conn:
            # A savepoint, so "nothing new" undoes the import's row also inside a caller's transaction.
            conn.execute("SAVEPOINT record_import")
            try:
                counts = self._write_import(conn, format, source, split, write_images, write_labels, quarantined,
                                            issues, key_style, int_ids, summary)
            except _NothingNew as nothing:
                conn.execute("ROLLBACK TO record_import")
                counts = nothing.counts
            conn.execute("RELEASE record_import")
            return counts

    def _row_writers(self, images: Iterable[tuple], labels: Iterable[tuple], split: str):
        """(write_images, write_labels) for record_import's rows given as lists or iterators."""
        def write_images(conn: sqlite3.Connection, import_id: int) -> int:
            # Rows travel as JSON arrays expanded by json_each: 2.3x faster than executemany
            # for 600k label rows (1.6 s vs 3.7 s), since no Python tuple is bound per row.
            # The conflict branch only fires where it fills a gap, so total_changes counts real work.
            n_images = 0
            for chunk in _chunks(images):
                n_images += len(chunk)
                conn.execute(
                    "INSERT INTO images(image_id, split, url, path, status, status_reason, status_rule, status_command, import_id) "
                    "SELECT value->>0, ?1, value->>1, value->>2, value->>3, value->>4, "
                    "CASE WHEN value->>3 = 'set_aside' THEN 'import' END, ?2, ?3 FROM json_each(?4) WHERE true "
                    "ON CONFLICT(image_id) DO UPDATE SET url = coalesce(images.url, excluded.url), "
                    "path = coalesce(images.path, excluded.path) WHERE images.split = excluded.split "
                    "AND ((images.url IS NULL AND excluded.url IS NOT NULL) OR (images.path IS NULL AND excluded.path IS NOT NULL))",
                    (split, self.command, import_id, json.dumps(chunk)),
                )
            return n_images

        def write_labels(conn: sqlite3.Connection) -> None:
            for chunk in _chunks(labels):
                conn.execute(
                    "INSERT OR IGNORE INTO labels(image_pk, label_id, source) "
                    "SELECT i.pk, l.value, 'import' FROM json_each(?) j JOIN images i ON i.image_id = j.value->>0, "
                    "json_each(j.value->1) l",
                    (json.dumps(chunk),),
                )

        return write_images, write_labels

    def import_staging(self) -> "ImportStaging":
        """TEMP tables for an import read in chunks (ledger/staging.py); use it as a context
        manager and hand it to record_import(staging=...)."""
        from .staging import ImportStaging

        return ImportStaging(self.conn)

    def _write_import(self, conn, format, source, split, write_images, write_labels, quarantined, issues, key_style,
                      int_ids, summary) -> dict[str, int | None]:
        stamp = now()  # one time for the import's row and all its events: `ifa history` groups by it
        cur = conn.execute(
            "INSERT INTO imports(time, command, format, source, split, key_style, int_ids, summary) VALUES (?,?,?,?,?,?,?,?)",
            (stamp, self.command, format, source, split, key_style, int(int_ids), json.dumps(summary or {})),
        )
        import_id = cur.lastrowid
        (before,) = conn.execute("SELECT count(*) FROM images").fetchone()
        changed = conn.total_changes
        n_images = write_images(conn, import_id)
        image_changes = conn.total_changes - changed
        (after,) = conn.execute("SELECT count(*) FROM images").fetchone()
        (set_aside,) = conn.execute(
            "SELECT count(*) FROM images WHERE import_id = ? AND status = 'set_aside'", (import_id,)).fetchone()
        conn.execute(
            "INSERT INTO events(time, command, kind, image_id, old, new, reason, rule) "
            "SELECT ?, ?, 'set_aside', image_id, NULL, 'set_aside', status_reason, 'import' FROM images "
            "WHERE import_id = ? AND status = 'set_aside' ORDER BY pk",
            (stamp, self.command, import_id),
        )
        (n_before,) = conn.execute("SELECT count(*) FROM labels").fetchone()
        write_labels(conn)
        (n_active,) = conn.execute("SELECT count(*) FROM labels").fetchone()
        stand_in = stand_in_ids(conn, (str(label) for _, label, _ in quarantined
                                       if not (isinstance(label, int) and storable_id(label))))
        conn.executemany(
            "INSERT OR IGNORE INTO labels(image_pk, label_id, source, status, status_reason, status_rule) "
            "SELECT pk, ?, 'import', 'quarantined', ?, 'import' FROM images WHERE image_id = ?",
            ((label if isinstance(label, int) and storable_id(label) else stand_in[str(label)], reason, iid)
             for iid, label, reason in quarantined),
        )
        (n_after,) = conn.execute("SELECT count(*) FROM labels").fetchone()
        counts = {"images_added": after - before, "images_existing": n_images - (after - before),
                  "images_filled": image_changes - (after - before), "labels_added": n_active - n_before,
                  "quarantined_added": n_after - n_active, "set_aside": set_aside}
        if not image_changes and n_after == n_before:
            raise _NothingNew({**counts, "import_id": None})
        conn.executemany(
            "INSERT INTO import_issues(import_id, image_id, problem, detail, action) VALUES (?,?,?,?,?)",
            ((import_id, *issue) for issue in issues),
        )
        conn.execute(
            "INSERT INTO events(time, command, kind, old, new, reason, rule) VALUES (?,?,?,?,?,?,?)",
            (stamp, self.command, "import", None, json.dumps(counts), f"{format} import of {source} into {split}", f"import:{import_id}"),
        )
        return {**counts, "import_id": import_id}

    def imports_frame(self) -> pd.DataFrame:
        return self.frame("SELECT import_id, time, command, format, source, split, key_style, int_ids, summary FROM imports ORDER BY import_id")

    def image_splits(self, image_ids: Iterable[str] | None = None) -> dict[str, str]:
        """image_id -> split for the given ids (all images when None)."""
        if image_ids is None:
            return dict(self.conn.execute("SELECT image_id, split FROM images").fetchall())
        return {i: s for i, s in self._lookup("SELECT image_id, split FROM images WHERE image_id IN ({})", list(image_ids))}

    def _lookup(self, sql: str, keys: list) -> list[tuple]:
        # SQLite caps bound parameters; 30k keys per statement stays under the default limit.
        out: list[tuple] = []
        for start in range(0, len(keys), 30000):
            chunk = keys[start:start + 30000]
            out.extend(self.conn.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall())
        return out

    # ---- reading images and labels ----------------------------------------------------
    def images_frame(self, splits: Sequence[str] | None = None, status: str | None = "active") -> pd.DataFrame:
        """One row per image: image_id, split, url, path, sha256, bytes, width, height,
        status, status_reason, status_rule. `status=None` returns every image."""
        where, params = _where(splits, status)
        return self.frame(
            "SELECT image_id, split, url, path, sha256, bytes, width, height, status, status_reason, status_rule "
            f"FROM images {where} ORDER BY pk",
            params,
        )

    def labels_frame(self, splits: Sequence[str] | None = None, image_status: str | None = "active",
                     label_status: Sequence[str] | None = ("active",)) -> pd.DataFrame:
        """One row per (image, label): image_id, split, label_id, source, status.

        By default only active labels of active images; `label_status=None` returns all."""
        where, params = _where(splits, image_status, prefix="i.")
        if label_status is not None:
            where += (" AND " if where else "WHERE ") + f"l.status IN ({','.join('?' * len(label_status))})"
            params = [*params, *label_status]
        return self.frame(
            "SELECT i.image_id, i.split, l.label_id, l.source, l.status FROM labels l JOIN images i ON i.pk = l.image_pk "
            f"{where} ORDER BY l.image_pk, l.label_id",
            params,
        )

    def image(self, image_id: str) -> dict | None:
        """The image's row as a dict, or None when the ledger lacks it."""
        cur = self.conn.execute(
            "SELECT image_id, split, url, path, sha256, bytes, width, height, status, status_reason, status_rule, status_command "
            "FROM images WHERE image_id = ?",
            (str(image_id),),
        )
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else None

    _IMAGE_LABELS = ("SELECT l.label_id, l.source, l.status, l.status_reason, l.status_rule FROM labels l "
                     "JOIN images i ON i.pk = l.image_pk WHERE i.image_id = ? ORDER BY l.label_id")

    def image_labels(self, image_id: str) -> pd.DataFrame:
        """Every label row of one image, whatever its status."""
        return self.frame(self._IMAGE_LABELS, (str(image_id),))

    def image_label_records(self, image_id: str) -> list[dict]:
        """`image_labels` as dicts."""
        return self.records(self._IMAGE_LABELS, (str(image_id),))

    def set_aside_images(self, rule: str | None = None, image_id: str | None = None) -> pd.DataFrame:
        where = ["status = 'set_aside'"]
        params: list = []
        if rule is not None:
            where.append("status_rule = ?")
            params.append(rule)
        if image_id is not None:
            where.append("image_id = ?")
            params.append(image_id)
        return self.frame(f"SELECT image_id, status_reason, status_rule FROM images WHERE {' AND '.join(where)}", params)

    def restored_by_hand(self, rule: str) -> set[str]:
        """Ids of the images restored by image (reason RESTORED_BY_HAND) after `rule` set them aside."""
        rows = self.query("SELECT DISTINCT image_id FROM events WHERE kind = 'restored' AND rule = ? AND reason LIKE ?",
                          (rule, RESTORED_BY_HAND + "%"))
        return {r[0] for r in rows}

    def dropped_labels(self, rule: str | None = None, image_id: str | None = None,
                       statuses: Sequence[str] = ("dropped",)) -> pd.DataFrame:
        where = [f"l.status IN ({','.join('?' * len(statuses))})"]
        params: list = list(statuses)
        if rule is not None:
            where.append("l.status_rule = ?")
            params.append(rule)
        if image_id is not None:
            where.append("i.image_id = ?")
            params.append(image_id)
        return self.frame(
            "SELECT i.image_id, l.label_id, l.status, l.status_reason, l.status_rule FROM labels l "
            f"JOIN images i ON i.pk = l.image_pk WHERE {' AND '.join(where)}",
            params,
        )

    def added_labels(self, rule: str | None = None, image_id: str | None = None) -> pd.DataFrame:
        """Active labels that did not come from an import (review decisions, manual adds):
        image_id, label_id, source. With `rule`, only those that rule added (source and
        status_rule both the rule, as add_label with source=rule leaves them)."""
        where, params = ["l.status = 'active'", "l.source != 'import'"], []
        if rule is not None:
            where += ["l.source = ?", "l.status_rule = ?"]
            params += [rule, rule]
        if image_id is not None:
            where.append("i.image_id = ?")
            params.append(image_id)
        return self.frame(
            "SELECT i.image_id, l.label_id, l.source FROM labels l JOIN images i ON i.pk = l.image_pk "
            f"WHERE {' AND '.join(where)}",
            params,
        )

    def rule_names(self) -> list[str]:
        """Every rule that ever changed something here (set an image aside, dropped, added
        or quarantined a label, queued a review), from the event log and today's statuses."""
        rows = self.query(
            "SELECT rule FROM events WHERE rule IS NOT NULL AND rule != '' AND kind != 'import' "
            "UNION SELECT status_rule FROM images WHERE status_rule IS NOT NULL "
            "UNION SELECT status_rule FROM labels WHERE status_rule IS NOT NULL "
            "UNION SELECT rule FROM review_queue ORDER BY 1")
        return [r[0] for r in rows]

    def counts(self) -> dict[str, int]:
        [(images,)], [(labels,)] = self.query("SELECT count(*) FROM images"), self.query("SELECT count(*) FROM labels")
        return {"images": images, "labels": labels}

    # ---- files --------------------------------------------------------------------------
    def record_files(self, files: Iterable[FileInfo]) -> int:
        """Store path, sha256, size and dimensions of local image files; returns rows updated."""
        with self.transaction() as conn:
            cur = conn.executemany(
                "UPDATE images SET path = ?, sha256 = ?, bytes = ?, width = ?, height = ? WHERE image_id = ?",
                ((f.path, f.sha256, f.bytes, f.width, f.height, f.image_id) for f in files),
            )
            return cur.rowcount

    # ---- changes --------------------------------------------------------------------------
    def apply_changes(self, changes: Iterable[Change], command: str | None = None) -> dict[str, int]:
        """Apply state changes in one transaction; returns how many of each kind took
        effect. A change that is already true (an image already set aside, a label already
        active) is a no-op and writes no event, so applying the same list twice changes
        nothing the second time. Raises IfaError naming unknown image ids."""
        by_kind: dict[str, list[Change]] = {k: [] for k in CHANGE_KINDS}
        seen: set[tuple] = set()
        for ch in changes:
            key = (ch.kind, ch.image_id, ch.label_id)
            if key not in seen:  # the first reason given for a change wins
                seen.add(key)
                by_kind[ch.kind].append(ch)
        done = {k: 0 for k in CHANGE_KINDS}
        if not seen:
            return done
        stamp, command = now(), command or self.command
        with self.transaction() as conn:
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS pending "
                "(seq INTEGER PRIMARY KEY, image_id TEXT, label_id INTEGER, reason TEXT, rule TEXT, source TEXT, pk INTEGER)"
            )
            for kind, items in by_kind.items():
                if not items:
                    continue
                conn.execute("DELETE FROM pending")
                conn.executemany(
                    "INSERT INTO pending(image_id, label_id, reason, rule, source) VALUES (?,?,?,?,?)",
                    ((str(c.image_id), c.label_id, c.reason, c.rule, c.source) for c in items),
                )
                conn.execute("UPDATE pending SET pk = (SELECT pk FROM images WHERE images.image_id = pending.image_id)")
                missing = [r[0] for r in conn.execute("SELECT image_id FROM pending WHERE pk IS NULL LIMIT 5")]
                if missing:
                    raise IfaError(f"The ledger has no image {', '.join(map(repr, missing))}; nothing was changed.")
                done[kind] = _APPLY[kind](conn, stamp, command)
            conn.execute("DELETE FROM pending")
        return done


class _NothingNew(Exception):
    """Raised inside record_import's savepoint to undo an import that changed nothing;
    carries the counts to return."""

    def __init__(self, counts: dict):
        super().__init__("nothing new")
        self.counts = counts


def _apply_set_aside(conn: sqlite3.Connection, stamp: str, command: str) -> int:
    conn.execute(
        "INSERT INTO events(time, command, kind, image_id, old, new, reason, rule) "
        "SELECT ?, ?, 'set_aside', p.image_id, 'active', 'set_aside', p.reason, p.rule "
        "FROM pending p JOIN images i ON i.pk = p.pk WHERE i.status = 'active' ORDER BY p.seq",
        (stamp, command),
    )
    return conn.execute(
        "UPDATE images SET status = 'set_aside', status_reason = p.reason, status_rule = p.rule, status_command = ? "
        "FROM pending p WHERE images.pk = p.pk AND images.status = 'active'",
        (command,),
    ).rowcount


def _apply_restore_image(conn: sqlite3.Connection, stamp: str, command: str) -> int:
    conn.execute(
        "INSERT INTO events(time, command, kind, image_id, old, new, reason, rule) "
        "SELECT ?, ?, 'restored', p.image_id, 'set_aside', 'active', "
        "coalesce(nullif(p.reason, ''), 'restored; was set aside: ' || coalesce(i.status_reason, '')), "
        "coalesce(nullif(p.rule, ''), i.status_rule) "
        "FROM pending p JOIN images i ON i.pk = p.pk WHERE i.status = 'set_aside' ORDER BY p.seq",
        (stamp, command),
    )
    return conn.execute(
        "UPDATE images SET status = 'active', status_reason = NULL, status_rule = NULL, status_command = ? "
        "FROM pending p WHERE images.pk = p.pk AND images.status = 'set_aside'",
        (command,),
    ).rowcount


def _apply_drop_label(conn: sqlite3.Connection, stamp: str, command: str) -> int:
    conn.execute(
        "INSERT INTO events(time, command, kind, image_id, label_id, old, new, reason, rule) "
        "SELECT ?, ?, 'label_dropped', p.image_id, p.label_id, l.status, 'dropped', p.reason, p.rule "
        "FROM pending p JOIN labels l ON l.image_pk = p.pk AND l.label_id = p.label_id "
        "WHERE l.status != 'dropped' ORDER BY p.seq",
        (stamp, command),
    )
    return conn.execute(
        "UPDATE labels SET status = 'dropped', status_reason = p.reason, status_rule = p.rule "
        "FROM pending p WHERE labels.image_pk = p.pk AND labels.label_id = p.label_id AND labels.status != 'dropped'"
    ).rowcount


def _apply_add_label(conn: sqlite3.Connection, stamp: str, command: str) -> int:
    conn.execute(
        "INSERT INTO events(time, command, kind, image_id, label_id, old, new, reason, rule) "
        "SELECT ?, ?, 'label_added', p.image_id, p.label_id, l.status, 'active', p.reason, p.rule "
        "FROM pending p LEFT JOIN labels l ON l.image_pk = p.pk AND l.label_id = p.label_id "
        "WHERE l.status IS NULL OR l.status != 'active' ORDER BY p.seq",
        (stamp, command),
    )
    return conn.execute(
        "INSERT INTO labels(image_pk, label_id, source, status, status_reason, status_rule) "
        "SELECT pk, label_id, coalesce(nullif(source, ''), rule), 'active', reason, rule FROM pending WHERE true "
        "ON CONFLICT(image_pk, label_id) DO UPDATE SET status = 'active', source = excluded.source, "
        "status_reason = excluded.status_reason, status_rule = excluded.status_rule WHERE labels.status != 'active'"
    ).rowcount


def _apply_restore_label(conn: sqlite3.Connection, stamp: str, command: str) -> int:
    conn.execute(
        "INSERT INTO events(time, command, kind, image_id, label_id, old, new, reason, rule) "
        "SELECT ?, ?, 'label_restored', p.image_id, p.label_id, l.status, 'active', "
        "coalesce(nullif(p.reason, ''), 'restored; was dropped: ' || coalesce(l.status_reason, '')), "
        "coalesce(nullif(p.rule, ''), l.status_rule) "
        "FROM pending p JOIN labels l ON l.image_pk = p.pk AND l.label_id = p.label_id "
        "WHERE l.status IN ('dropped', 'quarantined') ORDER BY p.seq",
        (stamp, command),
    )
    return conn.execute(
        "UPDATE labels SET status = 'active', status_reason = NULL, status_rule = NULL "
        "FROM pending p WHERE labels.image_pk = p.pk AND labels.label_id = p.label_id "
        "AND labels.status IN ('dropped', 'quarantined')"
    ).rowcount


_APPLY = {
    "set_aside": _apply_set_aside,
    "restore_image": _apply_restore_image,
    "drop_label": _apply_drop_label,
    "add_label": _apply_add_label,
    "restore_label": _apply_restore_label,
}


def _check_ledger_file(path: Path) -> None:
    """IfaError for a ledger path that cannot be a ledger: a folder, or an empty file
    (SQLite would take a 0-byte file for a new database and hide the loss)."""
    if path.is_dir():
        raise IfaError(f"{path} is a folder, not an ifa ledger; move it away and run `ifa init`.")
    if path.exists() and path.stat().st_size == 0:
        raise IfaError(f"{path} is empty (0 bytes): the ledger's contents are gone (a failed copy, a full disk?). "
                       "Restore it from a backup; or, to start over, delete it and run `ifa init`.")


def _is_full(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_FULL: the disk (or the ledger's max_page_count) has no room for the write."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc)


def _writable(path: Path) -> bool:
    """Whether SQLite can write the ledger: the file and its folder (which holds the -wal
    and -shm files). access() also says no on a read-only file system, even to root."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _where(splits: Sequence[str] | None, status: str | None, prefix: str = "") -> tuple[str, list]:
    clauses, params = [], []
    if splits:
        clauses.append(f"{prefix}split IN ({','.join('?' * len(splits))})")
        params.extend(splits)
    if status is not None:
        clauses.append(f"{prefix}status = ?")
        params.append(status)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _chunks(rows: Iterable, size: int = 100_000):
    """Lists of up to `size` rows of a list or an iterator."""
    rows = iter(rows)
    while chunk := list(islice(rows, size)):
        yield chunk


def _statements(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
