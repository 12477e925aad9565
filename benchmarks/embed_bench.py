"""Embeddings and heads on them: ONNX Runtime against torch eager, and cross-fitting linear
heads at a million images.

Throughput: a ResNet-18 (the torchvision architecture, written out here because torchvision
cannot be installed beside the CPU torch; random weights, speed does not depend on them)
embeds the same real photos (../shared/data/myntra-products, else the bundled sample) at
224 px, decode included, through the same pipeline (`embed.decode_batch` over
`curation.executors`, `embed.preprocess`): once with the model exported to ONNX and run by
ONNX Runtime (what `ifa model embed` runs), once in torch eager (`torch.inference_mode`,
all CPU threads). Images per second, best of the repeats; the end-to-end `ifa model embed`
on a workspace of the same photos is timed too.

Cross-fit: synthetic embeddings with a planted signal, n x 512 (each label a random
direction; an image the sum of its true labels' directions plus noise), 228 labels with
Table-1 frequencies (benchmarks/synthetic.py); then noise is planted (3% of the single-label
group labels swapped within their group, 3% of the multi-label ones dropped). 5-fold
cross-fit of linear heads (crossfit.fit_folds, the code `flag-noise --features` runs), then
the ranking; in a fresh process whose peak RSS is printed. Quality: average precision of
the flagged pairs against the planted noise (unflagged planted pairs count as missed), and
on a 100k-row subsample the pair-level AP of ifa's scores and of cleanlab's
`get_label_quality_scores_per_class` on the same out-of-sample probabilities.

Demo: the demo's flag-noise step (planted sample, its small CNN) with the rule filter and,
on the same probabilities, without it; the real check-attributes counts the suggestions
that break a rule once added.

    python -m benchmarks.embed_bench                          # both (2 CPU cores: ~15 min)
    python -m benchmarks.embed_bench --throughput --images 256
    python -m benchmarks.embed_bench --crossfit --rows 1000000
    python -m benchmarks.embed_bench --demo                   # suggestions breaking a rule on the demo

Needs the test extra (onnx, onnxscript: the export) and, for the cleanlab column, the bench extra.

Measured (2 cores shared with other jobs, load average ~12): ONNX Runtime 7.0 vs torch eager
4.4 images/s (1.59x); 1M cross-fit 693 s wall but 231 CPU s (the process had a third of a
core), peak 3.27 GiB, AP of the flagged pairs 0.642, pair AP 0.955 vs cleanlab 0.949; the demo:
0 suggestions breaking a rule (1 without the filter).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ifa.curation import executors
from ifa.curation.noise import embed
from ifa.taxonomy import Taxonomy

from . import synthetic
from .noise_bench import _status_gib, reset_peak
from .noise_data import SHARED_DATA

DIM = 512


# ---- throughput -----------------------------------------------------------------------------------
def resnet18():
    """torchvision's ResNet-18 without its classifier: (batch, 3, 224, 224) -> (batch, 512)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.down(x))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    torch.manual_seed(0)
    return nn.Sequential(*layers).eval()


def photos(n: int) -> list[str]:
    folder = SHARED_DATA / "myntra-products" / "images"
    if not folder.exists():
        from ifa.sample import IMAGES_DIR
        folder = IMAGES_DIR
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    return [str(p) for p in files]


def pipeline(paths: list[str], infer, size: int, batch: int, workers: int) -> float:
    """Images per second through decode (executors) -> preprocess -> infer, all images."""
    jobs = [(str(i), p, None) for i, p in enumerate(paths)]
    start = time.perf_counter()
    done = 0
    chunk = executors.batch_size(len(jobs), workers, largest=embed.DECODE_BATCH)
    for _jobs, (_ids, _shas, _status, pixels) in executors.run_batches(embed.decode_batch, executors.chunks(jobs, chunk),
                                                                      (size,), workers=workers):
        for lo in range(0, len(pixels), batch):
            infer(embed.preprocess(pixels[lo:lo + batch], embed.IMAGENET_MEAN, embed.IMAGENET_STD))
        done += len(pixels)
    return done / (time.perf_counter() - start)


