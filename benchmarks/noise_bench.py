"""Noise flagging against cleanlab on every kind of noise: quality on real photos with
planted noise, and speed on 1,000,000 x 228 synthetic probabilities.

Quality: the real photos and labels of ../shared/data (myntra-products: 8 groups mapped to
the taxonomy by its imat_mapping.csv; clothing-cc0: category, sleeve, neckline). 500 images
are held out as the clean validation split; into the other 2,500 (the train split) 8% x
(number of labels) errors are planted with a fixed seed under each noise model of
noise_data.NOISE_MODELS: frequency-weighted swaps, uniform swaps, confusion-driven swaps
between look-alike classes, missing-label-heavy. For each (dataset, noise model) the small
CNN is cross-fitted on the NOISY train labels (K folds, exactly what `ifa curate
flag-noise` does without --probs) ONCE, and its out-of-sample probabilities are cached as
Parquet under benchmarks/out/ (git-ignored; the confusion model's look-alike weights come
from a cross-fit on the clean labels, cached the same way). Everything after that varies
only the ranking, on the same probabilities for ifa and for cleanlab:

- pair level: ifa's `ranking.scores` against cleanlab's multilabel
  `get_label_quality_scores_per_class` (1 - quality), average precision (AP) and precision
  at the true count T of planted (image, label) errors;
- the flag sets: ifa's default `--min-score` set (pairs; precision, recall, and the images
  it touches) against cleanlab's `find_label_issues` (images; precision, recall).

Every constant of the ranking (the separability gate, the per-class rate shrinkage, the
default score threshold) is chosen on the TUNING noise models only (`--tune` prints the
grid) and reported on the HELD-OUT ones; the table says which is which.

Speed: flagging alone (noise.estimate_rates + rank_label_issues with the default
min-score) on synthetic probabilities for 1,000,000 images x 228 labels (labels from
benchmarks/synthetic.py, Table-1 frequencies, 5% of labels flipped), in a fresh process
whose peak RSS is printed; cleanlab's `get_label_quality_scores` + `find_label_issues` on a
subsample in another fresh process (its full run needs about 10 GB).

    python -m benchmarks.noise_bench --quality            # 8 cross-fits the first time (~25 min on 2 busy cores), then seconds
    python -m benchmarks.noise_bench --quality --tune     # also the grid the constants were chosen on
    python -m benchmarks.noise_bench --quality --cnn-check  # also myntra/uniform under the small CNN (a tuning case)
    python -m benchmarks.noise_bench --speed --rows 1000000 --cleanlab-rows 100000

Needs the bench extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from ifa.curation.ingest import importing
from ifa.curation.noise import defaults, ranking as noise
from ifa.curation.noise.model import crossfit
from ifa.curation.noise.model.config import TrainConfig
from ifa.curation.noise.model.probs import read_probs, write_probs
from ifa.curation.workspace import Workspace
from ifa.progress import SILENT
from ifa.taxonomy import Taxonomy

from . import noise_data, synthetic

OUT = Path(__file__).resolve().parent / "out"
VALIDATION = 500
RATE = 0.08
# Constants are chosen on these noise models and reported on the others; the tuning set needs
# uniform swaps, whose wrong labels land in classes the model cannot separate (the gate's work).
TUNING = ("uniform", "missing")
HELD_OUT = ("frequency", "confusion")


# ---- cached out-of-sample probabilities -----------------------------------------------------------
@dataclass(frozen=True)
class FitSettings:
    """How the out-of-sample probabilities are made. source "features": a head (`head`) on
    noise_data.fixed_features through flag-noise's --features path (seconds per cross-fit);
    "cnn": the small CNN on pixels at `size` px (minutes per cross-fit on 2 busy cores)."""

    source: str = "features"
    head: str = "mlp"
    size: int = 32
    epochs: int = 10
    folds: int = 4
    seed: int = 0
    lr: float = 2e-3

    @property
    def tag(self) -> str:
        model = f"{self.head}" if self.source == "features" else f"cnn{self.size}px"
        return f"{model}-{self.epochs}ep-{self.folds}f-s{self.seed}"

    def config(self, features: Path | None) -> TrainConfig:
        if self.source == "features":
            return TrainConfig(backbone=self.head, features=str(features), epochs=self.epochs, lr=self.lr,
                               seed=self.seed, batch_size=64)
        return TrainConfig(epochs=self.epochs, image_size=self.size, batch_size=64, lr=self.lr, seed=self.seed)


def features_file(ds: noise_data.Dataset) -> Path:
    """benchmarks/out/<dataset>-features.parquet (noise_data.fixed_features), made once."""
    path = OUT / f"{ds.name}-features.parquet"
    if not path.exists():
        feats = noise_data.fixed_features(ds.paths)
        OUT.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(feats, columns=[f"f{i}" for i in range(feats.shape[1])])
        frame.insert(0, "image_id", ds.image_ids)
        frame.to_parquet(path.with_suffix(".tmp"), index=False)
        path.with_suffix(".tmp").replace(path)
    return path


@dataclass
class Case:
    """One dataset under one noise model, with the out-of-sample probabilities of a model
    cross-fitted on its noisy labels; rows follow `image_ids`."""

    dataset: str
    noise_model: str
    image_ids: np.ndarray
    truth: np.ndarray  # bool (n, K)
    noisy: np.ndarray  # bool (n, K): what the workspace (and the model) got
    probs: np.ndarray  # float32 (n, K)
    kinds: dict
    cross_fit: dict

    @property
    def errors(self) -> np.ndarray:
        return self.truth != self.noisy

    @property
    def used(self) -> np.ndarray:
        """bool (K,): the label columns the dataset uses (clean or noisy)."""
        return self.truth.any(axis=0) | self.noisy.any(axis=0)


def _split(ds: noise_data.Dataset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(len(ds))
    return perm[:VALIDATION], perm[VALIDATION:]


def _cross_fit(root: Path, ds: noise_data.Dataset, train: np.ndarray, val: np.ndarray | None, train_labels: np.ndarray,
               tax: Taxonomy, fit: FitSettings, pixels_from: Path | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Import (once) and cross-fit a workspace at `root`; (image ids, probs, cross-fit facts).
    Without `val` there is no validation split, so no per-epoch validation F1 (on 2 busy
    cores it took most of a feature head's time)."""
    if not (root / "ws" / "ifa.db").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        ws = Workspace.init(root / "ws")
        noise_data.write_json(root / "train.json", ds.image_ids[train], train_labels, tax)
        images = Path(ds.paths[0]).parent
        importing.import_imat(ws, root / "train.json", "train", images_dir=images)
        if val is not None:
            noise_data.write_json(root / "validation.json", ds.image_ids[val], ds.labels[val], tax)
            importing.import_imat(ws, root / "validation.json", "validation", images_dir=images)
        if pixels_from is not None and pixels_from.exists():  # same files: skip decoding them again
            shutil.copytree(pixels_from, root / "ws" / "cache", dirs_exist_ok=True)
    else:  # a rerun resumes the fold checkpoints
        ws = Workspace.open(root / "ws")
    with ws:
        config = fit.config(features_file(ds) if fit.source == "features" else None)
        cf = crossfit.out_of_sample(ws, config, fit.folds, "bench", progress=SILENT)
    f1 = [h[-1]["val_f1"] for h in cf.histories if h and h[-1]["val_f1"] is not None]
    epoch_s = [e["seconds"] for h in cf.histories for e in h]
    facts = {"seconds": cf.seconds, "val_f1": round(float(np.mean(f1)), 4) if f1 else None,
             "median_epoch_seconds": float(np.median(epoch_s)) if epoch_s else None}
    return cf.image_ids, cf.probs, facts


