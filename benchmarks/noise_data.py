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


# The noise models the benchmark and the tests plant: (share of swaps, drops, additions) and how
# a replacement or added label is drawn. "frequency": by label frequency (plausible
# noise); "uniform": any label of the group alike (most land in rare classes the model barely
# learned); "confusion": the look-alike classes, by the model's own
# confusion (the hardest to see: the model half-believes the wrong label); "missing": mostly
# dropped labels.
NOISE_MODELS: dict[str, tuple[tuple[float, float, float], str]] = {
    "frequency": ((0.4, 0.3, 0.3), "frequency"),
    "uniform": ((0.4, 0.3, 0.3), "uniform"),
    "confusion": ((0.6, 0.2, 0.2), "confusion"),
    "missing": ((0.1, 0.8, 0.1), "frequency"),
}
DRAWS = ("frequency", "uniform", "confusion")


def confusion_matrix(labels: np.ndarray, probs: np.ndarray, taxonomy: Taxonomy) -> np.ndarray:
    """float (K, K): row j is the mean probability a model gives each label of j's group on
    the images labelled j (zero elsewhere and on the diagonal): how alike j and k look to it."""
    groups = taxonomy.group_index
    n_pos = labels.sum(axis=0)
    conf = (labels.T.astype(np.float64) @ probs.astype(np.float64)) / np.maximum(n_pos, 1)[:, None]
    conf *= groups[:, None] == groups[None, :]
    np.fill_diagonal(conf, 0.0)
    return conf


def inject(labels: np.ndarray, taxonomy: Taxonomy, rate: float = 0.08, seed: int = 0,
           mix: tuple[float, float, float] = (0.4, 0.3, 0.3), draw: str = "frequency",
           confusion: np.ndarray | None = None) -> Noise:
    """Corrupt `rate` x (number of labels) labels: swaps within a group (the label is
    replaced by another of its group), drops, and wrong additions (in a group the image
    lacks, or a multi-label group), in the shares `mix`. `draw` says how a replacement or
    added label is chosen among the group's labels in use: "frequency" (plausible noise),
    "uniform", or "confusion" (weights from `confusion_matrix`: the labels that look like
    the replaced one, or like the image's labels in that group; by frequency where the
    image has none). Deterministic for a seed. Raises ValueError for an unknown draw or a
    confusion draw without the matrix."""
    if draw not in DRAWS:
        raise ValueError(f"draw must be one of {DRAWS}, not {draw!r}")
    if draw == "confusion" and confusion is None:
        raise ValueError("draw='confusion' needs the confusion matrix (noise_data.confusion_matrix)")
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    groups = taxonomy.group_index
    freq = labels.sum(axis=0).astype(float) + 1e-9
    drawer = _Drawer(rng, draw, groups, freq, freq > 1e-6, confusion)
    counts = rng.multinomial(int(round(rate * labels.sum())), mix)
    touched = np.zeros_like(labels)  # one event per cell at most
    pos = np.argwhere(labels)
    done = {"swap": _swap(noisy, touched, pos, counts[0], drawer),
            "drop": _drop(noisy, touched, pos, counts[1], rng),
            "add": _add(noisy, touched, counts[2], drawer, np.array([g.single for g in taxonomy.groups]))}
    return Noise(noisy, {k: done[k] for k in NOISE_KINDS})


@dataclass
class _Drawer:
    """Draws a replacement or added label within a group, by the `draw` rule."""

    rng: np.random.Generator
    draw: str
    groups: np.ndarray  # int (K,): each label's group
    freq: np.ndarray  # float (K,): label frequencies (+ a tiny floor)
    in_use: np.ndarray  # bool (K,): labels that occur
    confusion: np.ndarray | None

    def __call__(self, g: int, exclude: np.ndarray, like: np.ndarray) -> int | None:
        """A label of group `g` not in `exclude`, weighted by the draw rule (look-alikes of
        `like` for "confusion"); None when the group has none left."""
        cols = np.flatnonzero((self.groups == g) & ~exclude & self.in_use)
        if not len(cols):
            return None
        if self.draw == "uniform":
            weight = np.ones(len(cols))
        elif self.draw == "confusion" and len(like):
            weight = self.confusion[like][:, cols].sum(axis=0) + 1e-12
        else:
            weight = self.freq[cols]
        return int(self.rng.choice(cols, p=weight / weight.sum()))


