"""A finer look at pairs that the aligned box view (`textbox.aligned_similarity`) made copies.

That view places one picture's whole frame in the other by their trimmed boxes and compares
the two at textbox.ALIGNED_SIDE (16 px, coarse on purpose: a padded copy decodes coarser).
At 16 px a shoe or a shirt on a white background is a few pixels wide, each a blend of the
item and the background, and look-alike items of one shoot pass: another black loafer, the
same striped shirt with another collar, 0.96-0.97. The same placement compared at
FINER_SIDE keeps the item's own pixels apart from the background; a pair far under there is
no copy. A floor, not a second threshold: a copy misplaced by a pixel loses a little at the
finer side, an item of another cut loses more.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import textbox

FINER_SIDE = 32
# dedup_bench section 4's 20,000 photos, the 220 pairs the aligned view passed (box look):
# at 32 px its copies scored 0.21-0.98 (16 of 152 under 0.86, 2 of them then found no other
# way), the pairs of distinct photos 0.84-0.94 (another loafer 0.839, another shirt 0.855).
FINER_FLOOR = 0.86
KERNEL_MIN = 0  # the compiled scorer always: a pair's verdict must not depend on its batch


def vetoed(pictures: Sequence[textbox.Framing | None], pairs: np.ndarray, scores: np.ndarray,
           enough: float) -> np.ndarray:
    """`textbox.aligned_similarity` scores ((P,) float32) of pairs ((P, 2) indices into
    pictures, `textbox.framing` per file), each pair scoring at least enough (every pair when
    enough is not finite) whose aligned score at FINER_SIDE is under FINER_FLOOR given that
    finer score instead. Returns (P,) float32."""
    out = np.array(scores, dtype=np.float32, copy=True)
    rows = np.flatnonzero(out >= enough) if np.isfinite(enough) else np.flatnonzero(~np.isnan(out))
    if not len(rows):
        return out
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)[rows]
    finer = textbox.aligned_similarity(pictures, pairs, side=FINER_SIDE, kernel_min=KERNEL_MIN, enough=FINER_FLOOR)
    low = np.flatnonzero(finer < FINER_FLOOR)
    out[rows[low]] = np.minimum(out[rows[low]], finer[low])
    return out
