"""Are flag-noise's and check-attributes' automatic judgements ones a curator can act on?

Three measurements on the real photos of ../shared/data (myntra-products, clothing-cc0) and
the bundled sample:

- gender: how often Male and Female are given together on the training split (the reason
  Male with Female is a contradiction in taxonomy/rules.toml);
- swaps: `ifa curate flag-noise --features embeddings --top 5000 --json` on the first 400
  photos, with embeddings from a small random-weight ONNX encoder this script exports
  (nothing is downloaded): suggestions that would add a second label to a single-label
  group (kind "missing" where the image has a label in that group: must be 0), swaps, and
  suggestions giving an item Male and Female;
- planted: photos of tops whose category is replaced by a footwear or trousers category
  (their sleeve and neckline labels right, as Myntra's image 10804), then
  `ifa curate check-attributes --apply`, with the workspace's cross-fitted probabilities
  and without them: right labels dropped, images sent to review, wrong categories dropped.
  With probabilities it needs a cross-fit in the workspace first (`flag-noise` without
  --probs: give --workspace of a benchmarks.flag_noise_time run, or let this script run
  flag-noise with its defaults).

    python -m benchmarks.flag_noise_judgements gender
    python -m benchmarks.flag_noise_judgements swaps --images 400
    python -m benchmarks.flag_noise_judgements planted --dataset myntra --workspace benchmarks/out/time-myntra/ws

Workspaces go to benchmarks/out/judgements-*/ (git-ignored), replaced each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace
from ifa.sample import split_file
from ifa.taxonomy import Taxonomy

from . import noise_data

OUT = Path(__file__).resolve().parent / "out"
REPO = Path(__file__).resolve().parents[1]
MALE, FEMALE = 106, 66
# The planted wrong categories: footwear (garment-part-on-non-garment) and trousers
# (garment-part-on-lower-body-garment).
PLANTED_CATEGORIES = ("Slippers", "Sneakers", "Casual Pants", "Jeans")


def _cli(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "ifa.cli.app", *args, "--json"], capture_output=True, text=True,
                          cwd=REPO, env=os.environ | {"COLUMNS": "200"})
    if proc.returncode:
        raise SystemExit(f"ifa {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def _workspace(name: str, dataset: str, images: int | None, tax: Taxonomy) -> tuple[Path, noise_data.Dataset]:
    """A fresh workspace under OUT with the first `images` photos of `dataset` as train."""
    ds = noise_data.load(dataset, tax)
    if images:
        ds = noise_data.Dataset(ds.name, ds.image_ids[:images], ds.paths[:images], ds.labels[:images])
    root = OUT / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    ws = Workspace.init(root / "ws")
    noise_data.write_json(root / "train.json", ds.image_ids, ds.labels, tax)
    with ws:
        importing.import_imat(ws, root / "train.json", "train", images_dir=Path(ds.paths[0]).parent)
    return root / "ws", ds


# ---- gender ---------------------------------------------------------------------------------------
def gender() -> list[dict]:
    tax = Taxonomy.default()
    male, female = tax.column_of([MALE, FEMALE])
    rows = []
    for name in noise_data.DATASETS:
        y = noise_data.load(name, tax).labels
        rows.append({"data": noise_data.DATASETS[name], "images": len(y), "male": int(y[:, male].sum()),
                     "female": int(y[:, female].sum()), "both": int((y[:, male] & y[:, female]).sum())})
    doc = json.loads(split_file("train").read_text())
    labels = [set(map(int, a["labelId"])) for a in doc["annotations"]]
    rows.append({"data": "bundled sample (train)", "images": len(labels), "male": sum(MALE in s for s in labels),
                 "female": sum(FEMALE in s for s in labels), "both": sum({MALE, FEMALE} <= s for s in labels)})
    print(f"{'training labels':<24}{'images':>8}{'Male':>7}{'Female':>8}{'both':>6}")
    for r in rows:
        print(f"{r['data']:<24}{r['images']:>8,}{r['male']:>7,}{r['female']:>8,}{r['both']:>6,}")
    return rows


# ---- swaps ----------------------------------------------------------------------------------------
def _encoder(path: Path) -> Path:
    """A small random-weight conv encoder (seeded) exported to ONNX: 64-d embeddings."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 5, stride=2), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    torch.onnx.export(model, (torch.zeros(2, 3, 64, 64),), str(path), input_names=["pixels"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False)
    return path


def judge_flags(flags: list[dict], ws: Path, tax: Taxonomy) -> dict:
    """Counts over a flag-noise --json flag list: suggestions adding a second label to a
    single-label group, swaps, and suggestions leaving an item Male and Female."""
    with Workspace.open(ws) as w:
        given = w.ledger.labels_frame(["train"])
    by_image: dict[str, set[int]] = {}
    for i, l in zip(given["image_id"], given["label_id"]):
        by_image.setdefault(str(i), set()).add(int(l))
    wrong = {(f["image_id"], f["label"]) for f in flags if f["kind"] == "wrong"}
    single = {g.name for g in tax.groups if g.single}
    second, two_genders = 0, 0
    for f in flags:
        if f["kind"] == "wrong":
            continue
        group = tax.labels[f["label"]].group
        kept = {l for l in by_image.get(f["image_id"], set()) if (f["image_id"], l) not in wrong}
        if f["kind"] == "missing" and group in single and any(tax.labels[l].group == group for l in kept):
            second += 1
        if f["label"] in (MALE, FEMALE) and ({MALE, FEMALE} - {f["label"]}) & kept:
            two_genders += 1
    kinds = {k: sum(f["kind"] == k for f in flags) for k in ("wrong", "missing", "swap")}
    return {"flags": len(flags), **kinds, "second_single_label": second, "two_genders": two_genders}


