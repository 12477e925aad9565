"""`ifa curate dedup`: exact and perceptual duplicates, within and across splits.

1. Fingerprint every candidate image's local file (sha256, size, perceptual hash) in
   parallel, reading only files that are new or changed since the last run (the hash
   cache lives in the ledger). Files that cannot be decoded are recorded with a reason.
2. Pair images: same sha256 (exact), or hashes within `threshold` bits (perceptual,
   multi-index hashing: `pairs.pairs_within`).
3. Pairs make clusters (connected components, i.e. union-find). In each cluster one
   image is kept by the keep policy (KEEP_RULES, in DEFAULT_KEEP order); with
   apply=True the others are set aside with reason `duplicate-of:<kept id>` and rule
   `duplicate`, so `ifa curate restore --rule duplicate` undoes it.

Candidates are the active images plus those an earlier dedup set aside, so a rerun
reports the same clusters and re-applying changes nothing. Images without a local file
are skipped (listed, not errors); `ifa fetch` or `import --images` gives them one.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ...errors import IfaError
from ...progress import SILENT, Progress
from .. import executors, report_html, reports
from . import hashing, pairs
from ..ledger import SPLITS, Change, FileInfo
from ..ledger import hashes as store
from ..workspace import Workspace

RULE = store.DEDUP_RULE
# Default --threshold per method. phash: measured on 1,000 real photos and 4 transformed
# copies each (benchmarks/dedup_bench.py), 6 bits finds 87% of the copies (re-encode,
# resize: 100%; brightness +20%: 96%; 3% crop: 51%) with 99.4% of pairs true among
# natural photos; 8 would find 94% at 98.7%. On white-background catalogue shots no
# threshold is precise (22% at 6, 35% at 4): different products share a silhouette.
# phash distances are always even (32 of its 64 bits are set), so 6 means {0, 2, 4, 6}.
# The others were not tuned; they take imagehash's usual small thresholds.
DEFAULT_THRESHOLD = {"phash": 6, "dhash": 6, "whash": 6, "ahash": 4}
SPLIT_RANK = {"test": 0, "validation": 1, "train": 2}
MAX_HTML_CLUSTERS = 300  # thumbnails of more than this make a page no one scrolls


# ---- keep policy -------------------------------------------------------------------------------
def _split_rank(f: pd.DataFrame) -> pd.Series:
    return f["split"].map(SPLIT_RANK).fillna(9)


def _resolution(f: pd.DataFrame) -> pd.Series:
    return -(f["width"].fillna(0).astype(float) * f["height"].fillna(0).astype(float))


def _file_size(f: pd.DataFrame) -> pd.Series:
    return -f["bytes"].fillna(0).astype(float)


def _id_order(f: pd.DataFrame) -> pd.Series:
    # Numeric ids by value (9 before 10), then other ids as text.
    return f["image_id"].map(lambda s: s.zfill(40) if s.isdigit() else "\x7f" + s)


# Each rule turns the members into a sort key; the smallest key is kept. The order of
# rules is the policy; later rules only break ties of earlier ones.
KEEP_RULES: dict[str, tuple[str, Callable[[pd.DataFrame], pd.Series]]] = {
    "split": ("test beats validation beats train: an evaluation image is never set aside for a train copy", _split_rank),
    "resolution": ("more pixels (width x height) wins", _resolution),
    "bytes": ("the larger file wins (less compressed)", _file_size),
    "id": ("the smaller image id wins (numeric ids by value)", _id_order),
}
DEFAULT_KEEP = ("split", "resolution", "bytes", "id")


def parse_keep(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """A keep policy from "split,resolution,bytes,id" (or a list); "id" is always the last
    tie-break so the choice is deterministic. Raises IfaError for unknown rules."""
    if spec is None:
        return DEFAULT_KEEP
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    unknown = [n for n in names if n not in KEEP_RULES]
    if unknown or not names:
        raise IfaError(f"Unknown keep rule {', '.join(unknown) or '(empty)'}; use a comma-separated order of "
                       f"{', '.join(KEEP_RULES)} (default {','.join(DEFAULT_KEEP)}).")
    if "id" not in names:
        names.append("id")
    return tuple(dict.fromkeys(names))


# ---- result ---------------------------------------------------------------------------------------
@dataclass
class Member:
    image_id: str
    split: str
    distance: int | None  # Hamming distance to the kept image's hash (0: identical file)
    kept: bool
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    labels: list[int] = field(default_factory=list)
    path: str | None = None


@dataclass
class Cluster:
    keep: str
    members: list[Member]  # the kept image first
    cross_split: bool = False  # holds train and evaluation images
    label_conflict: bool = False  # labelled members disagree


@dataclass
class DedupResult:
    """What dedup found (and did, when applied). See `to_dict` for the --json shape."""

    method: str | None
    threshold: int
    keep_policy: tuple[str, ...]
    images_considered: int = 0
    images_hashed: int = 0  # files decoded and hashed in this run
    images_cached: int = 0  # files whose hashes came from the cache
    skipped_no_file: list[str] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)  # image_id, reason, detail
    clusters: list[Cluster] = field(default_factory=list)
    pairs: int = 0
    exact_pairs: int = 0
    cross_split: int = 0  # validation/test images with a duplicate in train
    cross_split_by_split: dict[str, int] = field(default_factory=dict)
    label_conflicts: int = 0
    set_aside: list[tuple[str, str]] = field(default_factory=list)  # (image_id, kept id) that go/went
    restored: list[str] = field(default_factory=list)  # kept images an earlier dedup had set aside
    applied: bool = False
    report_html: str = ""
    report_csv: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The --json shape: images_hashed, unreadable, clusters, cross_split, label_conflicts, applied."""
        return {
            "images_hashed": self.images_hashed,
            "unreadable": [{"image_id": u["image_id"], "reason": u["reason"]} for u in self.unreadable],
            "clusters": [{"keep": c.keep, "members": [{"image_id": m.image_id, "split": m.split, "distance": m.distance}
                                                      for m in c.members]} for c in self.clusters],
            "cross_split": self.cross_split,
            "label_conflicts": self.label_conflicts,
            "applied": self.applied,
        }


