"""Second looks at a few pairs, from their files: near misses of the verifier, and
verified pairs whose labels say they are different items.

- A near miss (a score just under --min-similarity) is re-decoded and compared on the
  whole pictures, untrimmed, at WHOLE_SIDE, against the same --min-similarity: a brightened catalogue shot clips its light
  parts to the white background and its trimmed box shrinks, so its 12x12 signature
  is misaligned with its original's; the whole frames are not (README verifier table).
- Two images whose labels differ in colour or in a single-label group (another
  category, neckline, sleeve or style) are set aside as copies only when their pixels
  match: mean absolute difference under PIXELS_MATCH grey levels on 64x64 thumbnails.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from ...taxonomy import Taxonomy
from . import hashing, verify

NEAR_BAND = 0.04  # a pair scoring within this under --min-similarity is re-decoded (README verifier table)
WHOLE_SIDE = 24  # the whole pictures are compared at 24x24 (the item is a part of the frame)
ASPECT_TOLERANCE = 0.03  # whole frames compare only when their shapes agree (log ratio)
# Re-decoded whole pictures pass the shape check only with a 90th-percentile residual under
# 0.07 x 255 levels (signatures: 0.08): two black shoes of another cut scored 0.927 there
# (benchmarks/dedup_bench.py quality set: 4 of 10 pairs of different photos passing, 7 of 178 copies).
WHOLE_SHAPE_SHIFT = 0.03
PIXELS_MATCH = 3.0  # grey levels, 64x64 thumbnails: the same picture, whatever the labels say
COLOUR_GROUP = "color"


@dataclass
class LabelDifference:
    """A verified pair whose labels differ in colour or a single-label group.

    differs: "color: Black vs Blue; category: ..." (label names); pixel_difference: the
    mean absolute grey difference on 64x64 thumbnails (nan when a file does not read)."""

    image_a: str
    image_b: str
    similarity: float
    differs: str
    pixel_difference: float
    path_a: str | None = None
    path_b: str | None = None

    @property
    def pixels_match(self) -> bool:
        return self.pixel_difference < PIXELS_MATCH


def second_look(paths: np.ndarray, width: np.ndarray, height: np.ndarray, near: np.ndarray, similarity: np.ndarray,
                overlay: np.ndarray, min_similarity: float) -> tuple[np.ndarray, int]:
    """Which candidate pairs are copies, and how many were re-decoded.

    paths, width, height: (n,) per image (width/height of the full picture, 0 when unknown).
    near: (P, 2) candidate pairs; similarity: (P,) their signatures' score; overlay: (P,)
    found by an overlay code alone, one of the two without a border (`run.candidate_pairs`).
    A pair is a copy when its score is >= min_similarity. A near miss (within NEAR_BAND)
    whose pictures have the same shape is compared again on its whole re-decoded pictures,
    an overlay candidate on its re-decoded trimmed pictures, allowing a text box
    (`redecoded_similarity`). Returns ((P,) bool, pairs re-decoded)."""
    ok = similarity >= min_similarity
    a, b = near[:, 0], near[:, 1]
    close = (similarity >= min_similarity - NEAR_BAND) & same_shape(width[a], height[a], width[b], height[b])
    miss = np.flatnonzero(~ok & (close | overlay))
    if len(miss):
        again = redecoded_similarity(paths[a[miss]].tolist(), paths[b[miss]].tolist(), overlay[miss])
        ok[miss] = np.nan_to_num(again, nan=0.0) >= min_similarity
    return ok, len(miss)


def redecoded_similarity(paths_a: Sequence[str], paths_b: Sequence[str], boxes: np.ndarray | None = None) -> np.ndarray:
    """The verification score of each pair of files re-decoded and compared at WHOLE_SIDE x
    WHOLE_SIDE: as whole, untrimmed pictures, or (boxes: (P,) bool) the best of their whole
    and trimmed pictures each, allowing a text box of up to 10% of the picture
    (verify.similarity's `whole`).
    nan where a file does not decode. Each distinct file is decoded once. Returns (P,) float32."""
    boxes = np.zeros(len(paths_a), dtype=bool) if boxes is None else np.asarray(boxes, dtype=bool)
    files = list(dict.fromkeys([*paths_a, *paths_b]))
    index = {p: i for i, p in enumerate(files)}
    boxed = {p for pa, pb, x in zip(paths_a, paths_b, boxes.tolist()) if x for p in (pa, pb)}
    thumbs, readable = _thumbnails(files, boxed)
    pairs = np.array([[index[a], index[b]] for a, b in zip(paths_a, paths_b)], dtype=np.int64).reshape(-1, 2)
    out = np.empty(len(pairs), dtype=np.float32)
    out[~boxes] = verify.similarity(thumbs, pairs[~boxes], shape_shift=WHOLE_SHAPE_SHIFT)
    # A banner along a side of a photo without a border is trimmed away: its whole picture
    # is what meets the other's trimmed one (and a copy's pad, trimmed, meets the whole).
    n = len(files)
    # The four views in one call: together they reach the compiled kernel's batch size.
    views = np.concatenate([pairs[boxes] + [da, db] for da in (0, n) for db in (0, n)])
    out[boxes] = verify.similarity(thumbs, views, whole=True).reshape(4, -1).max(axis=0)
    out[~(readable[pairs[:, 0]] & readable[pairs[:, 1]])] = np.nan
    return out


def _thumbnails(files: list[str], boxed: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """(2 * F, WHOLE_SIDE^2 * 3) uint8: each file's whole picture at WHOLE_SIDE, then its
    trimmed one (the whole one again unless the file is in `boxed`); (F,) bool: it decoded.
    On a few threads: the JPEG decode and the compiled resize run without the GIL."""
    from concurrent.futures import ThreadPoolExecutor

    thumbs = np.zeros((2 * len(files), WHOLE_SIDE * WHOLE_SIDE * 3), dtype=np.uint8)  # whole, then trimmed
    readable = np.zeros(len(files), dtype=bool)

    def work(lo: int) -> None:
        for i in range(lo, min(lo + 64, len(files))):
            try:
                with open(files[i], "rb") as fh:
                    rgb, _, _ = hashing.decode_rgb(fh.read())
            except (OSError, hashing.Unreadable):
                continue
            thumbs[i] = verify.thumbnail(rgb, None, WHOLE_SIDE).reshape(-1)
            thumbs[len(files) + i] = verify.thumbnail(*hashing.trimmed(rgb), WHOLE_SIDE).reshape(-1) \
                if files[i] in boxed else thumbs[i]
            readable[i] = True

    with ThreadPoolExecutor(max_workers=max(1, min(4, verify._cpus()))) as pool:
        list(pool.map(work, range(0, len(files), 64)))
    return thumbs, readable


def same_shape(width_a, height_a, width_b, height_b) -> np.ndarray:
    """(P,) bool: the two full-size pictures have the same aspect ratio (within ASPECT_TOLERANCE)."""
    wa, ha, wb, hb = (np.asarray(x, dtype=np.float64) for x in (width_a, height_a, width_b, height_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(np.log((wa / ha) / (wb / hb)))
    return np.nan_to_num(ratio, nan=np.inf) < ASPECT_TOLERANCE


def pixel_difference(path_a: str, path_b: str) -> float:
    """Mean absolute difference of the two files' 64x64 grey thumbnails (nan when one
    does not open): under PIXELS_MATCH they are the same picture."""
    try:
        return float(np.abs(_grey64(path_a) - _grey64(path_b)).mean())
    except Exception:  # noqa: BLE001 - a file that does not open is not the same picture
        return float("nan")


def _grey64(path: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as im:
            return np.asarray(im.convert("L").resize((64, 64)), dtype=np.float64)


def differing_labels(labels_a: Iterable[int], labels_b: Iterable[int], taxonomy: Taxonomy) -> str:
    """What differs between two label sets in colour or a single-label group, as
    "color: Black vs Blue" (groups joined by "; "), or "" when nothing does. A group
    only one image carries is not a difference (a missing label is not another label)."""
    a, b = _by_group(labels_a, taxonomy), _by_group(labels_b, taxonomy)
    parts = []
    for group in taxonomy.groups:
        if not (group.single or group.name == COLOUR_GROUP) or group.name not in a or group.name not in b:
            continue
        if a[group.name] != b[group.name]:
            parts.append(f"{group.name}: {_names(a[group.name], taxonomy)} vs {_names(b[group.name], taxonomy)}")
    return "; ".join(parts)


def _by_group(labels: Iterable[int], taxonomy: Taxonomy) -> dict[str, frozenset[int]]:
    out: dict[str, set[int]] = {}
    for label in labels:
        if label in taxonomy.labels:
            out.setdefault(taxonomy.labels[label].group, set()).add(label)
    return {g: frozenset(ids) for g, ids in out.items()}


def _names(ids: frozenset[int], taxonomy: Taxonomy) -> str:
    return "+".join(sorted(taxonomy.labels[i].name for i in ids))