def load_case(dataset: str, noise_model: str, fit: FitSettings = FitSettings(), seed: int = 0) -> Case:
    """The case (dataset, noise model), cross-fitting and caching its probabilities the first
    time (benchmarks/out/<dataset>-<noise model>-<settings>.parquet + .json)."""
    tax = Taxonomy.default()
    ds = noise_data.load(dataset, tax)
    val, train = _split(ds, seed)
    truth = ds.labels[train]
    clean_parquet = OUT / f"{dataset}-clean-{fit.tag}.parquet"
    clean_root = OUT / f"ws-{dataset}-clean-{fit.tag}"
    if not clean_parquet.exists():
        ids, probs, facts = _cross_fit(clean_root, ds, train, val, truth, tax, fit, None)
        write_probs(clean_parquet, ids, tax.label_ids, probs)
        clean_parquet.with_suffix(".json").write_text(json.dumps(facts))
    ids, clean = read_probs(clean_parquet, tax.label_ids)
    row = pd.Index(ids).get_indexer(ds.image_ids[train])
    if noise_model == "clean":
        noisy, kinds = truth.copy(), {}
    else:
        planted = noise_data.plant(truth, tax, noise_model, RATE, seed + 1, probs=clean[row])
        noisy, kinds = planted.noisy, planted.kinds
    parquet = clean_parquet if noise_model == "clean" else OUT / f"{dataset}-{noise_model}-{fit.tag}.parquet"
    if not parquet.exists():
        ids, probs, facts = _cross_fit(OUT / f"ws-{dataset}-{noise_model}-{fit.tag}", ds, train, None, noisy, tax, fit,
                                       clean_root / "ws" / "cache")
        write_probs(parquet, ids, tax.label_ids, probs)
        parquet.with_suffix(".json").write_text(json.dumps(facts))
    ids, probs = read_probs(parquet, tax.label_ids)
    row = pd.Index(ids).get_indexer(ds.image_ids[train])
    if (row < 0).any():
        raise RuntimeError(f"{parquet} lacks {int((row < 0).sum())} train images: delete it to cross-fit again")
    facts = json.loads(parquet.with_suffix(".json").read_text())
    return Case(dataset, noise_model, ds.image_ids[train], truth, noisy, probs[row], kinds, facts)


