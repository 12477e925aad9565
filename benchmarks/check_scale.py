"""`ifa curate check-attributes` at the paper's scale: 1,000,000 synthetic images.

    python -m benchmarks.check_scale                # from the repo root; builds the ledger once (~80 s)
    python -m benchmarks.check_scale --images 200000 --loop-sample 20000

Target: the check of 1M images in <= 20 s on the 2-core dev machine, vectorised.

The ledger holds `synthetic.label_pairs` labels (5.8 per image, Table 1 group shares) split
like the real dataset (train 95.2%, validation 0.9%, test 3.7%, all labelled), plus planted
problems: 0.5% of images lose their labels, 0.2% get an unknown label id (quarantined, as
import keeps it), 0.3% get a second category, and the most common color and material
never meet on a training image (an unseen pair wherever they meet in validation/test).
The random labels also break the default contradiction rules by chance (a sleeve on a
shoe category, Neutral with Male, ...), so every rule has work.

Commands as a script runs them (benchmarks/cli_timing.py): `ifa curate check-attributes
--json`, the same without --json (table + reports) and `ifa stats --json`, each a
subprocess whose stdout is read to the end, beside the library call it wraps
(`attributes.run`, `stats.compute`). Targets: <= 20 s, <= 12 s and <= 6 s at 1M.

Peers, in the same run:
- reading: the foundation's `Ledger.labels_frame` (one Python row per label) against
  `ledger.arrays.label_arrays` (packed integers, statuses included); each runs in a fresh
  process, so its peak memory is its own.
- rules: `loop_check`, the same rules written as a straightforward loop over images in
  Python, on a random sample of images, extrapolated linearly to the full set. On that
  sample its hits must equal the vectorised rules' hits exactly (checked; a mismatch fails).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cli_timing import run_cli
from .synthetic import label_pairs
from ifa.curation.attributes import check as attributes
from ifa.curation.ledger import SPLITS, Ledger
from ifa.curation.ledger.arrays import LabelArrays, label_arrays
from ifa.curation.attributes.rules import LabelView, RuleSet, load_rules
from ifa.curation.workspace import Workspace
from ifa.taxonomy import Taxonomy

# The real dataset: 1,012,947 train / 9,897 validation / 39,706 test images.
SPLIT_SHARE = {"train": 0.9524, "validation": 0.0093, "test": 0.0373}
NO_LABELS, UNKNOWN, SECOND_CATEGORY = 0.005, 0.002, 0.003
UNKNOWN_ID = 999
BUILD_VERSION = "check-scale-2"


# ---- the synthetic ledger -------------------------------------------------------------------------
def build(root: Path, n: int, seed: int = 0) -> Path:
    """A workspace at `root` holding `n` synthetic images (reused when already built)."""
    root = Path(root)
    stamp = f"{BUILD_VERSION}:{n}:{seed}"
    if (root / "ifa.db").exists():
        with Workspace.open(root) as ws:
            if ws.ledger.get_meta("benchmark") == stamp:
                return root
    if root.exists():
        import shutil
        shutil.rmtree(root)
    rng = np.random.default_rng(seed + 1)
    tax = Taxonomy.default()
    img, lab = label_pairs(n, seed, tax)
    bounds = np.cumsum([0] + [round(n * SPLIT_SHARE[s]) for s in SPLITS])
    bounds[-1] = n
    # a second category on 0.3% of images (a repeat of the first is dropped below)
    extra = np.flatnonzero(rng.random(n) < SECOND_CATEGORY)
    categories = np.array(tax.group("category").label_ids)
    img, lab = np.r_[img, extra], np.r_[lab, rng.choice(categories, len(extra))]
    key = np.unique(img * 1000 + lab)
    img, lab = key // 1000, key % 1000
    # the commonest color and material never together on a training image
    counts = np.bincount(lab, minlength=1000)
    color = max(tax.group("color").label_ids, key=lambda i: counts[i])
    material = max(tax.group("material").label_ids, key=lambda i: counts[i])
    has_color = np.zeros(n, bool)
    has_color[img[lab == color]] = True
    in_train = img < bounds[1]
    keep = ~((lab == material) & has_color[img] & in_train)
    empty = rng.random(n) < NO_LABELS
    keep &= ~empty[img]
    img, lab = img[keep], lab[keep]
    unknown = np.flatnonzero(rng.random(n) < UNKNOWN)
    with Workspace.init(root, command="benchmark") as ws:
        for split, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:]):
            for start in range(lo, hi, 200_000):
                stop = min(hi, start + 200_000)
                ids = (np.arange(start, stop) + 1).astype(str).tolist()
                a, b = np.searchsorted(img, [start, stop])
                cuts = np.searchsorted(img[a:b], np.arange(start, stop + 1))
                labs = lab[a:b].tolist()
                labels = [(iid, labs[cuts[k]:cuts[k + 1]]) for k, iid in enumerate(ids) if cuts[k + 1] > cuts[k]]
                u = unknown[(unknown >= start) & (unknown < stop)]
                ws.ledger.record_import(
                    format="synthetic", source=f"synthetic:{n}:{seed}", split=split,
                    images=[(iid, None, None, "active", None) for iid in ids], labels=labels,
                    quarantined=[(str(k + 1), UNKNOWN_ID, "unknown-label") for k in u.tolist()], issues=[])
        ws.ledger.set_meta("benchmark", stamp)
    return root


# ---- the peer: the same rules as a per-image Python loop -----------------------------------------
@dataclass
class _LoopView:
    """The label rows regrouped per image, as a per-image loop reads them."""

    labels_of: list[list[tuple[int, int]]]  # per image: (label id, status code)
    split_of: list[str]
    known: dict
    group_of: dict[int, int]  # label id -> group position
    single: set[int]  # group positions of single-label groups
    ids: list  # per group position: its label ids

    def active_known(self, i: int) -> list[int]:
        return sorted(lab for lab, st in self.labels_of[i] if st == 0 and lab in self.known)


def _loop_view(arrays: LabelArrays, taxonomy: Taxonomy) -> _LoopView:
    labels_of: list[list[tuple[int, int]]] = [[] for _ in range(arrays.n_images)]
    for i, lab, st in zip(arrays.row_image.tolist(), arrays.label_id.tolist(), arrays.status.tolist()):
        labels_of[i].append((lab, st))
    group_pos = {g.name: k for k, g in enumerate(taxonomy.groups)}
    return _LoopView(labels_of, [SPLITS[c] for c in arrays.split.tolist()], taxonomy.labels,
                     {lid: group_pos[lab.group] for lid, lab in taxonomy.labels.items()},
                     {k for k, g in enumerate(taxonomy.groups) if g.single}, taxonomy.label_ids)


@dataclass
class _Reference:
    """Label counts and co-occurring pairs on a rule's reference split."""

    size: int
    counts: Counter
    pairs: set[tuple[int, int]]


