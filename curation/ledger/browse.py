"""What `ifa browse` reads: a filtered slice of the images, paged by key, and its facet counts.

Every page is `images.pk > cursor ORDER BY pk LIMIT n` (keyset paging: no OFFSET scan, and
every image comes exactly once while pages are read). A filter on labels drives the query
from the labels index (label_id, status, image_pk), which returns rows already in pk order;
the other filters are small sets (a rule, a round, flags, clusters, file problems) or
columns of `images` with an index that ends in pk.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .file_problems import _CURRENT
from .hashes import DEDUP_RULE

if TYPE_CHECKING:
    from .core import Ledger

FLAG_RULE = "flag-noise"  # curation/noise/flag.py's rule: the labels and review entries it flagged
DUPLICATE_PREFIX = "duplicate-of:"  # dedup's set-aside reason names the copy it kept

# Images in a dedup cluster: the copies dedup set aside, and the copy each was kept for.
_CLUSTER = (f"SELECT pk FROM images WHERE status_rule = '{DEDUP_RULE}' UNION "
            f"SELECT k.pk FROM images d JOIN images k ON k.image_id = substr(d.status_reason, {len(DUPLICATE_PREFIX) + 1}) "
            f"WHERE d.status_rule = '{DEDUP_RULE}'")
_FLAGGED = (f"SELECT image_pk FROM labels WHERE status_rule = '{FLAG_RULE}' UNION "
            f"SELECT image_pk FROM review_queue WHERE rule = '{FLAG_RULE}'")
_PROBLEM = f"SELECT i.pk FROM unreadable_files u JOIN images i ON {_CURRENT}"


@dataclass(frozen=True)
class BrowseFilter:
    """A slice of the images; every field left empty selects all. labels: label ids the
    image carries (active), all of them; any_labels: at least one of these (a group);
    source: an active label from this source; flagged/cluster/problem: True keeps only
    images flagged by flag-noise / in a dedup cluster / with an unreadable file; round: in
    this review round (by name); decision: with this review outcome (agreed, tiebreak,
    discarded)."""

    split: str | None = None
    status: str | None = None
    rule: str | None = None
    labels: tuple[int, ...] = ()
    any_labels: tuple[int, ...] = ()
    source: str | None = None
    flagged: bool = False
    cluster: bool = False
    problem: bool = False
    round: str | None = None
    decision: str | None = None


@dataclass(frozen=True)
class ImageRow:
    """One image of a page: its key (the cursor), id, split, status and active label ids."""

    pk: int
    image_id: str
    split: str
    status: str
    label_ids: tuple[int, ...]


@dataclass
class FacetCounts:
    """Counts over a slice: value -> images, per facet. `timed_out` names facets not counted
    within the time given (their dicts are empty)."""

    total: int | None = None
    split: dict[str, int] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    rule: dict[str, int] = field(default_factory=dict)
    label: dict[int, int] = field(default_factory=dict)
    source: dict[str, int] = field(default_factory=dict)
    flagged: int | None = None
    cluster: int | None = None
    problem: int | None = None
    round: dict[str, int] = field(default_factory=dict)
    decision: dict[str, int] = field(default_factory=dict)
    timed_out: list[str] = field(default_factory=list)


def _slice(f: BrowseFilter) -> tuple[str, str, list, str]:
    """(FROM clause, WHERE conditions joined by AND, parameters, the key column) for `f`."""
    params: list = []
    if f.labels:
        # CROSS JOIN keeps the labels index as the outer loop: its rows come in image_pk order.
        source = "labels l CROSS JOIN images i ON i.pk = l.image_pk"
        conds, key = ["l.label_id = ?", "l.status = 'active'"], "l.image_pk"
        params.append(f.labels[0])
    else:
        source, conds, key = "images i", [], "i.pk"
    for name in ("split", "status"):
        if getattr(f, name) is not None:
            conds.append(f"i.{name} = ?")
            params.append(getattr(f, name))
    if f.rule is not None:
        conds.append("i.status_rule = ?")
        params.append(f.rule)
    for label_id in f.labels[1:]:
        conds.append("EXISTS (SELECT 1 FROM labels x WHERE x.image_pk = i.pk AND x.label_id = ? AND x.status = 'active')")
        params.append(label_id)
    if f.any_labels:
        conds.append(f"EXISTS (SELECT 1 FROM labels x WHERE x.image_pk = i.pk AND x.status = 'active' "
                     f"AND x.label_id IN ({','.join('?' * len(f.any_labels))}))")
        params.extend(f.any_labels)
    if f.source is not None:
        conds.append("EXISTS (SELECT 1 FROM labels x WHERE x.image_pk = i.pk AND x.status = 'active' AND x.source = ?)")
        params.append(f.source)
    for on, sql in ((f.flagged, _FLAGGED), (f.cluster, _CLUSTER), (f.problem, _PROBLEM)):
        if on:
            conds.append(f"i.pk IN ({sql})")
    if f.round is not None:
        conds.append("i.image_id IN (SELECT ri.image_id FROM review_images ri JOIN review_rounds r "
                     "ON r.round_id = ri.round_id WHERE r.name = ?)")
        params.append(f.round)
    if f.decision is not None:
        conds.append("i.image_id IN (SELECT image_id FROM review_decisions WHERE outcome = ?)")
        params.append(f.decision)
    return source, " AND ".join(conds) or "1", params, key


def page(ledger: Ledger, f: BrowseFilter, after: int = 0, limit: int = 60) -> list[ImageRow]:
    """Up to `limit` images of the slice with pk > `after`, in pk order, with their active
    label ids. The last row's pk is the next page's `after`."""
    source, where, params, key = _slice(f)
    rows = _page_rows(ledger, source, where, params, key, after, limit)
    labels: dict[int, list[int]] = {r[0]: [] for r in rows}
    if rows:
        marks = ",".join("?" * len(rows))
        for pk, label_id in ledger.query(f"SELECT image_pk, label_id FROM labels WHERE image_pk IN ({marks}) "
                                         "AND status = 'active' ORDER BY image_pk, label_id", list(labels)):
            labels[pk].append(label_id)
    return [ImageRow(pk, image_id, split, status, tuple(labels[pk])) for pk, image_id, split, status in rows]


def _page_rows(ledger: Ledger, source: str, where: str, params: list, key: str, after: int, limit: int) -> list[tuple]:
    return ledger.query(f"SELECT i.pk, i.image_id, i.split, i.status FROM {source} "
                        f"WHERE {where} AND {key} > ? ORDER BY {key} LIMIT ?", [*params, after, limit])


# facet -> (SELECT of value and count over the slice `s`, the FacetCounts field)
_FACETS = {
    "total": "SELECT count(*) FROM s",
    "split": "SELECT i.split, count(*) FROM s JOIN images i ON i.pk = s.pk GROUP BY 1",
    "status": "SELECT i.status, count(*) FROM s JOIN images i ON i.pk = s.pk GROUP BY 1",
    "rule": "SELECT i.status_rule, count(*) FROM s JOIN images i ON i.pk = s.pk WHERE i.status_rule IS NOT NULL GROUP BY 1",
    "flagged": f"SELECT count(*) FROM s WHERE s.pk IN ({_FLAGGED})",
    "cluster": f"SELECT count(*) FROM s WHERE s.pk IN ({_CLUSTER})",
    "problem": f"SELECT count(*) FROM s WHERE s.pk IN ({_PROBLEM})",
    "round": "SELECT r.name, count(*) FROM s JOIN images i ON i.pk = s.pk JOIN review_images ri ON ri.image_id = i.image_id "
             "JOIN review_rounds r ON r.round_id = ri.round_id GROUP BY 1",
    "decision": "SELECT d.outcome, count(DISTINCT s.pk) FROM s JOIN images i ON i.pk = s.pk "
                "JOIN review_decisions d ON d.image_id = i.image_id GROUP BY 1",
    "source": "SELECT l.source, count(DISTINCT s.pk) FROM s JOIN labels l ON l.image_pk = s.pk AND l.status = 'active' GROUP BY 1",
    "label": "SELECT l.label_id, count(*) FROM s JOIN labels l ON l.image_pk = s.pk AND l.status = 'active' GROUP BY 1",
}


def facet_counts(ledger: Ledger, f: BrowseFilter, budget_s: float = 1.0) -> FacetCounts:
    """Counts of the slice's images by split, status, rule, label, label source, round and
    decision, and how many are flagged, in a dedup cluster or have a file problem. The
    facets share `budget_s` seconds; one that would run past it is stopped and named in
    `timed_out` (a slice of most of a million images can take longer to count by label)."""
    source, where, params, key = _slice(f)
    slice_sql = f"WITH s(pk) AS MATERIALIZED (SELECT {key} FROM {source} WHERE {where}) "
    out = FacetCounts()
    deadline = time.perf_counter() + budget_s
    for name, sql in _FACETS.items():
        rows = _within(ledger, slice_sql + sql, params, deadline)
        if rows is None:
            out.timed_out.append(name)
        elif name in ("total", "flagged", "cluster", "problem"):
            setattr(out, name, rows[0][0])
        else:
            setattr(out, name, dict(rows))
    return out


def _within(ledger: Ledger, sql: str, params: list, deadline: float) -> list[tuple] | None:
    """The query's rows, or None when it runs past `deadline` (perf_counter seconds)."""
    if time.perf_counter() >= deadline:
        return None
    ledger.conn.set_progress_handler(lambda: time.perf_counter() > deadline, 10_000)
    try:
        return ledger.query(sql, params)
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            return None
        raise
    finally:
        ledger.conn.set_progress_handler(None, 0)


