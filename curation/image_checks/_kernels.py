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
    histogram's entropy, and the grey sum."""
    h, w = grey.shape
    n = h * w
    hist = np.zeros(256, np.int64)
    total = srg = srg2 = syb = syb2 = 0.0
    for i in range(h):
        for j in range(w):
            v = grey[i, j]
            hist[v] += 1
            total += v
            r, g, b = float(rgb[i, j, 0]), float(rgb[i, j, 1]), float(rgb[i, j, 2])
            rg, yb = r - g, 0.5 * (r + g) - b
            srg += rg
            srg2 += rg * rg
            syb += yb
            syb2 += yb * yb
    mean = total / n
    var = 0.0
    for i in range(h):
        for j in range(w):
            var += (grey[i, j] - mean) ** 2
    entropy = 0.0
    for c in hist:
        if c:
            entropy -= c / n * math.log2(c / n)
    mrg, myb = srg / n, syb / n
    colour = math.hypot(math.sqrt(max(srg2 / n - mrg * mrg, 0.0)), math.sqrt(max(syb2 / n - myb * myb, 0.0))) \
        + 0.3 * math.hypot(mrg, myb)
    return mean, math.sqrt(var / n), colour, entropy, total


@njit(cache=True)
def _inside(grey, top, bottom, left, right):
    """Inside the trim box: sharpness (the Laplacian's standard deviation over the mean
    absolute gradient + 1; 0 under 3 pixels a side) and the grey sum."""
    ih, iw = bottom - top, right - left
    inside = sl = sl2 = down = across = 0.0
    for i in range(top, bottom):
        for j in range(left, right):
            inside += grey[i, j]
            if i + 1 < bottom:
                down += abs(float(grey[i + 1, j]) - grey[i, j])
            if j + 1 < right:
                across += abs(float(grey[i, j + 1]) - grey[i, j])
            if top < i < bottom - 1 and left < j < right - 1:
                lap = (float(grey[i, j - 1]) + grey[i, j + 1] + grey[i - 1, j] + grey[i + 1, j]) - 4.0 * grey[i, j]
                sl += lap
                sl2 += lap * lap
    if ih < 3 or iw < 3:
        return 0.0, inside
    m = (ih - 2) * (iw - 2)
    lap_std = math.sqrt(max(sl2 / m - (sl / m) ** 2, 0.0))
    grad = down / ((ih - 1) * iw) + across / (ih * (iw - 1))
    return lap_std / (grad + 1.0), inside
