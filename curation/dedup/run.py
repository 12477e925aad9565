"""`ifa curate dedup`: exact and perceptual duplicates, within and across splits.

1. Fingerprint every candidate image's local file (sha256, size, perceptual hash) in
   parallel, reading only files that are new or changed since the last run (the hash
   cache lives in the ledger). Files that cannot be decoded are recorded with a reason.
2. Pair images: same sha256 (exact), or, in two stages, hashes within `threshold` bits
   (candidates, multi-index hashing: `pairs.pairs_within`) whose verification
   signatures agree (`verify.similarity` >= `min_similarity`): a hash alone merges
   different products that share a silhouette.
3. Clusters without chaining (`pairs.leader_clusters`): images are visited in keep-policy
   order (KEEP_RULES, in DEFAULT_KEEP order); one not yet taken is kept and takes the
   images verified directly against it. With apply=True the others are set aside with
   reason `duplicate-of:<kept id>` and rule `duplicate`, so `ifa curate restore --rule
   duplicate` undoes it; files known to be unreadable are set aside under rule
   `unreadable-file`.

Candidates are the active images plus those an earlier dedup set aside, so a rerun
reports the same clusters and re-applying changes nothing. Images without a local file
are skipped (listed, not errors); `ifa fetch` or `import --images` gives them one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ...errors import IfaError
from ...progress import SILENT, Progress
from .. import executors, reports
from ..reports import html as report_html
from . import align, decodes, hashing, lazy, lookpool, pairs, recheck, textbox, verify
from ..ledger import Change, FileInfo, check_splits
from ..ledger import hashes as store
from ..image_checks.statistics import VERSION as STATS_VERSION
from ..ledger.hashes import DedupColumns
from ..ledger.image_stats import save_stats as save_picture_stats
from ..workspace import Workspace

RULE = store.DEDUP_RULE
UNREADABLE_RULE = store.UNREADABLE_RULE
# Default --threshold per method: the candidate stage, so it is set for recall; the
# verifier (--min-similarity) decides. phash: measured on 2,000 product + 1,000 CC0
# photos with 7 transformed copies of 300 (benchmarks/dedup_bench.py), 8 bits on the
# trimmed picture makes ~3 candidates per image and finds the copies' originals as
# candidates far more often than 6 (crop 4%, overlay); phash distances are always even
# (32 of its 64 bits are set), so 8 means {0, 2, 4, 6, 8}. The others take imagehash's
# usual small thresholds (not tuned).
DEFAULT_THRESHOLD = {"phash": 8, "dhash": 6, "whash": 6, "ahash": 4}
DEFAULT_MIN_SIMILARITY = verify.DEFAULT_MIN_SIMILARITY
# Overlay codes (hashing.overlay_codes) pair within 2 bits: on the shared photos every copy
# with a text box in a corner or along the bottom was within 2 of its original in the
# region's code; 4 made 4x the candidate pairs among 3,000 product photos.
OVERLAY_THRESHOLD = 2
LARGE_CLUSTER = 20  # a cluster this big is suspicious: shown first, with a warning
WARN_SET_ASIDE_SHARE = 0.05  # say so when a run would set aside more than this share
SPLIT_RANK = {"test": 0, "validation": 1, "train": 2}
# The pairs CSV's verdict of a pair whose second look was skipped: its images were in clusters
# already, so no verdict of it could change one (`lazy`).
UNDECIDED = "not looked at again (cannot change a cluster)"
MAX_HTML_CLUSTERS = 300  # thumbnails of more than this make a page no one scrolls
# A copy whose deciding score is under --min-similarity + CHECK_MARGIN is set aside on a
# narrow pass, and the report asks for a look by eye, narrowest first: look-alike items of
# one shoot (a brogue for a plain derby, a vest with other straps) pass there, opened at
# full size. On the 3,000 Myntra photos the two such set aside scored 0.963 and 0.970, its
# six copies 0.974-0.996; clothing-cc0's 2 copies 0.982 and 0.999. On the 20,000 photos of
# benchmarks/dedup_bench.py section 4, 14 of the 15 images set aside under another item (by
# eye) and 17.5% of the 12,253 set aside score under 0.972; a margin of 0.010 flags the same 14
# and 14.3%, but not the Myntra brogue (0.970).
CHECK_MARGIN = 0.012

# What dedup decides on: `store.dedup_frame`'s {column: array}, one row per image. Plain
# numpy, no pandas: importing pandas was ~0.4 s of a ~1.5 s cold command on 3,000 photos
# (python -X importtime; benchmarks/dedup_bench.py section 4).
Table = DedupColumns


# ---- keep policy -------------------------------------------------------------------------------
def _split_rank(t: Table) -> np.ndarray:
    return np.array([SPLIT_RANK.get(s, 9) for s in t["split"]], dtype=np.float64)


def _numbers(values: np.ndarray) -> np.ndarray:
    """An object column of numbers or None as float64, 0 for None."""
    return np.array([0.0 if v is None else float(v) for v in values], dtype=np.float64)


def _resolution(t: Table) -> np.ndarray:
    return -(_numbers(t["width"]) * _numbers(t["height"]))


def _file_size(t: Table) -> np.ndarray:
    return -_numbers(t["bytes"])


def _painted(t: Table) -> np.ndarray:
    """1 where a text box was found painted over the picture, else 0: its signature's flags,
    the column `_find` adds from the overlay codes it reads anyway (one pass over 1M signatures
    is ~3 s)."""
    return ((t["flags"] & verify.TEXT_BOX) > 0).astype(np.float64)


def _id_order(t: Table) -> np.ndarray:
    # Numeric ids by value (9 before 10), then other ids as text.
    out = np.empty(len(t["image_id"]), dtype=object)
    out[:] = [s.zfill(40) if s.isdigit() else "\x7f" + s for s in t["image_id"]]
    return out


# Each rule turns the members into a sort key; the smallest key is kept. The order of
# rules is the policy; later rules only break ties of earlier ones.
KEEP_RULES: dict[str, tuple[str, Callable[[Table], np.ndarray]]] = {
    "split": ("test beats validation beats train: an evaluation image is never set aside for a train copy", _split_rank),
    "resolution": ("more pixels (width x height) wins", _resolution),
    "clean": ("a picture with no text box painted over it (a badge, a SALE box) wins", _painted),
    "bytes": ("the larger file wins (less compressed)", _file_size),
    "id": ("the smaller image id wins (numeric ids by value)", _id_order),
}
# "clean" before "bytes": a copy with a box painted over it is re-saved, and often a larger file
# than its original (benchmarks/dedup_bench.py quality, box along the bottom on --seed 1 / 2:
# 0.95 / 0.90 -> 1.00 / 0.95, the original kept instead of its boxed copy).
DEFAULT_KEEP = ("split", "resolution", "clean", "bytes", "id")


def parse_keep(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """A keep policy from "split,resolution,clean,bytes,id" (or a list); "id" is always the last
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
    similarity: float | None = None  # verification score against the kept image (1: identical file)
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    labels: list[int] = field(default_factory=list)
    path: str | None = None
    labels_differ: str = ""  # what differs from the kept image's labels (colour, single-label groups), and why it is a copy
    narrow: bool = False  # set aside on a narrow pass (under --min-similarity + CHECK_MARGIN): check by eye
    by_hand: bool = False  # a copy a person restored by hand (`ifa curate restore --image`): left in