def throughput(n_images: int, repeats: int, batch: int) -> dict:
    import torch

    size = 224
    paths = photos(n_images)
    workers = executors.default_workers()
    work = Path(tempfile.mkdtemp(prefix="embed-bench-"))
    try:
        model = resnet18()
        onnx = work / "resnet18.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(2, 3, size, size),), str(onnx), input_names=["pixels"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False)
        session = embed.open_model(onnx, size)
        torch.set_num_threads(workers)

        def ort_infer(x):
            return embed.run_model(session, x)

        def torch_infer(x):
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()

        probe = embed.preprocess(np.zeros((4, size, size, 3), np.uint8), embed.IMAGENET_MEAN, embed.IMAGENET_STD)
        np.testing.assert_allclose(ort_infer(probe), torch_infer(probe), rtol=1e-3, atol=1e-3)  # the same model
        rates = {"onnxruntime": [], "torch eager": [], "decode only": []}
        for _ in range(repeats):  # interleaved: a shared machine's load hits both alike
            rates["onnxruntime"].append(pipeline(paths, ort_infer, size, batch, workers))
            rates["torch eager"].append(pipeline(paths, torch_infer, size, batch, workers))
            rates["decode only"].append(pipeline(paths, lambda x: None, size, batch, workers))
        # the command end to end: a workspace of the same photos
        from ifa.curation.ingest import importing
        from ifa.curation.workspace import Workspace
        stems = [Path(p).stem for p in paths]  # import maps ids to <images_dir>/<id>.<ext>
        doc = {"images": [{"imageId": s, "url": f"https://example.invalid/{s}.jpg"} for s in stems],
               "annotations": [{"imageId": s, "labelId": ["1"]} for s in stems]}
        (work / "train.json").write_text(json.dumps(doc))
        with Workspace.init(work / "ws", command="bench") as ws:
            importing.import_imat(ws, work / "train.json", "train", images_dir=Path(paths[0]).parent)
            start = time.perf_counter()
            result = embed.embed(ws, onnx, input_size=size, batch=batch)
            command = result.images_embedded / (time.perf_counter() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {k: max(v) for k, v in rates.items()}
    return {"images": len(paths), "workers": workers, "batch": batch, "best": best, "all": rates,
            "ifa model embed": command, "speedup": best["onnxruntime"] / best["torch eager"]}


def print_throughput(r: dict) -> None:
    print(f"\nResNet-18 embeddings at 224 px, {r['images']} real photos, decode included, {r['workers']} CPUs "
          f"(batch {r['batch']}; best of {len(r['all']['onnxruntime'])}):")
    print(f"{'engine':<28}{'images/s':>10}")
    for k in ("onnxruntime", "torch eager", "decode only"):
        print(f"{k:<28}{r['best'][k]:>10.1f}")
    print(f"{'ifa model embed (command)':<28}{r['ifa model embed']:>10.1f}")
    print(f"onnxruntime / torch eager: {r['speedup']:.2f}x (target >= 1.3x)")


# ---- cross-fit at scale -------------------------------------------------------------------------------
def planted(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float16 (n, 512) embeddings of the clean labels, bool (n, 228) noisy labels, bool
    (n, 228) planted errors). Built in chunks: memory is the three arrays."""
    tax = Taxonomy.default()
    k = len(tax.label_ids)
    img, lab = synthetic.label_pairs(n, seed, tax)
    clean = np.zeros((n, k), dtype=bool)
    clean[img, tax.column_of(lab)] = True
    del img, lab
    rng = np.random.default_rng(seed + 1)
    directions = rng.normal(0, 1, (k, DIM)).astype(np.float32) / np.sqrt(6)
    x = np.empty((n, DIM), dtype=np.float16)
    for lo in range(0, n, 100_000):
        block = clean[lo:lo + 100_000].astype(np.float32) @ directions
        x[lo:lo + 100_000] = block + rng.normal(0, 1.0, block.shape).astype(np.float32)
    noisy = clean.copy()
    groups = tax.group_index
    single = np.array([g.single for g in tax.groups])
    for g in np.flatnonzero(single):  # swaps within single-label groups
        cols = np.flatnonzero(groups == g)
        r, c = np.nonzero(clean[:, cols])
        pick = rng.random(len(r)) < 0.03
        r, c = r[pick], c[pick]
        new = (c + rng.integers(1, len(cols), len(c))) % len(cols)
        noisy[r, cols[c]], noisy[r, cols[new]] = False, True
    multi = ~single[groups]
    r, c = np.nonzero(clean[:, multi])
    pick = rng.random(len(r)) < 0.03
    noisy[r[pick], np.flatnonzero(multi)[c[pick]]] = False
    return x, noisy, noisy != clean


def crossfit_child(rows: int, folds: int, epochs: int, batch: int, cleanlab_rows: int, lr: float, threads: int) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)

    from ifa.curation.noise import ranking
    from ifa.curation.noise.defaults import DEFAULT_MIN_SCORE
    from ifa.curation.noise.model import crossfit
    from ifa.curation.noise.model.config import TrainConfig
    from ifa.curation.noise.model.data import FeatureInputs

    import resource

    x, labels, errors = planted(rows)
    reset_peak()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    tax = Taxonomy.default()
    work = Path(tempfile.mkdtemp(prefix="crossfit-bench-"))
    config = TrainConfig(backbone="linear", features="bench", loss="bce", epochs=epochs, batch_size=batch, lr=lr)
    start = time.perf_counter()
    try:
        fold_of = crossfit.assign_folds(labels, folds, 0)
        ids = np.char.add("i", np.arange(rows).astype(str))
        probs, _ = crossfit.fit_folds(work, config, FeatureInputs(x), ids, labels, tax.label_ids, fold_of,
                                      torch.device("cpu"))
        fit_s = time.perf_counter() - start
        single = np.array([g.single for g in tax.groups])
        rates = ranking.estimate_rates(labels, probs, tax.group_index, single)
        ranked = ranking.rank_label_issues(labels, probs, tax.group_index, single, min_score=DEFAULT_MIN_SCORE, rates=rates)
        seconds = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        peak_crossfit = _status_gib("VmHWM")  # before the quality measures below allocate their own
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak = _status_gib("VmHWM")
    hit = errors[ranked["row"].to_numpy(), ranked["column"].to_numpy()]
    ap_flagged = float((np.cumsum(hit) / np.arange(1, len(hit) + 1))[hit].sum() / max(errors.sum(), 1))
    out = {"rows": rows, "folds": folds, "epochs": epochs, "lr": lr, "threads": torch.get_num_threads(), "fit_seconds": round(fit_s, 1), "seconds": round(seconds, 1),
           "cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
           "batch": batch, "peak_rss_gib": round(peak_crossfit, 2), "peak_rss_with_quality_gib": round(peak, 2), "planted": int(errors.sum()), "flagged": len(ranked),
           "flagged_precision": round(float(hit.mean()) if len(hit) else 0.0, 3),
           "flagged_recall": round(float(hit.sum() / max(errors.sum(), 1)), 3), "ap_flagged": round(ap_flagged, 3)}
    out.update(_pair_ap(labels, probs, errors, rates, cleanlab_rows))
    return out


def _pair_ap(labels: np.ndarray, probs: np.ndarray, errors: np.ndarray, rates, cleanlab_rows: int) -> dict:
    """Pair-level AP on a subsample: ifa's scores vs cleanlab's, the same probabilities."""
    from ifa.curation.noise import ranking
    from sklearn.metrics import average_precision_score
    tax = Taxonomy.default()
    single = np.array([g.single for g in tax.groups])
    rows = len(labels)
    sub = np.random.default_rng(5).choice(rows, min(cleanlab_rows, rows), replace=False)
    sub.sort()
    ifa_scores = ranking.scores(labels[sub], probs[sub], tax.group_index, single, rates=rates)
    out = {"sub_rows": len(sub),
           "ap_pairs_ifa": round(float(average_precision_score(errors[sub].ravel(), ifa_scores.ravel())), 3)}
    try:
        from cleanlab.multilabel_classification.rank import get_label_quality_scores_per_class
    except ImportError:
        out["ap_pairs_cleanlab"] = None
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quality = np.asarray(get_label_quality_scores_per_class([list(np.flatnonzero(r)) for r in labels[sub]],
                                                                    probs[sub]))
        out["ap_pairs_cleanlab"] = round(float(average_precision_score(errors[sub].ravel(), -quality.ravel())), 3)
    return out


def crossfit_run(rows: int, folds: int, epochs: int, batch: int, cleanlab_rows: int, lr: float,
                 threads: int) -> dict | None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.embed_bench", "--crossfit-child", "--rows", str(rows),
                           "--folds", str(folds), "--epochs", str(epochs), "--batch", str(batch),
                           "--cleanlab-rows", str(cleanlab_rows), "--lr", str(lr), "--threads", str(threads)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode:
        print(proc.stderr, file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_crossfit(r: dict) -> None:
    per_m = r["seconds"] * 1_000_000 / r["rows"]
    print(f"\nCross-fit of linear heads: {r['rows']:,} x {DIM} synthetic embeddings, 228 labels, {r['folds']} folds x "
          f"{r['epochs']} epochs, batch {r.get('batch', '')} lr {r['lr']}, {r['threads']} torch threads (fresh process)")
    print(f"{'rows':>10}{'fit s':>8}{'total s':>9}{'CPU s':>8}{'s per 1M':>10}{'peak RSS GiB':>14}{'planted':>9}{'flagged':>9}"
          f"{'precision':>10}{'recall':>8}{'AP flagged':>11}")
    print(f"{r['rows']:>10,}{r['fit_seconds']:>8.0f}{r['seconds']:>9.0f}{r['cpu_seconds']:>8.0f}{per_m:>10.0f}{r['peak_rss_gib']:>14.2f}"
          f"{r['planted']:>9,}{r['flagged']:>9,}{r['flagged_precision']:>10.3f}{r['flagged_recall']:>8.3f}"
          f"{r['ap_flagged']:>11.3f}")
    cl = "not installed" if r["ap_pairs_cleanlab"] is None else f"{r['ap_pairs_cleanlab']:.3f}"
    print(f"pair-level AP on {r['sub_rows']:,} rows, same out-of-sample probabilities: ifa {r['ap_pairs_ifa']:.3f}, "
          f"cleanlab per-class label quality {cl} (peak RSS with these measures: {r['peak_rss_with_quality_gib']:.2f} GiB)")


# ---- the demo: suggestions against the rules -----------------------------------------------------
def demo_rules() -> dict:
    """The demo's steps up to flag-noise (planted sample, check-attributes and dedup applied,
    the demo's 3-fold small CNN), then its flags with the rule filter and, on the same
    out-of-sample probabilities, without it. Each list is applied to a copy of the workspace
    (wrong labels dropped, suggestions added) and the real check-attributes counts the hits
    involving an added label."""
    from ifa import demo
    from ifa.curation.attributes import check as attributes
    from ifa.curation.attributes.rules import RuleSet
    from ifa.curation.ledger import Change
    from ifa.curation.noise import flag
    from ifa.curation.workspace import Workspace

    work = Path(tempfile.mkdtemp(prefix="demo-rules-"))
    out = {}
    try:
        with Workspace.init(work / "ws", command="bench") as ws:
            ctx = demo._Context(progress=demo.SILENT, keep_server=False)
            for step in (demo._import, demo._check_attributes, demo._dedup):
                step(ws, ctx)
            start = time.perf_counter()
            strict = flag.flag_noise(ws, config=flag.DEMO_CONFIG, folds=flag.DEMO_FOLDS, top=flag.DEMO_TOP)
            out["cross_fit_seconds"] = round(time.perf_counter() - start, 1)
            loose = flag.flag_noise(ws, probs=Path(strict.probs), top=flag.DEMO_TOP, rules=RuleSet([]))
            out["unjudged_classes"] = len(strict.unjudged)
            out["suggestions_dropped"] = strict.suggestions_dropped
        for name, result in (("with rules", strict), ("without", loose)):
            copy = work / f"ws-{name.replace(' ', '-')}"
            shutil.copytree(work / "ws", copy)
            with Workspace.open(copy, command="bench") as ws:
                f = result.flags
                missing = f[f["kind"] == "missing"]
                wrong = f[f["kind"] == "wrong"]
                ws.ledger.apply_changes([Change("drop_label", i, int(l), rule="bench")
                                         for i, l in zip(wrong["image_id"], wrong["label_id"])]
                                        + [Change("add_label", i, int(l), rule="bench", source="bench")
                                           for i, l in zip(missing["image_id"], missing["label_id"])])
                hits = attributes.check(ws.ledger, ws.taxonomy, splits=["train"]).hits
                added = set(zip(missing["image_id"], missing["label_id"].astype(int)))
                bad = {(i, int(l)) for i, ids in zip(hits["image_id"], hits["label_ids"]) for l in str(ids).split()
                       if (i, int(l)) in added}
                out[name] = {"flags": len(f), "suggestions": len(missing), "breaking_a_rule": len(bad),
                             "examples": sorted(f"{ws.taxonomy.names([l])[0]} on {i[:8]}" for i, l in bad)[:5]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def print_demo(r: dict) -> None:
    print(f"\nThe demo's flag-noise step (top {20}): missing-label suggestions that break an attribute rule, "
          f"counted by check-attributes on the labels with the suggestions added")
    print(f"{'':<14}{'flags':>7}{'suggestions':>13}{'breaking a rule':>17}  examples")
    for name in ("without", "with rules"):
        v = r[name]
        print(f"{name:<14}{v['flags']:>7}{v['suggestions']:>13}{v['breaking_a_rule']:>17}  {'; '.join(v['examples'])}")
    print(f"left out by the filter: {r['suggestions_dropped']}; classes the model could not judge: "
          f"{r['unjudged_classes']}; cross-fit {r['cross_fit_seconds']} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--crossfit", action="store_true")
    ap.add_argument("--crossfit-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--demo", action="store_true", help="the demo's flag-noise step: suggestions breaking a rule")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4096, help="cross-fit: rows per step; throughput uses 32")
    ap.add_argument("--cleanlab-rows", type=int, default=100_000)
    ap.add_argument("--lr", type=float, default=1e-2, help="cross-fit: AdamW learning rate of the heads")
    ap.add_argument("--threads", type=int, default=0,
                    help="cross-fit: torch threads (0: torch's default). On a machine shared with other jobs, "
                         "1 avoids 2-thread spin contention (measured: BCE step 27 ms at 1 thread, 265 ms at 2)")
    args = ap.parse_args()
    if args.crossfit_child:
        print(json.dumps(crossfit_child(args.rows, args.folds, args.epochs, args.batch, args.cleanlab_rows, args.lr,
                                        args.threads)))
        return
    both = not (args.throughput or args.crossfit or args.demo)
    if args.throughput or both:
        print_throughput(throughput(args.images, args.repeats, 32))
    if args.crossfit or both:
        r = crossfit_run(args.rows, args.folds, args.epochs, args.batch, args.cleanlab_rows, args.lr, args.threads)
        if r:
            print_crossfit(r)
    if args.demo or both:
        print_demo(demo_rules())


if __name__ == "__main__":
    main()
