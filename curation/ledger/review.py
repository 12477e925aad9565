"""Review rounds in the ledger: rounds, their Label Studio projects and tasks, synced
annotations and final decisions. The SQL for `ifa review` lives here; `annotation/` calls
these methods with plain data and gets plain data (dicts, frames) back.

Every write is one transaction, and every insert is keyed by what Label Studio calls it
(task id, annotation id), so a rerun after a crash adds only what is missing.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from ...errors import IfaError
from .core import Ledger, now

if TYPE_CHECKING:  # pandas loads when a frame is built (Ledger.frame), not with the ledger
    import pandas as pd

ROLES = ("annotator1", "annotator2", "tiebreak")  # the roles of a two-annotator round
ANNOTATOR_ROLES = ("annotator1", "annotator2")
# A pool: annotator1..annotatorN, tie-breakers tiebreak (the first), tiebreak2, tiebreak3, ...
_ROLE = re.compile(r"^(annotator[1-9][0-9]*|tiebreak([2-9]|[1-9][0-9]+)?)$")


def annotator_role(k: int) -> str:
    """The role of the k-th annotator of a pool (0-based): annotator1, annotator2, ..."""
    return f"annotator{k + 1}"


def tiebreak_role(k: int) -> str:
    """The role of the k-th tie-breaker of a pool (0-based): tiebreak, tiebreak2, ..."""
    return "tiebreak" if k == 0 else f"tiebreak{k + 1}"


def is_tiebreak(role: str) -> bool:
    return role.startswith("tiebreak")


def role_order(role: str) -> tuple[int, int]:
    """Sort key: annotators by number, then tie-breakers by number."""
    if is_tiebreak(role):
        return 1, int(role[8:] or 1)
    return 0, int(role[9:])

# Columns of an annotation row as `upsert_annotations` takes and `annotations` returns them.
ANNOTATION_COLUMNS = ("ls_annotation_id", "role", "image_id", "ls_task_id", "completed_by", "by_annotator",
                      "result", "labels", "discard", "skipped", "problems", "lead_time", "created_at", "updated_at")


def _id_table(conn, table: str, column: str, values: Iterable) -> None:
    """Fill the temp table `table` (one key column, e.g. "id INTEGER") with exactly `values`, to join on."""
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({column} PRIMARY KEY)")
    conn.execute(f"DELETE FROM {table}")
    conn.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?)", ((v,) for v in values))


@dataclass(frozen=True)
class ProjectRow:
    """A round's Label Studio project for one role, and the person who works in it."""

    role: str
    email: str
    ls_user_id: int
    ls_project_id: int
    title: str


WORKSPACE_KEY = "review_workspace_key"


