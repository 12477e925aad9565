"""The ledger's schema as forward migrations; `PRAGMA user_version` counts those applied.

Append a migration to add tables or columns; never edit one that has shipped, since
workspaces already at that version would not see the change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ...errors import IfaError

SPLITS = ("train", "validation", "test")


def check_splits(splits: str | Iterable[str] | None) -> list[str]:
    """The given split names as a list (None: none given, an empty list).
    Raises IfaError naming every unknown split and the valid ones."""
    chosen = [splits] if isinstance(splits, str) else list(splits or ())
    bad = [s for s in chosen if s not in SPLITS]
    if bad:
        raise IfaError(f"Unknown split {', '.join(map(repr, bad))}; use one of {', '.join(SPLITS)}.")
    return chosen


def id_list(ids: Sequence, most: int = 5) -> str:
    """The first `most` ids joined by commas, with ', ...' when there are more: for messages."""
    head = ", ".join(str(i) for i in ids[:most])
    return head + (", ..." if len(ids) > most else "")

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

# Images a rule (e.g. a check-attributes rule with action "review") asks a person to look
# at. One row per (image, rule): queueing twice is a no-op. status: pending (waiting for a
# review round), sent (a round took it), done (reviewed), cancelled (undone by restore).
V3_REVIEW_QUEUE = """
CREATE TABLE review_queue (
    image_pk INTEGER NOT NULL REFERENCES images(pk),
    rule     TEXT NOT NULL,
    reason   TEXT,
    time     TEXT NOT NULL,
    command  TEXT NOT NULL,
    status   TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'done', 'cancelled')),
    PRIMARY KEY (image_pk, rule)
) WITHOUT ROWID;
CREATE INDEX review_queue_status ON review_queue(status, rule);
"""

# `ifa curate dedup`: the hash cache. A file's fingerprint (size, mtime, sha256) says
# whether it changed since it was read; hashes and decode failures are kept per sha256,
# so a rerun reads only new or changed files and decodes only new content.
V4_HASHES = """
CREATE TABLE file_stats (
    image_pk INTEGER PRIMARY KEY REFERENCES images(pk),
    path     TEXT NOT NULL,
    bytes    INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    time     TEXT NOT NULL
);

CREATE TABLE image_hashes (
    image_pk INTEGER NOT NULL REFERENCES images(pk),
    method   TEXT NOT NULL,                 -- phash | dhash | whash | ahash
    sha256   TEXT NOT NULL,                 -- of the file the hash was computed from
    hash     INTEGER NOT NULL,              -- the 64 bits, as a signed integer
    PRIMARY KEY (image_pk, method, sha256)
) WITHOUT ROWID;

CREATE TABLE unreadable_files (
    image_pk INTEGER NOT NULL REFERENCES images(pk),
    sha256   TEXT NOT NULL,                 -- of the file that failed to decode
    reason   TEXT NOT NULL,                 -- truncated | not-an-image | decompression-bomb | ...
    detail   TEXT NOT NULL DEFAULT '',
    time     TEXT NOT NULL,
    PRIMARY KEY (image_pk, sha256)
) WITHOUT ROWID;
"""


# Review rounds (annotation/): the round's state lives here, not in Label Studio's memory,
# so every sync is idempotent and a crash loses nothing. Label Studio ids are kept per
# round because two rounds may live on different servers.
V5_REVIEW = """
CREATE TABLE review_annotators (
    server     TEXT NOT NULL,               -- Label Studio base URL
    email      TEXT NOT NULL,
    ls_user_id INTEGER NOT NULL,
    simulated  INTEGER NOT NULL DEFAULT 0,  -- a scripted annotator (demo, tests), not a person
    added      TEXT NOT NULL,
    PRIMARY KEY (server, email)
);

CREATE TABLE review_rounds (
    round_id  INTEGER PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE,
    split     TEXT NOT NULL,
    server    TEXT NOT NULL,
    tiebreaker TEXT,                        -- email of the third annotator, named at creation
    simulated INTEGER NOT NULL DEFAULT 0,
    created   TEXT NOT NULL,
    command   TEXT NOT NULL,
    complete  INTEGER NOT NULL DEFAULT 0,   -- 1 once every image has its two annotator tasks
    finalized TEXT                          -- time of the last applied finalize
);

