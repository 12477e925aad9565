"""Per-image statistics from one decode: what the check-images rules read.

The picture is dedup's reduced decode (`hashing.decode_rgb`: libjpeg-turbo scales JPEGs by
1/2..1/8 inside the IDCT, so both sides stay >= hashing.DECODE_PX), so a file is decoded
once for its hashes and its statistics. Every statistic is a float in `STAT_NAMES` order;
`thumb_hash` holds difference hashes of the whole untrimmed picture, which group the ids
that share one picture (a shop's "no image" placeholder).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..dedup import hashing

# Order of the float32 vector stored per file (ledger: image_stats.stats); a change of
# names or of how one is measured bumps VERSION, which makes the cache measure again.
VERSION = 1
STAT_NAMES = ("width", "height", "min_side", "aspect", "brightness", "spread", "colourfulness", "entropy", "sharpness",
              "border_share", "border_level")


class ImageStats(NamedTuple):
    values: np.ndarray  # (len(STAT_NAMES),) float32
    thumb_hash: bytes   # 32 bytes: see thumb_hash

    def __reduce__(self):
        # Pickled as bytes: a pool worker ships one per hashed file, and numpy's own pickling
        # of an 11-float array cost 5 of the 7 us a file result took (pickle.dumps, 625 results).
        return _stats_from_bytes, (self.values.tobytes(), self.values.dtype.str, self.values.shape, self.thumb_hash)


def _stats_from_bytes(values: bytes, dtype: str, shape: tuple[int, ...], thumb_hash: bytes) -> ImageStats:
    return ImageStats(np.frombuffer(values, dtype=dtype).reshape(shape).copy(), thumb_hash)


def measure(data: bytes) -> ImageStats:
    """The statistics of image bytes. Raises hashing.Unreadable with a reason."""
    rgb, width, height = hashing.decode_rgb(data)
    return measure_rgb(rgb, width, height)


def measure_rgb(rgb: np.ndarray, width: int, height: int, grey: np.ndarray | None = None,
                box: tuple[int, int, int, int] | None = None, columns: np.ndarray | None = None) -> ImageStats:
    """The statistics of a decoded (h, w, 3) uint8 picture whose full size is width x height;
    dedup's decode passes the grey picture, its trim box and its column-major copy
    (hashing.transposed) it already has. One compiled pass (`_kernels.picture_stats`),
    tested equal to `measure_rgb_reference`."""
    _kernels = _compiled()

    grey = hashing.grey_of(rgb) if grey is None else grey
    box = _box(grey) if box is None else box
    measured = _kernels.picture_stats(np.ascontiguousarray(rgb), np.ascontiguousarray(grey), *box)
    values = np.concatenate([_size(width, height), measured]).astype(np.float32)
    return ImageStats(values, thumb_hash(grey, columns))


_COMPILED = None


def _compiled():
    """`_kernels`, imported once on first use (numba loads when a picture is measured, not
    with `import ifa`; a `from . import` per call cost more than the import check)."""
    global _COMPILED
    if _COMPILED is None:
        from . import _kernels

        _COMPILED = _kernels
    return _COMPILED


def measure_rgb_reference(rgb: np.ndarray, width: int, height: int) -> ImageStats:
    """`measure_rgb` in numpy: the definition of each statistic, and what the kernel is tested against."""
    grey = hashing.grey_of(rgb)
    h, w = grey.shape
    top, bottom, left, right = _box(grey)
    inside = grey[top:bottom, left:right]
    border = h * w - inside.size
    border_level = (float(grey.sum(dtype=np.int64)) - float(inside.sum(dtype=np.int64))) / border if border else -1.0
    values = np.concatenate([_size(width, height), [
        float(grey.mean()), float(grey.std()), colourfulness(rgb), entropy(grey), sharpness(inside),
        border / float(h * w), border_level]]).astype(np.float32)
    return ImageStats(values, thumb_hash(grey))


def _box(grey: np.ndarray) -> tuple[int, int, int, int]:
    h, w = grey.shape
    return hashing.trim_box(grey) if min(h, w) >= 3 else (0, h, 0, w)


def _size(width: int, height: int) -> list[float]:
    return [width, height, min(width, height), max(width, height) / max(1, min(width, height))]


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness (0 for a grey picture, ~30-60 for a typical
    colour photo): the spread and mean of the rg and yb opponent channels."""
    x = rgb.astype(np.float32)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def entropy(grey: np.ndarray) -> float:
    """Shannon entropy of the grey histogram in bits (0 for one flat colour, <= 8)."""
    counts = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def sharpness(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the grey picture's mean edge strength:
    low for a blurred picture. Divided by the mean gradient so a low-contrast but sharp
    photo is not called blurred (a plain variance of the Laplacian mixes the two)."""
    if min(grey.shape) < 3:
        return 0.0
    g = grey.astype(np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    grad = np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean()
    return float(lap.std() / (grad + 1.0))


def thumb_hash(grey: np.ndarray, columns: np.ndarray | None = None) -> bytes:
    """A 256-bit difference hash of the whole picture (17x16 box resize), 32 bytes: a few
    bits apart for re-encoded and resized copies of one picture. 64 bits (9x8) were too
    coarse: distinct white product photos shared one such hash up to 7 at a time in the
    3,000 Myntra photos, and copies of one placeholder spread over 7 of them."""
    small = hashing.resample(grey, (17, 16), hashing.BOX, columns=columns).astype(np.int16)  # Pillow's BOX, bit for bit
    return np.packbits((small[:, 1:] > small[:, :-1]).ravel()).tobytes()
