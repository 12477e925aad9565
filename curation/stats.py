"""Dataset statistics in the paper's terms: Table 1 per group, labels per image (Fig. 2)
and images per label (the long tail of Fig. 3). Only active images and labels count."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..taxonomy import Taxonomy
from . import reports
from .ledger import SPLITS, Ledger, check_splits
from .ledger.arrays import label_arrays
from .ledger.file_problems import unreadable_active
from .workspace import Workspace, time_stamp

# Paper, Sec. 3: 31 labels have fewer than 500 training images, 88 have more than 10K.
RARE_BELOW = 500
FREQUENT_ABOVE = 10_000


@dataclass
class GroupStats:
    classes: int
    cardinality: str
    labels: int
    images: int
    percent_images: float


@dataclass
class SplitStats:
    images: int
    labels: int
    labels_per_image: dict[str, float]  # min, mean, max
    histogram: dict[int, int]  # n labels -> images with that many
    groups: dict[str, GroupStats]
    images_per_label: dict[int, int]  # label id -> images, most frequent first
    labels_under_500: int = 0
    labels_over_10k: int = 0
    unreadable_files: int = 0  # active images whose file dedup found unreadable (ifa show says why)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["histogram"] = {str(k): v for k, v in self.histogram.items()}
        out["images_per_label"] = {str(k): v for k, v in self.images_per_label.items()}
        return out


@dataclass
class Stats:
    splits: dict[str, SplitStats] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"splits": {k: v.to_dict() for k, v in self.splits.items()}, "plots": self.plots}


def compute(ledger: Ledger, taxonomy: Taxonomy, splits: Sequence[str] | None = None, as_imported: bool = False) -> Stats:
    """Statistics per split present in the ledger (or the given splits): of today's active
    images and labels, or with as_imported=True of the dataset as it was imported. The
    ledger is read in one snapshot: a commit meanwhile never mixes two states.

    Today's statistics read only integer arrays (`label_arrays`): no image id string is
    made and neither pandas nor pyarrow is loaded, so `ifa stats` starts fast and reads 1M
    images' labels in a couple of seconds. Raises IfaError for an unknown split."""
    check_splits(splits)
    with ledger.snapshot():
        image_split, image_index, label_id = _read_rows(ledger, splits, as_imported)
        present = [s for k, s in enumerate(SPLITS) if np.any(image_split == k)] if splits is None else list(splits)
        unreadable = {} if as_imported else unreadable_active(ledger, present)
    per_image = np.bincount(image_index, minlength=len(image_split))
    col = taxonomy.column_of(label_id)  # -1: an id the taxonomy lacks
    known = col >= 0
    group_of_row = np.where(known, taxonomy.group_index[np.clip(col, 0, None)], -1)
    # (image, group) pairs once for all splits: an image counts once per group it carries.
    n_groups = len(taxonomy.groups)
    pairs = np.unique(image_index[known] * n_groups + group_of_row[known])
    pair_image, pair_group = pairs // n_groups, pairs % n_groups
    out = Stats()
    for split in present:
        in_split = image_split == SPLITS.index(split)
        rows = in_split[image_index]
        images_with_group = np.bincount(pair_group[in_split[pair_image]], minlength=n_groups)
        labels_in_group = np.bincount(group_of_row[rows & known], minlength=n_groups)
        out.splits[split] = _split_stats(taxonomy, per_image[in_split], label_id[rows], labels_in_group,
                                         images_with_group, unreadable.get(split, 0))
    return out


def _read_rows(ledger: Ledger, splits: Sequence[str] | None, as_imported: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image its split code; per label row its image's position and its label id."""
    if as_imported:  # export's datasheet: label_table knows which images the import set aside
        from .ledger.arrays import label_table

        table = label_table(ledger, splits, as_imported=True)
        code = {s: i for i, s in enumerate(SPLITS)}
        image_split = np.array([code[s] for s in table.images["split"].tolist()], dtype=np.int8)
        return image_split, table.image_index, table.label_id
    arrays = label_arrays(ledger, splits, image_status="active", label_statuses=("active",))
    return arrays.split, arrays.row_image, arrays.label_id


def _split_stats(taxonomy: Taxonomy, counts: np.ndarray, label_id: np.ndarray, labels_in_group: np.ndarray,
                 images_with_group: np.ndarray, unreadable: int) -> SplitStats:
    """One split's statistics from its images' label counts and its label rows' ids."""
    n_images = len(counts)
    hist = np.bincount(counts) if n_images else np.zeros(1, dtype=np.int64)
    # images per label, most frequent first, ties by label id (np.unique sorts the ids)
    ids, per_label = np.unique(label_id, return_counts=True)
    order = np.argsort(-per_label, kind="stable")
    ids, per_label = ids[order], per_label[order]
    groups = {
        g.name: GroupStats(
            classes=len(g.label_ids), cardinality=g.cardinality, labels=int(labels_in_group[gi]),
            images=int(images_with_group[gi]),
            percent_images=round(100.0 * images_with_group[gi] / n_images, 1) if n_images else 0.0,
        )
        for gi, g in enumerate(taxonomy.groups)
    }
    # Labels of the taxonomy that no image carries belong to the long tail too.
    all_counts = np.zeros(len(taxonomy.label_ids), dtype=np.int64)
    used = taxonomy.column_of(ids)
    all_counts[used[used >= 0]] = per_label[used >= 0]
    return SplitStats(
        images=n_images,
        labels=len(label_id),
        labels_per_image={
            "min": int(counts.min()) if n_images else 0,
            "mean": round(float(counts.mean()), 3) if n_images else 0.0,
            "max": int(counts.max()) if n_images else 0,
        },
        histogram={int(k): int(v) for k, v in enumerate(hist) if v},
        groups=groups,
        images_per_label=dict(zip(ids.tolist(), per_label.tolist())),
        labels_under_500=int((all_counts < RARE_BELOW).sum()),
        labels_over_10k=int((all_counts > FREQUENT_ABOVE).sum()),
        unreadable_files=unreadable,
    )


def write_plots(stats: Stats, out_dir: Path, stamp: str) -> list[str]:
    """Fig. 2 (labels per image) and Fig. 3 (images per label, log scale) style PNGs, one
    pair per split that has labels (a split without any, such as the challenge's test split,
    would draw empty axes). Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    written: list[str] = []
    for split, s in stats.splits.items():
        if not s.labels:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar(list(s.histogram), list(s.histogram.values()), color="#4472c4")
        ax.set(xlabel="labels per image", ylabel="images", title=f"{split}: labels per image (Fig. 2)")
        path = out_dir / f"labels-per-image-{split}-{stamp}.png"
        fig.tight_layout()
        with reports.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        written.append(str(path))

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(range(1, len(s.images_per_label) + 1), list(s.images_per_label.values()), color="#c00000")
        ax.set_yscale("log")
        ax.axhline(RARE_BELOW, ls=":", color="gray")
        ax.set(xlabel="labels, most frequent first", ylabel="images (log)", title=f"{split}: images per label (Fig. 3)")
        path = out_dir / f"images-per-label-{split}-{stamp}.png"
        fig.tight_layout()
        with reports.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        written.append(str(path))
    stats.plots = written
    return written


def run(ws: Workspace, splits: Sequence[str] | None = None, plots: bool = False) -> Stats:
    """What `ifa stats` does: the statistics of the workspace, and with `plots` the Fig. 2
    and Fig. 3 PNGs written to its reports folder (listed in `Stats.plots`)."""
    result = compute(ws.ledger, ws.taxonomy, splits)
    if plots:
        write_plots(result, ws.reports_dir, time_stamp())
    return result
