"""Compiled inner loops (numba): the candidate check of `pairs.pairs_within` and the
exact LANCZOS resize of `hashing`. Kept in their own module so importing ifa does not pay
for numba; each compiles once and is cached on disk."""

from __future__ import annotations

import numpy as np
from numba import njit

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_SUB_MASK = np.uint64(0xFFFF)
_SUB_BITS = 16


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
def resize_into(src, out, x_first, x_weights, y_first, y_weights):
    """Pillow's 8-bit two-pass resample (horizontal, then vertical), bit for bit.

    src: (h, w) uint8. out: (H, W) float64, filled with the uint8 values Pillow gives.
    x_first/x_weights: per output column the first input column and its fixed-point
    weights (22 fraction bits, Pillow's PRECISION_BITS); y_* the same for rows. Pillow
    rounds by adding half and shifting, and clips to 0..255 after each pass.
    """
    h, w = src.shape
    big_h, big_w = out.shape
    half = np.int64(1) << np.int64(21)
    tmp = np.empty((h, big_w), dtype=np.int64)
    for y in range(h):
        for xx in range(big_w):
            ss = half
            x0 = x_first[xx]
            for t in range(x_weights.shape[1]):
                if x0 + t >= w:
                    break
                ss += np.int64(src[y, x0 + t]) * x_weights[xx, t]
            v = ss >> np.int64(22)
            tmp[y, xx] = 0 if ss <= 0 else (255 if v > 255 else v)
    for yy in range(big_h):
        y0 = y_first[yy]
        for xx in range(big_w):
            ss = half
            for t in range(y_weights.shape[1]):
                if y0 + t >= h:
                    break
                ss += tmp[y0 + t, xx] * y_weights[yy, t]
            v = ss >> np.int64(22)
            out[yy, xx] = 0 if ss <= 0 else (255 if v > 255 else v)