# ---- the command --------------------------------------------------------------------------------
def run(ws: Workspace, *, splits: Sequence[str] | None = None, method: str = "phash", threshold: int | None = None,
        exact_only: bool = False, apply: bool = False, workers: int | None = None, scheduler: str | None = None,
        keep: str | Sequence[str] | None = None, report: bool = True, progress: Progress = SILENT) -> DedupResult:
    """Find exact and perceptual duplicates among the workspace's images.

    splits: only these splits (default all). method: a key of hashing.METHODS.
    threshold: largest Hamming distance that counts as a duplicate (default per method,
        DEFAULT_THRESHOLD). exact_only: only identical files (sha256), no decoding.
    apply: set aside every non-kept member (rule 'duplicate') in one transaction.
    workers/scheduler: local processes (default all CPUs) or a Dask scheduler address.
    keep: the keep policy, rule names in order (default DEFAULT_KEEP).
    report: write reports/dedup-<time>.html and the pairs CSV beside it.
    Returns a DedupResult. Raises IfaError for a bad split, method, threshold or keep
    policy, or an unreachable scheduler.
    """
    splits = _check_splits(splits)
    if method not in hashing.METHODS:
        raise IfaError(f"Unknown hash method {method!r}; choose one of {', '.join(hashing.METHODS)}.")
    threshold = DEFAULT_THRESHOLD[method] if threshold is None else int(threshold)
    if not 0 <= threshold <= 32:
        raise IfaError(f"--threshold must be between 0 and 32 bits (of 64), got {threshold}.")
    if workers is not None and workers < 1:
        raise IfaError(f"--workers must be at least 1, got {workers}.")
    policy = parse_keep(keep)
    result = DedupResult(method=None if exact_only else method, threshold=threshold, keep_policy=policy)
    ledger = ws.ledger

    failed = _fingerprint(ws, splits, () if exact_only else (method,), workers, scheduler, result, progress)
    result.skipped_no_file = store.images_without_file(ledger, splits)
    frame = store.dedup_frame(ledger, splits, None if exact_only else method)
    gone = frame["pk"].isin(list(failed)).to_numpy()
    if gone.any():  # a file that vanished since it was hashed pairs with nothing
        frame.loc[gone, "sha256"] = None
        frame.loc[gone, "has_hash"] = False
    result.images_considered = len(frame) + len(result.skipped_no_file)
    _collect_unreadable(frame, failed, exact_only, result)

    with progress.task("pairing", total=None):
        edges, kinds = _edges(frame, threshold, exact_only)
    result.pairs, result.exact_pairs = len(edges), int((kinds == "exact").sum())
    labels = pairs.clusters(len(frame), edges)
    _cross_split(frame, edges, result)
    _build_clusters(ledger, frame, labels, edges, policy, result)
    if len(frame) and (sizes := np.bincount(labels)).max() > 1000:
        result.notes.append(f"the largest cluster has {sizes.max():,} images: pairs chain through near neighbours; "
                            f"a lower --threshold splits it")

    changes = [Change("set_aside", iid, reason=f"duplicate-of:{kept}", rule=RULE) for iid, kept in result.set_aside]
    changes += [Change("restore_image", iid, reason="kept copy of a duplicate cluster", rule=RULE) for iid in result.restored]
    if apply:
        ledger.apply_changes(changes)
        result.applied = True
    if report:
        _write_reports(ws, frame, edges, kinds, result)
    return result