def _reference(view: _LoopView, split: str) -> _Reference:
    ref = [i for i in range(len(view.labels_of)) if view.split_of[i] == split]
    counts = Counter(lab for i in ref for lab in view.active_known(i))
    pairs = {(x, y) for i in ref for k, x in enumerate(view.active_known(i)) for y in view.active_known(i)[k + 1:]}
    return _Reference(len(ref), counts, pairs)


def _loop_single_group(view: _LoopView, i: int, f, ref) -> bool:
    per_group = Counter(view.group_of[lab] for lab in view.active_known(i) if view.group_of[lab] in f.group_ids)
    return any(c > 1 for c in per_group.values())


def _loop_unknown(view: _LoopView, i: int, f, ref) -> bool:
    return any(lab not in view.known and st in f.codes for lab, st in view.labels_of[i])


def _loop_no_labels(view: _LoopView, i: int, f, ref) -> bool:
    return not any(st == 0 for _, st in view.labels_of[i])


def _loop_contradiction(view: _LoopView, i: int, f, ref) -> bool:
    labs = set(view.active_known(i))
    return any(labs & set(view.ids[a].tolist()) and labs & set(view.ids[b].tolist()) for a, b, _ in f.pairs)


def _loop_rare(view: _LoopView, i: int, f, ref: _Reference) -> bool:
    return bool(ref.size) and any(ref.counts[lab] < f.min_images for lab in view.active_known(i))


