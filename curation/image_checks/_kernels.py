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
    hist = np.zeros(256, np.int64)
    total = 0.0
    srg = srg2 = syb = syb2 = 0.0
    for i in range(h):
        for j in range(w):
            v = grey[i, j]
            hist[v] += 1
            total += v
            r, g, b = float(rgb[i, j, 0]), float(rgb[i, j, 1]), float(rgb[i, j, 2])
            rg = r - g
            yb = 0.5 * (r + g) - b
            srg += rg
            srg2 += rg * rg
            syb += yb
            syb2 += yb * yb
    mean = total / n
    var = 0.0
    for i in range(h):
        for j in range(w):
            d = grey[i, j] - mean
            var += d * d
    entropy = 0.0
    for c in hist:
        if c:
            p = c / n
            entropy -= p * math.log2(p)
    mrg, myb = srg / n, syb / n
    colour = math.hypot(math.sqrt(max(srg2 / n - mrg * mrg, 0.0)), math.sqrt(max(syb2 / n - myb * myb, 0.0))) \
        + 0.3 * math.hypot(mrg, myb)
    ih, iw = bottom - top, right - left
    inside = 0.0
    for i in range(top, bottom):
        for j in range(left, right):
            inside += grey[i, j]
    sharp = 0.0
    if ih >= 3 and iw >= 3:
        sl = sl2 = 0.0
        for i in range(top + 1, bottom - 1):
            for j in range(left + 1, right - 1):
                lap = (float(grey[i, j - 1]) + grey[i, j + 1] + grey[i - 1, j] + grey[i + 1, j]) - 4.0 * grey[i, j]
                sl += lap
                sl2 += lap * lap
        m = (ih - 2) * (iw - 2)
        lap_std = math.sqrt(max(sl2 / m - (sl / m) ** 2, 0.0))
        down = across = 0.0
        for i in range(top, bottom):
            for j in range(left, right):
                if i + 1 < bottom:
                    down += abs(float(grey[i + 1, j]) - grey[i, j])
                if j + 1 < right:
                    across += abs(float(grey[i, j + 1]) - grey[i, j])
        grad = down / ((ih - 1) * iw) + across / (ih * (iw - 1))
        sharp = lap_std / (grad + 1.0)
    border = n - ih * iw
    level = (total - inside) / border if border else -1.0
    out = np.empty(7)
    out[0], out[1], out[2], out[3], out[4], out[5], out[6] = mean, math.sqrt(var / n), colour, entropy, sharp, border / n, level
    return out
