"""check-images' statistics as one compiled pass over the picture (numba, cached on disk).

The numpy reference (`statistics.measure_rgb_reference`) made ~70 small numpy calls a
picture, ~0.7 ms of call overhead on a 112x112 decode: as much as dedup's whole decode,
which now computes these statistics too. One loop does it in a few microseconds."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..dedup import _kernels as _dedup_kernels  # noqa: F401  # numba's numpy support without scipy.linalg


@njit(cache=True)
def picture_stats(rgb, grey, top, bottom, left, right):
    """(brightness, spread, colourfulness, entropy, sharpness, border_share, border_level)
    of an (h, w, 3) uint8 picture, its (h, w) uint8 grey and the trim box (slice bounds)."""
    h, w = grey.shape
    n = h * w
    mean, spread, colour, entropy, total = _whole(rgb, grey)
    sharp, inside = _inside(grey, top, bottom, left, right)
    border = n - (bottom - top) * (right - left)
    level = (total - inside) / border if border else -1.0
    out = np.empty(7)
    out[0], out[1], out[2], out[3], out[4], out[5], out[6] = mean, spread, colour, entropy, sharp, border / n, level
    return out


@njit(cache=True)
def _whole(rgb, grey):
    """Over the whole picture: grey mean and standard deviation, colourfulness, the grey
    histogram's entropy, and the grey sum. Flat loops, one sum each, over C-contiguous
    pictures (vectorised: 2x faster than one loop doing all the sums)."""
    h, w = grey.shape
    n = h * w
    g = grey.reshape(n)
    c = rgb.reshape(3 * n)
    hist = np.zeros(256, np.int64)
    for q in range(n):
        hist[g[q]] += 1
    n_grey = 0
    for q in range(n):
        n_grey += np.int64(g[q])
    # Integer sums (yb doubled): exact, as the float sums of integers and halves they replace.
    n_rg = n_rg2 = n_yb = n_yb2 = 0
    for q in range(n):
        r, gg, b = np.int32(c[3 * q]), np.int32(c[3 * q + 1]), np.int32(c[3 * q + 2])
        rg, yb = r - gg, r + gg - 2 * b
        n_rg += rg
        n_rg2 += np.int64(rg * rg)
        n_yb += yb
        n_yb2 += np.int64(yb * yb)
    total, srg, srg2, syb, syb2 = float(n_grey), float(n_rg), float(n_rg2), n_yb / 2.0, n_yb2 / 4.0
    mean = total / n
    var = 0.0
    for q in range(n):  # in pixel order: the float sum's rounding is part of the cached value
        var += (g[q] - mean) ** 2
    entropy = 0.0
    for count in hist:
        if count:
            entropy -= count / n * math.log2(count / n)
    mrg, myb = srg / n, syb / n
    colour = math.hypot(math.sqrt(max(srg2 / n - mrg * mrg, 0.0)), math.sqrt(max(syb2 / n - myb * myb, 0.0))) \
        + 0.3 * math.hypot(mrg, myb)
    return mean, math.sqrt(var / n), colour, entropy, total


@njit(cache=True)
def _inside(grey, top, bottom, left, right):
    """Inside the trim box: sharpness (the Laplacian's standard deviation over the mean
    absolute gradient + 1; 0 under 3 pixels a side) and the grey sum. Every sum is of
    integers (exact in int64 and float64 alike), so the loops are split per term and run
    along rows in int32 (vectorised; 3x faster than int64 terms), the same values."""
    ih, iw = bottom - top, right - left
    inside = down = across = sl = sl2 = 0
    for i in range(top, bottom):
        row = grey[i, left:right]
        s = a = 0
        for j in range(iw):
            s += np.int32(row[j])
        for j in range(iw - 1):
            a += abs(np.int32(row[j + 1]) - np.int32(row[j]))
        inside += s
        across += a
    for i in range(top, bottom - 1):
        row, below = grey[i, left:right], grey[i + 1, left:right]
        d = 0
        for j in range(iw):
            d += abs(np.int32(below[j]) - np.int32(row[j]))
        down += d
    for i in range(top + 1, bottom - 1):
        above, row, below = grey[i - 1, left:right], grey[i, left:right], grey[i + 1, left:right]
        s = 0
        s2 = 0
        for j in range(1, iw - 1):
            lap = (np.int32(row[j - 1]) + np.int32(row[j + 1]) + np.int32(above[j]) + np.int32(below[j])) \
                - 4 * np.int32(row[j])
            s += lap
            s2 += np.int64(lap * lap)
        sl += s
        sl2 += s2
    if ih < 3 or iw < 3:
        return 0.0, float(inside)
    m = (ih - 2) * (iw - 2)
    lap_std = math.sqrt(max(float(sl2) / m - (float(sl) / m) ** 2, 0.0))
    grad = float(down) / ((ih - 1) * iw) + float(across) / (ih * (iw - 1))
    return lap_std / (grad + 1.0), float(inside)