def _loop_unseen(view: _LoopView, i: int, f, ref: _Reference) -> bool:
    if not ref.size or view.split_of[i] == f.reference:
        return False
    labs = view.active_known(i)
    for k, x in enumerate(labs):
        for y in labs[k + 1:]:
            same_single = view.group_of[x] == view.group_of[y] and view.group_of[x] in view.single
            if ((x, y) not in ref.pairs and not same_single
                    and ref.counts[x] * ref.counts[y] / ref.size >= f.min_expected):
                return True
    return False


# rule kind -> does image i break it (written from the kinds' documented meaning, not rules.py)
_LOOP_RULES = {"single-group-conflict": _loop_single_group, "unknown-label": _loop_unknown,
               "no-labels": _loop_no_labels, "contradiction": _loop_contradiction,
               "rare-label": _loop_rare, "unseen-pair": _loop_unseen}


def loop_check(arrays: LabelArrays, taxonomy: Taxonomy, ruleset: RuleSet, splits=SPLITS) -> dict[str, set[int]]:
    """Each rule of `ruleset` evaluated image by image in plain Python; returns rule id ->
    positions of the images hit. Written independently of rules.py's array code, from the
    rule kinds' documented meaning, so it doubles as a check of that code."""
    view = _loop_view(arrays, taxonomy)
    out: dict[str, set[int]] = {}
    for rule in ruleset:
        if rule.kind not in _LOOP_RULES:
            raise ValueError(f"the loop peer does not know kind {rule.kind!r}")
        breaks, f = _LOOP_RULES[rule.kind], rule.finder
        ref = _reference(view, f.reference) if rule.kind in ("rare-label", "unseen-pair") else None
        allowed = set(rule.splits) & set(splits)
        out[rule.id] = {i for i in range(arrays.n_images) if view.split_of[i] in allowed and breaks(view, i, f, ref)}
    return out


def vector_hits(arrays: LabelArrays, taxonomy: Taxonomy, ruleset: RuleSet, splits=SPLITS) -> dict[str, set[int]]:
    """The same question answered by ifa's vectorised core (`attributes.find_hits`)."""
    rows = attributes.find_hits(LabelView(arrays, taxonomy), ruleset, splits)
    return {rule.id: set(rows.loc[rows["_rule"] == k, "_image"].tolist()) for k, rule in enumerate(ruleset)}


# ---- measuring ------------------------------------------------------------------------------------
class Timings:
    """A Progress that records how long each task took (the check's own steps)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def task(self, description: str, total: int | None = None):
        start = time.perf_counter()

        class _T:
            def advance(self, n=1): pass
            def update(self, **kw): pass
        yield _T()
        self.seconds[description] = self.seconds.get(description, 0.0) + time.perf_counter() - start

    def note(self, message: str) -> None:
        pass


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _in_child(target, *args):
    """Run `target(*args)` in a fresh process; its result and the process's peak RSS."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(target, args)


def _read_frame(db: str) -> tuple[float, int, float]:
    ledger = Ledger(Path(db))
    start = time.perf_counter()
    frame = ledger.labels_frame(label_status=("active", "quarantined"))
    return time.perf_counter() - start, len(frame), _peak_mb()


def _read_arrays(db: str) -> tuple[float, int, float]:
    ledger = Ledger(Path(db))
    start = time.perf_counter()
    arrays = label_arrays(ledger, label_statuses=("active", "quarantined"))
    return time.perf_counter() - start, len(arrays.label_id), _peak_mb()


def _check(root: str) -> dict:
    """The full check (dry run) and the reports, timed step by step, in a fresh process."""
    timings = Timings()
    with Workspace.open(Path(root), command="benchmark") as ws:
        rules = load_rules(None, ws.taxonomy)
        start = time.perf_counter()
        result = attributes.check(ws.ledger, ws.taxonomy, rules, progress=timings)
        total = time.perf_counter() - start
        start = time.perf_counter()
        attributes.write_reports(result, ws)
        reports = time.perf_counter() - start
    return {"check": total, "steps": timings.seconds, "reports": reports, "peak_mb": _peak_mb(),
            "rules": {r.id: r.images for r in result.rules.values()}, "flagged": int(result.hits["image_id"].nunique()),
            "images": result.images_checked}


def _library_run(root: str) -> tuple[float, float]:
    """`attributes.run` (check and reports, what the command calls), in a fresh process:
    wall and CPU seconds."""
    with Workspace.open(Path(root), command="benchmark") as ws:
        start, cpu = time.perf_counter(), time.process_time()
        attributes.run(ws)
        return time.perf_counter() - start, time.process_time() - cpu