# ---- scoring ----------------------------------------------------------------------------------------
def precision_at_t(errors: np.ndarray, score: np.ndarray) -> float:
    t = int(errors.sum())
    top = np.argsort(-score, kind="stable")[:t]
    return float(errors[top].mean()) if t else 0.0


def cleanlab_pair_scores(case: Case) -> np.ndarray:
    """1 - cleanlab's per-class label quality (self-confidence) over the used columns."""
    from cleanlab.multilabel_classification.rank import get_label_quality_scores_per_class
    used = case.used
    lab = [list(np.flatnonzero(r)) for r in case.noisy[:, used]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return 1 - get_label_quality_scores_per_class(lab, case.probs[:, used].astype(np.float64))


def ifa_pair_scores(case: Case, **constants) -> np.ndarray:
    tax = Taxonomy.default()
    single = np.array([g.single for g in tax.groups])
    return noise.scores(case.noisy, case.probs, tax.group_index, single, **constants)[:, case.used]


def pair_metrics(case: Case, score: np.ndarray) -> dict:
    errors = case.errors[:, case.used].ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    return {"AP": float(average_precision_score(errors, score)), "P@T": precision_at_t(errors, score), "T": int(errors.sum())}


def flag_sets(case: Case, min_score: float = defaults.DEFAULT_MIN_SCORE, **constants) -> dict:
    """ifa's default flag set (pairs, with their images) beside cleanlab's find_label_issues (images)."""
    from cleanlab.multilabel_classification.filter import find_label_issues
    tax = Taxonomy.default()
    single = np.array([g.single for g in tax.groups])
    ranked = noise.rank_label_issues(case.noisy, case.probs, tax.group_index, single, min_score=min_score, **constants)
    errors = case.errors
    hit = errors[ranked["row"], ranked["column"]]
    image_errors = errors.any(axis=1)
    mine = np.zeros(len(errors), dtype=bool)
    mine[ranked["row"].to_numpy()] = True
    used = case.used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = find_label_issues([list(np.flatnonzero(r)) for r in case.noisy[:, used]],
                                   case.probs[:, used].astype(np.float64))
    return {
        "ifa": {"pairs": len(ranked), "precision": float(hit.mean()) if len(hit) else 0.0,
                "recall": float(hit.sum() / errors.sum()), "images": int(mine.sum()),
                "image_precision": float(image_errors[mine].mean()) if mine.any() else 0.0,
                "image_recall": float(image_errors[mine].sum() / image_errors.sum())},
        "cleanlab": {"images": int(theirs.sum()), "image_precision": float(image_errors[theirs].mean()) if theirs.any() else 0.0,
                     "image_recall": float(image_errors[theirs].sum() / image_errors.sum())},
    }


def evaluate(cases: list[Case], **constants) -> pd.DataFrame:
    """One row per case: ifa's and cleanlab's pair AP and P@T, and the two flag sets."""
    rows = []
    for case in cases:
        ours, theirs = pair_metrics(case, ifa_pair_scores(case, **constants)), pair_metrics(case, cleanlab_pair_scores(case))
        flags = flag_sets(case, **constants)
        rows.append({"dataset": case.dataset, "noise": case.noise_model,
                     "split": "tuning" if case.noise_model in TUNING else "held out", "T": ours["T"],
                     "val_f1": case.cross_fit.get("val_f1"),
                     "ifa_AP": ours["AP"], "cl_AP": theirs["AP"], "AP_ratio": ours["AP"] / max(theirs["AP"], 1e-9),
                     "ifa_P@T": ours["P@T"], "cl_P@T": theirs["P@T"],
                     "ifa_flags": flags["ifa"]["pairs"], "ifa_flag_prec": flags["ifa"]["precision"],
                     "ifa_flag_recall": flags["ifa"]["recall"], "ifa_img_prec": flags["ifa"]["image_precision"],
                     "cl_images": flags["cleanlab"]["images"], "cl_img_prec": flags["cleanlab"]["image_precision"],
                     "cl_img_recall": flags["cleanlab"]["image_recall"]})
    return pd.DataFrame(rows)


def print_table(table: pd.DataFrame) -> None:
    cols = ["dataset", "noise", "split", "T", "val_f1", "ifa_AP", "cl_AP", "AP_ratio", "ifa_P@T", "cl_P@T",
            "ifa_flags", "ifa_flag_prec", "ifa_flag_recall", "ifa_img_prec", "cl_images", "cl_img_prec", "cl_img_recall"]
    print(table[cols].round(3).to_string(index=False))
    for split in ("tuning", "held out"):
        part = table[table["split"] == split]
        if len(part):
            print(f"{split}: mean AP ratio {part['AP_ratio'].mean():.3f}, worst {part['AP_ratio'].min():.3f}; "
                  f"ifa default flag precision min {part['ifa_flag_prec'].min():.3f}; "
                  f"cleanlab find_label_issues image precision max {part['cl_img_prec'].max():.3f}")
    print(f"all: mean AP ratio {table['AP_ratio'].mean():.3f}, worst {table['AP_ratio'].min():.3f}")


# The grid the constants were chosen on (tuning noise models only): the separability gate
# MIN_LIFT, the rate shrinkage SHRINK, the shift of missing-label log-odds MISSING_SHIFT; then
# the default threshold.
GRID = {"min_lift": [0.0, 1.0, 1.5], "shrink": [100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0, 1e9], "missing_shift": [-1.0, 0.0, 1.0],
        "calibrate": [False, True]}
MIN_SCORES = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]


