"""Compiled inner loops (numba): the candidate check of `pairs.pairs_within`, the
verification score of `verify`, the trim of `hashing`. Kept in their own module so importing ifa does not pay
for numba; each compiles once and is cached on disk."""

from __future__ import annotations

import math
import sys

import numpy as np
from numba import njit


def _load_numba_numpy_support() -> None:
    """Import numba's numpy support with scipy's BLAS hidden, unless scipy is loaded already.

    Why: numba's first compiled call imports numba.np.arraymath, which imports scipy.linalg
    only to learn whether np.convolve/np.correlate may call BLAS: ~0.25 s of the ~0.55 s
    it takes to load these kernels from the disk cache (cProfile, 2-core machine), paid by
    every cold `ifa curate dedup`. No kernel here uses BLAS; without it numba runs those two
    functions as plain loops. np.dot and np.linalg still find scipy when first compiled
    (the hiding ends here)."""
    if "numba.np.arraymath" in sys.modules or "scipy.linalg.cython_blas" in sys.modules:
        return
    sys.modules["scipy.linalg.cython_blas"] = None  # type: ignore[assignment]  # ImportError on import
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules["scipy.linalg.cython_blas"]


_load_numba_numpy_support()

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_SUB_MASK = np.uint64(0xFFFF)
_SUB_BITS = 16
LAB_CACHE = 1024  # `_to_lab_levels`' slots (a power of two)


@njit(inline="always")
def _popcount(x):
    # LLVM turns this idiom into the popcnt instruction.
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return (x * _H01) >> np.uint64(56)


@njit(nogil=True, cache=True)
def scan(sorted_codes, order, starts, j, masks, k, radius, lo, hi, out):
    """Pairs found through substring j for sorted positions lo..hi, written to `out`.

    A pair is emitted by the first substring on which it is within `radius`, so each
    pair comes out once over all substrings. Returns (next position, pairs written):
    when `out` fills up, the position to resume from (its row's pairs are not written).
    """
    shift = np.uint64(_SUB_BITS * j)
    kk = np.uint64(k)
    rr = np.uint64(radius)
    cap = out.shape[0]
    n_out = 0
    for p in range(lo, hi):
        x = sorted_codes[p]
        key = np.int64((x >> shift) & _SUB_MASK)
        row_start = n_out
        for mi in range(masks.shape[0]):
            key2 = key ^ np.int64(masks[mi])
            if mi == 0:
                s = p + 1  # same bucket: only later positions, so a pair comes once
            elif key2 < key:
                continue  # that bucket pair is scanned from the other side
            else:
                s = starts[key2]
            e = starts[key2 + 1]
            for q in range(s, e):
                xy = x ^ sorted_codes[q]
                if _popcount(xy) <= kk:
                    first = True
                    for jj in range(j):
                        if _popcount((xy >> np.uint64(_SUB_BITS * jj)) & _SUB_MASK) <= rr:
                            first = False
                            break
                    if first:
                        if n_out == cap:
                            return p, row_start
                        out[n_out, 0] = order[p]
                        out[n_out, 1] = order[q]
                        n_out += 1
    return hi, n_out


@njit(nogil=True, cache=True)
def resize_into(cols, out, x_first, x_weights, y_first, y_weights):
    """Pillow's 8-bit two-pass resample (horizontal, then vertical), bit for bit.

    cols: the (h, w) uint8 picture column-major, (w, h) (hashing.transposed). out: (H, W)
    float64, filled with the uint8 values Pillow gives. x_first/x_weights: per output
    column the first input column and its fixed-point weights (22 fraction bits, Pillow's
    PRECISION_BITS); y_* the same for rows. Pillow rounds by adding half and shifting, and
    clips to 0..255 after each pass. Each pass adds whole lines (a column of the input, a
    row of the horizontal pass), vectorised: integer sums, so the order does not change
    them (3x faster than a tap loop per pixel, 112 px to 32).
    """
    w, h = cols.shape
    big_h, big_w = out.shape
    half = np.int32(1 << 21)
    xw = x_weights.astype(np.int32)  # Pillow's int32 sums (they never overflow): twice the SIMD lanes
    tmp = np.empty((h, big_w), dtype=np.int32)
    acc = np.empty(h, dtype=np.int32)
    for xx in range(big_w):
        x0 = x_first[xx]
        acc[:] = half
        for t in range(max(0, min(xw.shape[1], w - x0))):
            k = xw[xx, t]
            col = cols[x0 + t]
            for y in range(h):
                acc[y] += np.int32(col[y]) * k
        for y in range(h):
            tmp[y, xx] = _clip8(acc[y])
    line = np.empty(big_w, dtype=np.int32)
    for yy in range(big_h):
        y0 = y_first[yy]
        line[:] = half
        for t in range(max(0, min(y_weights.shape[1], h - y0))):
            k = np.int32(y_weights[yy, t])
            row = tmp[y0 + t]
            for xx in range(big_w):
                line[xx] += row[xx] * k
        for xx in range(big_w):
            out[yy, xx] = _clip8(line[xx])


