"""A copy with a text box against a padded or rescaled copy of its photo, on re-decoded pictures.

A box painted over (`hashing.without_text_boxes`) that covers part of the item moves the
trimmed box of the copy on the sides it reaches: the copy's trimmed picture no longer lines
up with its original's, and its whole frame lines up only with a copy of the same frame
(not with a padded copy, which the keep policy keeps for its pixels). `aligned_similarity`
places the boxed copy's whole frame in the other picture by their two trimmed boxes, from
the sides no box reaches only, with one scale for both axes where one axis has a side the
box reached, and compares the two at ALIGNED_SIDE allowing the box (`verify.similarity`'s
`whole`). A picture without a border is not painted, and a strip along its bottom is
trimmed away with the border: it is also placed with its bottom side free. Every pair stays
a direct comparison of the two pictures (`recheck.redecoded_similarity` takes the best view).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import hashing, verify

# A painted picture's region codes pair within 6 bits, not OVERLAY_THRESHOLD's 2: painting the
# item's part under the box moves them 4-8 (benchmarks/dedup_bench.py quality; README table).
PAINTED_THRESHOLD = 6
# A box painted in one corner (not a banner) also pairs by that corner's region code within this: the
# paint moved the trimmed box there (dedup_bench quality, box in a corner products, --seed 1 / seed 0:
# 6, 8, 10 found 0.93 / 0.97, 0.95 / 1.00, 0.97 / 1.00, false removals 4, 4, 5; README text-box table).
CORNER_THRESHOLD = 8
# 16x16, not recheck.WHOLE_SIDE: a padded copy decodes coarser and a print's detail differs (same benchmark).
ALIGNED_SIDE = 16
TOUCH = 1.5  # decoded pixels: a trimmed edge this close to a painted box ends at the box, not at the item
OUTSIDE = 0.03  # the aligned frame may reach this share of a side outside the other picture (clipped)
INSET = 0.03  # each side left out of both frames: a fraction of a pad's edge made a line along it


def painted_pairs(codes: np.ndarray, flags: np.ndarray, k: int = PAINTED_THRESHOLD, block: int = 8) -> np.ndarray:
    """(P, 2) int64 pairs i < j, one of them with a box painted over (flags verify.TEXT_BOX),
    whose overlay codes of one region (each corner, the bottom strip) are within k bits, or of
    the painted picture's box's corner within CORNER_THRESHOLD when it touches one corner only.
    codes: (n, verify.OVERLAY_CODES) uint64; flags: (n,) uint8. Compares each painted picture
    with every picture, `block` at a time: O(painted x n) (a picture is painted only where a
    box was found: 76 of 3,040 in the benchmark, 1 of its 2,000 originals)."""
    from .pairs import popcount

    painted = np.flatnonzero(flags & verify.TEXT_BOX)
    found = [np.zeros((0, 2), dtype=np.int64)]
    for lo in range(0, len(painted), block):
        rows = painted[lo:lo + block]
        near = np.zeros((len(rows), len(codes)), dtype=bool)
        corner = _one_corner(flags[rows])
        for m in range(len(hashing.OVERLAY_REGIONS)):
            bits = popcount(codes[rows, m][:, None] ^ codes[None, :, m])
            near |= (bits <= k) | ((corner == m)[:, None] & (bits <= CORNER_THRESHOLD))
        near[np.arange(len(rows)), rows] = False
        i, j = np.nonzero(near)
        found.append(np.stack([rows[i], j], axis=1))
    return np.unique(np.sort(np.concatenate(found), axis=1), axis=0)


def _one_corner(flags: np.ndarray) -> np.ndarray:
    """(n,) int64: the OVERLAY_REGIONS index of the one frame corner each picture's painted box
    touches (hashing.box_corners' bit order: top left, top right, bottom left, bottom right), -1
    where it touches none or several. flags: (n,) uint8 (verify.CORNERS_SHIFT)."""
    corners = (np.asarray(flags).astype(np.int64) >> verify.CORNERS_SHIFT) & 15
    return np.select([corners == 1 << m for m in range(4)], list(range(4)), -1)


@dataclass
class Framing:
    """A re-decoded picture: its pixels (untrimmed, with any box), its trimmed box as (top,
    bottom, left, right) in pixels (painted boxes excluded), and which of those four sides
    are where the item ends (`fixed`) rather than where a painted box cut it."""

    rgb: np.ndarray
    clean: np.ndarray  # rgb with its text boxes painted in the border's colour
    box: np.ndarray
    fixed: np.ndarray
    painted: bool
    open_frame: bool  # no border (hashing's ring rule): nothing is painted
    _whole: dict = field(default_factory=dict, repr=False)

    def thumbnail(self, region: tuple[float, float, float, float] | None, side: int) -> np.ndarray:
        """(side, side, 3) uint8 box-filtered thumbnail of rgb's region (top, bottom, left,
        right; None: the whole frame less INSET), as `verify.thumbnail`."""
        if region is None and side in self._whole:
            return self._whole[side]
        h, w = self.rgb.shape[:2]
        out = verify.thumbnail(self.rgb, inset((0.0, h, 0.0, w) if region is None else region), side)
        if region is None:
            self._whole[side] = out
        return out


def framing(rgb: np.ndarray) -> Framing:
    """The trimmed box of a decoded picture ((h, w, 3) uint8 from `hashing.decode_rgb`) after
    its text boxes are painted over, and which sides no box reaches (a side at the frame's
    edge is fixed whatever reaches it)."""
    grey = hashing.grey_of(rgb)
    ring = hashing._ring(grey)
    _, boxes = hashing.text_boxes(grey, ring)
    clean_rgb, clean = hashing.without_text_boxes(rgb, grey, ring)
    h, w = clean.shape
    cut = hashing.trim_box(clean)
    box = np.array((0.0, h, 0.0, w) if cut == (0, h, 0, w) else hashing.refine_box(clean, cut), dtype=np.float64)
    at_edge = np.array([box[0] <= TOUCH, box[1] >= h - TOUCH, box[2] <= TOUCH, box[3] >= w - TOUCH])
    reached = np.any([_reaches(np.array(b, dtype=np.float64), box) for b in boxes] or [np.zeros(4, bool)], axis=0)
    fixed = at_edge | ~reached
    return Framing(rgb, clean_rgb, box, fixed, bool(boxes), not ring[1])


def _reaches(painted: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(4,) bool: the painted box (top, bottom, left, right) covers or touches each side of the
    trimmed box along a stretch of that side."""
    t, b, l, r = box
    rows = painted[0] < b - TOUCH and painted[1] > t + TOUCH  # it spans part of the left and right sides
    cols = painted[2] < r - TOUCH and painted[3] > l + TOUCH
    return np.array([cols and painted[0] <= t + TOUCH and painted[1] >= t - TOUCH,
                     cols and painted[0] <= b + TOUCH and painted[1] >= b - TOUCH,
                     rows and painted[2] <= l + TOUCH and painted[3] >= l - TOUCH,
                     rows and painted[2] <= r + TOUCH and painted[3] >= r - TOUCH])