def tune(cases: list[Case]) -> pd.DataFrame:
    """AP ratio (ifa / cleanlab) on the tuning cases for each grid point, and the flag-set
    precision of each candidate default threshold at the chosen constants."""
    tuning = [c for c in cases if c.noise_model in TUNING]
    base = {id(c): pair_metrics(c, cleanlab_pair_scores(c))["AP"] for c in tuning}
    rows = []
    for values in itertools.product(*GRID.values()):
        constants = dict(zip(GRID, values))
        ratios = [pair_metrics(c, ifa_pair_scores(c, **constants))["AP"] / base[id(c)] for c in tuning]
        rows.append(constants | {"mean_ratio": float(np.mean(ratios)), "worst_ratio": float(np.min(ratios))})
    grid = pd.DataFrame(rows).sort_values("mean_ratio", ascending=False)
    print("\nTuning grid (tuning noise models only; AP of ifa / AP of cleanlab):")
    print(grid.round(3).to_string(index=False))
    print("\nDefault --min-score candidates at the shipped constants (tuning noise models only): flag precision "
          "(recall) per case, and cleanlab find_label_issues' image precision")
    for m in MIN_SCORES:
        sets = [flag_sets(c, min_score=m) for c in tuning]
        print(f"  min-score {m:.2f}: " + "; ".join(
            f"{c.dataset}/{c.noise_model} {f['ifa']['precision']:.2f} ({f['ifa']['recall']:.2f}) vs {f['cleanlab']['image_precision']:.2f}"
            for c, f in zip(tuning, sets)))
    return grid