def _swap(noisy: np.ndarray, touched: np.ndarray, pos: np.ndarray, want: int, drawer: _Drawer) -> int:
    """Replace up to `want` labels by another of their group (in place). Returns how many."""
    done = 0
    for idx in drawer.rng.permutation(len(pos)):
        if done >= want:
            break
        r, c = pos[idx]
        if touched[r, c]:
            continue
        new = drawer(drawer.groups[c], noisy[r] | touched[r], np.array([c]))
        if new is None:
            continue
        noisy[r, c], noisy[r, new] = False, True
        touched[r, c] = touched[r, new] = True
        done += 1
    return done


def _drop(noisy: np.ndarray, touched: np.ndarray, pos: np.ndarray, want: int, rng: np.random.Generator) -> int:
    """Remove up to `want` untouched labels (in place). Returns how many."""
    done = 0
    for idx in rng.permutation(len(pos)):
        if done >= want:
            break
        r, c = pos[idx]
        if touched[r, c] or not noisy[r, c]:
            continue
        noisy[r, c], touched[r, c] = False, True
        done += 1
    return done


def _add(noisy: np.ndarray, touched: np.ndarray, want: int, drawer: _Drawer, single: np.ndarray) -> int:
    """Add up to `want` wrong labels on random images (in place). Returns how many."""
    groups, rng = drawer.groups, drawer.rng
    used_groups = np.unique(groups[drawer.in_use])
    done, tries = 0, 0
    while done < want and tries < 50 * want + 100:
        tries += 1
        r = int(rng.integers(len(noisy)))
        g = int(rng.choice(used_groups))
        if single[g] and noisy[r, groups == g].any():
            continue  # a second label in a single-label group is a rule violation, not subtle noise
        new = drawer(g, noisy[r] | touched[r], np.flatnonzero(noisy[r] & (groups == g)))
        if new is None:
            continue
        noisy[r, new], touched[r, new] = True, True
        done += 1
    return done


def plant(labels: np.ndarray, taxonomy: Taxonomy, model: str, rate: float = 0.08, seed: int = 0,
          probs: np.ndarray | None = None) -> Noise:
    """`inject` with the noise model `model` (a key of NOISE_MODELS); "confusion" takes
    its look-alike weights from `probs`, a model's probabilities on the clean `labels`."""
    mix, draw = NOISE_MODELS[model]
    conf = confusion_matrix(labels, probs, taxonomy) if draw == "confusion" else None
    return inject(labels, taxonomy, rate, seed, mix, draw, conf)


def challenge_json(image_ids: np.ndarray, labels: np.ndarray, taxonomy: Taxonomy) -> dict:
    """The challenge JSON for these images and labels (for `import_imat`)."""
    ids = taxonomy.label_ids
    return {"images": [{"imageId": i, "url": f"https://example.invalid/{i}.jpg"} for i in image_ids],
            "annotations": [{"imageId": i, "labelId": [str(x) for x in ids[row]]} for i, row in zip(image_ids, labels)]}


def write_json(path: Path, image_ids: np.ndarray, labels: np.ndarray, taxonomy: Taxonomy) -> Path:
    path = Path(path)
    path.write_text(json.dumps(challenge_json(image_ids, labels, taxonomy)))
    return path


