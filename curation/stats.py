"""Dataset statistics in the paper's terms: Table 1 per group, labels per image (Fig. 2)
and images per label (the long tail of Fig. 3). Only active images and labels count."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..taxonomy import Taxonomy
from .ledger import SPLITS, Ledger

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


def compute(ledger: Ledger, taxonomy: Taxonomy, splits: Sequence[str] | None = None) -> Stats:
    """Statistics per split present in the ledger (or the given splits)."""
    per_label = ledger.label_counts(splits)
    per_image = ledger.labels_per_image(splits)
    groups_of = {lid: lab.group for lid, lab in taxonomy.labels.items()}
    per_group = ledger.group_image_counts(groups_of, splits)
    present = [s for s in SPLITS if s in set(per_image["split"])] if splits is None else list(splits)
    out = Stats()
    for split in present:
        hist = per_image[per_image["split"] == split]
        n_images = int(hist["images"].sum())
        counts = per_label[per_label["split"] == split]
        known = counts[counts["label_id"].isin(taxonomy.labels.keys())]
        by_group = known.assign(group=known["label_id"].map(groups_of)).groupby("group")["images"].sum()
        g_images = per_group[per_group["split"] == split].set_index("group")["images"]
        groups = {
            g.name: GroupStats(
                classes=len(g.label_ids),
                cardinality=g.cardinality,
                labels=int(by_group.get(g.name, 0)),
                images=int(g_images.get(g.name, 0)),
                percent_images=round(100.0 * int(g_images.get(g.name, 0)) / n_images, 1) if n_images else 0.0,
            )
            for g in taxonomy.groups
        }
        n = hist["n"].to_numpy()
        w = hist["images"].to_numpy()
        ipl = counts.sort_values(["images", "label_id"], ascending=[False, True])
        # Labels of the taxonomy that no image carries belong to the long tail too.
        all_counts = pd.Series(0, index=taxonomy.label_ids).add(known.set_index("label_id")["images"], fill_value=0)
        out.splits[split] = SplitStats(
            images=n_images,
            labels=int(counts["images"].sum()),
            labels_per_image={
                "min": int(n.min()) if len(n) else 0,
                "mean": round(float(np.average(n, weights=w)), 3) if n_images else 0.0,
                "max": int(n.max()) if len(n) else 0,
            },
            histogram={int(k): int(v) for k, v in sorted(zip(n, w))},
            groups=groups,
            images_per_label={int(k): int(v) for k, v in zip(ipl["label_id"], ipl["images"])},
            labels_under_500=int((all_counts < RARE_BELOW).sum()),
            labels_over_10k=int((all_counts > FREQUENT_ABOVE).sum()),
        )
    return out


def write_plots(stats: Stats, out_dir: Path, stamp: str) -> list[str]:
    """Fig. 2 (labels per image) and Fig. 3 (images per label, log scale) style PNGs, one
    pair per split. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    written: list[str] = []
    for split, s in stats.splits.items():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar(list(s.histogram), list(s.histogram.values()), color="#4472c4")
        ax.set(xlabel="labels per image", ylabel="images", title=f"{split}: labels per image (Fig. 2)")
        path = out_dir / f"labels-per-image-{split}-{stamp}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(range(1, len(s.images_per_label) + 1), list(s.images_per_label.values()), color="#c00000")
        ax.set_yscale("log")
        ax.axhline(RARE_BELOW, ls=":", color="gray")
        ax.set(xlabel="labels, most frequent first", ylabel="images (log)", title=f"{split}: images per label (Fig. 3)")
        path = out_dir / f"images-per-label-{split}-{stamp}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    stats.plots = written
    return written