def _check_splits(splits: Sequence[str] | None) -> list[str] | None:
    if not splits:
        return None
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise IfaError(f"Unknown split {', '.join(map(repr, bad))}; use {', '.join(SPLITS)}.")
    return list(dict.fromkeys(splits))


def _fingerprint(ws: Workspace, splits, methods: tuple[str, ...], workers, scheduler, result: DedupResult,
                 progress: Progress) -> dict[int, tuple[str, str]]:
    """Hash what the cache lacks; save each batch as it finishes. Returns {pk: (reason,
    detail)} for files that could not be read at all (those are not cached)."""
    ledger = ws.ledger
    cands = store.dedup_candidates(ledger, splits, methods)
    cands = cands[cands["path"].notna()]
    jobs = [
        hashing.FileJob(int(r.pk), r.path, _int(r.known_bytes), _int(r.known_mtime_ns), r.known_sha256,
                        tuple(m for m in methods if getattr(r, f"cached_{m}")), bool(r.known_unreadable), bool(r.need_size))
        for r in cands.itertuples(index=False)
    ]
    ids = dict(zip(cands["pk"].astype(int), cands["image_id"]))
    paths = dict(zip(cands["pk"].astype(int), cands["path"]))
    n_workers = 1 if scheduler is None and workers == 1 else (workers or executors.default_workers())
    size = executors.DASK_BATCH if scheduler else executors.batch_size(len(jobs), n_workers)
    failed: dict[int, tuple[str, str]] = {}
    with progress.task("hashing" if methods else "fingerprinting", total=len(jobs)) as task:
        for batch, results in executors.run_batches(hashing.hash_batch, executors.chunks(jobs, size), (methods,),
                                                    workers=n_workers, scheduler=scheduler):
            stats, hashes, bad, files = [], [], [], []
            known_bad = {job.key for job in batch if job.known_unreadable}
            for r in results:
                if r.sha256 is None:
                    failed[r.key] = (r.reason or "unreadable-file", r.detail)
                    continue
                stats.append((r.key, paths[r.key], r.bytes, r.mtime_ns, r.sha256))
                hashes.extend((r.key, m, r.sha256, h) for m, h in r.hashes.items())
                if r.reason:
                    bad.append((r.key, r.sha256, r.reason, r.detail))
                if r.read:
                    files.append(FileInfo(ids[r.key], paths[r.key], r.sha256, r.bytes, r.width, r.height))
                result.images_hashed += bool(r.decoded)
                result.images_cached += not r.decoded and not r.reason and r.key not in known_bad
            store.save_fingerprints(ledger, stats=stats, hashes=hashes, unreadable=bad, files=files)
            task.advance(len(batch))
    return failed