def aligned_region(x: Framing, y: Framing, fixed: np.ndarray) -> tuple[float, float, float, float] | None:
    """Where x's whole frame lies in y, as (top, bottom, left, right) pixels of y, from the sides
    `fixed` ((4,) bool: one scale per axis with both sides fixed, else the other axis's), or None
    when neither axis has both or the frame falls outside y by more than OUTSIDE."""
    scale = [(y.box[k + 1] - y.box[k]) / max(x.box[k + 1] - x.box[k], 1e-6) if fixed[k] and fixed[k + 1] else None
             for k in (0, 2)]
    if scale[0] is None and scale[1] is None:
        return None
    scale = [s if s is not None else scale[1 - i] for i, s in enumerate(scale)]
    region = []
    for axis, k in enumerate((0, 2)):
        s, size = scale[axis], x.rgb.shape[axis]
        start = y.box[k] - s * x.box[k] if fixed[k] else y.box[k + 1] - s * x.box[k + 1]
        region += [start, start + s * size]
    limit = y.rgb.shape[:2]
    if any(lo < -OUTSIDE * n or hi > (1 + OUTSIDE) * n for lo, hi, n in zip(region[::2], region[1::2], limit)):
        return None
    top, bottom, left, right = region
    return max(top, 0.0), min(bottom, limit[0]), max(left, 0.0), min(right, limit[1])


def inset(box) -> tuple[float, float, float, float]:
    """box (top, bottom, left, right) less INSET of its height and width on each side."""
    top, bottom, left, right = box
    dy, dx = INSET * (bottom - top), INSET * (right - left)
    return top + dy, bottom - dy, left + dx, right - dx


def aligned_similarity(pictures: Sequence[Framing | None], pairs: np.ndarray, side: int = ALIGNED_SIDE,
                       kernel_min: int = verify.KERNEL_MIN, enough: float = -np.inf) -> np.ndarray:
    """For each pair (indices into pictures; None: not decoded), the best score of either
    picture's whole frame against its region in the other (`aligned_region`), at side x side,
    allowing a box (verify.similarity, whole=True): a painted picture from the sides its box
    did not reach and from all four, a picture without a border from all four and with its
    bottom free; nan where no direction applies. kernel_min: verify.similarity's (the compiled
    scorer from that many compares); enough: verify.similarity's (a score under it may come
    back as another value under it). Returns (P,) float32."""
    views, rows, which = [], [], []
    for p, (i, j) in enumerate(np.asarray(pairs, dtype=np.int64).reshape(-1, 2).tolist()):
        for a, b in ((i, j), (j, i)):
            x, y = pictures[a], pictures[b]
            if x is None or y is None:
                continue
            # A painted box: the sides it did not reach, and all four (one that reached a side
            # without cutting the item there, a corner box beside a head, leaves it). A picture
            # without a border is not painted: a strip along its bottom is trimmed away with it.
            tried = [x.fixed & y.fixed, np.ones(4, dtype=bool)] if x.painted else \
                [np.ones(4, dtype=bool), np.arange(4) != 1] if x.open_frame else []
            regions = {aligned_region(x, y, f) for f in tried} - {None}
            for region in regions:
                views += [x.thumbnail(None, side), y.thumbnail(region, side)]
                rows.append([len(views) - 2, len(views) - 1])
                which.append(p)
    out = np.full(len(pairs), np.nan, dtype=np.float32)
    if rows:
        thumbs = np.stack([v.reshape(-1) for v in views])
        scores = verify.similarity(thumbs, np.array(rows), whole=True, kernel_min=kernel_min, enough=enough)
        np.fmax.at(out, np.array(which), scores)
    return out