@dataclass
class Cluster:
    keep: str
    members: list[Member]  # the kept image first
    cross_split: bool = False  # holds train and evaluation images
    label_conflict: bool = False  # labelled members disagree

    @property
    def large(self) -> bool:
        return len(self.members) > LARGE_CLUSTER

    @property
    def narrowest(self) -> float | None:
        """The lowest score of a member set aside on a narrow pass (None: no such member)."""
        return min((m.similarity for m in self.members if m.narrow), default=None)


@dataclass
class DedupResult:
    """What dedup found (and did, when applied). See `to_dict` for the --json shape."""

    method: str | None
    threshold: int
    keep_policy: tuple[str, ...]
    min_similarity: float = DEFAULT_MIN_SIMILARITY
    images_considered: int = 0
    images_hashed: int = 0  # files decoded and hashed in this run
    images_cached: int = 0  # files whose hashes came from the cache
    skipped_no_file: list[str] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)  # image_id, reason, detail
    clusters: list[Cluster] = field(default_factory=list)
    pairs: int = 0  # rows of the pairs CSV: exact pairs + candidate pairs
    exact_pairs: int = 0
    candidate_pairs: int = 0  # hashes within the threshold (different files)
    verified_pairs: int = 0  # of those, the ones the verifier accepts
    cross_split: int = 0  # validation/test images with a duplicate in train
    cross_split_by_split: dict[str, int] = field(default_factory=dict)
    label_conflicts: int = 0
    possible_copies: list[recheck.LabelDifference] = field(default_factory=list)  # verified, labels differ: action none
    redecoded_pairs: int = 0  # near misses, box pairs and images left alone compared again on their files
    redecode_seconds: float = 0.0
    set_aside: list[tuple[str, str]] = field(default_factory=list)  # (image_id, kept id) that go/went
    restored: list[str] = field(default_factory=list)  # kept images an earlier dedup had set aside
    unreadable_set_aside: list[str] = field(default_factory=list)  # unreadable files set aside (rule unreadable-file)
    unreadable_restored: list[str] = field(default_factory=list)  # set aside as unreadable, readable now
    warnings: list[str] = field(default_factory=list)  # shown before anything else
    applied: bool = False
    report_html: str = ""
    report_csv: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The --json shape: images_hashed, unreadable, clusters, cross_split, label_conflicts,
        possible_copies (verified, labels differ, left alone), check_by_eye (set aside on a
        narrow pass: image_id, keep, similarity; narrowest first), left_by_hand (copies a
        person restored by image: not set aside again), redecoded_pairs and
        redecode_seconds (near misses compared again on their files), applied."""
        return {
            "images_hashed": self.images_hashed,
            "unreadable": [{"image_id": u["image_id"], "reason": u["reason"]} for u in self.unreadable],
            "clusters": [{"keep": c.keep, "members": [{"image_id": m.image_id, "split": m.split, "distance": m.distance}
                                                      for m in c.members]} for c in self.clusters],
            "cross_split": self.cross_split,
            "label_conflicts": self.label_conflicts,
            "possible_copies": [{"image_a": p.image_a, "image_b": p.image_b, "similarity": p.similarity,
                                 "labels_differ": p.differs} for p in self.possible_copies],
            "check_by_eye": [{"image_id": m.image_id, "keep": c.keep, "similarity": m.similarity}
                             for c, m in self.narrow_passes()],
            "left_by_hand": self.left_by_hand,
            "redecoded_pairs": self.redecoded_pairs,
            "redecode_seconds": round(self.redecode_seconds, 3),
            "applied": self.applied,
        }

    @property
    def narrow_under(self) -> float:
        """The score under which a copy is set aside on a narrow pass (`CHECK_MARGIN`)."""
        return self.min_similarity + CHECK_MARGIN

    @property
    def left_by_hand(self) -> list[str]:
        """Ids of the copies a person restored by hand, left in (`Member.by_hand`)."""
        return [m.image_id for c in self.clusters for m in c.members if m.by_hand]

    def narrow_passes(self) -> list[tuple[Cluster, Member]]:
        """(cluster, member) of each member set aside on a narrow pass (`Member.narrow`), narrowest first."""
        return sorted(((c, m) for c in self.clusters for m in c.members if m.narrow), key=lambda cm: cm[1].similarity)


# ---- the command --------------------------------------------------------------------------------
def run(ws: Workspace, *, splits: Sequence[str] | None = None, method: str = "phash", threshold: int | None = None,
        min_similarity: float | None = None, exact_only: bool = False, apply: bool = False, workers: int | None = None,
        scheduler: str | None = None, keep: str | Sequence[str] | None = None, report: bool = True,
        progress: Progress = SILENT) -> DedupResult:
    """Find exact and perceptual duplicates among the workspace's images.

    splits: only these splits (default all). method: a key of hashing.METHODS.
    threshold: largest Hamming distance that makes a candidate pair (default per method,
        DEFAULT_THRESHOLD). min_similarity: the verification score (0..1) a candidate
        pair needs to count as a copy (default DEFAULT_MIN_SIMILARITY; 0 accepts every
        candidate, as hashing alone would). exact_only: only identical files (sha256),
        no decoding.
    apply: set aside every non-kept member (rule 'duplicate') and every file known to be
        unreadable (rule 'unreadable-file') in one transaction.
    workers/scheduler: local processes (default all CPUs) or a Dask scheduler address.
    keep: the keep policy, rule names in order (default DEFAULT_KEEP).
    report: write reports/dedup-<time>.html and the pairs CSV beside it.
    Returns a DedupResult. Raises IfaError for a bad split, method, threshold, similarity
    or keep policy, or an unreachable scheduler.
    """
    splits, threshold, min_similarity = _settings(splits, method, threshold, min_similarity, workers)
    policy = parse_keep(keep)
    result = DedupResult(method=None if exact_only else method, threshold=threshold, keep_policy=policy,
                         min_similarity=min_similarity)
    ledger = ws.ledger
    failed = _fingerprint(ws, splits, () if exact_only else (method,), workers, scheduler, result, progress)
    result.skipped_no_file = store.images_without_file(ledger, splits)
    frame = store.dedup_frame(ledger, splits, None if exact_only else method)
    gone = np.isin(frame["pk"], np.fromiter(failed, dtype=np.int64, count=len(failed)))
    if gone.any():  # a file that vanished since it was hashed pairs with nothing
        frame["sha256"][gone] = None
        frame["has_hash"][gone] = False
    result.images_considered = len(frame["pk"]) + len(result.skipped_no_file)
    _collect_unreadable(frame, failed, exact_only, result)

    # The second look's processes live for the pairing and for what the label check and the
    # cross-split count still look at; the pool closes after them.
    with progress.task("pairing and verifying", total=None), lookpool.Looks(_looking(workers), progress) as files:
        found = _find(frame, policy, threshold, min_similarity, exact_only, files)
        result.possible_copies = _check_labels(ledger, ws.taxonomy, frame, found, min_similarity)
        result.cross_split_by_split = _cross_split(frame, found)
    result.redecoded_pairs, result.redecode_seconds = found.redecoded, found.redecode_seconds
    result.exact_pairs, result.candidate_pairs = len(found.exact), len(found.near)
    result.verified_pairs = int(found.ok.sum())
    result.pairs = result.exact_pairs + result.candidate_pairs
    result.cross_split = sum(result.cross_split_by_split.values())
    result.clusters, result.set_aside, result.restored = _build_clusters(ledger, ws.taxonomy, frame, found,
                                                                         result.narrow_under,
                                                                         ledger.restored_by_hand(RULE))
    result.label_conflicts = sum(c.label_conflict for c in result.clusters)
    result.unreadable_set_aside, result.unreadable_restored = _unreadable_changes(frame, failed)
    result.warnings = _warnings(result, len(frame["pk"]))
    for line in result.warnings:
        progress.note(f"warning: {line}")
    if apply:
        ledger.apply_changes(_changes(result))
        result.applied = True
    if report:
        _write_reports(ws, frame, found, result)
    return result


def _settings(splits, method: str, threshold: int | None, min_similarity: float | None,
              workers: int | None) -> tuple[list[str] | None, int, float]:
    """The checked splits, threshold and min_similarity (defaults filled in). Raises IfaError."""
    splits = _check_splits(splits)
    if method not in hashing.METHODS:
        raise IfaError(f"Unknown hash method {method!r}; choose one of {', '.join(hashing.METHODS)}.")
    threshold = DEFAULT_THRESHOLD[method] if threshold is None else int(threshold)
    if not 0 <= threshold <= 32:
        raise IfaError(f"--threshold must be between 0 and 32 bits (of 64), got {threshold}.")
    min_similarity = DEFAULT_MIN_SIMILARITY if min_similarity is None else float(min_similarity)
    if not 0.0 <= min_similarity <= 1.0:
        raise IfaError(f"--min-similarity must be between 0 and 1, got {min_similarity}.")
    if workers is not None and workers < 1:
        raise IfaError(f"--workers must be at least 1, got {workers}.")
    return splits, threshold, min_similarity


def _warnings(result: DedupResult, looked_at: int) -> list[str]:
    """What the summary says first: a set-aside share over WARN_SET_ASIDE_SHARE, large clusters."""
    out = []
    if looked_at and len(result.set_aside) > WARN_SET_ASIDE_SHARE * looked_at:
        out.append(f"{len(result.set_aside):,} of the {looked_at:,} images looked at ({len(result.set_aside) / looked_at:.0%}, "
                   f"over {WARN_SET_ASIDE_SHARE:.0%}) are copies to set aside: look at the report before trusting that")
    large = [c for c in result.clusters if c.large]
    if large:
        out.append(f"{len(large):,} clusters have more than {LARGE_CLUSTER} members (largest "
                   f"{max(len(c.members) for c in large):,}): check them first; a higher --min-similarity splits them")
    return out


def _changes(result: DedupResult) -> list[Change]:
    """The ledger changes of an applied run: copies and unreadable files aside, kept ones back."""
    changes = [Change("set_aside", iid, reason=f"duplicate-of:{kept}", rule=RULE) for iid, kept in result.set_aside]
    changes += [Change("restore_image", iid, reason="kept copy of a duplicate cluster", rule=RULE) for iid in result.restored]
    reasons = {u["image_id"]: u["reason"] for u in result.unreadable}
    changes += [Change("set_aside", iid, reason=f"unreadable-file:{reasons.get(iid, 'decode-error')}", rule=UNREADABLE_RULE)
                for iid in result.unreadable_set_aside]
    changes += [Change("restore_image", iid, reason="the file is readable now", rule=UNREADABLE_RULE)
                for iid in result.unreadable_restored]
    return changes


def _check_splits(splits: Sequence[str] | None) -> list[str] | None:
    if not splits:
        return None
    return list(dict.fromkeys(check_splits(splits)))


def _fingerprint(ws: Workspace, splits, methods: tuple[str, ...], workers, scheduler, result: DedupResult,
                 progress: Progress) -> dict[int, tuple[str, str]]:
    """Hash what the cache lacks; save each batch as it finishes. Returns {pk: (reason,
    detail)} for files that could not be read at all (those are not cached)."""
    ledger = ws.ledger
    cands = store.dedup_candidates(ledger, splits, methods, verify.SIGNATURE_BYTES, verify.VERSION)
    jobs = _jobs(cands, methods)
    ids = {int(pk): iid for pk, iid, path in zip(cands["pk"], cands["image_id"], cands["path"]) if path is not None}
    paths = {job.key: job.path for job in jobs}
    n_workers = 1 if scheduler is None and workers == 1 else (workers or executors.default_workers())
    # Files the cache already covers and that did not change (same size and mtime) need
    # no decode: done here, not by a process pool (starting one cost ~0.1 s of a ~1 s
    # rerun from cache, measured); changed files still go to the pool. Not with Dask: its
    # workers may see paths this machine does not.
    here = [scheduler is None and _settled(job, methods) and _unchanged(job) for job in jobs]
    local = [job for job, h in zip(jobs, here) if h]
    rest = [job for job, h in zip(jobs, here) if not h]
    size = executors.DASK_BATCH if scheduler else executors.batch_size(len(rest), n_workers,
                                                                       per_worker=BATCHES_PER_WORKER)
    failed: dict[int, tuple[str, str]] = {}
    if methods and scheduler is None and n_workers > 1 and rest:
        hashing.load_kernels()  # forked workers inherit them: once here, not once per worker
    runs = ([(executors.chunks(local, LOCAL_BATCH), 1, None)] if local else []) + \
        ([(_batches(rest, size, n_workers, scheduler), n_workers, scheduler)] if rest else [])
    with progress.task("hashing" if methods else "fingerprinting", total=len(jobs)) as task:
        for batches, n, where in runs:
            for batch, results in executors.run_batches(hashing.hash_batch, batches, (methods,), workers=n,
                                                        scheduler=where):
                _save_batch(ledger, batch, results, ids, paths, failed, result)
                task.advance(len(batch))
    return failed


def _batches(jobs: list, size: int, workers: int, scheduler: str | None):
    """The batches of the files to hash: tapered at the end for a local pool (no idle tail);
    even ones for Dask (its own scheduling) and for one process (nothing waits on another)."""
    if scheduler or workers <= 1:
        return executors.chunks(jobs, size)
    return executors.tapered_chunks(jobs, size, workers)


def _jobs(cands: dict[str, list], methods: tuple[str, ...]) -> list[hashing.FileJob]:
    """One FileJob per candidate with a local file, with what the cache knows of it."""
    cached = [cands[f"cached_{m}"] for m in methods]
    return [
        hashing.FileJob(int(pk), path, _int(size), _int(mtime), sha, tuple(m for m, c in zip(methods, flags) if c),
                        bool(unreadable), bool(need_size))
        for pk, path, size, mtime, sha, unreadable, need_size, *flags in zip(
            cands["pk"], cands["path"], cands["known_bytes"], cands["known_mtime_ns"], cands["known_sha256"],
            cands["known_unreadable"], cands["need_size"], *cached)
        if path is not None
    ]


# Batches per worker (up to executors' 1,000 files a batch): 3,000 photos on 2 workers make
# batches of ~94 files, ~50 ms of work (0.5 ms a 224x224 photo), so the workers finish
# within a batch of each other and the bar moves; 4 a worker (375 files) saved nothing
# and page-faulted more (children's CPU 1.85 s with 375 a batch, 1.81 s with 100; 2-core
# machine, loaded). A million files still go 1,000 a batch (one transaction each).
BATCHES_PER_WORKER = 16
LOCAL_BATCH = 2000  # stat-only files (cached): each batch is one ledger transaction


def _settled(job: hashing.FileJob, methods: tuple[str, ...]) -> bool:
    """The cache holds every hash `hash_batch` would compute for this file's known content
    (or knows it does not decode): unless the file changed, nothing is decoded (at most
    it is read for its header's size)."""
    return bool(job.sha256) and (job.known_unreadable or set(methods) <= set(job.cached))


def _unchanged(job: hashing.FileJob) -> bool:
    """The file's size and mtime are those of its fingerprint (False when it cannot be
    stat'ed: `hash_batch` then says why)."""
    try:
        st = os.stat(job.path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (job.bytes, job.mtime_ns)


def _save_batch(ledger, batch, results, ids: dict, paths: dict, failed: dict, result: DedupResult) -> None:
    """Store one batch of `hash_batch` results (one transaction) and count them."""
    stats, hashes, bad, files, pictures = [], [], [], [], []
    known_bad = {job.key for job in batch if job.known_unreadable}
    for r in results:
        if r.sha256 is None:
            failed[r.key] = (r.reason or "unreadable-file", r.detail)
            continue
        stats.append((r.key, paths[r.key], r.bytes, r.mtime_ns, r.sha256))
        hashes.extend((r.key, m, r.sha256, h, r.signature) for m, h in r.hashes.items())
        if r.reason:
            bad.append((r.key, r.sha256, r.reason, r.detail))
        if r.read:
            files.append(FileInfo(ids[r.key], paths[r.key], r.sha256, r.bytes, r.width, r.height))
        if r.picture_stats is not None:
            pictures.append((r.key, paths[r.key], r.bytes, r.mtime_ns, STATS_VERSION,
                             r.picture_stats.values.tobytes(), r.picture_stats.thumb_hash, None))
        result.images_hashed += bool(r.decoded)
        result.images_cached += not r.decoded and not r.reason and r.key not in known_bad
    with ledger.transaction():  # one transaction: the hash cache and check-images' statistics
        store.save_fingerprints(ledger, stats=stats, hashes=hashes, unreadable=bad, files=files)
        save_picture_stats(ledger, pictures)


def _int(v) -> int | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v)


def _collect_unreadable(frame: Table, failed: dict, exact_only: bool, result: DedupResult) -> None:
    by_pk = dict(zip(frame["pk"].tolist(), frame["image_id"]))
    for pk, (reason, detail) in failed.items():
        if pk in by_pk:
            result.unreadable.append({"image_id": by_pk[pk], "reason": reason, "detail": detail})
    for pk, image_id, reason, detail in zip(frame["pk"].tolist(), frame["image_id"], frame["reason"], frame["detail"]):
        if reason is not None and pk not in failed:
            result.unreadable.append({"image_id": image_id, "reason": reason, "detail": detail or ""})


# ---- pairs and clusters ----------------------------------------------------------------------------
@dataclass
class Found:
    """What pairing decided, over the rows of the dedup frame.

    rank: (n,) keep-policy position of each row (0 is kept first). group: (n,) identical
    files share a group; head: (G,) the best row of each group. exact: (E, 2) rows
    (head, other member) of identical files. near: (P, 2) head rows of different groups
    whose hashes are within the threshold, then the (image, leader) pairs the rejoin added;
    distance, similarity: per near pair (similarity: the signatures' score, or the rejoin's;
    `scores` has a second look's where one made the pair a copy).
    verdicts: per near pair, copies (`ok`: by score or by a second look) and pairs still
    undecided (looked at only where the clusters need them: `lazy`); looks: their second look.
    leader: (n,) the kept row of each row's cluster (itself when it is kept or alone)."""

    rank: np.ndarray
    group: np.ndarray
    head: np.ndarray
    exact: np.ndarray
    near: np.ndarray
    distance: np.ndarray
    similarity: np.ndarray
    verdicts: lazy.Verdicts
    looks: recheck.SecondLooks
    leader: np.ndarray
    signatures: np.ndarray
    has_signature: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        """(P,) bool: the pairs that are copies (write False into it to clear one, then `cluster`)."""
        return self.verdicts.ok

    @property
    def undecided(self) -> np.ndarray:
        return self.verdicts.undecided

    @property
    def scores(self) -> np.ndarray:
        """(P + J,) float32: the score that made each near pair a copy, the second look's where
        one passed it (a box pair scoring 0.84 on its signatures was a copy at 0.97 re-decoded),
        else `similarity`."""
        out = self.similarity.astype(np.float32)
        out[:len(self.looks.scores)] = self.looks.scores
        return out

    @property
    def redecoded(self) -> int:
        """Pairs re-decoded for a second look (the rejoin's comparisons included)."""
        return self.verdicts.looked

    @property
    def redecode_seconds(self) -> float:
        return self.verdicts.seconds

    def decide(self, rows: np.ndarray) -> None:
        """Give the undecided pairs among rows ((R,) indices of near) their second look now."""
        self.verdicts = lazy.resolved(self.verdicts, rows, self.looks)

    def cluster(self) -> None:
        """Clusters again (after `ok` changed): a kept group takes the groups verified directly
        against it, the undecided pairs met looked at (`lazy.clusters`)."""
        self.leader, self.verdicts = lazy.clusters(self.rank, self.near, self.verdicts, self.looks,
                                                   self.head[self.group])


def candidate_pairs(hashes: np.ndarray, overlay_codes: np.ndarray, k: int,
                    flags: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs: hashes within k bits, or (a copy with a text box over one region)
    overlay codes of one region within OVERLAY_THRESHOLD bits; the last code (the whole
    picture's bottom strip) meets the one before it (the trimmed picture's).

    With flags ((n,) uint8), a picture with a box painted over also pairs within
    textbox.PAINTED_THRESHOLD bits (`textbox.painted_pairs`).
    hashes: (n,) uint64. overlay_codes: (n, verify.OVERLAY_CODES) uint64 (`verify.overlay_codes`).
    Returns ((P, 2) int64 pairs, (P,) bool: found by an overlay code, alone or with the hash;
    the command re-decodes those where a picture has no border, `recheck.boxed_pairs`)."""
    n = len(hashes)
    near = pairs.pairs_within(hashes, k).astype(np.int64)
    columns = [overlay_codes[:, m] for m in range(overlay_codes.shape[1] - 2)] + \
        [np.concatenate([overlay_codes[:, -2], overlay_codes[:, -1]])]
    more = np.concatenate([np.zeros((0, 2), dtype=np.int64),
                           *(pairs.pairs_within(np.ascontiguousarray(c), OVERLAY_THRESHOLD).astype(np.int64) % max(n, 1)
                             for c in columns),
                           *([] if flags is None else [textbox.painted_pairs(overlay_codes, flags)])])
    more = np.unique(np.sort(more[more[:, 0] != more[:, 1]], axis=1), axis=0)
    ordered = np.sort(near, axis=1)
    coded = np.isin(ordered[:, 0] * n + ordered[:, 1], more[:, 0] * n + more[:, 1])
    more = more[~np.isin(more[:, 0] * n + more[:, 1], ordered[:, 0] * n + ordered[:, 1])]
    return np.concatenate([near, more]), np.concatenate([coded, np.ones(len(more), bool)])


def routed_candidates(hashes: np.ndarray, overlay_codes: np.ndarray, flags: np.ndarray, crop_codes: np.ndarray,
                      k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every candidate pair and how `recheck.second_look` looks at it again: `candidate_pairs`
    (hash, overlay and painted codes), then the crop code's pairs (`align.with_crop_pairs`).
    hashes, crop_codes: (n,) uint64; overlay_codes: (n, verify.OVERLAY_CODES); flags: (n,) uint8.
    Returns ((P, 2) int64 pairs, (P,) uint8 `recheck.boxed_pairs`, (P,) bool paired by a crop code)."""
    found, by_code = candidate_pairs(hashes, overlay_codes, k, flags)
    found, crop = align.with_crop_pairs(found, hashes, crop_codes)
    by_code = np.concatenate([by_code, np.zeros(len(found) - len(by_code), dtype=bool)])
    return found, recheck.boxed_pairs(found, by_code, flags), crop


def _looking(workers: int | None) -> int:
    """Processes for the second look: --workers (default all CPUs). With --scheduler too: the
    second look reads its files here, and each process keeps its decodes for all its passes."""
    return workers or executors.default_workers()


def _find(frame: Table, policy: tuple[str, ...], k: int, min_similarity: float, exact_only: bool,
          files: decodes.Decodes | None = None) -> Found:
    """Two stages, then clusters: identical files are one group; group heads whose hashes
    are within k bits are candidates; a candidate is a copy when its verification
    score is >= min_similarity; clusters grow only around kept images (no chaining).
    files: the second look's decodes (`lookpool.Looks` for its processes; default this one's)."""
    n = len(frame["pk"])
    stored = frame["signature"].tolist() if "signature" in frame else [None] * n
    codes, flags = verify.overlay_codes(stored)
    keys = [KEEP_RULES[name][1]({**frame, "flags": flags}) for name in policy]
    order = np.lexsort(keys[::-1]) if n else np.zeros(0, dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    group = _file_groups(frame["sha256"])
    n_groups = int(group.max()) + 1 if n else 0
    head = np.full(n_groups, -1, dtype=np.int64)
    by_rank = order[::-1]  # the last write wins: the best-ranked row of each group
    head[group[by_rank]] = by_rank
    others = np.flatnonzero(head[group] != np.arange(n))
    exact = np.stack([head[group[others]], others], axis=1) if len(others) else np.zeros((0, 2), dtype=np.int64)
    signatures, has_sig = verify.as_array(stored)
    near, overlay = np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=bool)
    hashes = frame["hash"].astype(np.uint64)
    crop_codes = verify.crop_codes(stored)
    crop = np.zeros(0, dtype=bool)
    if not exact_only and n_groups:
        usable = head[frame["has_hash"][head] & has_sig[head]]
        if len(usable):
            found, overlay, crop = routed_candidates(hashes[usable], codes[usable], flags[usable], crop_codes[usable], k)
            near = usable[found]
    similarity = verify.pair_scores(signatures, near, flags)
    w, h = _numbers(frame["width"]), _numbers(frame["height"])
    looks = recheck.SecondLooks(frame["path"], w, h, near, similarity, overlay, crop, min_similarity, files)
    leader, near, similarity, verdicts = lazy.verified_clusters(rank, head[group], looks)
    distance = pairs.distances(hashes, near).astype(np.int64)
    return Found(rank, group, head, exact, near, distance, similarity, verdicts, looks, leader, signatures, has_sig)


def _check_labels(ledger, taxonomy, frame: Table, found: Found,
                  min_similarity: float) -> list[recheck.LabelDifference]:
    """Verified pairs whose labels differ in colour or a single-label group: unless their
    pixels match they are no copies (`found.ok` cleared, clusters made again) and are
    returned as possible copies, action none. Undecided pairs whose labels differ are looked
    at first, so every verified one is reported, whatever the clusters needed."""
    rows = np.flatnonzero(found.ok | found.undecided)
    if not len(rows):
        return []
    ids = frame["image_id"]
    a, b = found.near[rows, 0], found.near[rows, 1]
    labels = store.active_labels(ledger, np.unique(np.concatenate([ids[a], ids[b]])))
    differ = [recheck.differing_labels(labels.get(ids[i], []), labels.get(ids[j], []), taxonomy)
              for i, j in zip(a.tolist(), b.tolist())]
    found.decide(rows[np.array([bool(d) for d in differ], dtype=bool)])
    possible, scores = [], found.scores
    for r, i, j, differs in zip(rows.tolist(), a.tolist(), b.tolist(), differ):
        if not differs or not found.ok[r]:
            continue
        if found.similarity[r] < min_similarity:
            differs += "; verified on the re-decoded whole pictures"
        pixels = recheck.pixel_difference(frame["path"][i], frame["path"][j])
        if not pixels < recheck.PIXELS_MATCH:
            found.ok[r] = False
            possible.append(recheck.LabelDifference(ids[i], ids[j], round(float(scores[r]), 3), differs,
                                                    round(pixels, 1), frame["path"][i], frame["path"][j]))
    if possible:
        found.cluster()
    return possible


def _file_groups(sha256: np.ndarray) -> np.ndarray:
    """(n,) group of each row: rows with the same sha256 share one, a row without a sha256
    is a group of its own; groups are numbered in the order they first appear."""
    seen: dict[str, int] = {}
    group = np.empty(len(sha256), dtype=np.int64)
    next_group = 0
    for i, sha in enumerate(sha256):
        g = None if sha is None else seen.get(sha)
        if g is None:
            g, next_group = next_group, next_group + 1
            if sha is not None:
                seen[sha] = g
        group[i] = g
    return group


def _cross_split(frame: Table, found: Found) -> dict[str, int]:
    """{"validation": n, "test": n}: images of those splits with a duplicate in train: an
    identical file in train, or a verified copy (a pair that passed, in whatever cluster
    it ended) in train. Undecided pairs that could give one its copy in train are looked at
    first (they cannot change a cluster)."""
    n = len(frame["pk"])
    if not n:
        return {"validation": 0, "test": 0}
    split = frame["split"]
    is_train = split == "train"
    group_train = np.bincount(found.group[is_train], minlength=len(found.head)) > 0
    evaluation = np.bincount(found.group[~is_train], minlength=len(found.head)) > 0
    reach = _reach(found, group_train)
    ga, gb = found.group[found.near[:, 0]], found.group[found.near[:, 1]]
    found.decide(np.flatnonzero(found.undecided & ((evaluation[ga] & ~reach[ga] & group_train[gb]) |
                                                   (evaluation[gb] & ~reach[gb] & group_train[ga]))))
    has_train = _reach(found, group_train)[found.group]  # counted for validation/test rows only, never train themselves
    return {name: int((has_train & (split == name)).sum()) for name in ("validation", "test")}


def _reach(found: Found, group_train: np.ndarray) -> np.ndarray:
    """(G,) bool: the group holds a train row or has a verified pair with one that does."""
    reach = group_train.copy()
    ga, gb = found.group[found.near[found.ok, 0]], found.group[found.near[found.ok, 1]]
    np.logical_or.at(reach, ga, group_train[gb])
    np.logical_or.at(reach, gb, group_train[ga])
    return reach


def _build_clusters(ledger, taxonomy, frame: Table, found: Found, narrow_under: float,
                    by_hand: set[str]) -> tuple[list[Cluster], list[tuple[str, str]], list[str]]:
    """(clusters, set aside as (image id, kept id), kept images to restore) from found.leader,
    a member scoring under narrow_under marked `narrow`, one in by_hand (ids a person
    restored) marked `by_hand` and never set aside: clusters sorted large first, then
    cross-split, then label conflicts, then those with a narrow pass (narrowest first), then by size."""
    n = len(frame["pk"])
    sizes = np.bincount(found.leader, minlength=n) if n else np.zeros(0, dtype=np.int64)
    rows = np.flatnonzero(sizes[found.leader] > 1) if n else np.zeros(0, dtype=np.int64)
    if not len(rows):
        return [], [], []
    rows, keep_rows, distance, similarity = _member_rows(frame, found, rows)
    ids = frame["image_id"]
    label_sets = store.active_labels(ledger, ids[rows])
    clusters: list[Cluster] = []
    set_aside: list[tuple[str, str]] = []
    restored: list[str] = []
    for part in np.split(np.arange(len(rows)), np.flatnonzero(np.diff(keep_rows)) + 1):
        ms = [Member(ids[r], frame["split"][r], None if d < 0 else int(d), bool(r == k),
                     None if np.isnan(x) else round(float(x), 3),
                     _int(frame["width"][r]), _int(frame["height"][r]), _int(frame["bytes"][r]),
                     label_sets.get(ids[r], []), frame["path"][r])
              for r, k, d, x in zip(rows[part].tolist(), keep_rows[part].tolist(), distance[part].tolist(),
                                    similarity[part].tolist())]
        for m in ms[1:]:
            m.by_hand = m.image_id in by_hand
            m.narrow = not m.by_hand and m.similarity is not None and m.similarity < narrow_under
        _note_label_differences(ms, taxonomy)
        labelled = {tuple(m.labels) for m in ms if m.labels}
        in_train = [m.split == "train" for m in ms]
        clusters.append(Cluster(ms[0].image_id, ms, any(in_train) and not all(in_train), len(labelled) > 1))
        for m, r in zip(ms, rows[part].tolist()):
            status, rule = frame["status"][r], frame["status_rule"][r]
            if not m.kept and status == "active" and not m.by_hand:
                set_aside.append((m.image_id, ms[0].image_id))
            elif m.kept and status == "set_aside" and rule == RULE:
                restored.append(m.image_id)
    clusters.sort(key=lambda c: (not c.large, not c.cross_split, not c.label_conflict, c.narrowest is None,
                                 c.narrowest or 0.0, -len(c.members), c.keep))
    return clusters, set_aside, restored


def _member_rows(frame: Table, found: Found, rows: np.ndarray):
    """The rows in clusters with their kept row, hash distance (-1: unknown) and score
    against it (nan: unknown; the score that made the pair a copy, `Found.scores`), ordered
    by cluster, the kept image first."""
    keep_rows = found.leader[rows]
    hashes = frame["hash"].astype(np.uint64)
    has_hash = frame["has_hash"]
    same_file = found.group[rows] == found.group[keep_rows]
    dist = pairs.popcount(hashes[rows] ^ hashes[keep_rows]).astype(np.int64)
    distance = np.where(same_file, 0, np.where(has_hash[rows] & has_hash[keep_rows], dist, -1))
    usable = found.has_signature[rows] & found.has_signature[keep_rows]
    sim = _copy_scores(found, found.head[found.group[rows]], keep_rows)
    # Only where no copy pair joins them (none should, past identical files) the signatures'
    # score, computed for those alone: for every member it was 1.25 s on the 20,000 photos.
    rest = np.flatnonzero(np.isnan(sim) & usable & ~same_file)
    sim[rest] = verify.similarity(found.signatures, np.stack([rows[rest], keep_rows[rest]], axis=1))
    similarity = np.where(same_file, 1.0, np.where(usable, sim, np.nan))
    by = np.lexsort([found.rank[rows], keep_rows])  # by cluster (its kept row), kept image first
    return rows[by], keep_rows[by], distance[by], similarity[by]


def _copy_scores(found: Found, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M,) float32: the best score of the copy pairs joining rows a and b ((M,) each; either
    order, `Found.scores`), nan where no copy pair joins them."""
    ok = np.flatnonzero(found.ok)
    return best_copy_scores(found.near[ok], found.scores[ok], a, b, len(found.leader))


def best_copy_scores(copies: np.ndarray, scores: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """(M,) float32: the best of `scores` ((C,)) of the copy pairs `copies` ((C, 2) rows < n)
    joining rows a and b ((M,) each, either order), nan where none joins them: the score a
    report gives a member against its kept image (benchmarks/dedup_bench.py uses it too)."""
    if not len(copies):
        return np.full(len(a), np.nan, dtype=np.float32)
    near = np.asarray(copies, dtype=np.int64)
    unique, where = np.unique(np.minimum(near[:, 0], near[:, 1]) * n + np.maximum(near[:, 0], near[:, 1]),
                              return_inverse=True)
    best = np.full(len(unique), -np.inf, dtype=np.float32)
    np.maximum.at(best, where, np.asarray(scores, dtype=np.float32))
    wanted = np.minimum(a, b) * n + np.maximum(a, b)
    at = np.minimum(np.searchsorted(unique, wanted), len(unique) - 1)
    return np.where(unique[at] == wanted, best[at], np.nan).astype(np.float32)


def _note_label_differences(members: list[Member], taxonomy) -> None:
    """Each member whose colour or single-label-group labels differ from the kept image's
    says what differs and why it is still a copy (only identical files and matching
    pixels get here: `_check_labels` took the others out)."""
    kept = members[0]
    for m in members[1:]:
        differs = recheck.differing_labels(kept.labels, m.labels, taxonomy)
        if differs:
            why = "identical file" if m.distance == 0 and m.similarity == 1.0 else \
                f"similarity {m.similarity}, pixels match (64x64 grey differ by < {recheck.PIXELS_MATCH:g} levels)"
            m.labels_differ = f"labels differ ({differs}); a copy: {why}"


def _unreadable_changes(frame: Table, failed: dict) -> tuple[list[str], list[str]]:
    """(ids to set aside, ids to restore) under rule unreadable-file: files known to be
    unreadable (their content failed to decode: empty, not an image, truncated,
    decompression bomb) go aside; one set aside so whose file reads now comes back.
    Missing files and I/O errors are not judged."""
    has_reason = np.array([r is not None for r in frame["reason"]], dtype=bool)
    known_bad = has_reason & ~np.isin(frame["pk"], np.fromiter(failed, dtype=np.int64, count=len(failed)))
    active = frame["status"] == "active"
    by_rule = (frame["status"] == "set_aside") & (frame["status_rule"] == UNREADABLE_RULE)
    readable = np.array([s is not None for s in frame["sha256"]], dtype=bool) & ~has_reason
    ids = frame["image_id"]
    return ids[known_bad & active].tolist(), ids[by_rule & readable].tolist()


# ---- reports -----------------------------------------------------------------------------------------
def _write_reports(ws: Workspace, frame: Table, found: Found, result: DedupResult) -> None:
    html_path = ws.report_path("dedup", "html")
    csv_path = html_path.with_name(html_path.stem + "-pairs.csv")
    ids, split = frame["image_id"], frame["split"]
    keep_id = ids[found.leader] if len(ids) else ids
    edges = np.concatenate([found.exact, found.near]).astype(np.int64)
    kind = np.array(["exact"] * len(found.exact) + ["near"] * len(found.near), dtype=object)
    dist = np.concatenate([np.zeros(len(found.exact), dtype=np.int64), found.distance])
    sim = np.concatenate([np.ones(len(found.exact)), found.scores.astype(np.float64)])
    ok = np.concatenate([np.ones(len(found.exact), dtype=bool), found.ok])
    undecided = np.concatenate([np.zeros(len(found.exact), dtype=bool), found.undecided])
    held = {(p.image_a, p.image_b) for p in result.possible_copies}
    held_back = np.array([(x, y) in held for x, y in zip(ids[edges[:, 0]], ids[edges[:, 1]])], dtype=bool) \
        if held and len(edges) else np.zeros(len(edges), dtype=bool)
    verdict = np.where(ok, "copy", np.where(held_back, "possible copy, labels differ",
                                            np.where(undecided, UNDECIDED, "different")))
    with reports.open_csv(csv_path) as w:
        w.writerow(["image_a", "split_a", "image_b", "split_b", "kind", "distance", "similarity", "verdict",
                    "cluster_keep"])
        for i in range(0, len(edges), 100_000):
            a, b = edges[i:i + 100_000, 0], edges[i:i + 100_000, 1]
            together = found.leader[a] == found.leader[b]
            w.writerows(zip(ids[a], split[a], ids[b], split[b], kind[i:i + 100_000], dist[i:i + 100_000].tolist(),
                            [f"{x:.3f}" for x in sim[i:i + 100_000]],
                            verdict[i:i + 100_000],
                            np.where(together, keep_id[a], "")))
    result.report_csv = str(csv_path)
    result.report_html = str(report_html.write_page(html_path, "Duplicates", _sections(result, ws.taxonomy),
                                                    _intro(result)))


def _intro(result: DedupResult) -> str:
    how = ("identical files only" if result.method is None else
           f"{result.method} within {result.threshold} bits verified at similarity >= {result.min_similarity:g} "
           f"({result.verified_pairs:,} of {result.candidate_pairs:,} candidate pairs), and identical files")
    warn = "".join(f"Warning: {w}. " for w in result.warnings)
    return (warn + f"{result.images_considered:,} images considered ({how}); {len(result.clusters):,} clusters; "
            f"{result.cross_split:,} validation/test images have a duplicate in train; "
            f"{result.label_conflicts:,} clusters carry conflicting labels; {len(result.possible_copies):,} possible "
            f"copies whose colour or single-label groups differ were left alone; "
            f"{result.redecoded_pairs:,} near misses re-decoded; {len(result.unreadable):,} unreadable; "
            f"{len(result.skipped_no_file):,} without a local file. Keep policy: {', '.join(result.keep_policy)}. "
            f"{'Applied' if result.applied else 'Not applied (run with --apply)'}.")


def _sections(result: DedupResult, taxonomy) -> list[report_html.Section]:
    def card(m: Member) -> report_html.Card:
        lines = [f"{m.split} · {'KEEP' if m.kept else 'left in' if m.by_hand else 'set aside'}",
                 f"{m.width}x{m.height} · {(m.bytes or 0) / 1024:.0f} KB",
                 "distance " + ("-" if m.distance is None else str(m.distance)) + " · similarity "
                 + ("-" if m.similarity is None else f"{m.similarity:.3f}"),
                 "labels: " + (", ".join(taxonomy.names(m.labels)) or "-")] + ([m.labels_differ] if m.labels_differ else [])
        if m.narrow:
            lines.append(f"narrow pass (under {result.narrow_under:.3f}): check by eye")
        if m.by_hand:
            lines.append("restored by hand: left in")
        return report_html.Card(m.image_id, m.path, lines)

    def plain(c: Cluster) -> bool:
        return not c.cross_split and not c.label_conflict and not c.large

    groups = [  # (title, text, clusters, pictures large)
        (f"Warning: clusters over {LARGE_CLUSTER} members", "Copies rarely come in such numbers: check that these "
         "are one photo before applying; a higher --min-similarity splits them.", [c for c in result.clusters if c.large],
         False),
        ("Cross-split duplicates", "Train images duplicating validation/test images: the train copy goes.",
         [c for c in result.clusters if c.cross_split and not c.large], False),
        ("Label conflicts", "Duplicates whose labels disagree: label-noise candidates for review.",
         [c for c in result.clusters if c.label_conflict and not c.cross_split and not c.large], False),
        ("Set aside on a narrow pass: check by eye",
         f"A member scored under {result.narrow_under:.3f}, close to --min-similarity {result.min_similarity:g} "
         "(an image rejoining its kept image may score a little under it): look-alike items of one shoot "
         "(another toe, other straps) pass there, and some copies do. Narrowest first; `ifa curate restore "
         "--image ID` brings back one set aside by mistake, and dedup leaves it in from then on.",
         [c for c in result.clusters if plain(c) and c.narrowest is not None], True),
        ("Other duplicates", "", [c for c in result.clusters if plain(c) and c.narrowest is None], False),
    ]
    if not any(c.large for c in result.clusters):
        groups = groups[1:]  # no warning section without a large cluster
    sections, budget = [], MAX_HTML_CLUSTERS
    for title, text, clusters, big in groups:
        shown = clusters[:max(0, budget)]
        budget -= len(shown)
        more = f" Showing {len(shown):,} of {len(clusters):,}; the pairs CSV lists all." if len(shown) < len(clusters) else ""
        sections.append(report_html.Section(f"{title} ({len(clusters):,})", text + more,
                                            [[card(m) for m in c.members[:12]] for c in shown], big=big))
    sections.append(_possible_copies_section(result))
    bad = result.unreadable[:MAX_HTML_CLUSTERS]
    sections.append(report_html.Section(
        f"Unreadable images ({len(result.unreadable):,})", "Recorded with a reason; they are not hashed.",
        [[report_html.Card(u["image_id"], None, [u["reason"], u.get("detail", "")[:120]]) for u in bad[i:i + 6]]
         for i in range(0, len(bad), 6)]))
    return sections


def _possible_copies_section(result: DedupResult) -> report_html.Section:
    """Verified pairs whose colour or single-label-group labels differ and whose pixels do
    not match: shown side by side, nothing done."""
    shown = result.possible_copies[:MAX_HTML_CLUSTERS]
    paths = {m.image_id: m.path for c in result.clusters for m in c.members}
    rows = [[report_html.Card(p.image_a, paths.get(p.image_a, p.path_a), [
                "possible copies, labels differ: action none", p.differs]),
             report_html.Card(p.image_b, paths.get(p.image_b, p.path_b), [
                f"similarity {p.similarity:.3f}", f"64x64 grey differ by {p.pixel_difference:.1f} levels (copies: < "
                f"{recheck.PIXELS_MATCH:g})"])] for p in shown]
    more = f" Showing {len(shown):,} of {len(result.possible_copies):,}." if len(shown) < len(result.possible_copies) else ""
    return report_html.Section(
        f"Possible copies, labels differ ({len(result.possible_copies):,})",
        "The verifier passed these pairs, but their colour or a single-label group differs and their pixels do not "
        "match: likely the same shoot of another item. Nothing is set aside; check the labels." + more, rows)