CREATE TABLE review_images (
    round_id INTEGER NOT NULL REFERENCES review_rounds(round_id),
    image_id TEXT NOT NULL,
    PRIMARY KEY (round_id, image_id)
) WITHOUT ROWID;

CREATE TABLE review_projects (
    round_id      INTEGER NOT NULL REFERENCES review_rounds(round_id),
    role          TEXT NOT NULL CHECK (role IN ('annotator1', 'annotator2', 'tiebreak')),
    email         TEXT NOT NULL,
    ls_user_id    INTEGER NOT NULL,
    ls_project_id INTEGER NOT NULL,
    title         TEXT NOT NULL,
    created       TEXT NOT NULL,
    PRIMARY KEY (round_id, role)
);

CREATE TABLE review_tasks (
    round_id   INTEGER NOT NULL REFERENCES review_rounds(round_id),
    role       TEXT NOT NULL,
    image_id   TEXT NOT NULL,
    ls_task_id INTEGER NOT NULL,
    PRIMARY KEY (round_id, role, image_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX review_tasks_ls ON review_tasks(round_id, ls_task_id);

CREATE TABLE review_annotations (
    round_id         INTEGER NOT NULL REFERENCES review_rounds(round_id),
    ls_annotation_id INTEGER NOT NULL,
    role             TEXT NOT NULL,            -- the project it was found in
    image_id         TEXT NOT NULL,
    ls_task_id       INTEGER NOT NULL,
    completed_by     INTEGER,                  -- Label Studio user id
    by_annotator     INTEGER NOT NULL,         -- 1 when completed_by is the project's annotator
    result           TEXT NOT NULL,            -- the result JSON exactly as Label Studio returned it
    labels           TEXT NOT NULL,            -- JSON list of the valid label ids in it
    discard          INTEGER NOT NULL DEFAULT 0,
    skipped          INTEGER NOT NULL DEFAULT 0,
    problems         TEXT NOT NULL DEFAULT '', -- '; '-joined; empty when the result is valid
    lead_time        REAL,
    created_at       TEXT,
    updated_at       TEXT,
    synced           TEXT NOT NULL,
    deleted          TEXT,                     -- when a sync no longer found it in Label Studio
    PRIMARY KEY (round_id, ls_annotation_id)
);
CREATE INDEX review_annotations_image ON review_annotations(round_id, image_id);

-- An annotator who edits a submitted answer replaces it in Label Studio; the old one is kept here.
CREATE TABLE review_annotation_versions (
    round_id         INTEGER NOT NULL,
    ls_annotation_id INTEGER NOT NULL,
    result           TEXT NOT NULL,
    updated_at       TEXT,
    replaced         TEXT NOT NULL
);

CREATE TABLE review_decisions (
    round_id   INTEGER NOT NULL REFERENCES review_rounds(round_id),
    image_id   TEXT NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('agreed', 'tiebreak', 'discarded')),
    labels     TEXT NOT NULL,                  -- JSON list of label ids
    decided_by TEXT NOT NULL,                  -- 'agreement' or the tie-breaker's email
    time       TEXT NOT NULL,
    PRIMARY KEY (round_id, image_id)
) WITHOUT ROWID;
"""

# Label values an import could not map to a taxonomy id and that are no integer SQLite can
# hold (a name such as 'Banana Hat', an id of 2**63 or more): each distinct raw text gets a
# row here, and the image's quarantined label row uses the id RAW_LABEL_BASE - seq
# (ledger/raw_labels.py), so show, the unknown-label rule and restore see it like any
# quarantined id.
V6_RAW_LABEL_NAMES = """
CREATE TABLE raw_label_names (
    seq INTEGER PRIMARY KEY,
    raw TEXT NOT NULL UNIQUE
);
"""

# `ifa curate dedup` verifies each candidate pair with a per-image signature (an 8x8 RGB
# thumbnail of the border-trimmed picture, its box refined to a fraction of a pixel:
# dedup/hashing.refine_box; 192 bytes) kept beside the hash it was decoded with. Hashes cached before are of untrimmed pictures and have no signature: they go, so
# the next dedup hashes every file again once.
V7_DEDUP_SIGNATURES = """
ALTER TABLE image_hashes ADD COLUMN signature BLOB;
DELETE FROM image_hashes;
"""

V8_REVIEW_POOL = """
-- A round's annotators are a pool (roles annotator1..annotatorN, each a project of their
-- own) and so are its tie-breakers (roles tiebreak, tiebreak2, ...): the role CHECK goes.
CREATE TABLE review_projects_pool (
    round_id      INTEGER NOT NULL REFERENCES review_rounds(round_id),
    role          TEXT NOT NULL,
    email         TEXT NOT NULL,
    ls_user_id    INTEGER NOT NULL,
    ls_project_id INTEGER NOT NULL,
    title         TEXT NOT NULL,
    created       TEXT NOT NULL,
    PRIMARY KEY (round_id, role)
);
INSERT INTO review_projects_pool SELECT round_id, role, email, ls_user_id, ls_project_id, title, created
    FROM review_projects;
