"""Real photos with real labels, and noise injected into them with a fixed seed, for the
noise-flagging benchmark (`benchmarks/noise_bench.py`) and its tests.

Datasets are read by path from the shared data folder (myntra-products must never be
copied into the repo: its licence is unverified). Their `imat_<group>` columns hold
iMaterialist label names, '|' joining several.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ifa.taxonomy import Taxonomy

SHARED_DATA = Path(os.environ.get("IFA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
if not SHARED_DATA.exists():
    SHARED_DATA = Path("/work/shared/data")
DATASETS = {"myntra": "myntra-products", "clothing": "clothing-cc0"}
NOISE_KINDS = ("swap", "drop", "add")


@dataclass
class Dataset:
    name: str
    image_ids: np.ndarray  # str
    paths: np.ndarray  # absolute str paths
    labels: np.ndarray  # bool (n, K), columns = taxonomy.label_ids

    def __len__(self) -> int:
        return len(self.image_ids)


def load(name: str, taxonomy: Taxonomy | None = None, root: Path | None = None) -> Dataset:
    """The dataset `name` (myntra | clothing) as a bool label matrix over the taxonomy."""
    tax = taxonomy or Taxonomy.default()
    folder = Path(root or SHARED_DATA) / DATASETS[name]
    frame = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    id_col = "id" if "id" in frame.columns else "image_id"
    labels = np.zeros((len(frame), len(tax.label_ids)), dtype=bool)
    for col in [c for c in frame.columns if c.startswith("imat_")]:
        group = col.removeprefix("imat_")
        for row, cell in enumerate(frame[col].tolist()):
            for value in filter(None, cell.split("|")):
                labels[row, tax.column_of([tax.by_name(f"{group}:{value}").id])[0]] = True
    paths = np.array([str(folder / p) for p in frame["image_file"]])
    return Dataset(name, frame[id_col].astype(str).to_numpy(), paths, labels)


@dataclass
class Noise:
    noisy: np.ndarray  # bool (n, K): the labels the workspace gets
    kinds: dict[str, int]  # injected events per kind

    def errors(self, truth: np.ndarray) -> np.ndarray:
        """bool (n, K): cells whose noisy label differs from the truth."""
        return self.noisy != truth


def inject(labels: np.ndarray, taxonomy: Taxonomy, rate: float = 0.08, seed: int = 0,
           mix: tuple[float, float, float] = (0.4, 0.3, 0.3)) -> Noise:
    """Corrupt `rate` x (number of labels) labels: swaps within a group (the label is
    replaced by another of its group), drops, and wrong additions (in a group the image
    lacks, or a multi-label group). Replacement labels are drawn by label frequency, so the
    noise is plausible rather than uniform. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    groups = taxonomy.group_index
    single = np.array([g.single for g in taxonomy.groups])
    freq = labels.sum(axis=0).astype(float) + 1e-9
    events = int(round(rate * labels.sum()))
    counts = rng.multinomial(events, mix)
    touched = np.zeros_like(labels)  # one event per cell at most

    def draw_in_group(g: int, exclude: np.ndarray) -> int | None:
        cols = np.flatnonzero((groups == g) & ~exclude & (freq > 1e-6))
        if not len(cols):
            return None
        return int(rng.choice(cols, p=freq[cols] / freq[cols].sum()))

    done = {k: 0 for k in NOISE_KINDS}
    pos = np.argwhere(labels)
    for idx in rng.permutation(len(pos)):
        if done["swap"] >= counts[0]:
            break
        r, c = pos[idx]
        if touched[r, c]:
            continue
        new = draw_in_group(groups[c], noisy[r] | touched[r])
        if new is None:
            continue
        noisy[r, c], noisy[r, new] = False, True
        touched[r, c] = touched[r, new] = True
        done["swap"] += 1
    for idx in rng.permutation(len(pos)):
        if done["drop"] >= counts[1]:
            break
        r, c = pos[idx]
        if touched[r, c] or not noisy[r, c]:
            continue
        noisy[r, c], touched[r, c] = False, True
        done["drop"] += 1
    n = len(labels)
    tries = 0
    while done["add"] < counts[2] and tries < 50 * counts[2] + 100:
        tries += 1
        r = int(rng.integers(n))
        g = int(rng.choice(np.unique(groups[freq > 1e-6])))
        if single[g] and noisy[r, groups == g].any():
            continue  # a second label in a single-label group is a rule violation, not subtle noise
        new = draw_in_group(g, noisy[r] | touched[r])
        if new is None:
            continue
        noisy[r, new], touched[r, new] = True, True
        done["add"] += 1
    return Noise(noisy, done)


def challenge_json(image_ids: np.ndarray, labels: np.ndarray, taxonomy: Taxonomy) -> dict:
    """The challenge JSON for these images and labels (for `import_imat`)."""
    ids = taxonomy.label_ids
    return {"images": [{"imageId": i, "url": f"https://example.invalid/{i}.jpg"} for i in image_ids],
            "annotations": [{"imageId": i, "labelId": [str(x) for x in ids[row]]} for i, row in zip(image_ids, labels)]}


def write_json(path: Path, image_ids: np.ndarray, labels: np.ndarray, taxonomy: Taxonomy) -> Path:
    path = Path(path)
    path.write_text(json.dumps(challenge_json(image_ids, labels, taxonomy)))
    return path
