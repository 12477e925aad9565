"""The second stage of dedup: is a candidate pair (hashes within --threshold) a copy?

A perceptual hash cannot tell two catalogue photos apart when they come from one shoot:
on 3,000 Myntra product photos 2,779 pairs lie within trimmed-phash distance 8, and most
are the same pose in another colour. So every candidate pair is verified with a
per-image signature: a 12x12 RGB thumbnail (432 bytes) of the picture after its uniform
borders are trimmed, stored in the hash cache beside the hash and made in the same
decode pass (with a version byte, the picture's flags, its overlay codes and its crop
code: 490 bytes).

The score of a pair asks "is one a brightness/contrast change of the other, up to a
small overlay at an edge?", and looks at every place, not a percentile:
1. Fit the brighter thumbnail from the darker with one gain and offset shared by the
   three channels, limited to what a brightness or contrast change can do (gain within
   1/1.2..1.2; offset between 0 and (1 - gain) x the darker picture's mean, the pivot of
   a contrast change): lifting a black item to charcoal on white is not a contrast change.
2. Compare in CIELAB (perceptual: a navy or brown item differs from a black one by its
   chroma even where the RGB levels are close); each pixel's error is its distance from
   the range its 3x3 neighbourhood spans in the other picture (a sub-pixel shift of the
   box costs nothing at an edge, a flat region must match), the larger of lightness and
   chroma, both directions.
3. Average the errors over 2x2 blocks and take the largest: one region of another colour
   (briefs on a model, a sock's pattern) decides. One window at a corner (4x4) or along
   a side (2 lines) may be left out first: a text box, badge or watermark there is a copy.

similarity = 1 - error / 100 (CIELAB units). Chosen on 3,000 product + 1,000 CC0 photos
with 12 transforms of 150 of them and 200 recoloured product photos
(benchmarks/dedup_bench.py; the README's verifier table).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import hashing  # it imports this module too: only its functions are used here

SIDE = 12  # signature thumbnail side
THUMB_BYTES = SIDE * SIDE * 3  # 432 bytes
# The trimmed picture's phash with one overlay region filled (hashing.OVERLAY_REGIONS: each
# corner, the bottom strip), and the whole picture's with its bottom strip filled: a copy
# with a text box there hashes like its original (hashing.overlay_codes).
OVERLAY_CODES = 6
# The first byte of every signature. The hash cache keeps a signature (and the hash made with
# it) only while this matches: change it whenever the trim, a hash or the signature changes.
VERSION = 4
HEADER = 2  # VERSION, then the picture's flags:
OPEN_FRAME = 1  # it has no border (hashing._ring)
TEXT_BOX = 2  # a text box was painted over (hashing.without_text_boxes)
CORNERS_SHIFT = 2  # then 4 bits: the frame corners that box touched (hashing.box_corners)
CROP_AT = HEADER + THUMB_BYTES + 8 * OVERLAY_CODES  # then the picture's crop code (align.crop_code)
SIGNATURE_BYTES = CROP_AT + 8  # 490 bytes: 1M images stay under 512 MB in the cache
DEFAULT_MIN_SIMILARITY = 0.96  # a largest 2x2-block error of 4 CIELAB units (README's verifier table)
# The shape check beside the colour check: the 90th percentile of the RGB residual after one
# gain (the verifier before this one) must be under 20 levels (0.92), scored as 0.92 +
# SHAPE_SHIFT = 0.96. The colour score alone forgives what its 3x3 tolerance spans: two black
# shoes of another cut, checks vs plain (README verifier table).
PERCENTILE = 90
SHAPE_SHIFT = 0.04
# Where the ratio of the two thumbnails' spreads (`spread_ratio`, the gain of a brightness
# or contrast change) falls outside these, the pair is no copy (score 0): the item's
# contrast against its background changed by over 1.4x, as when only the item is
# recoloured (a striped white polo made charcoal: 0.59, its signatures scoring 0.962).
# The copies of the verifier table's set fit 0.57..1.89; none outside scored 0.96.
SHAPE_GAIN = (0.7, 1.5)
CLIPPED = 250  # a channel value at or above this is treated as clipped (not used to fit the gain)
MAX_GAIN = 1.2  # brightness/contrast changes of +-15% and a little more; the gain stays in 1/1.2..1.2
OFFSET_SLACK = 4.0  # grey levels the fitted offset may stray past a contrast change's
CORNER = 4  # a corner window left out for an overlay: 4x4 of 12x12 (11% of the picture)
ROBUST_SHARE = 0.15  # whole frames: the pixels left out of the second fit (a text box of 10% and its blur)
WIDE = 0.5  # whole frames: a corner box half the side wide and a quarter high, or the other way round
STRIP = 2  # a side window: 2 lines of 12 (an overlay along the bottom up to ~10%, blurred by the box filter)
# A stored signature's score allowing a painted box counts this much less: look-alike items of
# one shoot beside a boxed copy scored up to 0.965 so (dedup_bench section 4's 20,000 photos:
# 8 / 5 / 3 distinct pairs at 0, 0.002, 0.005; copies passing 2,167 / 2,145 / 2,106).
BOX_DISCOUNT = 0.005
CHUNK = 1 << 12  # pairs scored at once by the numpy reference
# From this many pairs on, the compiled kernel (numba, threads) scores them; small runs keep
# the numpy reference `_score` so they need no compilation.
KERNEL_MIN = 2_000
# `similarity`'s enough is met by scores this far under it: callers compare float32 scores with
# float64 thresholds and add shifts in float32, so a bound a rounding under enough is scored exactly.
ENOUGH_MARGIN = 1e-4


def signature(rgb: np.ndarray, box: tuple[float, float, float, float] | None = None,
              overlay_codes: np.ndarray | None = None, flags: int = 0, crop_code: int = 0) -> bytes:
    """The verification signature of an RGB picture ((h, w, 3) uint8): VERSION, flags
    (OPEN_FRAME, TEXT_BOX), the SIDE x SIDE box-filtered thumbnail of its part box = (top,
    bottom, left, right) (fractions of a pixel allowed: the trimmed box; None: all of it)
    as row-major RGB bytes, then the OVERLAY_CODES uint64 `overlay_codes`
    (hashing.overlay_codes; zeros when None), then the uint64 crop_code (align.crop_code).
    SIGNATURE_BYTES long."""
    codes = np.zeros(OVERLAY_CODES, dtype=np.uint64) if overlay_codes is None else overlay_codes
    return (bytes([VERSION, flags]) + thumbnail(rgb, box, SIDE).tobytes()
            + np.asarray(codes, dtype="<u8").tobytes() + np.asarray([crop_code], dtype="<u8").tobytes())


def thumbnail(rgb: np.ndarray, box: tuple[float, float, float, float] | None, side: int) -> np.ndarray:
    """(side, side, 3) uint8 box-filtered thumbnail of `rgb` or of its box (top, bottom, left, right)."""
    area = None if box is None else (box[2], box[0], box[3], box[1])
    return hashing.resample(rgb, (side, side), hashing.BOX, area)  # Pillow's BOX resize, bit for bit


def current(sig: bytes | None) -> bool:
    """The signature was made by this version (size and VERSION byte)."""
    return sig is not None and len(sig) == SIGNATURE_BYTES and sig[0] == VERSION


def as_array(signatures: list[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """The signatures' thumbnails as an (N, THUMB_BYTES) uint8 array and an (N,) bool
    "present" mask (a missing signature, or one made by another version, is all zeros
    and absent)."""
    out = np.zeros((len(signatures), THUMB_BYTES), dtype=np.uint8)
    present = np.zeros(len(signatures), dtype=bool)
    for i, s in enumerate(signatures):
        if current(s):
            out[i] = np.frombuffer(s, dtype=np.uint8, count=THUMB_BYTES, offset=HEADER)
            present[i] = True
    return out, present


def overlay_codes(signatures: list[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """((N, OVERLAY_CODES) uint64 overlay hashes, (N,) uint8 flags: OPEN_FRAME, TEXT_BOX) of
    each signature (zeros where absent or made by another version)."""
    out = np.zeros((len(signatures), OVERLAY_CODES), dtype=np.uint64)
    flags = np.zeros(len(signatures), dtype=np.uint8)
    for i, s in enumerate(signatures):
        if current(s):
            out[i] = np.frombuffer(s, dtype="<u8", count=OVERLAY_CODES, offset=HEADER + THUMB_BYTES)
            flags[i] = s[1]
    return out, flags


def crop_codes(signatures: list[bytes | None]) -> np.ndarray:
    """(N,) uint64: each signature's crop code (align.crop_code; 0 where absent or made by
    another version)."""
    return np.array([int.from_bytes(s[CROP_AT:CROP_AT + 8], "little") if current(s) else 0 for s in signatures],
                    dtype=np.uint64)


def pair_scores(signatures: np.ndarray, pairs: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """`similarity` of each pair, or, where either picture had a text box painted over
    (flags TEXT_BOX), the better of that and the score allowing a box of up to 10% (`whole`)
    at the corners where the box was found: what the box hid of the item is missing from
    that picture's trimmed thumbnail; elsewhere the two must match.
    signatures: (N, THUMB_BYTES); pairs: (P, 2); flags: (N,) uint8. Returns (P,) float32."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = similarity(signatures, pairs)
    either = flags[pairs[:, 0]] | flags[pairs[:, 1]]
    boxed = np.flatnonzero(either & TEXT_BOX)
    # A box allowed anywhere (the worst 15% of pixels left out anywhere) lifted look-alike items
    # from 0.90 to 0.96: 51 pairs of distinct photos at 0.96 there, 8 with the box placed
    # (dedup_bench section 4's 20,000 photos; the copies passing 2,304 -> 2,167).
    where = (either[boxed] >> CORNERS_SHIFT) & 15
    # Each corner set's pairs in as many parts as CPUs, scored at once: one call per set ran on one
    # thread (under a compiled block each). dedup_bench section 4's 79,306 candidate pairs, 24,205 of
    # them painted, on 2 CPUs: 2.9 s -> 2.1-2.35 s, every score the same. A part takes the scorer its
    # whole set would (the compiled one from KERNEL_MIN pairs), so no score changes.
    parts = []
    for corners in np.unique(where).tolist():
        rows = boxed[where == corners]
        kernel_min = 0 if len(rows) >= KERNEL_MIN else np.iinfo(np.int64).max
        parts += [(corners, part, kernel_min) for part in np.array_split(rows, _cpus()) if len(part)]

    def score(job: tuple[int, np.ndarray, int]) -> np.ndarray:
        corners, rows, kernel_min = job
        return similarity(signatures, pairs[rows], whole=True, corners=corners or 15, kernel_min=kernel_min)

    with ThreadPoolExecutor(max_workers=max(1, min(len(parts), _cpus()))) as pool:
        for (_, rows, _), boxed_score in zip(parts, pool.map(score, parts)):
            out[rows] = np.maximum(out[rows], boxed_score - BOX_DISCOUNT)
    return out