DROP TABLE review_projects;
ALTER TABLE review_projects_pool RENAME TO review_projects;

ALTER TABLE review_rounds ADD COLUMN tiebreakers TEXT;                     -- JSON list of emails (the pool)
ALTER TABLE review_rounds ADD COLUMN per_image INTEGER NOT NULL DEFAULT 2;  -- distinct annotators per image
ALTER TABLE review_rounds ADD COLUMN gold_rate REAL;

-- Who labels what, decided once at creation (deterministic per round name) and written
-- before any task is imported, so a rerun after a crash finishes the same assignment.
-- position orders an annotator's queue (gold interleaved); reassign moves rows.
CREATE TABLE review_assignments (
    round_id INTEGER NOT NULL REFERENCES review_rounds(round_id),
    role     TEXT NOT NULL,
    image_id TEXT NOT NULL,
    gold     INTEGER NOT NULL DEFAULT 0,
    position REAL NOT NULL,
    PRIMARY KEY (round_id, role, image_id)
) WITHOUT ROWID;

-- Gold images of a round and their trusted labels when the round was created: answers on
-- them are scored, never finalized.
CREATE TABLE review_gold (
    round_id INTEGER NOT NULL REFERENCES review_rounds(round_id),
    image_id TEXT NOT NULL,
    labels   TEXT NOT NULL,                    -- JSON list of label ids
    PRIMARY KEY (round_id, image_id)
) WITHOUT ROWID;