def image_pk(ledger: Ledger, image_id: str) -> int | None:
    rows = ledger.query("SELECT pk FROM images WHERE image_id = ?", (str(image_id),))
    return rows[0][0] if rows else None


@dataclass(frozen=True)
class ClusterMember:
    """An image of a dedup cluster: kept is the copy the others were set aside for."""

    image_id: str
    split: str
    status: str
    kept: bool


def dedup_cluster(ledger: Ledger, image_id: str) -> list[ClusterMember]:
    """The dedup cluster the image is in (the kept copy first), or [] when it is in none."""
    rows = ledger.query("SELECT status_rule, status_reason FROM images WHERE image_id = ?", (str(image_id),))
    if not rows:
        return []
    rule, reason = rows[0]
    kept = reason[len(DUPLICATE_PREFIX):] if rule == DEDUP_RULE and reason and reason.startswith(DUPLICATE_PREFIX) \
        else str(image_id)
    members = ledger.query("SELECT image_id, split, status FROM images WHERE image_id = ? UNION ALL "
                           f"SELECT image_id, split, status FROM images WHERE status_rule = '{DEDUP_RULE}' "
                           "AND status_reason = ?", (kept, DUPLICATE_PREFIX + kept))
    if len(members) < 2:
        return []
    return [ClusterMember(i, s, st, i == kept) for i, s, st in members]