def _int(v) -> int | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v)


def _collect_unreadable(frame: pd.DataFrame, failed: dict, exact_only: bool, result: DedupResult) -> None:
    by_pk = dict(zip(frame["pk"].astype(int), frame["image_id"]))
    for pk, (reason, detail) in failed.items():
        if pk in by_pk:
            result.unreadable.append({"image_id": by_pk[pk], "reason": reason, "detail": detail})
    bad = frame[frame["reason"].notna() & ~frame["pk"].isin(list(failed))]
    for r in bad.itertuples(index=False):
        result.unreadable.append({"image_id": r.image_id, "reason": r.reason, "detail": r.detail or ""})


# ---- pairs and clusters ----------------------------------------------------------------------------
def _edges(frame: pd.DataFrame, k: int, exact_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """Edges between rows of `frame`, (E, 2), and their kind: 'exact' (same file),
    'same-hash' (different files, identical hash) or 'near' (within k bits).

    Groups of identical files or identical hashes are joined as stars (each member to
    the group's first row), so a thousand copies of a placeholder image make a thousand
    edges, not half a million."""
    parts, kinds = [], []
    has_sha = frame["sha256"].notna().to_numpy()
    if has_sha.any():
        rows = np.flatnonzero(has_sha)
        star = _star(pd.factorize(frame["sha256"].to_numpy()[rows])[0], rows)
        parts.append(star)
        kinds.append(np.full(len(star), "exact", dtype=object))
    if not exact_only:
        rows = np.flatnonzero(frame["has_hash"].to_numpy())
        if len(rows):
            values, inverse = np.unique(frame["hash"].to_numpy()[rows], return_inverse=True)
            star = _star(inverse, rows)
            parts.append(star)
            kinds.append(np.full(len(star), "same-hash", dtype=object))
            first = np.full(len(values), -1, dtype=np.int64)
            first[inverse[::-1]] = rows[::-1]  # the first row holding each value
            near = pairs.pairs_within(values, k)
            near = near[near[:, 0] != near[:, 1]]
            parts.append(first[near])
            kinds.append(np.full(len(near), "near", dtype=object))
    if not parts:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=object)
    edges, kind = np.concatenate(parts).astype(np.int64), np.concatenate(kinds)
    # An identical file also has an identical hash: keep each row pair once, the exact edge.
    key = np.minimum(edges[:, 0], edges[:, 1]) * (len(frame) + 1) + np.maximum(edges[:, 0], edges[:, 1])
    _, first_seen = np.unique(key, return_index=True)
    first_seen.sort()
    return edges[first_seen], kind[first_seen]