# ---- speed --------------------------------------------------------------------------------------
def synthetic_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """bool labels (n, 228) with 5% of labels flipped, and float32 probabilities of a
    decent model of the clean labels; built in chunks so memory stays at the two arrays."""
    tax = Taxonomy.default()
    img, lab = synthetic.label_pairs(n, seed, tax)
    labels = np.zeros((n, len(tax.label_ids)), dtype=bool)
    labels[img, tax.column_of(lab)] = True
    del img, lab
    probs = np.empty(labels.shape, dtype=np.float32)
    rng = np.random.default_rng(seed + 1)
    for first in range(0, n, 100_000):
        y = labels[first:first + 100_000]
        logit = np.where(y, 1.5, -4.0).astype(np.float32) + rng.normal(0, 1.5, y.shape).astype(np.float32)
        probs[first:first + 100_000] = 1 / (1 + np.exp(-logit))
        flip = rng.random(y.shape, dtype=np.float32) < np.where(y, 0.05, 0.05 * y.mean() / (1 - y.mean()))
        y ^= flip
    return labels, probs


def _status_gib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak() -> None:
    """Start the peak-RSS count afresh (Linux: writing 5 to clear_refs resets VmHWM), so the
    peak printed is the flagging's, not the synthetic data generator's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def speed_child(engine: str, rows: int) -> dict:
    labels, probs = synthetic_arrays(rows)
    reset_peak()
    before = _status_gib("VmRSS")
    tax = Taxonomy.default()
    start = time.perf_counter()
    if engine == "ifa":
        single = np.array([g.single for g in tax.groups])
        ranked = noise.rank_label_issues(labels, probs, tax.group_index, single, min_score=defaults.DEFAULT_MIN_SCORE)
        out = {"flags": len(ranked), "images": int(ranked["row"].nunique())}
    else:
        from cleanlab.multilabel_classification.filter import find_label_issues
        from cleanlab.multilabel_classification.rank import get_label_quality_scores
        lab = [list(np.flatnonzero(r)) for r in labels]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            get_label_quality_scores(lab, probs)
            issues = find_label_issues(lab, probs)
        out = {"images": int(issues.sum())}
    return out | {"engine": engine, "rows": rows, "seconds": round(time.perf_counter() - start, 2),
                  "peak_rss_gib": round(_status_gib("VmHWM"), 2), "rss_before_gib": round(before, 2)}


def speed(rows: int, cleanlab_rows: int) -> list[dict]:
    results = []
    for engine, n in (("ifa", rows), ("cleanlab", cleanlab_rows)):
        if n <= 0:
            continue
        proc = subprocess.run([sys.executable, "-m", "benchmarks.noise_bench", "--speed-child", engine, "--rows", str(n)],
                              capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\n{'engine':<10}{'rows':>10}{'seconds':>10}{'s per 1M':>10}{'peak RSS GiB':>14}{'RSS before GiB':>16}  flagged")
    for r in results:
        per_m = r["seconds"] * 1_000_000 / r["rows"]
        print(f"{r['engine']:<10}{r['rows']:>10,}{r['seconds']:>10.1f}{per_m:>10.1f}{r['peak_rss_gib']:>14.2f}"
              f"{r['rss_before_gib']:>16.2f}  " + (f"{r['flags']:,} pairs on " if "flags" in r else "") + f"{r['images']:,} images")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", action="store_true", help="only the quality benchmark")
    ap.add_argument("--speed", action="store_true", help="only the speed benchmark")
    ap.add_argument("--tune", action="store_true", help="also print the grid the constants were chosen on")
    ap.add_argument("--cnn-check", action="store_true",
                    help="also the tuning case myntra/uniform with the 32 px CNN's probabilities (~8 min the first time)")
    ap.add_argument("--dataset", nargs="+", default=["myntra", "clothing"], choices=list(noise_data.DATASETS))
    ap.add_argument("--noise", nargs="+", default=list(noise_data.NOISE_MODELS), choices=list(noise_data.NOISE_MODELS))
    ap.add_argument("--source", choices=["features", "cnn"], default="features",
                    help="what makes the probabilities: a head on fixed features (default) or the small CNN")
    ap.add_argument("--head", choices=["mlp", "linear"], default="mlp", help="the head for --source features")
    ap.add_argument("--size", type=int, default=32, help="image size N for the CNN")
    ap.add_argument("--epochs", type=int, help="default 10 for a feature head, 6 for the CNN")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cleanlab-rows", type=int, default=100_000)
    ap.add_argument("--speed-child", choices=["ifa", "cleanlab"], help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.speed_child:
        print(json.dumps(speed_child(args.speed_child, args.rows)))
        return
    both = not args.quality and not args.speed
    out: dict = {}
    if args.quality or both:
        epochs = args.epochs or (10 if args.source == "features" else 6)
        fit = FitSettings(source=args.source, head=args.head, size=args.size, epochs=epochs, folds=args.folds,
                          seed=args.seed)
        cases = [load_case(d, m, fit, args.seed) for d in args.dataset for m in args.noise]
        model = (f"{fit.head} head on noise_data.fixed_features" if fit.source == "features" else f"small CNN at {fit.size} px")
        print(f"\nPlanted noise ({RATE:.0%} of labels) on {', '.join(args.dataset)}; probabilities: {model}, "
              f"{fit.epochs} epochs, {fit.folds} folds, cross-fitted on each case's noisy labels. "
              f"Tuning noise models: {', '.join(TUNING)}; held out: {', '.join(HELD_OUT)}.")
        for c in cases:
            print(f"  {c.dataset}/{c.noise_model}: planted {c.kinds}; cross-fit {c.cross_fit}")
        if args.tune:
            tune(cases)
        table = evaluate(cases)
        print()
        print_table(table)
        if args.cnn_check:
            cnn = load_case("myntra", "uniform", FitSettings(source="cnn", epochs=6), args.seed)
            ours, theirs = pair_metrics(cnn, ifa_pair_scores(cnn)), pair_metrics(cnn, cleanlab_pair_scores(cnn))
            print(f"\nmyntra/uniform (tuning), 32 px CNN x 6 epochs x 4 folds on the noisy labels: pair AP ifa "
                  f"{ours['AP']:.3f}, cleanlab {theirs['AP']:.3f} (ratio {ours['AP'] / theirs['AP']:.3f}); "
                  f"P@T {ours['P@T']:.3f} vs {theirs['P@T']:.3f}")
        out["quality"] = table.to_dict(orient="records")
    if args.speed or both:
        out["speed"] = speed(args.rows, args.cleanlab_rows)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