@dataclass(frozen=True)
class Flag:
    """A label flag-noise judged likely wrong (reason holds its score) or queued for review."""

    label_id: int | None
    status: str
    reason: str


def noise_flags(ledger: Ledger, image_id: str) -> list[Flag]:
    """What flag-noise flagged on this image: labels it dropped (their reason holds the
    score) and review-queue entries it made."""
    rows = ledger.query("SELECT l.label_id, l.status, coalesce(l.status_reason, '') FROM labels l JOIN images i "
                        "ON i.pk = l.image_pk WHERE i.image_id = ? AND l.status_rule = ? UNION ALL "
                        "SELECT e.label_id, e.new, coalesce(e.reason, '') FROM events e WHERE e.image_id = ? AND e.rule = ? "
                        "AND e.kind = 'label_dropped' AND e.label_id NOT IN (SELECT l.label_id FROM labels l JOIN images i "
                        "ON i.pk = l.image_pk WHERE i.image_id = ? AND l.status_rule = ?) UNION ALL "
                        "SELECT NULL, q.status, coalesce(q.reason, '') FROM review_queue q JOIN images i ON i.pk = q.image_pk "
                        "WHERE i.image_id = ? AND q.rule = ?",
                        (str(image_id), FLAG_RULE) * 4)
    return [Flag(label_id, status, reason) for label_id, status, reason in rows]


@dataclass(frozen=True)
class ReviewAnswer:
    """One annotator's answer on the image in a round (labels: label ids), or a decision
    (annotator is the deciding rule or tie-breaker, role 'decision')."""

    round: str
    role: str
    annotator: str
    labels: str
    discard: bool
    time: str | None


def review_answers(ledger: Ledger, image_id: str) -> list[ReviewAnswer]:
    """Every live answer given on the image, by round and annotator, then each round's
    decision."""
    rows = ledger.query(
        "SELECT r.name, a.role, coalesce(p.email, ''), a.labels, a.discard, coalesce(a.updated_at, a.created_at) "
        "FROM review_annotations a JOIN review_rounds r ON r.round_id = a.round_id "
        "LEFT JOIN review_projects p ON p.round_id = a.round_id AND p.role = a.role "
        "WHERE a.image_id = ? AND a.deleted IS NULL UNION ALL "
        "SELECT r.name, 'decision', d.decided_by, d.labels, d.outcome = 'discarded', d.time FROM review_decisions d "
        "JOIN review_rounds r ON r.round_id = d.round_id WHERE d.image_id = ? ORDER BY 1, 2",
        (str(image_id), str(image_id)))
    return [ReviewAnswer(*row[:4], bool(row[4]), row[5]) for row in rows]


def round_names(ledger: Ledger) -> list[str]:
    return [r[0] for r in ledger.query("SELECT name FROM review_rounds ORDER BY round_id")]


def label_rows(ledger: Ledger, image_id: str) -> dict[int, str]:
    """label id -> status of every label row of the image."""
    return dict(ledger.query("SELECT l.label_id, l.status FROM labels l JOIN images i ON i.pk = l.image_pk "
                             "WHERE i.image_id = ?", (str(image_id),)))


def analyze_if_new(ledger: Ledger) -> bool:
    """Give the query planner table statistics once (a sample of each index, so it picks
    the selective index for a slice); returns whether it ran."""
    if ledger.read_only or ledger.query("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'"):
        return False
    ledger.conn.execute("PRAGMA analysis_limit = 2000")
    ledger.conn.execute("ANALYZE")
    return True
