"""Noise flagging against cleanlab: quality on real photos with injected noise, and speed
on 1,000,000 x 228 synthetic probabilities.

Quality: the real photos and labels of ../shared/data (myntra-products: 8 groups mapped to
the taxonomy; clothing-cc0: category, sleeve, neckline). 500 images are held out as the
clean validation split; the rest is the train split, into which `rate` x (number of labels)
errors are injected with a fixed seed (swaps within a group, drops, wrong additions; see
noise_data.inject). Then exactly what a user runs: `flag_noise` cross-fits the small CNN
(K folds) and ranks. Its out-of-sample probabilities are given, unchanged, to cleanlab's
multilabel `get_label_quality_scores` / `get_label_quality_scores_per_class` /
`find_label_issues`, and both rankings are scored on recovering the injected errors:
average precision, precision@T (T = number of injected errors) and AUROC, per (image,
label) pair and per image. Columns are the labels the dataset uses.

Speed: flagging alone (noise.estimate_rates + rank_label_issues with the default
min-score) on synthetic probabilities for 1,000,000 images x 228 labels (labels from
benchmarks/synthetic.py, Table-1 frequencies, 5% of labels flipped), in a fresh process
whose peak RSS is printed; cleanlab's `get_label_quality_scores` + `find_label_issues` on a
subsample in another fresh process (its full run needs about 10 GB).

    python -m benchmarks.noise_bench                      # everything (about 10 min on 2 CPU cores)
    python -m benchmarks.noise_bench --quality --dataset myntra
    python -m benchmarks.noise_bench --speed --rows 1000000 --cleanlab-rows 100000

Needs the bench extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from ifa.curation.noise import flag as flag_noise, ranking as noise
from ifa.curation.ingest import importing
from ifa.curation.noise.model.probs import read_probs
from ifa.curation.noise.model.config import TrainConfig
from ifa.curation.workspace import Workspace
from ifa.progress import SILENT
from ifa.taxonomy import Taxonomy

from . import noise_data, synthetic

VALIDATION = 500


# ---- quality ----------------------------------------------------------------------------------
def ranking_metrics(errors: np.ndarray, score: np.ndarray) -> dict:
    """AP, precision@T and AUROC of `score` (higher = more likely error) for bool `errors`."""
    errors, score = errors.ravel(), score.ravel()
    t = int(errors.sum())
    top = np.argsort(-score, kind="stable")[:t]
    return {"AP": average_precision_score(errors, score), "P@T": float(errors[top].mean()),
            "AUROC": roc_auc_score(errors, score), "T": t}


def quality(name: str, workdir: Path, size: int, epochs: int, folds: int, rate: float, seed: int) -> dict:
    tax = Taxonomy.default()
    ds = noise_data.load(name, tax)
    perm = np.random.default_rng(seed).permutation(len(ds))
    val, train = perm[:VALIDATION], perm[VALIDATION:]
    injected = noise_data.inject(ds.labels[train], tax, rate, seed=seed + 1)
    root = workdir / f"{name}-{size}px-{epochs}ep-{folds}f-{rate}-{seed}"
    root.mkdir(parents=True, exist_ok=True)
    images = Path(ds.paths[0]).parent
    if not (root / "ws" / "ifa.db").exists():
        ws = Workspace.init(root / "ws")
        noise_data.write_json(root / "train.json", ds.image_ids[train], injected.noisy, tax)
        noise_data.write_json(root / "validation.json", ds.image_ids[val], ds.labels[val], tax)
        importing.import_imat(ws, root / "train.json", "train", images_dir=images)
        importing.import_imat(ws, root / "validation.json", "validation", images_dir=images)
    else:  # a rerun resumes the fold checkpoints
        ws = Workspace.open(root / "ws")
    start = time.perf_counter()
    config = TrainConfig(epochs=epochs, image_size=size, batch_size=64, lr=2e-3, seed=seed)
    result = flag_noise.flag_noise(ws, config=config, folds=folds, progress=SILENT)
    seconds = time.perf_counter() - start
    ids, probs = read_probs(Path(result.probs), tax.label_ids)
    row = pd.Index(ds.image_ids[train]).get_indexer(ids)
    truth, noisy = ds.labels[train][row], injected.noisy[row]
    used = truth.any(axis=0) | noisy.any(axis=0)
    errors = (truth != noisy)[:, used]
    single = np.array([g.single for g in tax.groups])
    ours = noise.scores(noisy, probs, tax.group_index, single)[:, used]

    from cleanlab.multilabel_classification.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores, get_label_quality_scores_per_class
    lab = [list(np.flatnonzero(r)) for r in noisy[:, used]]
    p_used = probs[:, used].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_pair = 1 - get_label_quality_scores_per_class(lab, p_used)
        theirs_image = 1 - get_label_quality_scores(lab, p_used)
        cl_flagged = find_label_issues(lab, p_used)
    image_errors = errors.any(axis=1)
    flags = result.flags
    flag_rows = pd.Index(ids).get_indexer(flags["image_id"])
    flag_cols = tax.column_of(flags["label_id"].to_numpy())
    full_errors = truth != noisy
    hit = full_errors[flag_rows, flag_cols]
    flagged_images = np.zeros(len(ids), dtype=bool)
    flagged_images[flag_rows] = True
    f1 = [v for v in result.cross_fit["val_f1"] if v is not None]
    return {
        "dataset": name, "train_images": len(ids), "labels": int(noisy.sum()), "injected": injected.kinds,
        "error_pairs": int(errors.sum()), "images_with_errors": int(image_errors.sum()),
        "cross_fit_seconds": round(seconds, 1), "val_f1": round(float(np.mean(f1)), 4) if f1 else None,
        "pair": {"ifa": ranking_metrics(errors, ours), "cleanlab": ranking_metrics(errors, theirs_pair)},
        "image": {"ifa": ranking_metrics(image_errors, ours.max(axis=1)), "cleanlab": ranking_metrics(image_errors, theirs_image)},
        "flagged": {
            "ifa": {"flags": len(flags), "precision": float(hit.mean()) if len(hit) else 0.0,
                    "recall": float(hit.sum() / full_errors.sum()), "images": int(flagged_images.sum()),
                    "image_precision": float(image_errors[flagged_images].mean()) if flagged_images.any() else 0.0},
            "cleanlab": {"images": int(cl_flagged.sum()), "image_precision": float(image_errors[cl_flagged].mean()),
                         "image_recall": float(image_errors[cl_flagged].sum() / image_errors.sum())},
        },
    }


def print_quality(r: dict) -> None:
    print(f"\n{r['dataset']}: {r['train_images']} train images, {r['labels']} labels, injected {r['injected']} "
          f"-> {r['error_pairs']} wrong pairs on {r['images_with_errors']} images; cross-fit {r['cross_fit_seconds']} s, "
          f"fold models' validation F1 {r['val_f1']}")
    print(f"{'level':<7}{'method':<10}{'AP':>8}{'P@T':>8}{'AUROC':>8}{'T':>7}")
    for level in ("pair", "image"):
        for method in ("ifa", "cleanlab"):
            m = r[level][method]
            print(f"{level:<7}{method:<10}{m['AP']:>8.3f}{m['P@T']:>8.3f}{m['AUROC']:>8.3f}{m['T']:>7}")
    f, c = r["flagged"]["ifa"], r["flagged"]["cleanlab"]
    print(f"flagged: ifa {f['flags']} pairs (precision {f['precision']:.3f}, recall {f['recall']:.3f}) on {f['images']} images "
          f"(image precision {f['image_precision']:.3f}); cleanlab find_label_issues {c['images']} images "
          f"(image precision {c['image_precision']:.3f}, recall {c['image_recall']:.3f})")


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
        ranked = noise.rank_label_issues(labels, probs, tax.group_index, single, min_score=flag_noise.DEFAULT_MIN_SCORE)
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
    ap.add_argument("--dataset", nargs="+", default=["myntra", "clothing"], choices=list(noise_data.DATASETS))
    ap.add_argument("--size", type=int, default=32, help="image size N for the CNN")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--rate", type=float, default=0.08, help="injected errors per label")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ifa-noise-bench",
                    help="workspaces live here; a rerun resumes their fold checkpoints")
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
        out["quality"] = []
        for name in args.dataset:
            r = quality(name, args.workdir, args.size, args.epochs, args.folds, args.rate, args.seed)
            print_quality(r)
            out["quality"].append(r)
    if args.speed or both:
        out["speed"] = speed(args.rows, args.cleanlab_rows)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
