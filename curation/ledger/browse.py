"""What `ifa browse` reads: a filtered slice of the images, paged by key, and its facet counts.

Every page is `images.pk > cursor ORDER BY pk LIMIT n` (keyset paging: no OFFSET scan, and
every image comes exactly once while pages are read). A filter on labels drives the query
from the labels index (label_id, status, image_pk), which returns rows already in pk order;
the other filters are small sets (a rule, a round, flags, clusters, file problems) or
columns of `images` with an index that ends in pk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .file_problems import _CURRENT
from .hashes import DEDUP_RULE

if TYPE_CHECKING:
    import numpy as np

    from .core import Ledger

FLAG_RULE = "flag-noise"  # curation/noise/flag.py's rule: the labels and review entries it flagged
DUPLICATE_PREFIX = "duplicate-of:"  # dedup's set-aside reason names the copy it kept

# Images in a dedup cluster: the copies dedup set aside, and the copy each was kept for.
_CLUSTER = (f"SELECT pk FROM images WHERE status_rule = '{DEDUP_RULE}' UNION "
            f"SELECT k.pk FROM images d INDEXED BY images_duplicate_of JOIN images k "
            f"ON k.image_id = substr(d.status_reason, {len(DUPLICATE_PREFIX) + 1}) WHERE d.status_rule = '{DEDUP_RULE}'")
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


DRIVERS = ("label", "split", "status", "rule", "set", "pk")
_INDEX_OF = {"split": "images_split", "status": "images_status", "rule": "images_status_rule"}


def _slice(f: BrowseFilter, driver: str | None = None) -> tuple[str, str, list, str]:
    """(FROM clause, WHERE conditions joined by AND, parameters, the key column) for `f`.

    `driver` names what the query walks (the rest are checks on each row it meets): "label"
    (the first of f.labels, through the labels index), "split", "status" or "rule" (an
    index of images), "set" (the smallest of the set filters: flagged, cluster, problem,
    round, decision; SQLite materialises it) or "pk" (every image in order). Every index
    walked ends in the image's pk, so no plan sorts. None: the first label, else SQLite's choice."""
    driver = driver or ("label" if f.labels else None)
    if driver == "label" and not f.labels:
        raise ValueError("the label driver needs a label filter")
    params: list = []
    if driver == "label":
        # CROSS JOIN keeps the labels index as the outer loop: its rows come in image_pk order.
        source = "labels l CROSS JOIN images i ON i.pk = l.image_pk"
        conds, key = ["l.label_id = ?", "l.status = 'active'"], "l.image_pk"
        params.append(f.labels[0])
    else:
        index = _INDEX_OF.get(driver or "")
        source = f"images i INDEXED BY {index}" if index else "images i NOT INDEXED" if driver in ("pk", "set") else "images i"
        conds, key = [], "i.pk"
    for name, column in (("split", "split"), ("status", "status"), ("rule", "status_rule")):
        value = getattr(f, name)
        if value is not None:
            conds.append(f"i.{column} = ?")
            params.append(value)
    for label_id in (f.labels[1:] if driver == "label" else f.labels):
        conds.append("EXISTS (SELECT 1 FROM labels x WHERE x.image_pk = i.pk AND x.label_id = ? AND x.status = 'active')")
        params.append(label_id)
    if f.any_labels:
        conds.append(f"EXISTS (SELECT 1 FROM labels x WHERE x.image_pk = i.pk AND x.status = 'active' "
                     f"AND x.label_id IN ({','.join('?' * len(f.any_labels))}))")
        params.extend(f.any_labels)
    if f.source == "import":  # most labels: a check on each image met, never a set
        conds.append("EXISTS (SELECT 1 FROM labels x WHERE x.image_pk = i.pk AND x.status = 'active' AND x.source = ?)")
        params.append(f.source)
    sets, set_params = _set_filters(f)
    for n, cond in enumerate(sets):
        # Only the first set may drive (a rowid IN list); the others, prefixed with +, are checks.
        conds.append(cond if driver == "set" and n == 0 else "+" + cond)
    params.extend(set_params)
    return source, " AND ".join(conds) or "1", params, key


def _set_filters(f: BrowseFilter) -> tuple[list[str], list]:
    """The filters that are (usually small) sets of images, each as `i.pk IN (...)`, in the
    order FacetIndex.driver looks for the one to walk."""
    conds, params = [], []
    for on, sql in ((f.flagged, _FLAGGED), (f.cluster, _CLUSTER), (f.problem, _PROBLEM)):
        if on:
            conds.append(f"i.pk IN ({sql})")
    if f.round is not None:
        conds.append("i.pk IN (SELECT i2.pk FROM review_images ri JOIN review_rounds r ON r.round_id = ri.round_id "
                     "JOIN images i2 ON i2.image_id = ri.image_id WHERE r.name = ?)")
        params.append(f.round)
    if f.decision is not None:
        conds.append("i.pk IN (SELECT i2.pk FROM review_decisions d JOIN images i2 ON i2.image_id = d.image_id "
                     "WHERE d.outcome = ?)")
        params.append(f.decision)
    if f.source is not None and f.source != "import":  # labels from a review, browse, a rule: few
        conds.append("i.pk IN (SELECT image_pk FROM labels WHERE source != 'import' AND source = ? AND status = 'active')")
        params.append(f.source)
    return conds, params


def page(ledger: Ledger, f: BrowseFilter, after: int = 0, limit: int = 60, driver: str | None = None) -> list[ImageRow]:
    """Up to `limit` images of the slice with pk > `after`, in pk order, with their active
    label ids. The last row's pk is the next page's `after`. `driver`: see `_slice` (the
    caller picks the smallest from counts it knows; every driver gives the same rows)."""
    source, where, params, key = _slice(f, driver)
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


@dataclass(frozen=True)
class SmallSets:
    """Positions (into FacetArrays.image_pk) of the images in each small set: flagged by
    flag-noise, in a dedup cluster, with a file problem; per review round and per decision."""

    flagged: np.ndarray
    cluster: np.ndarray
    problem: np.ndarray
    rounds: dict[str, np.ndarray]
    decisions: dict[str, np.ndarray]


@dataclass(frozen=True)
class FacetArrays:
    """Every image and its active labels as arrays, for counting facets of any slice in memory.

    image_pk (N,) int64 sorted; split (N,) int8 (index into SPLITS); set_aside (N,) bool;
    rule (N,) int32, index into `rules` (-1: none); row_image (R,) int64 position of each
    active label row's image, rows sorted by (image, label id); label_id (R,) int64;
    source (R,) int16, index into `sources` (0: import); sets: the small sets; event_id:
    the last event the arrays include (`changed_images` reads what came after).
    """

    image_pk: np.ndarray
    split: np.ndarray
    set_aside: np.ndarray
    rule: np.ndarray
    rules: list[str]
    row_image: np.ndarray
    label_id: np.ndarray
    source: np.ndarray
    sources: list[str]
    sets: SmallSets
    event_id: int


def facet_arrays(ledger: Ledger) -> FacetArrays:
    """Read `FacetArrays` (every image, whatever its status). At 1M images most of the time
    is `label_arrays`; the rest reads only what is not the default (set aside, a rule, a
    label from another source than import, the small sets)."""
    import numpy as np

    from .arrays import label_arrays

    event_id = last_event_id(ledger)  # first: a change made while reading is read again next time
    arrays = label_arrays(ledger, None, None, ("active",))
    pk = arrays.image_pk
    set_aside = np.zeros(len(pk), dtype=bool)
    set_aside[_positions(pk, ledger.query("SELECT pk FROM images WHERE status = 'set_aside'"))] = True
    rule = np.full(len(pk), -1, dtype=np.int32)
    rows = ledger.query("SELECT pk, status_rule FROM images WHERE status_rule IS NOT NULL ORDER BY pk")
    rules = sorted({r for _, r in rows})
    if rows:
        rule[np.searchsorted(pk, [p for p, _ in rows])] = [rules.index(r) for _, r in rows]
    source, sources = _sources(ledger, arrays, pk)
    return FacetArrays(pk, arrays.split, set_aside, rule, rules, arrays.row_image, arrays.label_id, source, sources,
                       small_sets(ledger, pk), event_id)


def small_sets(ledger: Ledger, pk: np.ndarray) -> SmallSets:
    """The small sets' positions in `pk` (sorted image keys)."""
    rounds = {name: _positions(pk, ledger.query(
        "SELECT i.pk FROM review_images ri JOIN review_rounds r ON r.round_id = ri.round_id "
        "JOIN images i ON i.image_id = ri.image_id WHERE r.name = ?", (name,))) for name in round_names(ledger)}
    decisions = {o: _positions(pk, ledger.query("SELECT i.pk FROM review_decisions d JOIN images i "
                                                "ON i.image_id = d.image_id WHERE d.outcome = ?", (o,)))
                 for o in ("agreed", "tiebreak", "discarded")}
    return SmallSets(*(_positions(pk, ledger.query(sql)) for sql in (_FLAGGED, _CLUSTER, _PROBLEM)), rounds,
                     {o: p for o, p in decisions.items() if len(p)})