@njit(nogil=True, cache=True)
def lut_into(values, lut, out):
    """out[v] = lut[values[v]] for flat uint8 arrays: np.take's numbers, ~3x faster on a 128 px
    decode (recheck's brightened views: 3,498 lookups were 1.0 of its 8 CPU s)."""
    for v in range(values.shape[0]):
        out[v] = lut[values[v]]


@njit(nogil=True, cache=True)
def grey_into(rgb, out):
    """out (h, w) uint8 = Pillow's "L" of rgb (h, w, 3) uint8: (19595 R + 38470 G + 7471 B + 2^15) >> 16.
    Both C-contiguous: one flat loop (2x faster than indexing by row and column)."""
    src = rgb.reshape(rgb.size)
    dst = out.reshape(out.size)
    for q in range(dst.shape[0]):
        dst[q] = (np.uint32(src[3 * q]) * np.uint32(19595) + np.uint32(src[3 * q + 1]) * np.uint32(38470)
                  + np.uint32(src[3 * q + 2]) * np.uint32(7471) + np.uint32(0x8000)) >> np.uint32(16)


@njit(inline="always")
def _sinc(x):
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


@njit(nogil=True, cache=True)
def lanczos_matrix(in_size, out_size):
    """hashing._lanczos_matrix_reference compiled, the same float operations in the same
    order (math.sin is libm's sin in both): (out_size, in_size) float64 fixed-point weights."""
    m = np.zeros((out_size, in_size), dtype=np.float64)
    if in_size == out_size:
        for i in range(in_size):
            m[i, i] = 1 << 22
        return m
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    ss = 1.0 / filterscale
    k = np.empty(in_size + 2, dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        ww = 0.0
        for x in range(xmax):
            t = (x + xmin - center + 0.5) * ss
            v = _sinc(t) * _sinc(t / 3) if -3.0 <= t < 3.0 else 0.0
            k[x] = v
            ww += v
        for x in range(xmax):
            v = k[x] / ww if ww != 0.0 else k[x]
            m[xx, xmin + x] = int(-0.5 + v * (1 << 22)) if v < 0 else int(0.5 + v * (1 << 22))
    return m


@njit(nogil=True, cache=True)
def transpose_into(grey, out):
    """out (w, h) uint8 = grey (h, w) uint8 transposed, for any strides of grey: a plain loop
    that reads rows and writes columns (~9 against numpy's ~25 us for a 112x112 decode's
    `np.ascontiguousarray(grey.T)`, 2-core machine, loaded)."""
    h, w = grey.shape
    for i in range(h):
        for j in range(w):
            out[j, i] = grey[i, j]


@njit(inline="always")
def _linear(c):
    x = c / 255.0
    return ((x + 0.055) / 1.055) ** 2.4 if x > 0.04045 else x / 12.92


@njit(inline="always")
def _lab_f(t):
    return np.cbrt(t) if t > 0.008856 else 7.787 * t + 16.0 / 116.0


@njit(inline="always")
def _lab_of_linear(r, g, b, out, q):
    fx = _lab_f((0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.9505)
    fy = _lab_f(0.2126 * r + 0.7152 * g + 0.0722 * b)
    fz = _lab_f((0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.089)
    out[q, 0] = 116.0 * fy - 16.0
    out[q, 1] = 500.0 * (fx - fy)
    out[q, 2] = 200.0 * (fy - fz)


@njit(nogil=True)
def _to_lab(rgb, out):
    """verify.to_lab for (n, 3) float64 RGB into out (n, 3)."""
    for q in range(rgb.shape[0]):
        _lab_of_linear(_linear(rgb[q, 0]), _linear(rgb[q, 1]), _linear(rgb[q, 2]), out, q)


@njit(nogil=True)
def _to_lab_levels(values, linear, out, cache, cache_lab, stamp):
    """`_to_lab` of (3 n,) uint8 RGB levels, their linearisation looked up in `linear`
    (`_linear` of each of the 256 levels, so the same numbers without a power per value;
    with the two changes in `_outside` and `_linear_levels` a pair costs 38 CPU us, not 51,
    benchmarks/dedup_bench.py section 3). A pixel whose levels were converted before under
    the same stamp is copied from cache ((M,) int64 keys, M a power of two; (M,) stamps in
    cache_lab[:, 3]): a catalogue shot's white and its flat colours repeat (340 distinct of
    576 pixels on the second look's 24x24 thumbnails; 104 -> 73 CPU us a compare with `_outside`'s change)."""
    mask = cache.shape[0] - 1
    for q in range(out.shape[0]):
        key = (np.int64(values[3 * q]) << 16) | (np.int64(values[3 * q + 1]) << 8) | np.int64(values[3 * q + 2])
        h = ((key * 2654435761) >> 12) & mask
        if cache[h] != key or cache_lab[h, 3] != stamp:
            _lab_of_linear(linear[values[3 * q]], linear[values[3 * q + 1]], linear[values[3 * q + 2]], cache_lab, h)
            cache[h], cache_lab[h, 3] = key, stamp
        out[q, 0], out[q, 1], out[q, 2] = cache_lab[h, 0], cache_lab[h, 1], cache_lab[h, 2]


@njit(nogil=True)
def _linear_levels(levels, gain, offset, linear, stamp, p):
    """linear[c] = _linear(clip(gain * c + offset)) for each level c in `levels` ((V,) uint8),
    computed once per level for pair p (stamp[c] == p marks it done)."""
    for v in range(levels.shape[0]):
        c = levels[v]
        if stamp[c] != p:
            stamp[c] = p
            linear[c] = _linear(min(max(gain * np.float64(c) + offset, 0.0), 255.0))


@njit(nogil=True)
def _sums(a, b, clipped, skip):
    """(count, sum a, sum b, sum a^2, sum ab, sum b^2) over the values of rows a, b (V,)
    neither has clipped and skip ((V // 3,) bool, pixels) leaves in."""
    n, s_a, s_b, s_aa, s_ab, s_bb = 0, 0.0, 0.0, 0.0, 0.0, 0.0
    for v in range(a.shape[0]):
        x, y = np.float64(a[v]), np.float64(b[v])
        if x < clipped and y < clipped and not skip[v // 3]:
            n += 1
            s_a += x
            s_b += y
            s_aa += x * x
            s_ab += x * y
            s_bb += y * y
    return n, s_a, s_b, s_aa, s_ab, s_bb


@njit(nogil=True)
def _least_squares(a, b, clipped, low, high, skip):
    """verify._least_squares for one pair of rows: (gain in low..high, mean a, mean b).
    skip: (V // 3,) bool, pixels left out."""
    n, s_a, s_b, s_aa, s_ab, _ = _sums(a, b, clipped, skip)
    m = max(n, 1)
    ma, mb = s_a / m, s_b / m
    var = s_aa - 2.0 * ma * s_a + n * ma * ma
    cov = s_ab - ma * s_b - mb * s_a + n * ma * mb
    gain = cov / max(var, 1e-3) if var > 1e-3 else 1.0
    return min(max(gain, low), high), ma, mb


@njit(nogil=True)
def _fit(a, b, clipped, max_gain, slack, skip):
    """verify._fit for one pair: a, b (V,) float64, skip (V // 3,) bool. Returns (gain, offset)."""
    gain, ma, mb = _least_squares(a, b, clipped, 1.0 / max_gain, max_gain, skip)
    total, n = 0.0, 0
    for v in range(a.shape[0]):
        if not skip[v // 3]:
            total += a[v]
            n += 1
    pivot = (1.0 - gain) * total / max(n, 1)
    offset = min(max(mb - gain * ma, min(0.0, pivot) - slack), max(0.0, pivot) + slack)
    return gain, offset


@njit(nogil=True)
def _outside(x, y, side, err, hi, lo, line_hi, line_lo):
    """verify._outside for one pair, (side^2, 3) Lab each; err (side^2,) takes the maximum.
    The 3x3 extremes of x by rows, then by columns, into hi, lo ((side^2, 3)) through
    line_hi, line_lo ((side^2,)): the same numbers, 6 comparisons a value instead of 18."""
    for ch in range(3):
        for r in range(side):
            for c in range(side):
                q = r * side + c
                left, right = x[r * side + max(c - 1, 0), ch], x[r * side + min(c + 1, side - 1), ch]
                line_hi[q] = max(max(left, x[q, ch]), right)
                line_lo[q] = min(min(left, x[q, ch]), right)
        for r in range(side):
            up, down = max(r - 1, 0) * side, min(r + 1, side - 1) * side
            for c in range(side):
                q = r * side + c
                hi[q, ch] = max(max(line_hi[up + c], line_hi[q]), line_hi[down + c])
                lo[q, ch] = min(min(line_lo[up + c], line_lo[q]), line_lo[down + c])
    for q in range(side * side):
        d0 = max(0.0, max(y[q, 0] - hi[q, 0], lo[q, 0] - y[q, 0]))  # scalars: no heap allocation per pixel
        d1 = max(0.0, max(y[q, 1] - hi[q, 1], lo[q, 1] - y[q, 1]))
        d2 = max(0.0, max(y[q, 2] - hi[q, 2], lo[q, 2] - y[q, 2]))
        err[q] = max(err[q], max(d0, np.sqrt(d1 * d1 + d2 * d2)))


@njit(nogil=True)
def _block_max(err, side, window):
    """The largest 2x2-block mean of err (side^2,) outside window (side^2,) bool."""
    worst = 0.0
    for r in range(side - 1):
        for c in range(side - 1):
            s = 0.0
            for q in (r * side + c, r * side + c + 1, (r + 1) * side + c, (r + 1) * side + c + 1):
                if not window[q]:
                    s += err[q]
            worst = max(worst, s / 4.0)
    return worst


@njit(nogil=True, cache=True)
def colour_scores(signatures, pairs, windows, params, whole, region, out):
    """verify.similarity's score for each pair (see `verify._score`, the numpy reference it
    is tested against). signatures: (N, 3 * side^2) uint8. pairs: (P, 2) int64.
    windows: (k, side^2) bool. params: clipped, max gain, offset slack, robust share.
    whole: fit again without the pixels the first fit predicts worst, of those in region
    ((side^2,) bool). out: (P,) float32."""
    n_val = signatures.shape[1]
    n_pix = n_val // 3
    side = int(round(np.sqrt(n_pix)))
    a, b = np.empty(n_val), np.empty(n_val)
    lab_a, lab_b, err = np.empty((n_pix, 3)), np.empty((n_pix, 3)), np.empty(n_pix)
    fitted, stamp = np.empty(256), np.full(256, -1, dtype=np.int64)
    linear = np.empty(256)
    for c in range(256):
        linear[c] = _linear(np.float64(c))
    hi, lo, line_hi, line_lo = np.empty((n_pix, 3)), np.empty((n_pix, 3)), np.empty(n_pix), np.empty(n_pix)
    # `_to_lab_levels`' caches: the darker's fitted levels hold for one pair, the brighter's for all.
    cache_a, cache_b = np.full(LAB_CACHE, -1, dtype=np.int64), np.full(LAB_CACHE, -1, dtype=np.int64)
    lab_cache_a, lab_cache_b = np.full((LAB_CACHE, 4), -1.0), np.full((LAB_CACHE, 4), -1.0)
    skip = np.zeros(n_pix, dtype=np.bool_)
    res = np.empty(n_pix)
    for p in range(pairs.shape[0]):
        i, j = pairs[p, 0], pairs[p, 1]
        s_i, s_j = 0.0, 0.0
        for v in range(n_val):
            s_i += signatures[i, v]
            s_j += signatures[j, v]
        if s_i > s_j:
            i, j = j, i  # fit the brighter (j) from the darker (i)
        for v in range(n_val):
            a[v], b[v] = signatures[i, v], signatures[j, v]
        skip[:] = False
        gain, offset = _fit(a, b, params[0], params[1], params[2], skip)
        if whole:
            for q in range(n_pix):
                e = 0.0
                for c in range(3):
                    e = max(e, abs(min(max(gain * a[3 * q + c] + offset, 0.0), 255.0) - b[3 * q + c]))
                res[q] = e
            cut = np.quantile(res, 1.0 - params[3])
            for q in range(n_pix):
                skip[q] = res[q] > cut and region[q]
            gain, offset = _fit(a, b, params[0], params[1], params[2], skip)
        _linear_levels(signatures[i], gain, offset, fitted, stamp, p)
        _to_lab_levels(signatures[i], fitted, lab_a, cache_a, lab_cache_a, p)  # the fitted prediction of j from i
        _to_lab_levels(signatures[j], linear, lab_b, cache_b, lab_cache_b, 0)
        err[:] = 0.0
        _outside(lab_a, lab_b, side, err, hi, lo, line_hi, line_lo)
        _outside(lab_b, lab_a, side, err, hi, lo, line_hi, line_lo)
        best = 1e9
        for k in range(windows.shape[0]):
            best = min(best, _block_max(err, side, windows[k]))
        out[p] = min(max(1.0 - best / 100.0, 0.0), 1.0)


@njit(nogil=True)
def _pixel_errors(x, y, gain, offset, err):
    """err (pixels,): each pixel's largest channel error of clip(gain * x + offset) against y."""
    for q in range(err.shape[0]):
        e = 0.0
        for c in range(3):
            pr = min(max(gain * np.float64(x[3 * q + c]) + offset, 0.0), 255.0)
            e = max(e, abs(pr - np.float64(y[3 * q + c])))
        err[q] = e


@njit(nogil=True, cache=True)
def residual_scores_robust(signatures, pairs, clipped, percentile, share, region, out):
    """verify._residual with whole=True, for each pair: fitted again, and the percentile
    taken, without the `share` of pixels the first fit predicts worst that lie in region
    ((pixels,) bool). Fewer pairs come
    here (re-decoded ones), so a plain sort does the percentile."""
    n_pix = signatures.shape[1] // 3
    err = np.empty(n_pix)
    skip = np.zeros(n_pix, dtype=np.bool_)
    for p in range(pairs.shape[0]):
        i, j = pairs[p, 0], pairs[p, 1]
        sa = 0
        sb = 0
        for v in range(signatures.shape[1]):
            sa += signatures[i, v]
            sb += signatures[j, v]
        if sa > sb:
            i, j = j, i
        skip[:] = False
        gain, ma, mb = _least_squares(signatures[i], signatures[j], clipped, 0.7, 1.5, skip)
        _pixel_errors(signatures[i], signatures[j], gain, mb - gain * ma, err)
        cut = np.quantile(err, 1.0 - share)
        for q in range(n_pix):
            skip[q] = err[q] > cut and region[q]
        gain, ma, mb = _least_squares(signatures[i], signatures[j], clipped, 0.7, 1.5, skip)
        _pixel_errors(signatures[i], signatures[j], gain, mb - gain * ma, err)
        out[p] = 1.0 - np.percentile(err[~skip], percentile) / 255.0


@njit(nogil=True)
def _spread_ratio(a, b, clipped, nothing):
    """verify.spread_ratio for one pair of rows (V,); nothing: (V // 3,) all False."""
    n, s_a, s_b, s_aa, _, s_bb = _sums(a, b, clipped, nothing)
    m = max(n, 1)
    var_a = s_aa - s_a * s_a / m
    var_b = s_bb - s_b * s_b / m
    return np.sqrt(max(var_b, 0.0) / max(var_a, 1e-3))


@njit(nogil=True, cache=True)
def residual_scores(signatures, pairs, clipped, percentile, out):
    """verify.similarity's shape check for each pair (see `verify._residual`, the numpy reference
    it is tested against): 1 - the `percentile` of the per-pixel largest channel error after
    fitting the brighter thumbnail from the darker with one gain and offset, / 255.
    One pass for the fit's sums, one for the errors; the percentile's two order
    statistics come from a small sorted buffer of the largest errors, not a full sort.

    signatures: (N, 3 * pixels) uint8. pairs: (P, 2) int64. out: (P,) float32."""
    n_val = signatures.shape[1]
    n_pix = n_val // 3
    pos = percentile / 100.0 * (n_pix - 1)
    lo_i = int(np.floor(pos))
    hi_i = min(lo_i + 1, n_pix - 1)
    frac = pos - lo_i
    keep = n_pix - lo_i  # the largest errors from rank lo_i up
    best = np.empty(keep, dtype=np.float64)
    nothing = np.zeros(n_pix, dtype=np.bool_)
    for p in range(pairs.shape[0]):
        i, j = pairs[p, 0], pairs[p, 1]
        sa = 0
        sb = 0
        for v in range(n_val):
            sa += signatures[i, v]
            sb += signatures[j, v]
        if sa > sb:  # fit the brighter (b) from the darker (a)
            i, j = j, i
        gain, ma, mb = _least_squares(signatures[i], signatures[j], clipped, 0.7, 1.5, nothing)
        offset = mb - gain * ma
        for t in range(keep):
            best[t] = -1.0
        for q in range(n_pix):
            e = 0.0
            for c in range(3):
                v = 3 * q + c
                pred = gain * np.float64(signatures[i, v]) + offset
                pred = 0.0 if pred < 0.0 else (255.0 if pred > 255.0 else pred)
                d = abs(pred - np.float64(signatures[j, v]))
                if d > e:
                    e = d
            if e > best[0]:  # insert into the ascending buffer of the largest errors
                t = 1
                while t < keep and best[t] < e:
                    best[t - 1] = best[t]
                    t += 1
                best[t - 1] = e
        low = best[0]
        high = best[hi_i - lo_i]
        spread = _spread_ratio(signatures[i], signatures[j], clipped, nothing)
        # verify.SHAPE_GAIN: a spread changed by more is no brightness or contrast change
        out[p] = 1.0 - (low + (high - low) * frac) / 255.0 if 0.7 < spread < 1.5 else 0.0


@njit(nogil=True, cache=True)
def leader_scan(visit, starts, neighbours, leader):
    """pairs.leader_clusters' loop: items in `visit` order; one not yet taken keeps itself
    and takes its neighbours not yet taken (CSR: neighbours[starts[i]:starts[i + 1]]).
    leader: (n,) int64, filled in place (it starts as arange(n))."""
    taken = np.zeros(leader.shape[0], dtype=np.bool_)
    for i in visit:
        if taken[i]:
            continue
        taken[i] = True
        for t in range(starts[i], starts[i + 1]):
            j = neighbours[t]
            if not taken[j]:
                taken[j] = True
                leader[j] = i


@njit(inline="always")
def _edge_pixel(grey, top, bottom, left, right, side, k, t):
    """The pixel k lines in from `side` (0 top, 1 bottom, 2 left, 3 right) of the box, t along it."""
    if side == 0:
        return grey[top + k, left + t]
    if side == 1:
        return grey[bottom - 1 - k, left + t]
    if side == 2:
        return grey[top + t, left + k]
    return grey[top + t, right - 1 - k]


@njit(nogil=True, cache=True)
def _past_islands(profile, limit):
    """hashing._past_islands, compiled."""
    n = len(profile)
    start = 0
    while True:
        first = start
        while first < n and profile[first] == 0:
            first += 1
        if first == n:
            return start
        end = first
        mass = 0
        while end < n and profile[end] != 0:
            mass += profile[end]
            end += 1
        if end == n or mass >= limit:
            return start
        start = end


@njit(nogil=True, cache=True)
def _side_cut(grey, top, bottom, left, right, side, tolerance, flat_tolerance, island_share, mass, flat_share,
              line_content):
    """hashing._cut for one side of the box, on the grey picture: (lines to cut, border grey)."""
    if side < 2:  # rows: top (0) or bottom (1)
        n_lines, length = bottom - top, right - left
    else:  # columns: left (2) or right (3)
        n_lines, length = right - left, bottom - top
    if n_lines <= 0 or length <= 0:
        return 0, -1
    outer = np.empty(length, dtype=np.float64)
    for t in range(length):
        outer[t] = _edge_pixel(grey, top, bottom, left, right, side, 0, t)
    ref = int(np.median(outer))
    near = 0
    for t in range(length):
        if abs(int(outer[t]) - ref) <= flat_tolerance:
            near += 1
    if near < flat_share * length:
        return 0, -1
    profile = _content_counts(grey, top, bottom, left, right, side, ref, tolerance)
    total = profile.sum()
    if total == 0:
        return 0, -1
    start = _past_islands(profile, island_share * total)
    limit = mass * profile[start:].sum()
    cut = n_lines
    running = 0
    for k in range(start, n_lines):
        running += profile[k]
        if running > limit:
            cut = k
            break
    for k in range(n_lines):
        if profile[k] > line_content * length:
            if k < cut:
                cut = k
            break
    return (cut + 1 if cut > 0 else 0), ref


@njit(nogil=True)
def _content_counts(grey, top, bottom, left, right, side, ref, tolerance):
    """Per line from `side` inwards of the box, its pixels more than `tolerance` from ref,
    counted along picture rows (contiguous, vectorised; 4x faster than a walk per line)."""
    lo, hi = ref - tolerance, ref + tolerance
    if side < 2:
        profile = np.zeros(bottom - top, dtype=np.int64)
        for k in range(bottom - top):
            row = grey[top + k if side == 0 else bottom - 1 - k, left:right]
            c = 0
            for t in range(right - left):
                v = np.int64(row[t])
                c += (v < lo) | (v > hi)
            profile[k] = c
        return profile
    counts = np.zeros(right - left, dtype=np.int64)
    for y in range(top, bottom):
        row = grey[y, left:right]
        for j in range(right - left):
            v = np.int64(row[j])
            counts[j] += (v < lo) | (v > hi)
    return counts if side == 2 else counts[::-1].copy()


@njit(nogil=True, cache=True)
def trim_box(grey, tolerance, flat_tolerance, island_share, mass, flat_share, line_content, rounds, min_trimmed):
    """hashing.trim_box, compiled (the numpy version, its reference in the tests, spent
    ~1 ms a picture in a dozen small array operations). Returns (top, bottom, left, right)."""
    h, w = grey.shape
    top, bottom, left, right = 0, h, 0, w
    refs = np.full(4, -1, dtype=np.int64)
    cuts = np.zeros(4, dtype=np.int64)
    for _ in range(rounds):
        for side in range(4):
            cut, ref = _side_cut(grey, top, bottom, left, right, side, tolerance, flat_tolerance, island_share,
                                 mass, flat_share, line_content)
            if cut > 0 and refs[side] >= 0 and abs(ref - refs[side]) <= tolerance:
                cut = 0  # the same background again: one cut per border colour
            cuts[side] = cut
            if cut > 0:
                refs[side] = ref
        if bottom - top - cuts[0] - cuts[1] < min(min_trimmed, bottom - top):
            cuts[0] = 0
            cuts[1] = 0
        if right - left - cuts[2] - cuts[3] < min(min_trimmed, right - left):
            cuts[2] = 0
            cuts[3] = 0
        if cuts[0] == 0 and cuts[1] == 0 and cuts[2] == 0 and cuts[3] == 0:
            break
        top += cuts[0]
        bottom -= cuts[1]
        left += cuts[2]
        right -= cuts[3]
    return top, bottom, left, right


@njit(nogil=True, cache=True)
def refine_box(grey, top, bottom, left, right, margin, low, high):
    """hashing.refine_box_reference, compiled (the numpy version spent ~0.5 ms a picture,
    as much as the decode). Returns float (top, bottom, left, right).

    Each pixel's weight depends only on its grey level, so it is looked up in a table of
    the 256 (the same float expression); each line's sum still adds its pixels in order,
    all lines at once (a picture row at a time): the same numbers, 3x faster."""
    h, w = grey.shape
    wt, wb, wl, wr = max(top - margin, 0), min(bottom + margin, h), max(left - margin, 0), min(right + margin, w)
    out = np.array([float(top), float(bottom), float(left), float(right)])
    cut = (top > 0, bottom < h, left > 0, right < w)
    starts = (wt, h - wb, wl, w - wr)
    table = np.empty(256)
    for side in range(4):
        if not cut[side]:
            continue
        if side < 2:
            n_lines, length = wb - wt, wr - wl
        else:
            n_lines, length = wr - wl, wb - wt
        if n_lines <= 0 or length <= 0:
            continue
        outer = np.empty(length, dtype=np.float64)
        for t in range(length):
            outer[t] = _edge_pixel(grey, wt, wb, wl, wr, side, 0, t)
        ref = np.median(outer)
        for v in range(256):
            table[v] = min(max((abs(float(v) - ref) - low) / (high - low), 0.0), 1.0)
        profile = _line_sums(grey, wt, wb, wl, wr, side, n_lines, length, table)
        for k in range(n_lines):
            profile[k] = profile[k] / length
        peak = max(profile.max(), 1e-6)
        if (profile / peak).sum() <= 0.5:
            continue
        running = 0.0
        pos = float(n_lines)
        for k in range(n_lines):
            previous = running
            running += profile[k] / peak
            if running >= 0.5:
                pos = 1.0 if k == 0 else k + (0.5 - previous) / (running - previous)
                break
        edge = starts[side] + pos
        if side == 0 or side == 2:
            out[side] = edge
        elif side == 1:
            out[side] = h - edge
        else:
            out[side] = w - edge
    if out[1] - out[0] < 1 or out[3] - out[2] < 1:
        return float(top), float(bottom), float(left), float(right)
    return out[0], out[1], out[2], out[3]


@njit(nogil=True)
def _line_sums(grey, wt, wb, wl, wr, side, n_lines, length, table):
    """Per line k from `side` inwards of the window (`_edge_pixel`), the sum of table[pixel]
    over t = 0, 1, ... along it, in that order: every line at once, t outermost."""
    sums = np.zeros(n_lines)
    if side >= 2:  # the lines are columns: a picture row adds one pixel to each
        for t in range(length):
            row = grey[wt + t, wl:wr]
            for k in range(n_lines):
                sums[k] += table[row[k if side == 2 else n_lines - 1 - k]]
        return sums
    for t in range(length):  # the lines are rows: a picture column adds one pixel to each
        x = wl + t
        for k in range(n_lines):
            sums[k] += table[grey[wt + k if side == 0 else wb - 1 - k, x]]
    return sums


@njit(inline="always")
def _filter(kind, x):
    """Pillow's box (kind 0) and bilinear (kind 1) filters."""
    if kind == 0:
        return 1.0 if -0.5 < x <= 0.5 else 0.0
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


@njit(nogil=True)
def _coefficients(in_size, in0, in1, out_size, kind):
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis: (first input and
    tap count per output (out_size, 2) int64, fixed-point weights (out_size, ksize) int64)."""
    a, b = np.float32(in0), np.float32(in1)  # Pillow takes the box as C floats
    scale = np.float64(b - a) / out_size  # ... and subtracts them as floats
    filterscale = max(scale, 1.0)
    support = (0.5 if kind == 0 else 1.0) * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    bounds = np.zeros((out_size, 2), dtype=np.int64)
    weights = np.zeros((out_size, ksize), dtype=np.int64)
    k = np.empty(ksize)
    ss = 1.0 / filterscale
    for xx in range(out_size):
        center = np.float64(a) + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # int(): C's cast, toward zero
        xmax = min(int(center + support + 0.5), in_size) - xmin
        ww = 0.0
        for x in range(xmax):
            k[x] = _filter(kind, (x + xmin - center + 0.5) * ss)
            ww += k[x]
        for x in range(xmax):
            v = k[x] / ww if ww != 0.0 else k[x]
            weights[xx, x] = int(-0.5 + v * 4194304.0) if v < 0 else int(0.5 + v * 4194304.0)
        bounds[xx, 0] = xmin
        bounds[xx, 1] = max(xmax, 0)
    return bounds, weights


@njit(nogil=True)
def _resample_plan(h, w, left, top, right, bottom, kind, big_h, big_w):
    """Both axes' coefficients (`_coefficients`), whether Pillow runs each pass (it skips
    one of the same size over the whole axis), and the rows the vertical pass reads."""
    xb, xk = _coefficients(w, left, right, big_w, kind)
    yb, yk = _coefficients(h, top, bottom, big_h, kind)
    need_x = big_w != w or np.float32(left) != 0 or np.float32(right) != big_w
    need_y = big_h != h or np.float32(top) != 0 or np.float32(bottom) != big_h
    first = yb[0, 0]
    last = yb[big_h - 1, 0] + yb[big_h - 1, 1]
    if not need_x:
        first, last = 0, h
    return xb, xk, yb, yk, need_x, need_y, first, last


@njit(inline="always")
def _clip8(ss):
    """Pillow's 8bpc rounding: the fixed-point sum (22 fraction bits, half added) to 0..255."""
    r = ss >> 22
    return 0 if ss <= 0 else (255 if r > 255 else r)


@njit(nogil=True)
def _vertical_pass(tmp, first, yb, yk, need_y, flat):
    """Pillow's vertical pass of the horizontal pass's rows `tmp` ((rows, W * c) int32, row
    0 being picture row `first`) into flat ((H, W * c) uint8), a row at a time (contiguous,
    vectorised)."""
    big_h, width = flat.shape
    acc = np.empty(width, dtype=np.int32)
    for yy in range(big_h):
        if not need_y:
            for v in range(width):
                flat[yy, v] = tmp[yy - first, v]
            continue
        y0, n = yb[yy, 0] - first, yb[yy, 1]
        acc[:] = np.int32(1 << 21)
        for t in range(n):
            k = np.int32(yk[yy, t])
            line = tmp[y0 + t]
            for v in range(width):
                acc[v] += line[v] * k
        for v in range(width):
            flat[yy, v] = _clip8(acc[v])


@njit(nogil=True, cache=True)
def resample_into(src, left, top, right, bottom, kind, out):
    """Pillow's Image.resize(out size, BOX (kind 0) or BILINEAR (kind 1), box=(left, top,
    right, bottom)) of an 8-bit picture, bit for bit: its coefficients, its horizontal
    pass over the rows the vertical pass reads, then the vertical pass, each rounded and
    clipped as Pillow's 8bpc passes do; a pass Pillow skips (same size, whole axis) is skipped.
    src: (h, w, c) uint8, row-major (for RGB; `resample_columns_into` is faster for grey);
    out: (H, W, c) uint8, filled."""
    h, w, nc = src.shape
    big_h, big_w = out.shape[0], out.shape[1]
    xb, xk, yb, yk, need_x, need_y, first, last = _resample_plan(h, w, left, top, right, bottom, kind, big_h, big_w)
    tw = big_w if need_x else w
    tmp = np.empty((max(last - first, 1), tw * nc), dtype=np.int32)  # Pillow's own int arithmetic
    half = np.int32(1 << 21)
    for y in range(first, last):
        line = src[y].reshape(w * nc)
        row = tmp[y - first]
        if not need_x:
            for v in range(w * nc):
                row[v] = line[v]
        elif nc == 3:  # RGB: the three channels' sums side by side, from the flat row
            for xx in range(big_w):
                b, n = 3 * xb[xx, 0], xb[xx, 1]
                a0, a1, a2 = half, half, half
                for t in range(n):
                    k = np.int32(xk[xx, t])
                    a0 += np.int32(line[b]) * k
                    a1 += np.int32(line[b + 1]) * k
                    a2 += np.int32(line[b + 2]) * k
                    b += 3
                row[3 * xx], row[3 * xx + 1], row[3 * xx + 2] = _clip8(a0), _clip8(a1), _clip8(a2)
        else:
            for xx in range(big_w):
                x0, n = xb[xx, 0], xb[xx, 1]
                for c in range(nc):
                    ss = half
                    for t in range(n):
                        ss += np.int32(line[(x0 + t) * nc + c]) * np.int32(xk[xx, t])
                    row[xx * nc + c] = _clip8(ss)
    _vertical_pass(tmp, first, yb, yk, need_y, out.reshape(big_h, big_w * nc))


@njit(nogil=True, cache=True)
def resample_columns_into(cols, left, top, right, bottom, kind, out):
    """`resample_into` of a picture given column-major: cols (w, h, c) uint8, each column
    contiguous, so the horizontal pass adds whole columns, vectorised over the rows
    (integer sums: the order does not change them). 2.3x faster than the tap loop per
    pixel on the trimmed cut-out of a 112 px decode. out: (H, W, c) uint8, filled."""
    w, h, nc = cols.shape
    big_h, big_w = out.shape[0], out.shape[1]
    xb, xk, yb, yk, need_x, need_y, first, last = _resample_plan(h, w, left, top, right, bottom, kind, big_h, big_w)
    tw = big_w if need_x else w
    tmp = np.empty((max(last - first, 1), tw * nc), dtype=np.int32)
    acc = np.empty((last - first) * nc, dtype=np.int32)
    for xx in range(tw):
        if need_x:
            acc[:] = np.int32(1 << 21)
            for t in range(xb[xx, 1]):
                k = np.int32(xk[xx, t])
                col = cols[xb[xx, 0] + t].reshape(h * nc)[first * nc:last * nc]
                for v in range(acc.shape[0]):
                    acc[v] += np.int32(col[v]) * k
            for v in range(acc.shape[0]):
                acc[v] = _clip8(acc[v])
        else:
            col = cols[xx].reshape(h * nc)
            for v in range(acc.shape[0]):
                acc[v] = col[v]
        for y in range(last - first):
            for c in range(nc):
                tmp[y, xx * nc + c] = acc[y * nc + c]
    _vertical_pass(tmp, first, yb, yk, need_y, out.reshape(big_h, big_w * nc))


@njit(nogil=True, cache=True)
def ring_level(grey, tolerance):
    """hashing._ring's counts, compiled: (the lower median grey of the picture's outer lines
    (top, bottom, left and right, corners twice), how many of them lie within `tolerance`
    of it, how many there are)."""
    h, w = grey.shape
    counts = np.zeros(256, dtype=np.int64)
    for j in range(w):
        counts[grey[0, j]] += 1
        counts[grey[h - 1, j]] += 1
    for i in range(h):
        counts[grey[i, 0]] += 1
        counts[grey[i, w - 1]] += 1
    n = 2 * (h + w)
    median, running = 255, 0
    for v in range(256):
        running += counts[v]
        if running >= (n + 1) // 2:
            median = v
            break
    near = 0
    for v in range(max(0, median - tolerance), min(256, median + tolerance + 1)):
        near += counts[v]
    return median, near, n