def _library_stats(root: str) -> tuple[float, float]:
    from ifa.curation import stats
    with Workspace.open(Path(root), command="benchmark") as ws:
        start, cpu = time.perf_counter(), time.process_time()
        stats.compute(ws.ledger, ws.taxonomy)
        return time.perf_counter() - start, time.process_time() - cpu


def commands(root: Path, library_rules: dict[str, int]) -> list[tuple[str, str, str, str]]:
    """The three commands as subprocesses beside their library calls; the --json output must
    agree with the library's counts (a mismatch raises)."""
    ws = ["--workspace", str(root)]
    as_json = run_cli("curate", "check-attributes", "--json", *ws)
    got = {k: v["images"] for k, v in as_json.data["rules"].items()}
    if got != library_rules:
        raise SystemExit(f"check-attributes --json disagrees with the library: {got} vs {library_rules}")
    table = run_cli("curate", "check-attributes", *ws, expect_json=False)
    stats = run_cli("stats", "--json", *ws)
    (run_s, run_cpu), (stats_s, stats_cpu) = _in_child(_library_run, str(root)), _in_child(_library_stats, str(root))
    flagged = len(as_json.data["flagged"])
    return [
        ("ifa curate check-attributes --json", f"{run_s:.1f} s, cpu {run_cpu:.1f} s (attributes.run)",
         f"{as_json.seconds:.1f} s, cpu {as_json.cpu:.1f} s, peak {as_json.peak_gib:.2f} GiB, "
         f"{as_json.stdout_bytes / 2**20:.1f} MiB JSON, {flagged:,} flagged", "<= 20 s"),
        ("ifa curate check-attributes (table + reports)", f"{run_s:.1f} s, cpu {run_cpu:.1f} s (attributes.run)",
         f"{table.seconds:.1f} s, cpu {table.cpu:.1f} s, peak {table.peak_gib:.2f} GiB", "<= 12 s"),
        ("ifa stats --json", f"{stats_s:.1f} s, cpu {stats_cpu:.1f} s (stats.compute)",
         f"{stats.seconds:.1f} s, cpu {stats.cpu:.1f} s, peak {stats.peak_gib:.2f} GiB", "<= 6 s"),
    ]


def _apply(root: str) -> dict:
    """check --apply on a copy of the ledger, then the rerun that must find nothing to do."""
    with Workspace.open(Path(root), command="benchmark") as ws:
        rules = load_rules(None, ws.taxonomy)
        start = time.perf_counter()
        first = attributes.check(ws.ledger, ws.taxonomy, rules, apply=True)
        applied = time.perf_counter() - start
        start = time.perf_counter()
        again = attributes.check(ws.ledger, ws.taxonomy, rules, apply=True)
        rerun = time.perf_counter() - start
    return {"apply": applied, "changes": first.changes, "rerun": rerun, "rerun_changes": again.changes}


def _print_commands(rows: list[tuple[str, ...]]) -> None:
    if not rows:
        return
    head = ("command, as a script runs it", "library call", "subprocess, stdout read fully", "target")
    widths = [max(len(r[k]) for r in rows + [head]) for k in range(4)]
    print("\n(wall seconds; cpu = user + system seconds of that process, steadier on a loaded machine)")
    for row in [head, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loop-sample", type=int, default=50_000, help="images the per-image loop peer runs on")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ifa-bench",
                        help="where the synthetic workspace is built and kept for reruns")
    parser.add_argument("--skip-apply", action="store_true", help="skip --apply on a copy of the ledger")
    parser.add_argument("--skip-frame-peer", action="store_true", help="skip the labels_frame read (16-20 s, 2.7 GB at 1M)")
    parser.add_argument("--skip-commands", action="store_true", help="skip timing the commands as subprocesses")
    parser.add_argument("--commands-only", action="store_true", help="only the commands and their library calls")
    return parser.parse_args(argv)


def _apply_on_copy(root: Path, workdir: Path) -> dict:
    import shutil
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        copy = Path(tmp) / "ws"
        shutil.copytree(root, copy)
        return _in_child(_apply, str(copy))