def swaps(images: int) -> dict:
    tax = Taxonomy.default()
    ws, _ = _workspace("judgements-swaps", "myntra", images, tax)
    onnx = _encoder(OUT / "judgements-swaps" / "encoder.onnx")
    _cli("model", "embed", "--onnx", str(onnx), "--input-size", "64", "--workers", "1", "-w", str(ws))
    data = _cli("curate", "flag-noise", "--features", "embeddings", "--backbone", "mlp", "--top", "5000", "-w", str(ws))
    row = judge_flags(data["flags"], ws, tax) | {"images": images}
    print(f"flag-noise --features embeddings --top 5000 on {images} myntra photos: {row}")
    return row


# ---- planted "category is wrong" ------------------------------------------------------------------
def planted(dataset: str, workspace: Path | None, per_category: int) -> list[dict]:
    """Tops (a sleeve or neckline label) whose category is replaced by a footwear or trousers
    category; check-attributes --apply on copies of the workspace with and without its
    cross-fitted probabilities."""
    from ifa.curation.ledger import Change
    from ifa.curation.noise.model.probs import cross_fitted

    tax = Taxonomy.default()
    if workspace is None:
        workspace, _ = _workspace(f"judgements-planted-{dataset}", dataset, None, tax)
        _cli("curate", "flag-noise", "-w", str(workspace))
    parts = {g for g in ("sleeve", "neckline")}
    with Workspace.open(workspace) as w:
        labels = w.ledger.labels_frame(["train"])
    per_image: dict[str, list[int]] = {}
    for i, l in zip(labels["image_id"], labels["label_id"]):
        per_image.setdefault(str(i), []).append(int(l))
    tops = sorted(i for i, ls in per_image.items() if any(tax.labels[l].group in parts for l in ls)
                  and any(tax.labels[l].group == "category" for l in ls))
    rng = np.random.default_rng(0)
    chosen = rng.choice(tops, min(len(tops), per_category * len(PLANTED_CATEGORIES)), replace=False)
    plants = {}
    for n, iid in enumerate(chosen):
        wrong = tax.by_name(f"category:{PLANTED_CATEGORIES[n % len(PLANTED_CATEGORIES)]}").id
        old = [l for l in per_image[iid] if tax.labels[l].group == "category"]
        plants[str(iid)] = (wrong, old, [l for l in per_image[iid] if tax.labels[l].group in parts])
    rows = []
    for with_probs in (True, False):
        copy = OUT / f"judgements-planted-{dataset}-{'probs' if with_probs else 'none'}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(workspace, copy, ignore=shutil.ignore_patterns("cache", "reports", "fold-*"))
        if not with_probs:
            cross_fitted(copy).unlink(missing_ok=True)
        elif not cross_fitted(copy).exists():
            raise SystemExit(f"{workspace} holds no cross-fitted probabilities: run flag-noise on it first.")
        with Workspace.open(copy) as w:
            w.ledger.apply_changes([Change("drop_label", i, l, rule="bench-plant") for i, (_, old, _) in plants.items()
                                    for l in old]
                                   + [Change("add_label", i, wrong, rule="bench-plant", source="bench")
                                      for i, (wrong, _, _) in plants.items()])
        result = _cli("curate", "check-attributes", "--split", "train", "--apply", "-w", str(copy))
        rows.append(_count_planted(copy, plants, result) | {"dataset": noise_data.DATASETS[dataset],
                                                             "probabilities": with_probs})
    print(f"{'dataset':<17}{'probs':<7}{'planted':>8}{'1 part':>7}{'parts dropped':>14}{'(of 1-part)':>12}"
          f"{'to review':>10}{'wrong cat. dropped':>19}")
    for r in rows:
        print(f"{r['dataset']:<17}{str(r['probabilities']):<7}{r['planted']:>8}{r['one_part']:>7}"
              f"{r['right_labels_dropped']:>14}{r['right_dropped_one_part']:>12}{r['to_review']:>10}"
              f"{r['wrong_category_dropped']:>19}")
    return rows


def _count_planted(ws: Path, plants: dict, result: dict) -> dict:
    from ifa.curation.ledger.review_queue import review_queue

    with Workspace.open(ws) as w:
        dropped = w.ledger.labels_frame(["train"], label_status=("dropped",))
        queued = set(review_queue(w.ledger, statuses=("pending",))["image_id"])
    gone = set(zip(dropped["image_id"].astype(str), dropped["label_id"].astype(int)))
    right = [(i, l) for i, (_, _, parts) in plants.items() for l in parts]
    one_part = {i for i, (_, _, parts) in plants.items() if len(parts) == 1}
    return {"planted": len(plants), "one_part": len(one_part),
            "right_labels_dropped": sum(k in gone for k in right),
            "right_dropped_one_part": sum(k in gone for k in right if k[0] in one_part),
            "to_review": len(queued & set(plants)),
            "wrong_category_dropped": sum((i, w) in gone for i, (w, _, _) in plants.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["gender", "swaps", "planted"])
    ap.add_argument("--images", type=int, default=400, help="swaps: photos of myntra-products")
    ap.add_argument("--dataset", default="myntra", choices=list(noise_data.DATASETS))
    ap.add_argument("--workspace", type=Path, help="planted: a workspace with the dataset imported and cross-fitted")
    ap.add_argument("--per-category", type=int, default=25, help="planted: tops per planted category")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    out = {"gender": gender, "swaps": lambda: swaps(args.images),
           "planted": lambda: planted(args.dataset, args.workspace, args.per_category)}[args.what]()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