-- Incremental sync: per project, list only tasks Label Studio updated after this time
-- (its own clock, from the task's updated_at, which every annotation save touches).
CREATE TABLE review_sync_cursors (
    round_id      INTEGER NOT NULL REFERENCES review_rounds(round_id),
    role          TEXT NOT NULL,
    updated_after TEXT NOT NULL,
    PRIMARY KEY (round_id, role)
) WITHOUT ROWID;
"""

# Dedup trims a border only where its outermost line is flat within 8 grey levels (was 24:
# skies and studio walls were trimmed, dedup/hashing.FLAT_TOLERANCE). Cached hashes and
# signatures of pictures trimmed the old way do not compare with new ones: they go, and
# the next dedup hashes every file again once.
V9_DEDUP_FLAT_BORDERS = """
DELETE FROM image_hashes;
"""

# `ifa curate check-images`: per-file picture statistics, kept while the file (path, size,
# mtime) and the statistics' version are unchanged, so a rerun decodes nothing unchanged.
V10_IMAGE_STATS = """
CREATE TABLE image_stats (
    image_pk   INTEGER PRIMARY KEY REFERENCES images(pk),
    path       TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    version    INTEGER NOT NULL,      -- image_checks.statistics.VERSION that measured it
    stats      BLOB,                  -- float32 values in STAT_NAMES order; NULL when unreadable
    thumb_hash BLOB,                  -- 256-bit difference hash of the whole picture
    reason     TEXT                   -- why the file could not be measured, else NULL
);
"""

# `ifa browse` (ledger/browse.py): keyset pages of any slice. Each index ends in the image's
# key, so a slice filtered by a label, a status or a rule comes out in pk order without a sort.
V11_BROWSE_INDEXES = """
CREATE INDEX IF NOT EXISTS labels_label_status ON labels(label_id, status, image_pk);
CREATE INDEX IF NOT EXISTS labels_status_rule ON labels(status_rule, image_pk) WHERE status_rule IS NOT NULL;
CREATE INDEX IF NOT EXISTS labels_other_sources ON labels(source) WHERE source != 'import';
CREATE INDEX IF NOT EXISTS images_split ON images(split);
CREATE INDEX IF NOT EXISTS images_status ON images(status);
CREATE INDEX IF NOT EXISTS images_status_rule ON images(status_rule) WHERE status_rule IS NOT NULL;
CREATE INDEX IF NOT EXISTS images_duplicate_of ON images(status_reason) WHERE status_rule = 'duplicate';
"""

# Review that spends fewer human answers: a round's mode (blind: annotators label from an
# empty page; check: they edit the current labels), the rule that chose its tie-breaks
# (any difference, or only groups whose aggregated posterior is below min_confidence),
# the groups each tie-break task asks, and decisions that may come from the aggregation,
# with their posterior and each group's source.
V12_REVIEW_COST = """
ALTER TABLE review_rounds ADD COLUMN mode TEXT NOT NULL DEFAULT 'blind';
ALTER TABLE review_rounds ADD COLUMN tiebreak_when TEXT;
ALTER TABLE review_rounds ADD COLUMN min_confidence REAL;

CREATE TABLE review_tiebreak_groups (
    round_id INTEGER NOT NULL REFERENCES review_rounds(round_id),
    image_id TEXT NOT NULL,
    groups   TEXT NOT NULL,                    -- JSON list of the group names to answer
    PRIMARY KEY (round_id, image_id)
) WITHOUT ROWID;

-- Check mode: what a gold task was pre-filled with (its trusted labels with mistakes
-- planted), so gold measures checking, not accepting.
CREATE TABLE review_gold_prefill (
    round_id INTEGER NOT NULL REFERENCES review_rounds(round_id),
    image_id TEXT NOT NULL,
    shown    TEXT NOT NULL,                    -- JSON list of the label ids pre-filled
    mistakes TEXT NOT NULL,                    -- JSON list of what was planted, e.g. "dropped Black"
    PRIMARY KEY (round_id, image_id)
) WITHOUT ROWID;

CREATE TABLE review_decisions_v12 (
    round_id   INTEGER NOT NULL REFERENCES review_rounds(round_id),
    image_id   TEXT NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('agreed', 'tiebreak', 'discarded', 'aggregated')),
    labels     TEXT NOT NULL,                  -- JSON list of label ids
    decided_by TEXT NOT NULL,                  -- 'agreement', 'aggregation' or the tie-breaker's email
    time       TEXT NOT NULL,
    posterior  REAL,                           -- P(every aggregated group is right); NULL: none aggregated
    sources    TEXT,                           -- JSON {group: agreement|aggregation|tie-break}
    PRIMARY KEY (round_id, image_id)
) WITHOUT ROWID;
INSERT INTO review_decisions_v12(round_id, image_id, outcome, labels, decided_by, time)
    SELECT round_id, image_id, outcome, labels, decided_by, time FROM review_decisions;
DROP TABLE review_decisions;
ALTER TABLE review_decisions_v12 RENAME TO review_decisions;
"""

# A short check (flag-noise --review): the groups each image's annotators are asked, the
# rest of its labels kept whatever they answer; and each round's aggregation, cached
# under a key of what it read (answers, gold, prior), so status does not rerun the EM.
V13_REVIEW_CHECKS = """
CREATE TABLE review_check_groups (
    round_id INTEGER NOT NULL REFERENCES review_rounds(round_id),
    image_id TEXT NOT NULL,
    groups   TEXT NOT NULL,                    -- JSON list of the group names asked
    PRIMARY KEY (round_id, image_id)
) WITHOUT ROWID;

CREATE TABLE review_aggregates (
    round_id     INTEGER PRIMARY KEY REFERENCES review_rounds(round_id),
    key          TEXT NOT NULL,                -- hash of the inputs the result was computed from
    computed_at  TEXT NOT NULL,
    computations INTEGER NOT NULL,             -- times it was computed for this round
    result       BLOB NOT NULL                 -- numpy .npz of the aggregation's arrays
);
"""

MIGRATIONS: list[str] = [V1_FOUNDATION, V2_FETCHES, V3_REVIEW_QUEUE, V4_HASHES, V5_REVIEW, V6_RAW_LABEL_NAMES,
                         V7_DEDUP_SIGNATURES, V8_REVIEW_POOL, V9_DEDUP_FLAT_BORDERS, V10_IMAGE_STATS,
                         V11_BROWSE_INDEXES, V12_REVIEW_COST, V13_REVIEW_CHECKS]