def fixed_features(paths: np.ndarray, size: int = 32) -> np.ndarray:
    """float32 (n, 420) small fixed features per photo, no learned weights: the 32 px image
    averaged to 8 x 8 RGB (192), an 8-bin histogram per RGB channel (24), a 12-bin hue
    histogram weighted by saturation (12), and gradient-orientation histograms (8 bins) on a
    4 x 4 grid of the grey image (128) plus their 8 x 8 energy map (64); standardised
    columns. Cheap stand-ins for embeddings when the benchmark must retrain for every noise
    model (2 busy cores); unreadable files give zeros."""
    from PIL import Image

    from ifa.curation.noise.model.data import decode

    rows = []
    for path in paths:
        px = decode(str(path), size)
        if px is None:
            px = np.zeros((size, size, 3), dtype=np.uint8)
        x = px.astype(np.float32) / 255.0
        small = x.reshape(8, size // 8, 8, size // 8, 3).mean(axis=(1, 3)).ravel()
        hist = np.concatenate([np.histogram(x[..., c], bins=8, range=(0, 1))[0] for c in range(3)]) / (size * size)
        hsv = np.asarray(Image.fromarray(px).convert("HSV"), dtype=np.float32) / 255.0
        hue = np.histogram(hsv[..., 0], bins=12, range=(0, 1), weights=hsv[..., 1])[0] / (size * size)
        grey = x.mean(axis=2)
        gy, gx = np.gradient(grey)
        mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
        bins = np.minimum((ang / np.pi * 8).astype(int), 7)
        cell = size // 4
        hog = np.zeros((4, 4, 8), dtype=np.float32)
        for i in range(4):
            for j in range(4):
                sl = (slice(i * cell, (i + 1) * cell), slice(j * cell, (j + 1) * cell))
                hog[i, j] = np.bincount(bins[sl].ravel(), weights=mag[sl].ravel(), minlength=8)
        energy = mag.reshape(8, size // 8, 8, size // 8).mean(axis=(1, 3)).ravel()
        rows.append(np.concatenate([small, hist, hue, hog.ravel(), energy]))
    feats = np.asarray(rows, dtype=np.float32)
    return (feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-6)


def good_model_probs(labels: np.ndarray, taxonomy: Taxonomy, seed: int = 0) -> np.ndarray:
    """float32 (n, K): fixed probabilities that a good, calibrated but imperfect model of the
    CLEAN `labels` would give, for tests. Each class's evidence on an image is Gaussian
    (sd 1) around its skill when the label is true, around half of it on the images of its
    look-alike (the previous class of its group by frequency), around 0 otherwise; skill
    grows with the class's frequency (a class with 5 images is learned far worse than one
    with 500). The probabilities are the exact Bayes posteriors of that evidence with the
    class frequencies as priors, which is what a model trained with BCE approximates: over
    the labels and "none of these" in a single-label group, per label in a multi-label one.
    Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    n, k = labels.shape
    groups = taxonomy.group_index
    freq = labels.sum(axis=0)
    skill = 0.8 + 0.9 * np.log10(freq + 1.0)
    prior = np.clip(freq / max(n, 1), 1e-4, 1 - 1e-4)
    probs = np.full((n, k), 1e-4, dtype=np.float32)
    y = labels.astype(np.float64)

    def log_normal(e, mu):
        return -0.5 * (e - mu) ** 2

    for g, info in enumerate(taxonomy.groups):
        cols = np.flatnonzero((groups == g) & (freq > 0))
        if not len(cols):
            continue
        by_freq = cols[np.argsort(-freq[cols], kind="stable")]
        a = skill[by_freq]
        # Column i's evidence is raised (by half its skill) on the images of look-alike[i].
        look_alike = np.roll(np.arange(len(cols)), -1) if len(cols) > 1 else None
        mean = a * y[:, by_freq]
        if look_alike is not None:
            mean = np.maximum(mean, 0.5 * a * y[:, by_freq[look_alike]])
        e = mean + rng.normal(0.0, 1.0, mean.shape)
        if info.single:
            # Class c explains the evidence as: a_c on column c, a_j / 2 on the column j whose look-alike is c.
            llr = a * e - a * a / 2
            if look_alike is not None:
                j = np.roll(np.arange(len(cols)), 1)  # look_alike[j[c]] == c
                half = 0.5 * a[j]
                llr = llr + half * e[:, j] - half * half / 2
            none = max(1.0 - prior[by_freq].sum(), 1e-3)
            z = np.concatenate([np.full((n, 1), np.log(none)), np.log(prior[by_freq]) + llr], axis=1)
            z = np.exp(z - z.max(axis=1, keepdims=True))
            probs[:, by_freq] = (z[:, 1:] / z.sum(axis=1, keepdims=True)).astype(np.float32)
        else:
            rho = prior[by_freq[look_alike]] if look_alike is not None else np.zeros(len(cols))
            absent = np.logaddexp(np.log(rho + 1e-12) + log_normal(e, 0.5 * a), np.log1p(-rho) + log_normal(e, 0.0))
            logit = np.log(prior[by_freq] / (1 - prior[by_freq])) + log_normal(e, a) - absent
            probs[:, by_freq] = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return np.clip(probs, 1e-4, 1 - 1e-4)