def _star(group: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Edges from each row to the first row of its group (groups given as codes)."""
    order = np.argsort(group, kind="stable")
    g, r = group[order], rows[order]
    head = np.r_[True, g[1:] != g[:-1]]
    leader = r[np.flatnonzero(head)[np.cumsum(head) - 1]]
    keep = ~head
    return np.stack([leader[keep], r[keep]], axis=1)


def _cross_split(frame: pd.DataFrame, edges: np.ndarray, result: DedupResult) -> None:
    """Validation/test images with a duplicate in train. Star edges stand for whole
    groups, so a group's members are all duplicates of each other: count by group."""
    n = len(frame)
    result.cross_split_by_split = {"validation": 0, "test": 0}
    if not n or not len(edges):
        return
    is_train = (frame["split"] == "train").to_numpy()
    # Rows joined by exact/same-hash stars are one group; near edges join groups pairwise.
    # A row has a train duplicate if its group has a train row, or a near neighbour group does.
    sha_group = pd.factorize(frame["sha256"].fillna("").to_numpy())[0]
    hash_key = np.where(frame["has_hash"].to_numpy(), frame["hash"].to_numpy().astype(np.uint64), np.uint64(0))
    hash_group = pd.factorize(hash_key)[0]
    has_hash = frame["has_hash"].to_numpy()
    has_sha = frame["sha256"].notna().to_numpy()

    def group_has_train(group: np.ndarray, valid: np.ndarray) -> np.ndarray:
        counts = np.bincount(group[valid & is_train], minlength=group.max() + 1)
        return (counts[group] > 0) & valid

    near_train = group_has_train(sha_group, has_sha) | group_has_train(hash_group, has_hash)
    a, b = edges[:, 0], edges[:, 1]
    train_in_hash_group = np.bincount(hash_group[has_hash & is_train], minlength=hash_group.max() + 1) > 0
    ga, gb = hash_group[a], hash_group[b]
    usable = has_hash[a] & has_hash[b]
    reach = np.zeros(hash_group.max() + 1, dtype=bool)
    np.logical_or.at(reach, ga[usable], train_in_hash_group[gb[usable]])
    np.logical_or.at(reach, gb[usable], train_in_hash_group[ga[usable]])
    near_train |= has_hash & reach[hash_group]
    for split in ("validation", "test"):
        result.cross_split_by_split[split] = int((near_train & (frame["split"] == split).to_numpy()).sum())
    result.cross_split = sum(result.cross_split_by_split.values())


def _build_clusters(ledger, frame: pd.DataFrame, labels: np.ndarray, edges: np.ndarray, policy: tuple[str, ...],
                    result: DedupResult) -> None:
    if not len(frame):
        return
    sizes = np.bincount(labels)
    in_cluster = sizes[labels] > 1
    members = frame[in_cluster].copy()
    if not len(members):
        return
    members["cluster"] = labels[in_cluster]
    keys = [f"_k{i}" for i in range(len(policy))]
    for col, name in zip(keys, policy):
        members[col] = KEEP_RULES[name][1](members).to_numpy()
    members = members.sort_values(["cluster", *keys], kind="stable")
    members["kept"] = ~members["cluster"].duplicated()
    keep_row = members[members["kept"]].set_index("cluster")
    members["keep_id"] = members["cluster"].map(keep_row["image_id"])
    keep_hash = members["cluster"].map(keep_row["hash"]).to_numpy().astype(np.uint64)
    keep_has = members["cluster"].map(keep_row["has_hash"]).to_numpy().astype(bool)
    keep_sha = members["cluster"].map(keep_row["sha256"]).to_numpy()
    dist = pairs.popcount(members["hash"].to_numpy().astype(np.uint64) ^ keep_hash).astype(np.int64)
    same_file = members["sha256"].to_numpy() == keep_sha
    members["distance"] = np.where(same_file, 0, np.where(members["has_hash"].to_numpy() & keep_has, dist, -1))

    label_frame = store.active_labels(ledger, members["image_id"])
    label_sets = label_frame.groupby("image_id")["label_id"].apply(lambda s: sorted(int(v) for v in s)).to_dict()
    cross = members.groupby("cluster")["split"].agg(lambda s: (s == "train").any() and (s != "train").any())

    clusters: list[Cluster] = []
    for cid, group in members.groupby("cluster", sort=False):
        ms = [Member(r.image_id, r.split, None if r.distance < 0 else int(r.distance), bool(r.kept),
                     _int(r.width), _int(r.height), _int(r.bytes), label_sets.get(r.image_id, []), r.path)
              for r in group.itertuples(index=False)]
        labelled = {tuple(m.labels) for m in ms if m.labels}
        clusters.append(Cluster(ms[0].image_id, ms, bool(cross[cid]), len(labelled) > 1))
        for m, status, rule in zip(ms, group["status"], group["status_rule"]):
            if not m.kept and status == "active":
                result.set_aside.append((m.image_id, ms[0].image_id))
            elif m.kept and status == "set_aside" and rule == RULE:
                result.restored.append(m.image_id)
    clusters.sort(key=lambda c: (not c.cross_split, not c.label_conflict, -len(c.members), c.keep))
    result.clusters = clusters
    result.label_conflicts = sum(c.label_conflict for c in clusters)


# ---- reports -----------------------------------------------------------------------------------------
def _write_reports(ws: Workspace, frame: pd.DataFrame, edges: np.ndarray, kinds: np.ndarray, result: DedupResult) -> None:
    html_path = ws.report_path("dedup", "html")
    csv_path = html_path.with_name(html_path.stem + "-pairs.csv")
    keep_of = {m.image_id: c.keep for c in result.clusters for m in c.members}
    ids, split = frame["image_id"].to_numpy(), frame["split"].to_numpy()
    hashes, has_hash = frame["hash"].to_numpy().astype(np.uint64), frame["has_hash"].to_numpy()
    with reports.open_text(csv_path) as fh:
        w = csv.writer(fh)
        w.writerow(["image_a", "split_a", "image_b", "split_b", "kind", "distance", "cluster_keep"])
        if len(edges):
            a, b = edges[:, 0], edges[:, 1]
            d = np.where(kinds == "exact", 0, pairs.popcount(hashes[a] ^ hashes[b]).astype(np.int64))
            d = np.where((kinds == "exact") | (has_hash[a] & has_hash[b]), d, -1)
            for i in range(0, len(edges), 100_000):
                sl = slice(i, i + 100_000)
                w.writerows(zip(ids[a[sl]], split[a[sl]], ids[b[sl]], split[b[sl]], kinds[sl],
                                ["" if x < 0 else int(x) for x in d[sl]], [keep_of.get(x, "") for x in ids[a[sl]]]))
    result.report_csv = str(csv_path)
    result.report_html = str(report_html.write_page(html_path, "Duplicates", _sections(result), _intro(result)))


def _intro(result: DedupResult) -> str:
    how = "identical files only" if result.method is None else f"{result.method} within {result.threshold} bits, and identical files"
    return (f"{result.images_considered:,} images considered ({how}); {len(result.clusters):,} clusters; "
            f"{result.cross_split:,} validation/test images have a duplicate in train; "
            f"{result.label_conflicts:,} clusters carry conflicting labels; {len(result.unreadable):,} unreadable; "
            f"{len(result.skipped_no_file):,} without a local file. Keep policy: {', '.join(result.keep_policy)}. "
            f"{'Applied' if result.applied else 'Not applied (run with --apply)'}.")


def _sections(result: DedupResult) -> list[report_html.Section]:
    def card(m: Member) -> report_html.Card:
        lines = [f"{m.split} · {'KEEP' if m.kept else 'set aside'}",
                 f"{m.width}x{m.height} · {(m.bytes or 0) / 1024:.0f} KB",
                 "distance " + ("-" if m.distance is None else str(m.distance)),
                 "labels " + (" ".join(map(str, m.labels)) or "-")]
        return report_html.Card(m.image_id, m.path, lines)

    groups = [
        ("Cross-split duplicates", "Train images duplicating validation/test images: the train copy goes.",
         [c for c in result.clusters if c.cross_split]),
        ("Label conflicts", "Duplicates whose labels disagree: label-noise candidates for review.",
         [c for c in result.clusters if c.label_conflict and not c.cross_split]),
        ("Other duplicates", "", [c for c in result.clusters if not c.cross_split and not c.label_conflict]),
    ]
    sections, budget = [], MAX_HTML_CLUSTERS
    for title, text, clusters in groups:
        shown = clusters[:max(0, budget)]
        budget -= len(shown)
        more = f" Showing {len(shown):,} of {len(clusters):,}; the pairs CSV lists all." if len(shown) < len(clusters) else ""
        sections.append(report_html.Section(f"{title} ({len(clusters):,})", text + more,
                                            [[card(m) for m in c.members[:12]] for c in shown]))
    bad = result.unreadable[:MAX_HTML_CLUSTERS]
    sections.append(report_html.Section(
        f"Unreadable images ({len(result.unreadable):,})", "Recorded with a reason; they are not hashed.",
        [[report_html.Card(u["image_id"], None, [u["reason"], u.get("detail", "")[:120]]) for u in bad[i:i + 6]]
         for i in range(0, len(bad), 6)]))
    return sections