def _positions(pk: np.ndarray, rows: list[tuple]) -> np.ndarray:
    import numpy as np
    found = np.array([r[0] for r in rows], dtype=np.int64)
    return np.unique(np.searchsorted(pk, found[np.isin(found, pk)]))


def _sources(ledger: Ledger, arrays, pk) -> tuple:
    """Each active label row's source as an index into the returned names (0: import)."""
    import numpy as np

    rows = ledger.query("SELECT image_pk, label_id, source FROM labels WHERE source != 'import' AND status = 'active'")
    names = ["import", *sorted({r[2] for r in rows})]
    source = np.zeros(len(arrays.label_id), dtype=np.int16)
    if rows:
        # label rows are sorted by (image position, label id): find each by its packed key
        key = arrays.row_image * (1 << 21) + arrays.label_id
        pos = np.searchsorted(pk, [r[0] for r in rows])
        at = np.searchsorted(key, pos * (1 << 21) + np.array([r[1] for r in rows]))
        source[at] = [names.index(r[2]) for r in rows]
    return source, names


def last_event_id(ledger: Ledger) -> int:
    return ledger.query("SELECT coalesce(max(event_id), 0) FROM events")[0][0]


@dataclass(frozen=True)
class ImageFacts:
    """The facet facts of some images, as they are now: (pk, status, status_rule) per image
    and (pk, label_id, source) per active label."""

    images: list[tuple[int, str, str | None]]
    labels: list[tuple[int, int, str]]