@dataclass
class _LoopRun:
    """The loop peer and the vectorised rules on the same random sample of images."""

    sampled: int
    scale: float  # full set / sample
    loop_s: float
    vec_s: float
    mismatched: list[str]
    rules: int


def _loop_peer(db: str, loop_sample: int, seed: int) -> _LoopRun:
    tax = Taxonomy.default()
    rules = load_rules(None, tax)
    with Ledger(Path(db)) as ledger:
        arrays = label_arrays(ledger)
    sample = np.sort(np.random.default_rng(seed).choice(arrays.n_images, min(loop_sample, arrays.n_images),
                                                        replace=False))
    small = arrays.subset(sample)
    t = time.perf_counter()
    loop = loop_check(small, tax, rules)
    loop_s = time.perf_counter() - t
    t = time.perf_counter()
    vec = vector_hits(small, tax, rules)
    vec_small_s = time.perf_counter() - t
    return _LoopRun(small.n_images, arrays.n_images / small.n_images, loop_s, vec_small_s,
                    [r for r in loop if loop[r] != vec[r]], len(rules))


def _table(check: dict, read: tuple, frame: tuple | None, applied: dict | None, peer: _LoopRun) -> list[tuple[str, str, str]]:
    read_s, _, read_mb = read
    steps = check["steps"]
    return [
        ("read labels from the ledger", f"{read_s:.1f} s, peak {read_mb:,.0f} MB (label_arrays)",
         f"{frame[0]:.1f} s, peak {frame[2]:,.0f} MB (Ledger.labels_frame)" if frame else "skipped"),
        (f"run {peer.rules} rules", f"{steps.get('checking rules', 0):.1f} s (vectorised)",
         f"{peer.loop_s * peer.scale:.0f} s (per-image loop: {peer.loop_s:.1f} s on {peer.sampled:,} images "
         f"x {peer.scale:.0f})"),
        ("list hit images (ids, label names)", f"{steps.get('listing hit images', 0):.1f} s", ""),
        ("check() end to end, dry run", f"{check['check']:.1f} s (target <= 20 s), peak {check['peak_mb']:,.0f} MB", ""),
        ("reports (CSV + HTML)", f"{check['reports']:.1f} s", ""),
        *([] if applied is None else [
            ("check --apply (one transaction)", f"{applied['apply']:.1f} s: " + ", ".join(
                f"{v:,} {k}" for k, v in applied["changes"].items()), ""),
            ("rerun after --apply", f"{applied['rerun']:.1f} s: " + ", ".join(
                f"{v:,} {k}" for k, v in applied["rerun_changes"].items()), "")]),
        (f"same hits on the {peer.sampled:,}-image sample", "yes" if not peer.mismatched else f"NO: {peer.mismatched}",
         f"vectorised {peer.vec_s:.2f} s vs loop {peer.loop_s:.1f} s"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    root = args.workdir / f"check-{args.images}-{args.seed}"
    start = time.perf_counter()
    _in_child(build, root, args.images, args.seed)
    print(f"synthetic ledger: {root} ({time.perf_counter() - start:.0f} s to build or reuse)", flush=True)
    db = str(root / "ifa.db")

    check = _in_child(_check, str(root))
    cli_rows = None if args.skip_commands else commands(root, check["rules"])
    if args.commands_only:
        _print_commands(cli_rows or [])
        return 0
    read = _in_child(_read_arrays, db)
    applied = None if args.skip_apply else _apply_on_copy(root, args.workdir)
    frame = None if args.skip_frame_peer else _in_child(_read_frame, db)
    peer = _loop_peer(db, args.loop_sample, args.seed)

    print(f"\n{check['images']:,} images, {read[1]:,} label rows (active + quarantined); "
          f"{check['flagged']:,} images flagged; machine: 2 cores, shared with other engineers' jobs\n")
    table = _table(check, read, frame, applied, peer)
    widths = [max(len(r[k]) for r in table + [("step", "ifa", "peer")]) for k in range(3)]
    for row in [("step", "ifa", "peer"), tuple("-" * w for w in widths), *table]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    print("\nimages hit per rule:", ", ".join(f"{k} {v:,}" for k, v in check["rules"].items()))
    _print_commands(cli_rows or [])
    idle = applied is None or not any(applied["rerun_changes"].values())
    return 1 if peer.mismatched or not idle else 0


if __name__ == "__main__":
    sys.exit(main())
