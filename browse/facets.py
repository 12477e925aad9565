"""Facet counts of any slice, counted in memory over `FacetArrays`.

The ledger's SQL pages a slice in ~1 ms, but counting a slice of most of a million images
by label joins ~5.8M label rows: 1.5-2.6 s in SQLite on the loaded 2-core machine, against
tens of ms for numpy over the same rows held as arrays (benchmarks/browse_bench.py). The
arrays are read once and again whenever the ledger changed (PRAGMA data_version).
The same counts tell `page` which filter to walk: the one with the fewest images.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..curation.ledger import SPLITS
from ..curation.ledger.browse import BrowseFilter, FacetArrays, facet_arrays

if TYPE_CHECKING:
    import numpy as np

    from ..curation.ledger import Ledger
    from ..taxonomy import Taxonomy


@dataclass
class FacetCounts:
    """Counts over a slice: value -> images, per facet; flagged, cluster and problem count
    the slice's images in each set."""

    total: int = 0
    split: dict[str, int] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    rule: dict[str, int] = field(default_factory=dict)
    group: dict[str, int] = field(default_factory=dict)
    label: dict[int, int] = field(default_factory=dict)
    source: dict[str, int] = field(default_factory=dict)
    flagged: int = 0
    cluster: int = 0
    problem: int = 0
    round: dict[str, int] = field(default_factory=dict)
    decision: dict[str, int] = field(default_factory=dict)


class FacetIndex:
    """`FacetArrays` of one ledger, re-read when another connection changed the ledger.
    `ledger` is this index's own connection (PRAGMA data_version counts other connections'
    commits); calls are serialised."""

    def __init__(self, ledger: Ledger, taxonomy: Taxonomy):
        import numpy as np

        self.ledger = ledger
        self._lock = threading.Lock()
        self._version: int | None = None
        self._arrays: FacetArrays | None = None
        self._group_of = np.full(max(taxonomy.labels) + 1, -1, dtype=np.int16)
        self.groups = list(taxonomy.group_names)
        for lab in taxonomy.labels.values():
            if lab.id >= 0:
                self._group_of[lab.id] = self.groups.index(lab.group)

    def arrays(self) -> FacetArrays:
        """The arrays as the ledger is now (re-read if it changed since the last call)."""
        with self._lock:
            version = self.ledger.query("PRAGMA data_version")[0][0]
            if self._arrays is None or version != self._version:
                self._arrays, self._version = facet_arrays(self.ledger), version
            return self._arrays

    def counts(self, f: BrowseFilter) -> FacetCounts:
        """The slice's facet counts (every image counted once per value)."""
        import numpy as np

        a = self.arrays()
        mask = slice_mask(a, f)
        rows = mask[a.row_image]
        n = len(a.image_pk)
        out = FacetCounts(total=int(mask.sum()))
        out.split = _named(np.bincount(a.split[mask], minlength=len(SPLITS)), SPLITS)
        aside = int(a.set_aside[mask].sum())
        out.status = {k: v for k, v in (("active", out.total - aside), ("set_aside", aside)) if v}
        picked = a.rule[mask]
        out.rule = _named(np.bincount(picked[picked >= 0], minlength=len(a.rules)), a.rules)
        out.label = {int(i): int(c) for i, c in enumerate(np.bincount(a.label_id[rows])) if c}
        labels_group = self._group_of[np.clip(a.label_id[rows], 0, len(self._group_of) - 1)]
        out.group = {g: _images(a.row_image[rows][labels_group == k], n) for k, g in enumerate(self.groups)}
        out.group = {g: c for g, c in out.group.items() if c}
        out.source = {s: c for k, s in enumerate(a.sources) if (c := _images(a.row_image[rows & (a.source == k)], n))}
        out.flagged, out.cluster, out.problem = (int(mask[p].sum()) for p in (a.flagged, a.cluster, a.problem))
        out.round = {r: c for r, p in a.rounds.items() if (c := int(mask[p].sum()))}
        out.decision = {d: c for d, p in a.decisions.items() if (c := int(mask[p].sum()))}
        return out

    def driver(self, f: BrowseFilter) -> str | None:
        """What `page` should walk for this slice: the filter with the fewest images
        (a label, the split, the status, the rule, the first set filter), else every image.
        Counts a moment old serve as well; None (SQLite chooses) until the first read ends."""
        import numpy as np

        a = self._arrays
        if a is None:
            return None
        sizes: dict[str, int] = {}
        if f.labels:
            sizes["label"] = int(np.count_nonzero(a.label_id == f.labels[0]))
        if f.split is not None:
            sizes["split"] = int(np.count_nonzero(a.split == SPLITS.index(f.split)))
        if f.status is not None:
            aside = int(a.set_aside.sum())
            sizes["status"] = aside if f.status == "set_aside" else len(a.image_pk) - aside
        if f.rule is not None:
            sizes["rule"] = int(np.count_nonzero(a.rule == a.rules.index(f.rule))) if f.rule in a.rules else 0
        first_set = next((p for on, p in ((f.flagged, a.flagged), (f.cluster, a.cluster), (f.problem, a.problem),
                                          (f.round is not None, a.rounds.get(f.round, a.flagged[:0])),
                                          (f.decision is not None, a.decisions.get(f.decision, a.flagged[:0])))
                          if on), None)
        if first_set is not None:
            sizes["set"] = len(first_set)
        return min(sizes, key=sizes.get) if sizes else "pk"


def slice_mask(a: FacetArrays, f: BrowseFilter) -> np.ndarray:
    """(N,) bool: the images of `a` in the slice `f` (the same slice as the ledger's `page`)."""
    import numpy as np

    n = len(a.image_pk)
    mask = np.ones(n, dtype=bool)
    if f.split is not None:
        mask &= a.split == SPLITS.index(f.split)
    if f.status is not None:
        mask &= a.set_aside if f.status == "set_aside" else ~a.set_aside
    if f.rule is not None:
        mask &= a.rule == (a.rules.index(f.rule) if f.rule in a.rules else -2)
    for label_id in f.labels:
        mask &= _has(a.row_image[a.label_id == label_id], n)
    if f.any_labels:
        mask &= _has(a.row_image[np.isin(a.label_id, f.any_labels)], n)
    if f.source is not None:
        code = a.sources.index(f.source) if f.source in a.sources else -1
        mask &= _has(a.row_image[a.source == code], n)
    for on, positions in ((f.flagged, a.flagged), (f.cluster, a.cluster), (f.problem, a.problem)):
        if on:
            mask &= _has(positions, n)
    if f.round is not None:
        mask &= _has(a.rounds.get(f.round, a.flagged[:0]), n)
    if f.decision is not None:
        mask &= _has(a.decisions.get(f.decision, a.flagged[:0]), n)
    return mask


def _has(positions: np.ndarray, n: int) -> np.ndarray:
    import numpy as np
    out = np.zeros(n, dtype=bool)
    out[positions] = True
    return out


def _images(positions: np.ndarray, n: int) -> int:
    """How many distinct images these (possibly repeated) positions name."""
    return int(_has(positions, n).sum()) if len(positions) else 0


def _named(counts, names) -> dict[str, int]:
    return {name: int(c) for name, c in zip(names, counts) if c}
