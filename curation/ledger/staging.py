"""TEMP tables that hold a challenge-file import while it is read.

The importer streams the JSON and stages it here chunk by chunk, so it keeps no Python object
per image: at 5M images the id -> position dict, url list and label codes it kept instead
grew ~0.3 GiB per million images (5M peaked at 1.38 GiB; now 0.06 GiB at 1M and 5M alike).
TEMP tables live in SQLite's temporary file (temp_store FILE), read through a bounded page
cache, and vanish with the connection: a killed import leaves the ledger as it was, and nothing
reaches the ledger's own tables until `Ledger.record_import(staging=...)` moves the staged rows
in one transaction.

Only the checks that need the whole file run as SQL (an id seen before, the position of an
annotation's image, ids already in another split); each problem found is handed back to the
importer, which words and orders it exactly as before.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Iterable, Iterator

_TABLES = (
    # n: the entry's place in the images list; kind: 0 no url, 1 text, 2 not text (url then
    # holds its JSON, reported and dropped by the importer); has_url: the url was truthy.
    "CREATE TEMP TABLE import_images (n INTEGER PRIMARY KEY, image_id TEXT NOT NULL UNIQUE, url TEXT, "
    "kind INTEGER NOT NULL, has_url INTEGER NOT NULL)",
    # One row per annotated image (pos = its n in import_images): the first annotation's place
    # and the JSON list of the label codes (the importer's codes of distinct raw values).
    "CREATE TEMP TABLE import_annotations (pos INTEGER PRIMARY KEY, n INTEGER NOT NULL, codes TEXT NOT NULL)",
    "CREATE TEMP TABLE import_paths (n INTEGER PRIMARY KEY, path TEXT NOT NULL)",
    "CREATE TEMP TABLE import_set_aside (image_id TEXT PRIMARY KEY, reason TEXT)",
    "CREATE TEMP TABLE import_codes (code INTEGER PRIMARY KEY, label_id INTEGER NOT NULL)",
)
_NAMES = ("import_images", "import_annotations", "import_paths", "import_set_aside", "import_codes")


class ImportStaging:
    """One import's staged images and annotations on the ledger's connection. A context
    manager: entering creates the TEMP tables, leaving drops them (and a crash drops them with
    the connection). `images_read` counts the distinct images staged."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.images_read = 0  # distinct images staged from the file
        self.offered = 0  # of those, the ones still staged (not removed): what insert_images offers
        self.entries = 0  # entries of the images list seen (positions run below this)

    def __enter__(self) -> "ImportStaging":
        conn = self.conn
        # FILE, not MEMORY, whatever SQLite was built with: staging 5M images is ~1 GB of pages.
        # (Setting it drops other TEMP tables; ifa's are scratch tables, made again when used.)
        # The temp cache stays SQLite's default 2 MB: at 1M images (20k-entry chunks) a 64 MB
        # cache cost 129 MB peak and 33.7 s CPU, 16 MB 70 MB / 32.6 s, 2 MB 54 MB / 33.1 s:
        # the pages it would keep are in the OS file cache anyway.
        if conn.execute("PRAGMA temp_store").fetchone()[0] != 1:
            conn.execute("PRAGMA temp_store = FILE")
        self._drop()
        for statement in _TABLES:
            conn.execute(statement)
        return self

    def __exit__(self, *exc) -> None:
        self._drop()

    def _drop(self) -> None:
        for name in _NAMES:
            self.conn.execute(f"DROP TABLE IF EXISTS temp.{name}")

    # ---- reading the images list -------------------------------------------------------
    def add_images(self, rows: list[list], entries: int) -> set[int]:
        """Stage [n, image_id, url text, kind, has_url] rows in file order; `entries` is the
        number of images-list entries read so far. Returns the n of rows whose image_id was
        staged before (earlier in the file or in `rows`): those rows are not staged."""
        self.entries = entries
        if not rows:
            return set()
        payload = json.dumps(rows)
        # Rows travel as one JSON array (as Ledger.record_import does); DO NOTHING keeps the
        # first entry of an id, json_each reads in order.
        cur = self.conn.execute(
            "INSERT INTO import_images(n, image_id, url, kind, has_url) "
            "SELECT value->>0, value->>1, value->>2, value->>3, value->>4 FROM json_each(?) WHERE true "
            "ON CONFLICT(image_id) DO NOTHING", (payload,))
        self.images_read += cur.rowcount
        self.offered += cur.rowcount
        if cur.rowcount == len(rows):
            return set()
        return {n for (n,) in self.conn.execute(
            "SELECT value->>0 FROM json_each(?) WHERE NOT EXISTS (SELECT 1 FROM import_images s WHERE s.n = value->>0)",
            (payload,))}

    def first_url(self, image_id: str) -> tuple[str | None, int]:
        """(url text, kind) of the staged entry of `image_id`."""
        return self.conn.execute("SELECT url, kind FROM import_images WHERE image_id = ?", (image_id,)).fetchone()

    # ---- reading the annotations list --------------------------------------------------
    def positions(self, image_ids: list[str]) -> list[int | None]:
        """The staged position (n) of each id, None for an id the images list lacks."""
        if not image_ids:
            return []
        return [n for (n,) in self.conn.execute(
            "SELECT s.n FROM json_each(?) j LEFT JOIN import_images s ON s.image_id = j.value ORDER BY j.key",
            (json.dumps(image_ids),))]

    def add_annotations(self, rows: list[list]) -> None:
        """Stage [position, n, [codes]] rows, one per newly annotated image."""
        if rows:
            self.conn.execute("INSERT INTO import_annotations(pos, n, codes) "
                              "SELECT value->>0, value->>1, value->2 FROM json_each(?)", (json.dumps(rows),))

    def codes(self, pos: int) -> tuple[int, ...]:
        """The staged label codes of the image at `pos`."""
        (codes,) = self.conn.execute("SELECT codes FROM import_annotations WHERE pos = ?", (pos,)).fetchone()
        return tuple(json.loads(codes))

    def set_codes(self, pos: int, codes: Iterable[int]) -> None:
        self.conn.execute("UPDATE import_annotations SET codes = ? WHERE pos = ?", (json.dumps(list(codes)), pos))

    # ---- after reading -----------------------------------------------------------------
    def images(self) -> Iterator[tuple[int, str, int]]:
        """(n, image_id, has_url) of every staged image, in file order (a cursor: read it to
        the end before changing the staging)."""
        return iter(self.conn.execute("SELECT n, image_id, has_url FROM import_images ORDER BY n"))

    def add_paths(self, paths: Iterable[tuple[int, str]]) -> None:
        """Stage the local file of images by position."""
        rows = list(paths)
        for start in range(0, len(rows), 100_000):
            self.conn.execute("INSERT INTO import_paths(n, path) SELECT value->>0, value->>1 FROM json_each(?)",
                              (json.dumps(rows[start:start + 100_000]),))

    def rows(self, positions: list[int]) -> list[tuple[int, str, str | None]]:
        """(n, image_id, url text) of the staged images at `positions`, in file order."""
        return self.conn.execute(
            "SELECT n, image_id, url FROM import_images WHERE n IN (SELECT value FROM json_each(?)) ORDER BY n",
            (json.dumps(positions),)).fetchall()

    def drop_url(self, pos: int) -> None:
        self.conn.execute("UPDATE import_images SET url = NULL, kind = 0 WHERE n = ?", (pos,))

    def splits(self, split: str, same: bool, image_ids: list[str] | None = None) -> list[tuple[str, str]]:
        """(image_id, split) of staged images the ledger already holds in `split` (same=True)
        or in another split (same=False); only among `image_ids` when given."""
        where = "i.split = ?" if same else "i.split != ?"
        if image_ids is None:
            return self.conn.execute(
                f"SELECT s.image_id, i.split FROM import_images s JOIN main.images i ON i.image_id = s.image_id WHERE {where}",
                (split,)).fetchall()
        return self.conn.execute(
            "SELECT s.image_id, i.split FROM json_each(?) j JOIN import_images s ON s.image_id = j.value "
            f"JOIN main.images i ON i.image_id = s.image_id WHERE {where}", (json.dumps(image_ids), split)).fetchall()

    def remove(self, image_ids: list[str]) -> None:
        """Unstage these images (and so their annotations, which join through them)."""
        if image_ids:
            cur = self.conn.execute("DELETE FROM import_images WHERE image_id IN (SELECT value FROM json_each(?))",
                                    (json.dumps(image_ids),))
            self.offered -= cur.rowcount

    def set_label_ids(self, label_ids: dict[int, int]) -> None:
        """code -> taxonomy label id, for the codes that name a known label."""
        self.conn.execute("INSERT INTO import_codes(code, label_id) SELECT key, value FROM json_each(?)",
                          (json.dumps({str(k): v for k, v in label_ids.items()}),))

    def annotated_with(self, codes: list[int]) -> Iterator[tuple[str, list[int]]]:
        """(image_id, [codes]) of staged images whose labels include any of `codes`, in the
        order the images were first annotated."""
        cur = self.conn.execute(
            "SELECT s.image_id, a.codes FROM import_annotations a JOIN import_images s ON s.n = a.pos "
            "WHERE EXISTS (SELECT 1 FROM json_each(a.codes) c WHERE c.value IN (SELECT value FROM json_each(?))) "
            "ORDER BY a.n", (json.dumps(codes),))
        return ((iid, json.loads(codes)) for iid, codes in cur)

    def set_aside(self, reasons: dict[str, str]) -> None:
        """Images the import sets aside: image_id -> reason."""
        self.conn.execute("INSERT INTO import_set_aside(image_id, reason) SELECT key, value FROM json_each(?)",
                          (json.dumps(reasons),))

    # ---- moving into the ledger (called by Ledger.record_import) ------------------------
    def writers(self, split: str, command: str):
        """(write_images(conn, import_id) -> rows offered, write_labels(conn)) for record_import."""
        return (lambda conn, import_id: self.insert_images(conn, split, command, import_id)), self.insert_labels

    def insert_images(self, conn: sqlite3.Connection, split: str, command: str, import_id: int) -> int:
        """INSERT ... SELECT the staged images into `images` (as Ledger.record_import inserts
        its rows: a known id only gains a missing url or path). Returns the rows offered."""
        conn.execute(
            "INSERT INTO images(image_id, split, url, path, status, status_reason, status_rule, status_command, import_id) "
            "SELECT s.image_id, ?1, s.url, p.path, CASE WHEN a.image_id IS NULL THEN 'active' ELSE 'set_aside' END, "
            "a.reason, CASE WHEN a.image_id IS NOT NULL THEN 'import' END, ?2, ?3 "
            "FROM import_images s LEFT JOIN import_paths p ON p.n = s.n "
            "LEFT JOIN import_set_aside a ON a.image_id = s.image_id WHERE true ORDER BY s.n "
            "ON CONFLICT(image_id) DO UPDATE SET url = coalesce(images.url, excluded.url), "
            "path = coalesce(images.path, excluded.path) WHERE images.split = excluded.split "
            "AND ((images.url IS NULL AND excluded.url IS NOT NULL) OR (images.path IS NULL AND excluded.path IS NOT NULL))",
            (split, command, import_id),
        )
        return self.offered

    def insert_labels(self, conn: sqlite3.Connection) -> None:
        """INSERT ... SELECT the known labels of the staged images into `labels` (active,
        source 'import'; an existing (image, label) row keeps its status)."""
        conn.execute(
            "INSERT OR IGNORE INTO labels(image_pk, label_id, source) "
            "SELECT i.pk, m.label_id, 'import' FROM import_annotations a JOIN import_images s ON s.n = a.pos "
            "JOIN main.images i ON i.image_id = s.image_id, json_each(a.codes) c JOIN import_codes m ON m.code = c.value "
            "ORDER BY a.pos")