def changed_images(ledger: Ledger, after_event: int, last_pk: int, most: int = 50_000) -> tuple[ImageFacts, int] | None:
    """What the events after `after_event` touched, read again, and the last event id; None
    when the ledger gained images (its largest pk is not `last_pk`, or an import ran) or more
    than `most` were touched: read it all then."""
    top = ledger.query("SELECT coalesce(max(pk), 0) FROM images")[0][0]
    if top != last_pk or ledger.query("SELECT count(*) FROM events WHERE event_id > ? AND kind = 'import'",
                                      (after_event,))[0][0]:
        return None
    event_id = last_event_id(ledger)
    pks = [r[0] for r in ledger.query("SELECT DISTINCT i.pk FROM events e JOIN images i ON i.image_id = e.image_id "
                                      "WHERE e.event_id > ? AND e.event_id <= ? LIMIT ?", (after_event, event_id, most + 1))]
    if len(pks) > most:
        return None
    marks = ",".join("?" * len(pks))
    images = ledger.query(f"SELECT pk, status, status_rule FROM images WHERE pk IN ({marks})", pks) if pks else []
    labels = ledger.query(f"SELECT image_pk, label_id, source FROM labels WHERE image_pk IN ({marks}) "
                          "AND status = 'active' ORDER BY image_pk, label_id", pks) if pks else []
    return ImageFacts(images, labels), event_id


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