def similarity(signatures: np.ndarray, pairs: np.ndarray, whole: bool = False,
               shape_shift: float = SHAPE_SHIFT, kernel_min: int = KERNEL_MIN,
               corners: int | None = None, enough: float | np.ndarray = -np.inf) -> np.ndarray:
    """The verification score of each pair, in [0, 1] (1: the same picture).

    signatures: (N, 3 * side * side) uint8 thumbnails (THUMB_BYTES, or larger square
    ones for a re-decoded pair). pairs: (P, 2) indices into it. whole: the thumbnails are
    of whole, untrimmed frames, where a text box in a corner may also be a wide or a tall
    one (`windows`). shape_shift: what the shape check's score is raised by before the
    smaller of the two decides (SHAPE_SHIFT; less is stricter). kernel_min: from this many
    pairs on the compiled kernel scores them. corners (with whole; bits 1 top left, 2 top
    right, 4 bottom left, 8 bottom right): the box is allowed only at these corners, and the
    second fit leaves pixels out only there (None: at any corner). enough (a float or (P,)):
    the score that decides each pair for the caller; a score under it may come back as any
    value still under it (the shape check alone put it there, and the colour score is not
    computed); at or above it every score is exact (default: all exact). Returns (P,)
    float32. See the module docstring for what the score measures."""
    pairs = np.ascontiguousarray(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    side = int(round((signatures.shape[1] // 3) ** 0.5))
    regions = windows(side, whole, corners)
    region = robust_region(side, 15 if corners is None else corners)
    if np.all(np.asarray(enough) == -np.inf):
        return _similarity(signatures, pairs, side, whole, shape_shift, kernel_min, regions, region)
    # The shape check first: it costs a sixth of the colour score, and on the second look's
    # re-decoded compares it alone fails 74-92% of them (benchmarks/dedup_bench.py command).
    # The pairs left take the path all of them would have (the two agree to ~1e-6, not bit for bit).
    kernel_min = 0 if len(pairs) >= kernel_min else np.iinfo(np.int64).max
    bound = _shape(signatures, pairs, whole, kernel_min, region) + np.float32(shape_shift)
    needed = np.flatnonzero(bound.astype(np.float64) >= np.asarray(enough, dtype=np.float64) - ENOUGH_MARGIN)
    out = bound.copy()
    out[needed] = _similarity(signatures, pairs[needed], side, whole, shape_shift, kernel_min, regions, region)
    return out


def _shape(signatures: np.ndarray, pairs: np.ndarray, whole: bool, kernel_min: int, region: np.ndarray) -> np.ndarray:
    """The shape check's score of each pair (`_residual`; compiled from kernel_min pairs on), as `similarity` takes it."""
    if len(pairs) < kernel_min:
        used, local = np.unique(pairs, return_inverse=True)
        sig = signatures[used].astype(np.float64)
        local = local.reshape(pairs.shape)
        return np.concatenate([np.zeros(0, dtype=np.float32)] + [
            _residual(sig[p[:, 0]], sig[p[:, 1]], whole, region)
            for p in (local[lo:lo + CHUNK] for lo in range(0, len(local), CHUNK))])
    from . import _kernels

    sigs, out = np.ascontiguousarray(signatures, dtype=np.uint8), np.empty(len(pairs), dtype=np.float32)
    if whole:
        _kernels.residual_scores_robust(sigs, pairs, float(CLIPPED), float(PERCENTILE), ROBUST_SHARE, region, out)
    else:
        _kernels.residual_scores(sigs, pairs, float(CLIPPED), float(PERCENTILE), out)
    return out


def _similarity(signatures: np.ndarray, pairs: np.ndarray, side: int, whole: bool, shape_shift: float,
                kernel_min: int, regions: np.ndarray, region: np.ndarray) -> np.ndarray:
    """`similarity` with every score exact; pairs (P, 2) int64 contiguous, regions `windows`, region `robust_region`."""
    out = np.empty(len(pairs), dtype=np.float32)
    if len(pairs) < kernel_min:
        # Only the thumbnails the pairs name: a re-decode holds thousands, and converting
        # all of them to Lab per call was half of a 20,000-photo run (dedup_bench section 4).
        used, local = np.unique(pairs, return_inverse=True)
        signatures, pairs = signatures[used], local.reshape(pairs.shape)
        lab = to_lab(signatures.reshape(len(signatures), side, side, 3).astype(np.float64))
        for lo in range(0, len(pairs), CHUNK):
            p = pairs[lo:lo + CHUNK]
            a, b = signatures[p[:, 0]].astype(np.float64), signatures[p[:, 1]].astype(np.float64)
            shape = _residual(a.copy(), b.copy(), whole, region) + shape_shift
            colour = _score(a, b, lab[p[:, 0]], lab[p[:, 1]], side, regions, whole, region)
            out[lo:lo + CHUNK] = np.minimum(colour, shape)
        return out
    from . import _kernels  # numba compiles on first use (cached on disk); keep imports light

    sigs = np.ascontiguousarray(signatures, dtype=np.uint8)
    wins = np.ascontiguousarray(regions.reshape(len(regions), side * side))
    params = np.array([CLIPPED, MAX_GAIN, OFFSET_SLACK, ROBUST_SHARE], dtype=np.float64)
    blocks = [(lo, min(lo + CHUNK * 4, len(pairs))) for lo in range(0, len(pairs), CHUNK * 4)]

    shape = np.empty(len(pairs), dtype=np.float32)

    def work(block: tuple[int, int]) -> None:
        lo, hi = block
        _kernels.colour_scores(sigs, pairs[lo:hi], wins, params, whole, region, out[lo:hi])
        if whole:
            _kernels.residual_scores_robust(sigs, pairs[lo:hi], float(CLIPPED), float(PERCENTILE), ROBUST_SHARE, region,
                                                   shape[lo:hi])
        else:
            _kernels.residual_scores(sigs, pairs[lo:hi], float(CLIPPED), float(PERCENTILE), shape[lo:hi])

    with ThreadPoolExecutor(max_workers=max(1, min(len(blocks), _cpus()))) as pool:
        list(pool.map(work, blocks))
    return np.minimum(out, shape + np.float32(shape_shift))


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB values (any shape ending in 3, 0..255 float) -> CIELAB (D65), same shape."""
    x = rgb / 255.0
    x = np.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    xyz = x @ _RGB_TO_XYZ.T
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


# sRGB (linear) to XYZ, each row divided by the D65 white's X, Y, Z.
_RGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) \
    / np.array([0.9505, 1.0, 1.089])[:, None]


def windows(side: int, whole: bool = False, corners: int | None = None) -> np.ndarray:
    """(k, side, side) bool: no window, the four corners (CORNER/12 of the side), the four
    sides (STRIP/12 of it): the regions an overlay may occupy. whole: also each corner's
    wide and tall box (WIDE of the side by half of that: 12.5% of the frame), the shapes
    a text box of up to 10% of a whole frame takes; corners (bits as `similarity`'s): only
    at those corners (None: all four)."""
    c, s = max(1, round(side * CORNER / 12)), max(1, round(side * STRIP / 12))
    out = [np.zeros((side, side), dtype=bool)] + _corner_windows(side, [(c, c)], 15)
    if whole:
        out += _corner_windows(side, [(round(side * WIDE), round(side * WIDE / 2)), (round(side * WIDE / 2), round(side * WIDE))], 15 if corners is None else corners)
    for cut in (np.s_[:s], np.s_[-s:], np.s_[:, :s], np.s_[:, -s:]):
        out.append(np.zeros((side, side), dtype=bool))
        out[-1][cut] = True
    return np.array(out)


def _corner_windows(side: int, shapes: list[tuple[int, int]], corners: int) -> list[np.ndarray]:
    """(side, side) bool boxes of each (width, height) in shapes at each corner in corners
    (bits 1 top left, 2 top right, 4 bottom left, 8 bottom right), shape by shape."""
    out = []
    for width, height in shapes:
        for bit, (r, q) in enumerate([(0, 0), (0, side - width), (side - height, 0), (side - height, side - width)]):
            if corners >> bit & 1:
                out.append(np.zeros((side, side), dtype=bool))
                out[-1][r:r + height, q:q + width] = True
    return out


def robust_region(side: int, corners: int) -> np.ndarray:
    """(side * side,) bool: where a whole frame's second fit may leave pixels out: the corner
    and box windows (`windows`) at those corners, where a text box may lie. Left out anywhere,
    the middle of a look-alike item went too (another black shoe of a shoot: 0.965 boxed)."""
    c = max(1, round(side * CORNER / 12))
    return np.any(_corner_windows(side, [(c, c), (round(side * WIDE), round(side * WIDE / 2)), (round(side * WIDE / 2), round(side * WIDE))], corners), axis=0).reshape(-1)


def _fit(a: np.ndarray, b: np.ndarray, skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gain and offset (P,) that best predict b from a (P, V), limited to a brightness or
    contrast change (module docstring, step 1), fitted on the values not in skip ((P, V) bool)."""
    gain, ma, mb = _least_squares(a, b, 1 / MAX_GAIN, MAX_GAIN, skip)
    keep = np.ones_like(a, dtype=bool) if skip is None else ~skip
    pivot = (1 - gain) * (a * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1)
    offset = np.clip(mb - gain * ma, np.minimum(0, pivot) - OFFSET_SLACK, np.maximum(0, pivot) + OFFSET_SLACK)
    return gain, offset


def _least_squares(a: np.ndarray, b: np.ndarray, low: float, high: float,
                   skip: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """(gain clipped to low..high, mean of a, mean of b) of the least-squares line b ~ a
    over the values neither has clipped and skip ((V,) or (P, V) bool) leaves in; a, b (P, V)."""
    m = (a < CLIPPED) & (b < CLIPPED) & (True if skip is None else ~skip)
    n = np.maximum(m.sum(axis=1), 1)
    ma = (a * m).sum(axis=1) / n
    mb = (b * m).sum(axis=1) / n
    da = (a - ma[:, None]) * m
    var = (da * da).sum(axis=1)
    cov = (da * (b - mb[:, None])).sum(axis=1)
    return np.clip(np.where(var > 1e-3, cov / np.maximum(var, 1e-3), 1.0), low, high), ma, mb


def _outside(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(P, s, s): how far each Lab pixel of y lies outside the range of x's 3x3 neighbourhood,
    the larger of lightness and chroma."""
    s = x.shape[1]
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    # Running extremes, not a stack of the 9 shifts: the same numbers, a third of the time.
    hi, lo = pad[:, :s, :s].copy(), pad[:, :s, :s].copy()
    for i, j in [(i, j) for i in range(3) for j in range(3)][1:]:
        np.maximum(hi, pad[:, i:i + s, j:j + s], out=hi)
        np.minimum(lo, pad[:, i:i + s, j:j + s], out=lo)
    d = np.maximum(0, np.maximum(y - hi, lo - y))
    return np.maximum(d[..., 0], np.hypot(d[..., 1], d[..., 2]))


def _score(a: np.ndarray, b: np.ndarray, lab_a: np.ndarray, lab_b: np.ndarray, side: int,
           regions: np.ndarray, whole: bool = False, region: np.ndarray | None = None) -> np.ndarray:
    """The numpy reference of the score. a, b: (P, 3 * side^2) float64 RGB; lab_a, lab_b
    their (P, side, side, 3) CIELAB; regions: `windows`. whole: the gain and offset are
    fitted again without the ROBUST_SHARE of pixels the first fit predicts worst (a dark
    box over 8% of a frame pulls one fit off), of those in region ((side^2,) bool; default all)."""
    swap = a.mean(axis=1) > b.mean(axis=1)  # fit the brighter (b) from the darker (a)
    a, b = np.where(swap[:, None], b, a), np.where(swap[:, None], a, b)
    lab_b = np.where(swap[:, None, None, None], lab_a, lab_b)
    gain, offset = _fit(a, b)
    if whole:
        res = np.abs(np.clip(gain[:, None] * a + offset[:, None], 0, 255) - b).reshape(len(a), -1, 3).max(axis=2)
        worst = (res > np.quantile(res, 1 - ROBUST_SHARE, axis=1)[:, None]) & (True if region is None else region)
        gain, offset = _fit(a, b, np.repeat(worst, 3, axis=1))
    pred = to_lab(np.clip(gain[:, None] * a + offset[:, None], 0, 255).reshape(len(a), side, side, 3))
    err = np.maximum(_outside(pred, lab_b), _outside(lab_b, pred))
    best = np.full(len(a), np.inf)
    for w in regions:
        e = np.where(w[None], 0.0, err)
        blocks = (e[:, 1:, 1:] + e[:, :-1, 1:] + e[:, 1:, :-1] + e[:, :-1, :-1]) / 4
        best = np.minimum(best, blocks.reshape(len(a), -1).max(axis=1))
    return np.clip(1.0 - best / 100.0, 0.0, 1.0).astype(np.float32)


def spread_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P,) the standard deviation of b over that of a, over the values neither has clipped;
    a, b (P, V). The gain a brightness or contrast change applies, whatever the noise (a
    least-squares gain shrinks towards 0 with it: a resized copy of a near-white item fit 0.4)."""
    m = (a < CLIPPED) & (b < CLIPPED)
    n = np.maximum(m.sum(axis=1), 1)
    da = (a - ((a * m).sum(axis=1) / n)[:, None]) * m
    db = (b - ((b * m).sum(axis=1) / n)[:, None]) * m
    return np.sqrt((db * db).sum(axis=1) / np.maximum((da * da).sum(axis=1), 1e-3))


def _residual(a: np.ndarray, b: np.ndarray, whole: bool = False, region: np.ndarray | None = None) -> np.ndarray:
    """The shape check's numpy reference: 1 - (PERCENTILE-th percentile of each pixel's
    largest channel error after fitting the brighter from the darker with one gain and
    offset) / 255. whole: fitted again, and the percentile taken, without the ROBUST_SHARE
    of pixels the first fit predicts worst in region (`_score`); else 0 where the `spread_ratio` lies
    outside SHAPE_GAIN. a, b (P, V) float64, changed in place."""
    swap = a.mean(axis=1) > b.mean(axis=1)
    a[swap], b[swap] = b[swap], a[swap].copy()
    gain, ma, mb = _least_squares(a, b, *SHAPE_GAIN)
    err = np.abs(np.clip(gain[:, None] * a + (mb - gain * ma)[:, None], 0, 255) - b).reshape(len(a), -1, 3).max(axis=2)
    if not whole:
        score = 1.0 - np.percentile(err, PERCENTILE, axis=1) / 255.0
        spread = spread_ratio(a, b)
        return np.where((spread > SHAPE_GAIN[0]) & (spread < SHAPE_GAIN[1]), score, 0.0).astype(np.float32)
    worst = (err > np.quantile(err, 1 - ROBUST_SHARE, axis=1)[:, None]) & (True if region is None else region)
    gain, ma, mb = _least_squares(a, b, *SHAPE_GAIN, np.repeat(worst, 3, axis=1))
    err = np.abs(np.clip(gain[:, None] * a + (mb - gain * ma)[:, None], 0, 255) - b).reshape(len(a), -1, 3).max(axis=2)
    # One percentile call per count of pixels left, not per pair: the same numbers (benchmarks/dedup_bench.py quality).
    left, score = ~worst, np.empty(len(err))
    counts = left.sum(axis=1)
    for m in np.unique(counts).tolist():
        rows = np.flatnonzero(counts == m)
        score[rows] = 1.0 - np.percentile(err[rows][left[rows]].reshape(len(rows), m), PERCENTILE, axis=1) / 255.0
    return score.astype(np.float32)
