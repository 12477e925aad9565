"""Agreement between two annotators: pure functions over label matrices.

Every function takes boolean label matrices `A`, `B` of shape (n_images, n_labels) whose
columns follow `taxonomy.label_ids` (row i of A and B are the two answers for image i)
and returns numbers, arrays or a frame. Open-source Label Studio computes no agreement,
so ifa does, per group:

- single-label groups (category, neckline, sleeve, style): exact agreement and Cohen's
  kappa over the group's labels plus "none" (the annotator gave the group no label);
- multi-label groups (color, gender, material, pattern): exact set agreement, mean
  Jaccard, Krippendorff's alpha with the MASI set distance (Passonneau 2006), and
  Cohen's kappa per label (present / absent).

Written on numpy rather than looping sklearn's `cohen_kappa_score` or nltk's
`AnnotationTask.alpha`: `benchmarks/review_scale.py` compares both on 100k pairs.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..taxonomy import Taxonomy

# Rows of distinct label sets processed at once when computing expected MASI disagreement.
_CHUNK = 2048


def label_matrix(label_lists: Sequence[Iterable[int]], taxonomy: Taxonomy) -> np.ndarray:
    """(n, n_labels) bool matrix; row i marks the label ids in label_lists[i]. Ids the
    taxonomy lacks are ignored."""
    lists = [list(x) for x in label_lists]
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    flat = np.fromiter((int(v) for x in lists for v in x), dtype=np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(lists)), lengths)
    cols = taxonomy.column_of(flat)
    keep = cols >= 0
    out = np.zeros((len(lists), len(taxonomy.label_ids)), dtype=bool)
    out[rows[keep], cols[keep]] = True
    return out


def cohen_kappa(a: np.ndarray, b: np.ndarray, n_categories: int | None = None) -> float:
    """Cohen's kappa of two integer label vectors (categories 0..k-1). NaN when chance
    agreement is 1 (both annotators always gave the same single category)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if len(a) == 0:
        return float("nan")
    k = int(n_categories or (max(a.max(), b.max()) + 1))
    confusion = np.bincount(a * k + b, minlength=k * k).reshape(k, k).astype(np.float64)
    n = confusion.sum()
    p_o = np.trace(confusion) / n
    p_e = float(confusion.sum(axis=1) @ confusion.sum(axis=0)) / (n * n)
    return float("nan") if p_e >= 1.0 else float((p_o - p_e) / (1.0 - p_e))


