"""Crops: a candidate code for "this picture cropped a few percent per side", and an
aligned re-decode of the pairs it (or a low score) points at.

A crop of c per side of a photo without a border rescales its content by 1 / (1 - 2c)
and shifts it, so its 12x12 signature is misaligned with its original's and its phash
drifts past the candidate threshold. Two remedies, both measured on the benchmark's
mixed set (benchmarks/dedup_bench.py quality; the README's crop table):

1. `crop_code`: the phash of the picture cropped CROP_FRACTION per side, made from phash's
   own 32x32 picture (one resample-and-DCT matrix, a few microseconds, 8 bytes of the
   signature). A crop of c = 3..5% hashes within CROP_THRESHOLD bits of it (`crop_pairs`).
2. `aligned_similarity`: both files re-decoded, and each trimmed picture cut by every
   fraction of CROPS per side against the other's whole and trimmed picture (the cut
   with the best grey correlation of each of those four ways is scored), plus one
   same-scale compare where the pixel sizes say the smaller picture is a central crop of
   the larger at the same scale (a crop of the original, or of its padded copy, which
   usually leads the cluster); the best score counts (`aligned_look` picks the pairs).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from . import decodes, hashing, pairs, verify

CROP_FRACTION = 0.04  # the crop code's cut per side: the middle of the 3-5% crops it pairs
# Crop code vs plain phash: 6 bits paired 0.98 of CC0 crop copies with their original (4: 0.88)
# and made 72 new candidate pairs among 2,000 originals (8: 436).
CROP_THRESHOLD = 6
# The aligned re-decode's cuts per side of a trimmed picture: 0..6% in steps of 1%. Among
# 3,614 re-decoded pairs no two distinct photos scored >= 0.95 with them; comparing whole
# frames over the same search admitted 17 pairs of different shoes and trousers.
CROPS = np.round(np.arange(0.0, 0.065, 0.01), 3)
SIDE = 24  # as recheck.WHOLE_SIDE: the whole pictures' compare
SHAPE_SHIFT = 0.03  # as recheck.WHOLE_SHAPE_SHIFT
# A pair is looked at again, aligned, when its crop code pairs it or its signatures' score is
# within CROP_BAND under --min-similarity (product crops scored down to 0.80).
CROP_BAND = 0.08
# Same-scale compare: the smaller picture is 70..98.5% of the larger on both sides (a crop
# of 3-5% per side of a picture, or of its 10%-padded copy), its aspect within 3%.
SAME_SCALE = (0.70, 0.985)
ASPECT_TOLERANCE = 0.03
# ... and the whole frames must score >= --min-similarity and the smaller's trimmed part,
# where the item fills the thumbnail, >= --min-similarity - PART_SHIFT: black vs brown slip-on
# shoes scored 0.96 / 0.89 there, product crops 0.95-0.99 / 0.91-0.99 (0.02, 0.03, 0.04: crop
# copies found 0.72, 0.72, 0.75 of product photos, false removals 4 each).
PART_SHIFT = 0.04
# The compiled scorer from this many compares on: at 24x24 the numpy reference spent ~1.5 ms
# a compare, 80% of the aligned re-decode of 255 pairs on the 3,000 Myntra photos.
KERNEL_MIN = 64
CORRELATION_BLOCK = 4096  # `_correlation`'s compares gathered at once


@lru_cache(maxsize=2)
def _crop_dct(fraction: float, n: int = 32) -> np.ndarray:
    """(8, n): phash's low DCT rows times the linear resample that cuts `fraction` of an
    n-pixel line from each end and stretches the rest back to n pixels."""
    x = fraction * n + (np.arange(n) + 0.5) * (1 - 2 * fraction) - 0.5
    i = np.floor(x).astype(np.int64)
    f = x - i
    resample = np.zeros((n, n))
    rows = np.arange(n)
    np.add.at(resample, (rows, np.clip(i, 0, n - 1)), 1 - f)
    np.add.at(resample, (rows, np.clip(i + 1, 0, n - 1)), f)
    return hashing.METHODS["phash"]._C @ resample


def crop_code(small: np.ndarray) -> np.uint64:
    """The phash of a picture cropped CROP_FRACTION per side, from its 32x32 picture as phash
    resizes it ((32, 32) float64, `hashing.Decoded.small`). Returns a uint64."""
    m = _crop_dct(CROP_FRACTION)
    low = (m @ small @ m.T).ravel()
    ordered = np.sort(low)  # the median of 64 by hand: np.median and .mean() cost more than the DCT here
    return np.packbits(low > (ordered[31] + ordered[32]) / 2).view(">u8")[0].astype(np.uint64)


def crop_pairs(hashes: np.ndarray, crop_codes: np.ndarray, k: int = CROP_THRESHOLD) -> np.ndarray:
    """Pairs (i < j) where one picture's crop code lies within k bits of the other's phash,
    and closer than their phashes are (what a crop explains better than a plain copy: 931
    pairs instead of 2,206 on the benchmark's mixed set, the same copies found).
    hashes, crop_codes: (n,) uint64. Returns (P, 2) int64, unique rows."""
    n = len(hashes)
    found = pairs.pairs_within(np.concatenate([hashes, crop_codes]).astype(np.uint64), k).astype(np.int64)
    found = found[(found[:, 0] < n) & (found[:, 1] >= n)] - [0, n]
    found = np.unique(np.sort(found[found[:, 0] != found[:, 1]], axis=1), axis=0).reshape(-1, 2)
    i, j = found[:, 0], found[:, 1]
    cut = np.minimum(pairs.popcount(crop_codes[i] ^ hashes[j]), pairs.popcount(hashes[i] ^ crop_codes[j]))
    return found[cut < pairs.popcount(hashes[i] ^ hashes[j])]


def with_crop_pairs(near: np.ndarray, hashes: np.ndarray, crop_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The candidate pairs `near` ((P, 2) indices into hashes) and the crop pairs they
    lack, with a (P + Q,) bool: the pair's crop code pairs it. hashes, crop_codes: (n,) uint64.
    Not only pictures without a border: product crops found 0.75 so, 0.68 with the codes of
    open frames alone (967 crop-code pairs instead of 2,206 on the benchmark's mixed set)."""
    n = len(hashes)
    crop = crop_pairs(hashes, crop_codes)
    ordered = np.sort(near, axis=1)
    known = np.isin(ordered[:, 0] * n + ordered[:, 1], crop[:, 0] * n + crop[:, 1])
    more = crop[~np.isin(crop[:, 0] * n + crop[:, 1], ordered[:, 0] * n + ordered[:, 1])]
    return np.concatenate([near, more]), np.concatenate([known, np.ones(len(more), dtype=bool)])


class _Views:
    """Each file decoded once: its trimmed picture's thumbnails cut by every CROPS fraction,
    its whole picture's, and what a same-scale compare needs (the picture, its full size
    and its trimmed box as fractions of it)."""

    def __init__(self, files: Sequence[str], held: decodes.Decodes) -> None:
        self.thumbs = np.zeros((len(files) * (len(CROPS) + 1), SIDE * SIDE * 3), dtype=np.uint8)
        self.readable = np.zeros(len(files), dtype=bool)
        self.picture: list[np.ndarray | None] = [None] * len(files)  # without text boxes (textbox.framing)
        self.size = np.zeros((len(files), 2), dtype=np.float64)  # full width, height
        self.box = np.zeros((len(files), 4), dtype=np.float64)  # the trimmed box, fractions of the picture
        for i, path in enumerate(files):
            try:
                rgb, width, height = held.rgb(path)
                framed = held.framing(path)
            except (OSError, hashing.Unreadable):
                continue
            picture, (t, b, l, r) = framed.clean, framed.box.tolist()
            h, w = rgb.shape[:2]
            # Held: a file's cuts serve every chunk and pass of this worker that has it.
            self.thumbs[self.index(i, 0):self.index(i, len(CROPS))] = held.view(path, "cuts",
                                                                                 lambda: _cuts(picture, (t, b, l, r)))
            self.thumbs[self.whole(i)] = held.view(path, "whole", lambda: verify.thumbnail(rgb, None, SIDE).reshape(-1))
            self.picture[i], self.size[i], self.readable[i] = picture, (width, height), True
            self.box[i] = (t / h, b / h, l / w, r / w)

    @staticmethod
    def index(file: int, crop: int) -> int:
        return file * (len(CROPS) + 1) + crop

    def whole(self, file: int) -> int:
        return self.index(file, len(CROPS))


def _cuts(picture: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """(len(CROPS), SIDE * SIDE * 3) uint8: the thumbnails of picture's box (top, bottom, left,
    right) cut by each CROPS fraction per side."""
    t, b, l, r = box
    return np.stack([_thumb(picture, (t + c * (b - t), b - c * (b - t), l + c * (r - l), r - c * (r - l)))
                     for c in CROPS.tolist()])


def _thumb(picture: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The SIDE x SIDE box-filtered thumbnail of picture's box (top, bottom, left, right), flat."""
    return verify.thumbnail(picture, box, SIDE).reshape(-1)


def aligned_similarity(paths_a: Sequence[str], paths_b: Sequence[str],
                       held: decodes.Decodes | None = None, enough: float = -np.inf) -> np.ndarray:
    """The best verification score of each pair of files re-decoded and aligned (module
    docstring, 2): one's trimmed picture cut by each CROPS fraction per side against the
    other's whole and trimmed pictures, both ways, and the same-scale compare (`_same_scale`).
    paths_a, paths_b: (P,) file paths; held: the command's decodes (default a new
    `decodes.Decodes`; a `lookpool.Looks` with workers scores chunks of the pairs in its
    processes, the same scores); enough: the score that decides (verify.similarity's: a score
    under it may come back as another value under it; default: every score exact). nan where
    a file does not decode. Returns (P,) float32."""
    held = decodes.Decodes() if held is None else held
    return held.spread(_aligned_similarity, (list(paths_a), list(paths_b)), enough)


def _aligned_similarity(paths_a: list[str], paths_b: list[str], enough: float, held: decodes.Decodes) -> np.ndarray:
    """`aligned_similarity` of the pairs with held's decodes, in this process."""
    files, pairs = decodes.indexed(paths_a, paths_b)
    views = _Views(files, held)
    a, b = pairs.T.copy()  # each contiguous, as the kernels read them
    # (4 ways: which is cut, against the other's whole or trimmed picture; CROPS; P; 2)
    compares = np.stack([np.stack([np.stack([views.index(x, k), other], axis=1) for k in range(len(CROPS))])
                         for x, y in ((a, b), (b, a)) for other in (views.whole(y), views.index(y, 0))])
    # The verifier scores only each way's best cut by correlation: 4 compares a pair, not 28.
    cut = _correlation(views.thumbs, compares).argmax(axis=1)  # (4, P)
    chosen = np.take_along_axis(compares, cut[:, None, :, None], axis=1)[:, 0].reshape(-1, 2)
    rows, thumbs = _same_scale(views, a, b)
    # The same-scale compare's trimmed part counts PART_SHIFT up, so it decides from enough less that.
    floor = np.concatenate([np.full(len(chosen), enough), np.tile([enough, enough - PART_SHIFT], len(rows))])
    scores = verify.similarity(np.concatenate([views.thumbs, thumbs]),
                               np.concatenate([chosen, len(views.thumbs) + np.arange(len(thumbs)).reshape(-1, 2)]),
                               shape_shift=SHAPE_SHIFT, kernel_min=KERNEL_MIN, enough=floor)
    best = scores[:len(chosen)].reshape(4, -1).max(axis=0)
    same = scores[len(chosen):]
    best[rows] = np.maximum(best[rows], np.minimum(same[0::2], same[1::2] + PART_SHIFT))
    best[~(views.readable[a] & views.readable[b])] = np.nan
    return best.astype(np.float32)


def _correlation(thumbs: np.ndarray, compares: np.ndarray) -> np.ndarray:
    """The correlation of the grey levels of each compared pair of thumbnails: thumbs (N, V)
    uint8, compares (..., 2) indices into it. Returns compares.shape[:-1] float32."""
    rgb = thumbs.reshape(len(thumbs), -1, 3)
    # The channels' sum is exact in float32, so this is .mean(axis=2, dtype=np.float32) bit for bit, 2.7x faster.
    grey = (rgb[..., 0].astype(np.float32) + rgb[..., 1] + rgb[..., 2]) / np.float32(3)
    grey -= grey.mean(axis=1, keepdims=True)
    grey /= np.maximum(np.linalg.norm(grey, axis=1, keepdims=True), 1e-6)
    flat = compares.reshape(-1, 2)
    out = np.empty(len(flat), dtype=np.float32)
    # CORRELATION_BLOCK compares at a time: the same numbers, 2.5-3.8x faster than gathering
    # all 224,000 rows of a synthetic 8,000-pair call at once (memory, not arithmetic).
    for lo in range(0, len(flat), CORRELATION_BLOCK):
        f = flat[lo:lo + CORRELATION_BLOCK]
        out[lo:lo + CORRELATION_BLOCK] = np.einsum("ij,ij->i", grey[f[:, 0]], grey[f[:, 1]])
    return out.reshape(compares.shape[:-1])


def same_scale(width_a, height_a, width_b, height_b) -> np.ndarray:
    """(P,) bool: the smaller picture's full size is SAME_SCALE of the larger's on both sides,
    with the same aspect (ASPECT_TOLERANCE): it may be a crop of it at the same scale."""
    a = np.stack([width_a, height_a], axis=-1).astype(np.float64)
    b = np.stack([width_b, height_b], axis=-1).astype(np.float64)
    a_larger = (a.prod(axis=-1) >= b.prod(axis=-1))[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(a_larger, b, a) / np.where(a_larger, a, b)
        aspect = np.nan_to_num(np.abs(np.log(ratio[:, 0] / ratio[:, 1])), nan=np.inf)
    return (aspect < ASPECT_TOLERANCE) & (ratio.min(axis=1) >= SAME_SCALE[0]) & (ratio.max(axis=1) <= SAME_SCALE[1])


def _same_scale(views: _Views, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs whose full sizes say the smaller is a central crop of the larger at the same
    scale (`same_scale`), and for each four thumbnails, two compares: the larger cut to the
    smaller's frame against the smaller's whole picture, and the same part of the larger as
    the smaller's trimmed box against that. The whole frames so compared admitted black vs
    brown slip-on shoes (0.97); their trimmed parts, where the item fills the thumbnail, do
    not. Returns ((R,) pair indices, (4R, SIDE * SIDE * 3) uint8)."""
    fits = same_scale(*views.size[a].T, *views.size[b].T) & views.readable[a] & views.readable[b]
    rows = np.flatnonzero(fits)
    big = np.where(views.size[a].prod(axis=1) >= views.size[b].prod(axis=1), a, b)[rows]
    small = np.where(big == a[rows], b[rows], a[rows])
    thumbs = np.zeros((4 * len(rows), SIDE * SIDE * 3), dtype=np.uint8)
    for j, (x, y) in enumerate(zip(big.tolist(), small.tolist())):
        picture = views.picture[x]
        h, w = picture.shape[:2]
        rx, ry = views.size[y] / views.size[x]
        cx, cy = (1 - rx) / 2, (1 - ry) / 2
        t, b_, l, r = views.box[y]
        thumbs[4 * j] = _thumb(picture, (cy * h, h - cy * h, cx * w, w - cx * w))
        thumbs[4 * j + 1] = views.thumbs[views.whole(y)]
        thumbs[4 * j + 2] = _thumb(picture, ((cy + t * ry) * h, (cy + b_ * ry) * h, (cx + l * rx) * w, (cx + r * rx) * w))
        thumbs[4 * j + 3] = views.thumbs[views.index(y, 0)]
    return rows, thumbs


def aligned_route(width: np.ndarray, height: np.ndarray, near: np.ndarray, similarity: np.ndarray, crop: np.ndarray,
                  min_similarity: float) -> np.ndarray:
    """(P,) bool: the pairs `aligned_look` re-decodes when they are not copies yet: paired by the
    crop code (crop), or scoring within CROP_BAND under min_similarity with full sizes that may
    be a crop at the same scale (`same_scale`). width, height: (n,); near: (P, 2); similarity: (P,)."""
    # A low score alone is a crop only where the sizes say so: 17,213 pairs were re-decoded
    # on the benchmark's 20,000 photos without this, half of the command.
    band = (similarity >= min_similarity - CROP_BAND) & \
        same_scale(width[near[:, 0]], height[near[:, 0]], width[near[:, 1]], height[near[:, 1]])
    return np.asarray(crop, dtype=bool) | band


def aligned_look(paths: np.ndarray, width: np.ndarray, height: np.ndarray, near: np.ndarray, similarity: np.ndarray,
                 ok: np.ndarray, crop: np.ndarray, min_similarity: float,
                 held: decodes.Decodes | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which pairs not yet copies are copies once aligned: those the crop code paired (crop,
    (P,) bool), or scoring within CROP_BAND under min_similarity whose full sizes may be a
    crop at the same scale (`same_scale`), are re-decoded and scored by `aligned_similarity`.
    paths, width, height: (n,) per image (full size, 0 when unknown); near: (P, 2);
    similarity, ok: (P,); held: the command's decodes. Returns ((P,) bool: ok or copies once aligned, (A,) the indices of
    the pairs re-decoded, (A,) float32 their aligned scores, exact from min_similarity on)."""
    again = np.flatnonzero(~ok & aligned_route(width, height, near, similarity, crop, min_similarity))
    ok = ok.copy()
    score = np.zeros(0, dtype=np.float32)
    if len(again):
        score = aligned_similarity(paths[near[again, 0]].tolist(), paths[near[again, 1]].tolist(), held,
                                   min_similarity)
        ok[again] = np.nan_to_num(score, nan=0.0) >= min_similarity
    return ok, again, score
