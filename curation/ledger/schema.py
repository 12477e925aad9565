"""The ledger's schema as forward migrations; `PRAGMA user_version` counts those applied.

Append a migration to add tables or columns; never edit one that has shipped, since
workspaces already at that version would not see the change.
"""

from __future__ import annotations

SPLITS = ("train", "validation", "test")

V1_FOUNDATION = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE imports (
    import_id  INTEGER PRIMARY KEY,
    time       TEXT NOT NULL,
    command    TEXT NOT NULL,
    format     TEXT NOT NULL,           -- imat | csv | folder
    source     TEXT NOT NULL,           -- the file or folder imported
    split      TEXT NOT NULL,
    key_style  TEXT,                    -- imat only: camel (imageId) or snake (image_id)
    int_ids    INTEGER NOT NULL DEFAULT 0,  -- imat only: image ids were JSON integers
    summary    TEXT NOT NULL DEFAULT '{}'   -- JSON counts
);

CREATE TABLE images (
    pk             INTEGER PRIMARY KEY,
    image_id       TEXT NOT NULL UNIQUE,
    split          TEXT NOT NULL CHECK (split IN ('train', 'validation', 'test')),
    url            TEXT,
    path           TEXT,
    sha256         TEXT,
    bytes          INTEGER,
    width          INTEGER,
    height         INTEGER,
    status         TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'set_aside')),
    status_reason  TEXT,
    status_rule    TEXT,
    status_command TEXT,
    import_id      INTEGER REFERENCES imports(import_id)
);
CREATE INDEX images_split_status ON images(split, status);
CREATE INDEX images_sha256 ON images(sha256);

CREATE TABLE labels (
    image_pk      INTEGER NOT NULL REFERENCES images(pk),
    label_id      INTEGER NOT NULL,
    source        TEXT NOT NULL,         -- import | review:<round> | ...
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'dropped', 'quarantined')),
    status_reason TEXT,
    status_rule   TEXT,
    PRIMARY KEY (image_pk, label_id)
) WITHOUT ROWID;

CREATE TABLE import_issues (
    import_id INTEGER NOT NULL REFERENCES imports(import_id),
    image_id  TEXT,
    problem   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    action    TEXT NOT NULL
);

-- Append-only: what changed, when, by which command, and why.
CREATE TABLE events (
    event_id INTEGER PRIMARY KEY,
    time     TEXT NOT NULL,
    command  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    image_id TEXT,
    label_id INTEGER,
    old      TEXT,
    new      TEXT,
    reason   TEXT,
    rule     TEXT
);
CREATE INDEX events_image ON events(image_id);
CREATE INDEX events_rule ON events(rule);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
"""

# `ifa fetch`: one row per image it has tried, holding the outcome of the last try.
# attempts counts HTTP attempts over every run, so a URL that needed three runs shows it.
V2_FETCHES = """
CREATE TABLE fetches (
    image_pk    INTEGER PRIMARY KEY REFERENCES images(pk),
    status      TEXT NOT NULL CHECK (status IN ('fetched', 'failed')),
    reason      TEXT,                -- failure reason (see `ifa fetch --help`); NULL when fetched
    attempts    INTEGER NOT NULL,
    http_status INTEGER,
    final_url   TEXT,                -- after redirects
    last_error  TEXT,
    time        TEXT NOT NULL
);
CREATE INDEX fetches_status_reason ON fetches(status, reason);
"""

MIGRATIONS: list[str] = [V1_FOUNDATION, V2_FETCHES]