def binary_kappa(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Cohen's kappa per column of two boolean matrices (present / absent); NaN for a
    column where chance agreement is 1 (e.g. neither annotator ever used the label)."""
    A, B = np.asarray(A, dtype=bool), np.asarray(B, dtype=bool)
    n = A.shape[0]
    if n == 0:
        return np.full(A.shape[1], np.nan)
    p_o = (A == B).mean(axis=0)
    pa, pb = A.mean(axis=0), B.mean(axis=0)
    p_e = pa * pb + (1 - pa) * (1 - pb)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p_e >= 1.0, np.nan, (p_o - p_e) / (1.0 - p_e))


def group_codes(M: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """For a single-label group (its columns in M): the index of the chosen label within
    the group, or len(columns) for "none". Rows with several labels take the first."""
    sub = M[:, columns]
    has = sub.any(axis=1)
    return np.where(has, sub.argmax(axis=1), len(columns))


def jaccard(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Per row |A∩B| / |A∪B|; 1.0 where both are empty."""
    inter = (A & B).sum(axis=1)
    union = (A | B).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def _masi(inter: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """MASI distance from intersection and set sizes: 1 - J * M, where M is 1 for equal
    sets, 2/3 when one contains the other, 1/3 when they overlap, 0 when disjoint."""
    union = sa + sb - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    m = np.select([(inter == sa) & (inter == sb), (inter == sa) | (inter == sb), inter > 0],
                  [1.0, 2.0 / 3.0, 1.0 / 3.0], 0.0)
    return 1.0 - j * m


def _distinct_rows(V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a boolean matrix and how often each occurs."""
    if V.shape[1] <= 62:  # a row fits one int64 key: 1-D unique is ~20x faster than axis=0
        keys = V.astype(np.int64) @ (np.int64(1) << np.arange(V.shape[1], dtype=np.int64))
        uniq, first, counts = np.unique(keys, return_index=True, return_counts=True)
        return V[first], counts
    uniq, counts = np.unique(V, axis=0, return_counts=True)
    return uniq, counts


def masi_alpha(A: np.ndarray, B: np.ndarray) -> float:
    """Krippendorff's alpha with the MASI distance for two annotators who both answered
    every image: 1 - D_o / D_e, with D_o the mean distance within an image and D_e the
    mean distance between any two of the 2n answers. NaN when D_e is 0."""
    A, B = np.asarray(A, dtype=bool), np.asarray(B, dtype=bool)
    n = A.shape[0]
    if n < 1:
        return float("nan")
    d_o = _masi((A & B).sum(1), A.sum(1), B.sum(1)).mean()
    sets, counts = _distinct_rows(np.vstack([A, B]))
    counts = counts.astype(np.float64)
    f = sets.astype(np.float32)
    sizes = f.sum(axis=1)
    total = 0.0
    for start in range(0, len(sets), _CHUNK):
        block = f[start:start + _CHUNK]
        inter = block @ f.T
        dist = _masi(inter, sizes[start:start + _CHUNK, None], sizes[None, :])
        total += counts[start:start + _CHUNK] @ dist @ counts
    n_values = 2 * n
    d_e = total / (n_values * (n_values - 1))
    return float("nan") if d_e <= 0 else float(1.0 - d_o / d_e)


def group_agreement(A: np.ndarray, B: np.ndarray, taxonomy: Taxonomy) -> dict[str, dict]:
    """Per group of the taxonomy: {"cardinality", "images", "exact", and "kappa" for a
    single-label group, or "jaccard", "alpha_masi", "label_kappa" {label name: kappa,
    labels either annotator used} for a multi-label group}. Every image counts, also
    those where both left the group empty (that is agreement too)."""
    out: dict[str, dict] = {}
    gi = taxonomy.group_index
    for g, group in enumerate(taxonomy.groups):
        cols = np.flatnonzero(gi == g)
        a, b = A[:, cols], B[:, cols]
        exact = float((a == b).all(axis=1).mean()) if len(a) else float("nan")
        entry: dict = {"cardinality": group.cardinality, "images": int(len(a)), "exact": exact}
        if group.single:
            entry["kappa"] = cohen_kappa(group_codes(A, cols), group_codes(B, cols), len(cols) + 1)
        else:
            entry["jaccard"] = float(jaccard(a, b).mean()) if len(a) else float("nan")
            entry["alpha_masi"] = masi_alpha(a, b)
            used = (a | b).any(axis=0)
            kappas = binary_kappa(a[:, used], b[:, used])
            ids = taxonomy.label_ids[cols][used]
            entry["label_kappa"] = {taxonomy.labels[int(i)].name: float(k) for i, k in zip(ids, kappas)}
        out[group.name] = entry
    return out


def confused_pairs(A: np.ndarray, B: np.ndarray, taxonomy: Taxonomy, top: int = 10) -> pd.DataFrame:
    """The label pairs the two annotators swap most often, within a group: one gave
    label x where the other gave y (order ignored). Columns group, label_a, label_b
    (names), label_id_a, label_id_b, images; most frequent first."""
    rows = []
    gi = taxonomy.group_index
    diff = (A != B).any(axis=1)
    A, B = A[diff], B[diff]
    for g, group in enumerate(taxonomy.groups):
        cols = np.flatnonzero(gi == g)
        only_a = (A[:, cols] & ~B[:, cols]).astype(np.float32)
        only_b = (B[:, cols] & ~A[:, cols]).astype(np.float32)
        counts = only_a.T @ only_b
        counts = np.triu(counts + counts.T, k=1)
        for i, j in zip(*np.nonzero(counts)):
            la, lb = taxonomy.label_ids[cols[i]], taxonomy.label_ids[cols[j]]
            rows.append((group.name, taxonomy.labels[int(la)].name, taxonomy.labels[int(lb)].name,
                         int(la), int(lb), int(counts[i, j])))
    df = pd.DataFrame(rows, columns=["group", "label_a", "label_b", "label_id_a", "label_id_b", "images"])
    return df.sort_values(["images", "group", "label_a"], ascending=[False, True, True]).head(top).reset_index(drop=True)
