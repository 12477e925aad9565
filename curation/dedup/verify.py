"""The second stage of dedup: is a candidate pair (hashes within --threshold) a copy?

A perceptual hash alone cannot tell two catalogue photos apart when the items share a
silhouette on white: on 3,000 Myntra product photos 10,203 pairs lie within phash
distance 6, and about 10 of them are copies. So every candidate pair is verified with a
per-image signature: an 8x8 RGB thumbnail (192 bytes) of the picture after its uniform
borders are trimmed, stored in the hash cache beside the hash and made in the same
decode pass.

The score of a pair: fit the brighter thumbnail from the darker one with one gain and
offset shared by the three channels (fitted on pixels neither image has clipped, then
clipped like a brightened photo is), take each pixel's largest channel error, and
report 1 - (90th percentile of those errors) / 255. A copy keeps its colours up to a
global brightness change, so its error is small everywhere but at a small overlay (the
10% of pixels the percentile ignores); a different product of the same shape differs in
colour, which no shared gain can undo. Normalised correlation, the usual choice, is
dominated by the silhouette on white and does not see the colour: measured on 2,000
product and 1,000 CC0 photos with 7 transformed copies of 300 of them
(benchmarks/dedup_bench.py, README table), correlation of 16x16 grey thumbnails at 0.97
let 103 distinct photos pair with another while finding 87% of brightened copies; this
score at 0.93 lets 23 pair and finds 79-90%.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

SIDE = 8  # signature thumbnail side
SIGNATURE_BYTES = SIDE * SIDE * 3  # 192 bytes: 1M images stay under 256 MB in the cache
DEFAULT_MIN_SIMILARITY = 0.93  # a 90th-percentile error of 18 grey levels (calibrated: module docstring)
PERCENTILE = 90
CLIPPED = 250  # a channel value at or above this is treated as clipped (not used to fit the gain)
CHUNK = 1 << 16  # pairs scored at once: 64k x 192 x 8 bytes x ~6 arrays stay under 0.6 GiB
# From this many pairs on, the compiled kernel (numba, threads) scores them: ~70x faster
# than the numpy reference `_score` (benchmarks/dedup_bench.py, section 3), which small
# runs keep so they need no compilation.
KERNEL_MIN = 20_000


def signature(rgb: np.ndarray, box: tuple[float, float, float, float] | None = None) -> bytes:
    """The verification signature of an RGB picture ((h, w, 3) uint8) or of its part
    box = (top, bottom, left, right) (fractions of a pixel allowed: the trimmed box): its
    SIDE x SIDE box-filtered thumbnail, row-major RGB bytes (SIGNATURE_BYTES long)."""
    area = None if box is None else (box[2], box[0], box[3], box[1])
    thumb = Image.fromarray(np.ascontiguousarray(rgb), "RGB").resize((SIDE, SIDE), Image.Resampling.BOX, box=area)
    return thumb.tobytes()


def as_array(signatures: list[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """Signatures as an (N, SIGNATURE_BYTES) uint8 array and an (N,) bool "present" mask
    (a missing or wrongly sized signature is all zeros and absent)."""
    out = np.zeros((len(signatures), SIGNATURE_BYTES), dtype=np.uint8)
    present = np.zeros(len(signatures), dtype=bool)
    for i, s in enumerate(signatures):
        if s is not None and len(s) == SIGNATURE_BYTES:
            out[i] = np.frombuffer(s, dtype=np.uint8)
            present[i] = True
    return out, present


def similarity(signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The verification score of each pair, in [0, 1] (1: the same picture).

    signatures: (N, SIGNATURE_BYTES) uint8. pairs: (P, 2) indices into it.
    Returns (P,) float32. See the module docstring for what the score measures."""
    pairs = np.ascontiguousarray(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    out = np.empty(len(pairs), dtype=np.float32)
    if len(pairs) < KERNEL_MIN:
        for lo in range(0, len(pairs), CHUNK):
            p = pairs[lo:lo + CHUNK]
            out[lo:lo + CHUNK] = _score(signatures[p[:, 0]].astype(np.float64), signatures[p[:, 1]].astype(np.float64))
        return out
    from . import _kernels  # numba compiles on first use (cached on disk); keep imports light

    sigs = np.ascontiguousarray(signatures, dtype=np.uint8)
    blocks = [(lo, min(lo + CHUNK, len(pairs))) for lo in range(0, len(pairs), CHUNK)]

    def work(block: tuple[int, int]) -> None:
        lo, hi = block
        _kernels.residual_scores(sigs, pairs[lo:hi], float(CLIPPED), float(PERCENTILE), out[lo:hi])

    with ThreadPoolExecutor(max_workers=max(1, min(len(blocks), _cpus()))) as pool:
        list(pool.map(work, blocks))
    return out


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The numpy reference of the score: a, b (P, SIGNATURE_BYTES) float64, changed in place."""
    swap = a.mean(axis=1) > b.mean(axis=1)  # fit the brighter (b) from the darker (a)
    a[swap], b[swap] = b[swap], a[swap].copy()
    m = (a < CLIPPED) & (b < CLIPPED)
    n = np.maximum(m.sum(axis=1), 1)
    ma = (a * m).sum(axis=1) / n
    mb = (b * m).sum(axis=1) / n
    da = (a - ma[:, None]) * m
    var = (da * da).sum(axis=1)
    cov = (da * (b - mb[:, None])).sum(axis=1)
    gain = np.clip(np.where(var > 1e-3, cov / np.maximum(var, 1e-3), 1.0), 0.7, 1.5)
    offset = mb - gain * ma
    pred = np.clip(gain[:, None] * a + offset[:, None], 0, 255)
    err = np.abs(pred - b).reshape(len(a), -1, 3).max(axis=2)
    return (1.0 - np.percentile(err, PERCENTILE, axis=1) / 255.0).astype(np.float32)