class ReviewStore:
    """The review tables of one ledger."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def workspace_key(self) -> str:
        """This workspace's random key (12 hex digits), made on first use and kept in `meta`.
        Project descriptions carry it, so two workspaces on one Label Studio server never
        adopt each other's projects when their round names are the same."""
        with self.ledger.transaction() as conn:
            # INSERT OR IGNORE: two commands making it at once keep the first key.
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                         (WORKSPACE_KEY, uuid.uuid4().hex[:12]))
            return str(conn.execute("SELECT value FROM meta WHERE key = ?", (WORKSPACE_KEY,)).fetchone()[0])

    # ---- annotators -------------------------------------------------------------------
    def add_annotator(self, server: str, email: str, ls_user_id: int, simulated: bool = False) -> None:
        """Remember an annotator's Label Studio user id on `server` (a rerun updates it)."""
        with self.ledger.transaction() as conn:
            conn.execute(
                "INSERT INTO review_annotators(server, email, ls_user_id, simulated, added) VALUES (?,?,?,?,?) "
                "ON CONFLICT(server, email) DO UPDATE SET ls_user_id = excluded.ls_user_id, "
                "simulated = max(review_annotators.simulated, excluded.simulated)",
                (server, email.lower(), int(ls_user_id), int(simulated), now()),
            )

    def annotators(self, server: str | None = None) -> pd.DataFrame:
        """server, email, ls_user_id, simulated, added."""
        sql = "SELECT server, email, ls_user_id, simulated, added FROM review_annotators"
        if server is not None:
            return self.ledger.frame(sql + " WHERE server = ? ORDER BY email", (server,))
        return self.ledger.frame(sql + " ORDER BY server, email")

    def simulated_emails(self) -> set[str]:
        return {r[0] for r in self.ledger.query("SELECT email FROM review_annotators WHERE simulated = 1")}

    # ---- rounds -----------------------------------------------------------------------
    def create_round(self, name: str, split: str, server: str, simulated: bool = False) -> int:
        """Insert the round (or return the existing one of that name); returns round_id.
        Raises IfaError when a round of that name exists for another split or server."""
        with self.ledger.transaction() as conn:
            row = conn.execute("SELECT round_id, split, server FROM review_rounds WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if row[1] != split or row[2] != server:
                    raise IfaError(
                        f"Round {name!r} already exists for the {row[1]} split on {row[2]}; "
                        "pick another --name for a new round."
                    )
                return int(row[0])
            cur = conn.execute(
                "INSERT INTO review_rounds(name, split, server, simulated, created, command) VALUES (?,?,?,?,?,?)",
                (name, split, server, int(simulated), now(), self.ledger.command),
            )
            conn.execute(
                "INSERT INTO events(time, command, kind, old, new, reason, rule) VALUES (?,?,?,?,?,?,?)",
                (now(), self.ledger.command, "review_round", None, name,
                 f"{'SIMULATED ' if simulated else ''}review round {name} created over the {split} split on {server}",
                 f"review:{name}"),
            )
            return int(cur.lastrowid)

    def rounds(self) -> pd.DataFrame:
        """round_id, name, split, server, tiebreaker, simulated, created, complete, finalized,
        tiebreakers (JSON list or None), per_image, gold_rate, mode, tiebreak_when, min_confidence,
        images (oldest first)."""
        return self.ledger.frame(
            "SELECT r.round_id, r.name, r.split, r.server, r.tiebreaker, r.simulated, r.created, r.complete, r.finalized, "
            "r.tiebreakers, r.per_image, r.gold_rate, r.mode, r.tiebreak_when, r.min_confidence, "
            "(SELECT count(*) FROM review_images i WHERE i.round_id = r.round_id) AS images "
            "FROM review_rounds r ORDER BY r.round_id"
        )

    def round(self, name: str | None = None) -> dict:
        """The named round, or the latest one when `name` is None. Raises IfaError when
        there is none."""
        rounds = self.rounds()
        if rounds.empty:
            raise IfaError("This workspace has no review round yet. Create one with `ifa review create`.")
        if name is None:
            return rounds.iloc[-1].to_dict()
        hit = rounds[rounds["name"] == name]
        if hit.empty:
            raise IfaError(f"There is no review round {name!r}; rounds: {', '.join(rounds['name'])}.")
        return hit.iloc[0].to_dict()

    def set_tiebreaker(self, round_id: int, email: str) -> None:
        with self.ledger.transaction() as conn:
            conn.execute("UPDATE review_rounds SET tiebreaker = ? WHERE round_id = ?", (email.lower(), round_id))

    def set_pool(self, round_id: int, tiebreakers: Sequence[str], per_image: int, gold_rate: float | None) -> None:
        """Record the round's tie-breaker pool (the first is also `tiebreaker`), images per
        annotator set and gold rate."""
        pool = [e.lower() for e in tiebreakers]
        with self.ledger.transaction() as conn:
            conn.execute("UPDATE review_rounds SET tiebreaker = ?, tiebreakers = ?, per_image = ?, gold_rate = ? "
                         "WHERE round_id = ?", (pool[0] if pool else None, json.dumps(pool) if pool else None,
                                                int(per_image), gold_rate, round_id))

    def mark_complete(self, round_id: int) -> None:
        with self.ledger.transaction() as conn:
            conn.execute("UPDATE review_rounds SET complete = 1 WHERE round_id = ?", (round_id,))

    def mark_finalized(self, round_id: int) -> None:
        with self.ledger.transaction() as conn:
            conn.execute("UPDATE review_rounds SET finalized = ? WHERE round_id = ?", (now(), round_id))

    def set_simulated(self, round_id: int) -> None:
        with self.ledger.transaction() as conn:
            conn.execute("UPDATE review_rounds SET simulated = 1 WHERE round_id = ?", (round_id,))

    # ---- images -------------------------------------------------------------------------
    def add_images(self, round_id: int, image_ids: Sequence[str]) -> int:
        """Add images to the round (ones already in it are left alone); returns how many were new."""
        with self.ledger.transaction() as conn:
            before = conn.execute("SELECT count(*) FROM review_images WHERE round_id = ?", (round_id,)).fetchone()[0]
            conn.executemany("INSERT OR IGNORE INTO review_images(round_id, image_id) VALUES (?, ?)",
                             ((round_id, str(i)) for i in image_ids))
            after = conn.execute("SELECT count(*) FROM review_images WHERE round_id = ?", (round_id,)).fetchone()[0]
        return int(after - before)

    def images(self, round_id: int) -> list[str]:
        return [r[0] for r in self.ledger.query(
            "SELECT image_id FROM review_images WHERE round_id = ? ORDER BY image_id", (round_id,))]

    def image_sources(self, round_id: int) -> pd.DataFrame:
        """image_id, url, path, status, status_reason of every image of the round."""
        return self.ledger.frame(
            "SELECT i.image_id, i.url, i.path, i.status, i.status_reason FROM review_images r "
            "JOIN images i ON i.image_id = r.image_id WHERE r.round_id = ? ORDER BY i.pk", (round_id,))

    def active_labels(self, round_id: int) -> pd.DataFrame:
        """image_id, label_id of the active labels of the round's images."""
        return self.ledger.frame(
            "SELECT i.image_id, l.label_id FROM review_images r JOIN images i ON i.image_id = r.image_id "
            "JOIN labels l ON l.image_pk = i.pk WHERE r.round_id = ? AND l.status = 'active'", (round_id,))

    # ---- assignments and gold ---------------------------------------------------------------
    def add_assignments(self, round_id: int, rows: Iterable[tuple[str, str, bool, float]]) -> int:
        """Record (role, image_id, gold, position) rows in one transaction; a row already
        recorded is left alone. Returns how many were new."""
        with self.ledger.transaction() as conn:
            cur = conn.executemany(
                "INSERT OR IGNORE INTO review_assignments(round_id, role, image_id, gold, position) VALUES (?,?,?,?,?)",
                ((round_id, r, str(i), int(bool(g)), float(p)) for r, i, g, p in rows))
            return int(cur.rowcount)

    def assignments(self, round_id: int) -> pd.DataFrame:
        """role, image_id, gold, position (by role, then queue position)."""
        return self.ledger.frame(
            "SELECT role, image_id, gold, position FROM review_assignments WHERE round_id = ? ORDER BY role, position",
            (round_id,), columns=["role", "image_id", "gold", "position"])

    def move_assignments(self, round_id: int, from_role: str, to_role: str, image_ids: Sequence[str],
                         position_base: float) -> int:
        """Give `image_ids` of `from_role` to `to_role` (queued after position_base), in
        one transaction. from_role's tasks stay recorded until `forget_tasks`. Returns rows moved."""
        with self.ledger.transaction() as conn:
            n = 0
            for k, image_id in enumerate(image_ids):
                cur = conn.execute("UPDATE review_assignments SET role = ?, position = ? WHERE round_id = ? "
                                   "AND role = ? AND image_id = ?",
                                   (to_role, position_base + k + 1, round_id, from_role, str(image_id)))
                n += cur.rowcount
            return n

    def forget_tasks(self, round_id: int, role: str, image_ids: Sequence[str]) -> int:
        """Drop this role's task records of `image_ids` (their tasks were deleted in Label Studio)."""
        with self.ledger.transaction() as conn:
            cur = conn.executemany("DELETE FROM review_tasks WHERE round_id = ? AND role = ? AND image_id = ?",
                                   ((round_id, role, str(i)) for i in image_ids))
            return int(cur.rowcount)

    def set_gold(self, round_id: int, labels: dict[str, Sequence[int]]) -> None:
        """Record gold images and their trusted labels (an image already recorded keeps its labels)."""
        with self.ledger.transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO review_gold(round_id, image_id, labels) VALUES (?,?,?)",
                             ((round_id, str(i), json.dumps(sorted(int(x) for x in ls))) for i, ls in labels.items()))

    def gold(self, round_id: int) -> dict[str, tuple[int, ...]]:
        """image_id -> trusted label ids, of the round's gold images."""
        return {r[0]: tuple(json.loads(r[1])) for r in self.ledger.query(
            "SELECT image_id, labels FROM review_gold WHERE round_id = ?", (round_id,))}

    def gold_sources(self, round_id: int) -> pd.DataFrame:
        """image_id, url, path, status, status_reason of the round's gold images."""
        return self.ledger.frame(
            "SELECT i.image_id, i.url, i.path, i.status, i.status_reason FROM review_gold g "
            "JOIN images i ON i.image_id = g.image_id WHERE g.round_id = ? ORDER BY i.pk", (round_id,))

    def labels_of(self, image_ids: Sequence[str]) -> dict[str, list[int]]:
        """image_id -> active label ids (any split)."""
        out: dict[str, list[int]] = {str(i): [] for i in image_ids}
        with self.ledger.transaction() as conn:
            _id_table(conn, "wanted_ids", "image_id TEXT", (str(i) for i in image_ids))
            rows = conn.execute(
                "SELECT i.image_id, l.label_id FROM wanted_ids w JOIN images i ON i.image_id = w.image_id "
                "JOIN labels l ON l.image_pk = i.pk WHERE l.status = 'active'").fetchall()
            conn.execute("DELETE FROM wanted_ids")
        for image_id, label_id in rows:
            out[image_id].append(int(label_id))
        return out

    # ---- sync cursors ---------------------------------------------------------------------------
    def sync_cursor(self, round_id: int, role: str) -> str | None:
        rows = self.ledger.query("SELECT updated_after FROM review_sync_cursors WHERE round_id = ? AND role = ?",
                                 (round_id, role))
        return rows[0][0] if rows else None

    def set_sync_cursor(self, round_id: int, role: str, updated_after: str | None) -> None:
        with self.ledger.transaction() as conn:
            if updated_after is None:
                conn.execute("DELETE FROM review_sync_cursors WHERE round_id = ? AND role = ?", (round_id, role))
            else:
                conn.execute("INSERT INTO review_sync_cursors(round_id, role, updated_after) VALUES (?,?,?) "
                             "ON CONFLICT(round_id, role) DO UPDATE SET updated_after = excluded.updated_after",
                             (round_id, role, updated_after))

    def role_annotation_count(self, round_id: int, role: str) -> int:
        """Stored, not deleted annotations found in this role's project (anyone's)."""
        return int(self.ledger.query("SELECT count(*) FROM review_annotations WHERE round_id = ? AND role = ? "
                                     "AND deleted IS NULL", (round_id, role))[0][0])

    # ---- projects --------------------------------------------------------------------------
    def set_project(self, round_id: int, role: str, email: str, ls_user_id: int, ls_project_id: int, title: str) -> None:
        if not _ROLE.match(role):
            raise ValueError(f"unknown role {role!r}")
        with self.ledger.transaction() as conn:
            conn.execute(
                "INSERT INTO review_projects(round_id, role, email, ls_user_id, ls_project_id, title, created) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT(round_id, role) DO UPDATE SET ls_project_id = excluded.ls_project_id, "
                "email = excluded.email, ls_user_id = excluded.ls_user_id, title = excluded.title",
                (round_id, role, email.lower(), int(ls_user_id), int(ls_project_id), title, now()),
            )

    def projects(self, round_id: int) -> dict[str, ProjectRow]:
        """role -> its project, annotators first (by number), then tie-breakers."""
        rows = self.ledger.query(
            "SELECT role, email, ls_user_id, ls_project_id, title FROM review_projects WHERE round_id = ?", (round_id,))
        rows.sort(key=lambda r: role_order(r[0]))
        return {r[0]: ProjectRow(r[0], r[1], int(r[2]), int(r[3]), r[4]) for r in rows}

    # ---- tasks ---------------------------------------------------------------------------------
    def record_tasks(self, round_id: int, role: str, pairs: Iterable[tuple[str, int]]) -> int:
        """Record (image_id, Label Studio task id) pairs; an image that already has a task
        for this role keeps it. Returns how many were new."""
        with self.ledger.transaction() as conn:
            cur = conn.executemany(
                "INSERT OR IGNORE INTO review_tasks(round_id, role, image_id, ls_task_id) VALUES (?,?,?,?)",
                ((round_id, role, str(i), int(t)) for i, t in pairs),
            )
            return int(cur.rowcount)

    def tasks(self, round_id: int, role: str | None = None) -> pd.DataFrame:
        """role, image_id, ls_task_id."""
        if role is None:
            return self.ledger.frame(
                "SELECT role, image_id, ls_task_id FROM review_tasks WHERE round_id = ? ORDER BY role, ls_task_id",
                (round_id,))
        return self.ledger.frame(
            "SELECT role, image_id, ls_task_id FROM review_tasks WHERE round_id = ? AND role = ? ORDER BY ls_task_id",
            (round_id, role))

    def task_counts(self, round_id: int) -> dict[str, int]:
        return dict(self.ledger.query(
            "SELECT role, count(*) FROM review_tasks WHERE round_id = ? GROUP BY role", (round_id,)))

    # ---- annotations ------------------------------------------------------------------------------
    def upsert_annotations(self, round_id: int, rows: Sequence[dict]) -> dict[str, int]:
        """Store annotations keyed by Label Studio annotation id, in one transaction.

        rows: dicts with ANNOTATION_COLUMNS (`labels` a list of ids, `result` a list/dict).
        A row already stored with the same updated_at is left alone; one with a newer
        updated_at replaces it and the replaced result goes to review_annotation_versions;
        one marked deleted comes back. Returns counts: new, updated, unchanged."""
        counts = {"new": 0, "updated": 0, "unchanged": 0}
        if not rows:
            return counts
        stamp = now()
        with self.ledger.transaction() as conn:
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS incoming (ls_annotation_id INTEGER PRIMARY KEY, role TEXT, image_id TEXT, "
                "ls_task_id INTEGER, completed_by INTEGER, by_annotator INTEGER, result TEXT, labels TEXT, discard INTEGER, "
                "skipped INTEGER, problems TEXT, lead_time REAL, created_at TEXT, updated_at TEXT)"
            )
            conn.execute("DELETE FROM incoming")
            conn.executemany(
                "INSERT OR REPLACE INTO incoming VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                ((int(r["ls_annotation_id"]), r["role"], str(r["image_id"]), int(r["ls_task_id"]),
                  None if r.get("completed_by") is None else int(r["completed_by"]), int(bool(r["by_annotator"])),
                  r["result"] if isinstance(r["result"], str) else json.dumps(r["result"], ensure_ascii=False),
                  json.dumps([int(x) for x in r["labels"]]), int(bool(r["discard"])), int(bool(r["skipped"])),
                  r.get("problems") or "", r.get("lead_time"), r.get("created_at"), r.get("updated_at"))
                 for r in rows),
            )
            counts["new"] = conn.execute(
                "SELECT count(*) FROM incoming n LEFT JOIN review_annotations a "
                "ON a.round_id = ? AND a.ls_annotation_id = n.ls_annotation_id WHERE a.ls_annotation_id IS NULL",
                (round_id,)).fetchone()[0]
            changed = "a.round_id = ? AND a.ls_annotation_id = n.ls_annotation_id AND " \
                      "(a.updated_at IS NOT n.updated_at OR a.deleted IS NOT NULL OR a.role != n.role " \
                      "OR a.by_annotator != n.by_annotator OR a.problems != n.problems)"
            counts["updated"] = conn.execute(
                f"SELECT count(*) FROM incoming n JOIN review_annotations a ON {changed}", (round_id,)).fetchone()[0]
            conn.execute(
                "INSERT INTO review_annotation_versions(round_id, ls_annotation_id, result, updated_at, replaced) "
                "SELECT a.round_id, a.ls_annotation_id, a.result, a.updated_at, ? FROM incoming n "
                "JOIN review_annotations a ON a.round_id = ? AND a.ls_annotation_id = n.ls_annotation_id "
                "WHERE a.result != n.result",
                (stamp, round_id),
            )
            conn.execute(
                "INSERT INTO review_annotations(round_id, ls_annotation_id, role, image_id, ls_task_id, completed_by, "
                "by_annotator, result, labels, discard, skipped, problems, lead_time, created_at, updated_at, synced) "
                "SELECT ?, n.* , ? FROM incoming n WHERE true "
                "ON CONFLICT(round_id, ls_annotation_id) DO UPDATE SET role = excluded.role, image_id = excluded.image_id, "
                "ls_task_id = excluded.ls_task_id, completed_by = excluded.completed_by, by_annotator = excluded.by_annotator, "
                "result = excluded.result, labels = excluded.labels, discard = excluded.discard, skipped = excluded.skipped, "
                "problems = excluded.problems, lead_time = excluded.lead_time, created_at = excluded.created_at, "
                "updated_at = excluded.updated_at, synced = excluded.synced, deleted = NULL "
                "WHERE review_annotations.updated_at IS NOT excluded.updated_at OR review_annotations.deleted IS NOT NULL "
                "OR review_annotations.role != excluded.role OR review_annotations.by_annotator != excluded.by_annotator "
                "OR review_annotations.problems != excluded.problems",
                (round_id, stamp),
            )
            conn.execute("DELETE FROM incoming")
        counts["unchanged"] = len(rows) - counts["new"] - counts["updated"]
        return counts

    def mark_deleted(self, round_id: int, role: str, seen_ids: Iterable[int]) -> int:
        """Mark this role's stored annotations that Label Studio no longer has (ids not in
        `seen_ids`, from a complete listing of the project) as deleted; returns how many."""
        stamp = now()
        with self.ledger.transaction() as conn:
            _id_table(conn, "seen_ids", "id INTEGER", (int(i) for i in seen_ids))
            cur = conn.execute(
                "UPDATE review_annotations SET deleted = ? WHERE round_id = ? AND role = ? AND deleted IS NULL "
                "AND ls_annotation_id NOT IN (SELECT id FROM seen_ids)",
                (stamp, round_id, role),
            )
            conn.execute("DELETE FROM seen_ids")
            return int(cur.rowcount)

    def annotations(self, round_id: int, include_deleted: bool = False) -> pd.DataFrame:
        """ANNOTATION_COLUMNS plus synced and deleted; `labels` parsed to lists of ints."""
        sql = f"SELECT {', '.join(ANNOTATION_COLUMNS)}, synced, deleted FROM review_annotations WHERE round_id = ?"
        if not include_deleted:
            sql += " AND deleted IS NULL"
        df = self.ledger.frame(sql + " ORDER BY ls_annotation_id", (round_id,),
                               columns=[*ANNOTATION_COLUMNS, "synced", "deleted"])
        df["labels"] = [json.loads(x) for x in df["labels"]]
        return df

    def annotation_count(self, round_id: int) -> int:
        return int(self.ledger.query(
            "SELECT count(*) FROM review_annotations WHERE round_id = ? AND deleted IS NULL", (round_id,))[0][0])

    def annotation_versions(self, round_id: int) -> pd.DataFrame:
        return self.ledger.frame(
            "SELECT ls_annotation_id, result, updated_at, replaced FROM review_annotation_versions WHERE round_id = ? "
            "ORDER BY rowid", (round_id,))

    # ---- decisions --------------------------------------------------------------------------------
    def record_decisions(self, round_id: int, rows: Sequence[dict]) -> int:
        """Upsert final decisions: dicts with image_id, outcome, labels (ids), decided_by,
        and optionally posterior (float) and sources ({group: source}). A decision that is
        unchanged keeps its time. Returns rows inserted or changed."""
        stamp = now()
        with self.ledger.transaction() as conn:
            cur = conn.executemany(
                "INSERT INTO review_decisions(round_id, image_id, outcome, labels, decided_by, time, posterior, sources) "
                "VALUES (?,?,?,?,?,?,?,?) "
                "ON CONFLICT(round_id, image_id) DO UPDATE SET outcome = excluded.outcome, labels = excluded.labels, "
                "decided_by = excluded.decided_by, time = excluded.time, posterior = excluded.posterior, "
                "sources = excluded.sources "
                "WHERE review_decisions.outcome != excluded.outcome OR review_decisions.labels != excluded.labels "
                "OR review_decisions.decided_by != excluded.decided_by "
                "OR review_decisions.sources IS NOT excluded.sources",
                ((round_id, str(r["image_id"]), r["outcome"], json.dumps(sorted(int(x) for x in r["labels"])),
                  r["decided_by"], stamp, r.get("posterior"),
                  json.dumps(r["sources"], sort_keys=True) if r.get("sources") is not None else None) for r in rows),
            )
            return int(cur.rowcount)

    def decisions(self, round_id: int) -> pd.DataFrame:
        cols = ["image_id", "outcome", "labels", "decided_by", "time", "posterior", "sources"]
        df = self.ledger.frame(
            f"SELECT {', '.join(cols)} FROM review_decisions WHERE round_id = ? ORDER BY image_id", (round_id,), columns=cols)
        df["labels"] = [json.loads(x) for x in df["labels"]]
        df["sources"] = [json.loads(x) if isinstance(x, str) and x else {} for x in df["sources"]]
        df["posterior"] = [None if x is None or x != x else float(x) for x in df["posterior"]]
        return df

    # ---- review cost: mode, tie-break rule, the groups each tie-break asks -------------------------
    def set_mode(self, round_id: int, mode: str) -> None:
        with self.ledger.transaction() as conn:
            conn.execute("UPDATE review_rounds SET mode = ? WHERE round_id = ?", (mode, round_id))

    def set_tiebreak_rule(self, round_id: int, when: str, min_confidence: float | None) -> None:
        """Record how the round's tie-breaks are chosen (`any` or `uncertain`)."""
        with self.ledger.transaction() as conn:
            conn.execute("UPDATE review_rounds SET tiebreak_when = ?, min_confidence = ? WHERE round_id = ?",
                         (when, min_confidence, round_id))

    def set_tiebreak_groups(self, round_id: int, groups: dict[str, Sequence[str]]) -> None:
        """Record the groups each image's tie-breaker must answer; an image recorded before
        keeps its groups (its task already shows them)."""
        self._add_groups("review_tiebreak_groups", round_id, groups)

    def tiebreak_groups(self, round_id: int) -> dict[str, tuple[str, ...]]:
        """image_id -> the groups its tie-breaker must answer (images recorded only)."""
        return self._groups("review_tiebreak_groups", round_id)

    def _add_groups(self, table: str, round_id: int, groups: dict[str, Sequence[str]]) -> None:
        with self.ledger.transaction() as conn:
            conn.executemany(f"INSERT OR IGNORE INTO {table}(round_id, image_id, groups) VALUES (?,?,?)",
                             ((round_id, str(i), json.dumps(list(g))) for i, g in groups.items()))

    def _groups(self, table: str, round_id: int) -> dict[str, tuple[str, ...]]:
        rows = self.ledger.query(f"SELECT image_id, groups FROM {table} WHERE round_id = ?", (round_id,))
        return {r[0]: tuple(json.loads(r[1])) for r in rows}

    def set_gold_prefill(self, round_id: int, rows: Iterable[tuple[str, Sequence[int], Sequence[str]]]) -> None:
        """Record check-mode gold pre-fills: (image_id, label ids shown, mistakes planted);
        one recorded before stays (its tasks already show it)."""
        with self.ledger.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO review_gold_prefill(round_id, image_id, shown, mistakes) VALUES (?,?,?,?)",
                ((round_id, str(i), json.dumps(sorted(int(x) for x in shown)), json.dumps(list(m))) for i, shown, m in rows))

    def gold_prefill(self, round_id: int) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
        """image_id -> (label ids shown, mistakes planted) of the round's check-mode gold."""
        rows = self.ledger.query("SELECT image_id, shown, mistakes FROM review_gold_prefill WHERE round_id = ?", (round_id,))
        return {r[0]: (tuple(json.loads(r[1])), tuple(json.loads(r[2]))) for r in rows}

    # ---- short checks: the groups each image is asked --------------------------------------------
    def set_check_groups(self, round_id: int, groups: dict[str, Sequence[str]]) -> None:
        """Record the groups each image's annotators are asked in a short check; an image
        recorded before keeps its groups (its tasks already show them)."""
        self._add_groups("review_check_groups", round_id, groups)

    def check_groups(self, round_id: int) -> dict[str, tuple[str, ...]]:
        """image_id -> the groups a short check asks (empty for any other round)."""
        return self._groups("review_check_groups", round_id)

    # ---- the aggregation's cache -----------------------------------------------------------------
    def cached_aggregate(self, round_id: int) -> tuple[str, str, int, bytes] | None:
        """(key, computed_at, computations, result bytes) of the round's cached aggregation, or None."""
        rows = self.ledger.query(
            "SELECT key, computed_at, computations, result FROM review_aggregates WHERE round_id = ?", (round_id,))
        return (str(rows[0][0]), str(rows[0][1]), int(rows[0][2]), bytes(rows[0][3])) if rows else None

    def cache_aggregate(self, round_id: int, key: str, result: bytes) -> None:
        """Store the round's aggregation under `key` (replacing the old one) and count the computation."""
        with self.ledger.transaction() as conn:
            conn.execute(
                "INSERT INTO review_aggregates(round_id, key, computed_at, computations, result) VALUES (?,?,?,1,?) "
                "ON CONFLICT(round_id) DO UPDATE SET key = excluded.key, computed_at = excluded.computed_at, "
                "computations = review_aggregates.computations + 1, result = excluded.result",
                (round_id, key, now(), sqlite3.Binary(result)))
