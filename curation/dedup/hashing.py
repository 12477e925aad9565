"""Perceptual and exact hashes of image files: one decode path, several hash methods.

Every method hashes the same decoded picture, so hashes stay comparable across runs,
machines and file formats:

1. JPEGs are decoded in colour at reduced scale (libjpeg-turbo scales by 1/2, 1/4 or 1/8
   inside the IDCT), to the smallest power-of-two reduction that keeps both sides >=
   DECODE_PX: Pillow's draft-mode rule, decoded through simplejpeg (pixel-identical,
   less overhead per call). Other formats are decoded fully by Pillow and box-reduced by
   the same factor, which is what the DCT scaling amounts to.
2. EXIF orientation is applied; alpha is composited on white; palette, CMYK and 16-bit
   pictures become 8-bit RGB (16-bit by its high byte, not by clipping).
3. Uniform borders (white, black, any flat colour: padding, letterboxing, the plain
   background around a product) are trimmed (`trim_box`), so a padded copy and its
   original hash the same picture; a text box at a corner of a picture with a border is
   painted in the border's colour first (`without_text_boxes`).
4. The trimmed picture gives the verification signature (`verify.signature`, with the
   `overlay_codes` that pair copies with a text box) and, as
   grey (Pillow's "L" weights), every hash: each method resizes it (LANCZOS, Pillow's
   weights: `resize_lanczos`) and computes imagehash's algorithm (phash, dhash, average
   hash, Haar wavelet hash), vectorised over a batch: on a picture already at the
   method's size the bits equal imagehash's (tested).

Speed per core against imagehash.phash: the README's dedup speed table
(benchmarks/dedup_bench.py section 1). The reduced decode is the largest single cost
(CPU time per step: 28% of a 224x224 photo, 57% of a 400x534 one, 43% over the 20,000
benchmark photos), then check-images' statistics (13-17%) and the overlay and crop codes
with the signature (9-13%, made for 64 pictures at once: `_finish`).

A file that cannot be hashed never stops a run: `hash_batch` returns it with a reason
(REASONS). `hash_batch` is the unit of parallel work, for a local process pool or a Dask
worker: it reads files by path, so a cluster's workers must see the same paths.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
from functools import lru_cache
from typing import ClassVar, NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - a dependency; Pillow alone gives the same pixels, slower
    _simplejpeg = None

from . import verify

# The smallest side the decode keeps. phash resizes to 32x32, but after the plain
# background around a product is trimmed the item is often half the picture; at 32 a
# 224x224 catalogue photo came out 18x48 and its padded copy 14x22, too coarse to align
# (pad-10% copies found: 44% at 32, 53% at 64, benchmarks/dedup_bench.py).
DECODE_PX = 64
# Border trimming (`trim_box`): a side whose outermost line is flat (FLAT_SHARE of its
# pixels within FLAT_TOLERANCE levels of its grey) is cut up to where BORDER_MASS of the
# pixels unlike that grey (BORDER_TOLERANCE levels off) begin. Chosen on the benchmark's product
# and CC0 photos with 7 kinds of copies: a strict line rule (cut while 97% of a line is
# background) kept stray pixels of a corner overlay or a letterbox's edge in the box and
# found 3% and 30% of those copies' originals; the mass rule finds most.
BORDER_TOLERANCE = 24
BORDER_MASS = 0.025
FLAT_SHARE = 0.97
# Why two tolerances: with one of 24 a sky or a studio wall counted as a border, 64% of
# the CC0 photos were trimmed, each copy a little differently, and their copies were lost
# (CC0 copies found: brightness +15% 0.82, pad 10% 0.83). With a flat line within 8
# levels, 7% are trimmed and those copies are found 0.94 and 0.93; product photos, on
# real white, are trimmed as before. At 4, JPEG noise on white lost re-encoded copies
# (resize 60% + q30 products 0.91 -> 0.77). Measured with `python -m benchmarks.dedup_bench
# --skip throughput pairs command --copied 100 --seed 3`.
FLAT_TOLERANCE = 8
# Content at a side's outer edge that an empty line separates from the rest and that
# holds under ISLAND_SHARE of the content (a corner "SALE" overlay, a badge, a logo) is
# trimmed with the border: it moved the box of an overlaid product photo by 1-2% of the
# frame, and its copies were found 0.82; skipping such islands finds 0.95 (0.94 at 0.05,
# 0.95 at 0.15), false removals unchanged (same command as above).
ISLAND_SHARE = 0.10
LINE_CONTENT = 0.5  # ... but never past a line that is mostly content (a photo without a real border)
TRIM_ROUNDS = 4
# `refine_box`: the fractional edge of each trimmed side (chosen on 80 product photos: 4/24
# found 75/82/86/79% of brightness/overlay/resize/pad copies, 8/40 72/82/80/68%, 16/64 75/84/79/60%).
REFINE_LOW, REFINE_HIGH = 4.0, 24.0
REFINE_MARGIN = 3
MIN_TRIMMED = 8  # never trim a side below this many pixels (a flat picture stays whole)
# `text_boxes`: chosen on 60 product and 60 CC0 photos with a box added (it found none in
# their originals with the ring rule; 18 of 60 CC0 originals without it, corners of sky or wall).
TEXT_BOX_RING, TEXT_BOX_AREA, TEXT_BOX_FLAT, TEXT_BOX_EDGE = 0.6, 0.15, 0.75, 0.6
# `overlay_codes`' regions (top, bottom, left, right as fractions of the picture): each
# corner, a little over a quarter (a box up to half the side wide rings ~5% further in the
# 32x32 LANCZOS resize), and the bottom strip. 0.50 lost 1 in 5 CC0 corner-box copies, 0.55
# none, 0.60 made 2.6x the candidate pairs (measured on the shared photos, 40 copies each).
OVERLAY_CORNER, OVERLAY_STRIP = 0.55, 0.15
OVERLAY_REGIONS = [(0.0, OVERLAY_CORNER, 0.0, OVERLAY_CORNER), (0.0, OVERLAY_CORNER, 1 - OVERLAY_CORNER, 1.0),
                   (1 - OVERLAY_CORNER, 1.0, 0.0, OVERLAY_CORNER), (1 - OVERLAY_CORNER, 1.0, 1 - OVERLAY_CORNER, 1.0),
                   (1 - OVERLAY_STRIP, 1.0, 0.0, 1.0)]

# What we say about a file we could not hash.
REASONS = {
    "missing-file": "the file is not there (moved or deleted since import)",
    "unreadable-file": "the file could not be read (permissions or I/O error)",
    "empty-file": "the file has zero bytes",
    "not-an-image": "no image decoder recognises the file",
    "truncated": "the image data ends early (partial download?)",
    "decompression-bomb": "the declared size is over Pillow's safety limit (decompression bomb?)",
    "decode-error": "the decoder failed on the image data",
}


class Unreadable(Exception):
    """A file that cannot be hashed; `reason` is a key of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


_COMPILED = None


def compiled():
    """The compiled kernels (`_kernels`), imported on first use so `import ifa` does not
    load numba; kept here because a `from . import` per call cost ~0.04 ms a photo
    (seven calls in `prepare`, cProfile of `hash_batch`)."""
    global _COMPILED
    if _COMPILED is None:
        from . import _kernels

        _COMPILED = _kernels
    return _COMPILED


# ---- hash methods ---------------------------------------------------------------------------
class HashMethod:
    """A 64-bit hash of a small grey picture. Subclasses set `name` and `size` (the
    (width, height) the grey picture is resized to) and compute `bits`."""

    name: ClassVar[str]
    size: ClassVar[tuple[int, int]]

    def bits(self, pixels: np.ndarray) -> np.ndarray:
        """pixels: (B, height, width) uint8. Returns (B, 64) bool, row-major as imagehash."""
        raise NotImplementedError

    def hash_pictures(self, pictures: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        """Hashes of grey pictures from `decode` or `prepare` (mode 'L' or (h, w) uint8), as
        (B,) uint64 (first bit = MSB, so the value equals int(str(imagehash_hash), 16))."""
        if not pictures:
            return np.zeros(0, dtype=np.uint64)
        return pack(self.bits(resize_lanczos([np.asarray(p) for p in pictures], self.size)))

    def hash_decoded(self, pictures: Sequence[Decoded]) -> np.ndarray:
        """`hash_pictures` of `prepare`'s pictures, from their 32x32 `small` where that is
        this method's size (the same resize, made once). Returns (B,) uint64."""
        if self.size == (32, 32) and pictures and all(p.small is not None for p in pictures):
            return pack(self.bits(np.stack([p.small for p in pictures])))
        return self.hash_pictures([p.grey for p in pictures])


METHODS: dict[str, HashMethod] = {}


def register(cls: type[HashMethod]) -> type[HashMethod]:
    METHODS[cls.name] = cls()
    return cls


def _dct_rows(n: int, k: int) -> np.ndarray:
    # First k rows of the unnormalised DCT-II matrix (scipy.fftpack.dct's convention up
    # to a factor of 2, which a median threshold ignores).
    i = np.arange(n)
    return np.cos(np.pi * np.arange(k)[:, None] * (2 * i[None, :] + 1) / (2 * n))


@register
class PHash(HashMethod):
    """imagehash.phash: 32x32 DCT, the 8x8 lowest frequencies against their median.

    The DC term is among the 64 and is almost always above the median, and exactly 32
    bits are set (median of 64 values), so distances between two phashes are even."""

    name, size = "phash", (32, 32)
    _C = _dct_rows(32, 8)

    def bits(self, pixels: np.ndarray) -> np.ndarray:
        low = self._C @ pixels.astype(np.float64) @ self._C.T  # matmul: 30x faster than einsum here
        flat = low.reshape(len(low), 64)
        return flat > np.median(flat, axis=1, keepdims=True)


@register
class DHash(HashMethod):
    """imagehash.dhash: 9x8 picture, each pixel brighter than its left neighbour."""

    name, size = "dhash", (9, 8)

    def bits(self, pixels: np.ndarray) -> np.ndarray:
        return (pixels[:, :, 1:] > pixels[:, :, :-1]).reshape(len(pixels), 64)


@register
class AHash(HashMethod):
    """imagehash.average_hash: 8x8 picture against its mean."""

    name, size = "ahash", (8, 8)

    def bits(self, pixels: np.ndarray) -> np.ndarray:
        flat = pixels.reshape(len(pixels), 64).astype(np.float64)
        return flat > flat.mean(axis=1, keepdims=True)


@register
class WHash(HashMethod):
    """imagehash.whash (Haar, image_scale=32, top LL removed): the level-2 LL band of a
    32x32 picture against its median. Removing the top LL subtracts the mean, and each
    LL coefficient is a scaled 4x4 block mean, so this is block means against their
    median, which is what is computed here."""

    name, size = "whash", (32, 32)

    def bits(self, pixels: np.ndarray) -> np.ndarray:
        blocks = pixels.astype(np.float64).reshape(len(pixels), 8, 4, 8, 4).mean(axis=(2, 4)).reshape(len(pixels), 64)
        return blocks > np.median(blocks, axis=1, keepdims=True)


def resize_lanczos(pictures: Sequence[np.ndarray], size: tuple[int, int],
                   columns: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """LANCZOS resize of 8-bit grey pictures to size=(width, height), as one
    (B, height, width) float64 array of integer grey levels.

    Pillow's own fixed-point weights and rounding (22 fraction bits, round and clip to
    0..255 after each pass), horizontal pass first, one compiled pass a picture over each
    output pixel's taps only (`_kernels.resize_into`). Bit for bit what Pillow gives when
    it also runs the horizontal pass first (tested); Pillow sometimes runs the vertical
    pass first, which moves a grey level by one in a few pixels of ~4% of pictures. A
    fixed order keeps hashes independent of Pillow's internals. The same sums as dense
    matrix products (BLAS) cost 0.68 CPU ms a 134x100 photo, OpenBLAS's threads spinning,
    against 0.12 here (benchmarks/dedup_bench.py throughput). columns: each picture's
    `transposed` copy when the caller has it."""
    _kernels = compiled()

    width, height = size
    out = np.empty((len(pictures), height, width), dtype=np.float64)
    for i, pic in enumerate(pictures):
        h, w = pic.shape
        x_first, x_weights = _lanczos_taps(w, width)
        y_first, y_weights = _lanczos_taps(h, height)
        cols = transposed(pic) if columns is None else columns[i]
        _kernels.resize_into(cols, out[i], x_first, x_weights, y_first, y_weights)
    return out


BOX, BILINEAR = 0, 1  # `resample`'s filters


def resample(pixels: np.ndarray, size: tuple[int, int], kind: int,
             box: tuple[float, float, float, float] | None = None, columns: np.ndarray | None = None) -> np.ndarray:
    """Pillow's Image.resize(size, BOX or BILINEAR, box=(left, top, right, bottom)) of an
    8-bit grey ((h, w)) or RGB ((h, w, 3)) picture, bit for bit (tested on the shared photos):
    one compiled call, where Pillow's fromarray/resize/asarray round trip cost ~0.1 ms a
    small picture, most of it per call (cProfile of `prepare`). columns: a grey picture's
    `transposed` copy when the caller has it. Returns uint8 of the input's kind, (height, width[, 3])."""
    _kernels = compiled()

    src = np.asarray(pixels, dtype=np.uint8)
    src3 = src[:, :, None] if src.ndim == 2 else src
    h, w = src.shape[:2]
    left, top, right, bottom = (0.0, 0.0, float(w), float(h)) if box is None else map(float, box)
    if h - size[1] > 2 * (w - size[0]):
        # Pillow 13 runs the vertical pass first when the height shrinks by over twice
        # the width's pixels (fitted on 3,199 pictures whose result depends on the order):
        # the picture turned, whose columns are src's rows.
        out = np.empty((size[0], size[1], src3.shape[2]), dtype=np.uint8)
        _kernels.resample_columns_into(np.ascontiguousarray(src3), top, left, bottom, right, kind, out)
        out = out.swapaxes(0, 1)
    elif src.ndim == 2:
        cols = transposed(src) if columns is None else columns
        out = np.empty((size[1], size[0], 1), dtype=np.uint8)
        _kernels.resample_columns_into(cols[:, :, None], left, top, right, bottom, kind, out)
    else:
        out = np.empty((size[1], size[0], src3.shape[2]), dtype=np.uint8)
        _kernels.resample_into(np.ascontiguousarray(src3), left, top, right, bottom, kind, out)
    return np.ascontiguousarray(out[:, :, 0] if src.ndim == 2 else out)


def transposed(grey: np.ndarray) -> np.ndarray:
    """A grey picture column-major ((w, h) uint8, contiguous), what the compiled resizes
    read: made once per decode and shared by its grey resizes (`_kernels.transpose_into`)."""
    grey = np.asarray(grey, dtype=np.uint8)
    out = np.empty(grey.shape[::-1], dtype=np.uint8)
    compiled().transpose_into(grey, out)
    return out


@lru_cache(maxsize=4096)
def _lanczos_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """`_lanczos_matrix` as each output's first input and its run of weights: ((out_size,)
    int64, (out_size, longest run) int64, zero-padded)."""
    m = _lanczos_matrix(in_size, out_size).astype(np.int64)
    nonzero = m != 0
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), 0)
    end = np.where(nonzero.any(axis=1), in_size - nonzero[:, ::-1].argmax(axis=1), first)
    weights = np.zeros((out_size, max(1, int((end - first).max(initial=1)))), dtype=np.int64)
    for row, (lo, hi) in enumerate(zip(first.tolist(), end.tolist())):
        weights[row, :hi - lo] = m[row, lo:hi]
    return first.astype(np.int64), weights


def _lanczos_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) fixed-point LANCZOS weights (support 3), as Pillow's
    precompute_coeffs and normalize_coeffs_8bpc compute them for the whole input:
    `_lanczos_matrix_reference` compiled (`_kernels.lanczos_matrix`, tested equal). Each
    pool worker makes those of ~200 sizes afresh; in Python that was ~0.8 ms a size."""
    return compiled().lanczos_matrix(int(in_size), int(out_size))


def _lanczos_matrix_reference(in_size: int, out_size: int) -> np.ndarray:
    """`_lanczos_matrix` in Python: the definition the kernel is tested against."""
    m = np.zeros((out_size, in_size), dtype=np.float64)
    if in_size == out_size:  # Pillow skips the pass; identity weights do the same
        np.fill_diagonal(m, 1 << 22)
        return m
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    ss = 1.0 / filterscale
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [_lanczos((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for v in k:
            ww += v
        if ww != 0.0:
            k = [v / ww for v in k]
        m[xx, xmin:xmin + xmax] = [int(-0.5 + v * (1 << 22)) if v < 0 else int(0.5 + v * (1 << 22)) for v in k]
    return m


def _lanczos(x: float) -> float:
    if not -3.0 <= x < 3.0:
        return 0.0
    return _sinc(x) * _sinc(x / 3)


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def pack(bits: np.ndarray) -> np.ndarray:
    """(B, 64) bool -> (B,) uint64, first bit most significant."""
    return np.packbits(bits.astype(np.uint8), axis=1).view(">u8").reshape(-1).astype(np.uint64)


def method(name: str) -> HashMethod:
    """The registered method called `name`. Raises KeyError listing the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown hash method {name!r}; known: {', '.join(METHODS)}") from None


# ---- the one decode path ----------------------------------------------------------------------
class Decoded(NamedTuple):
    """A decoded, trimmed picture: `grey` ((h, w) uint8, what every method hashes), `signature`
    (verify.SIGNATURE_BYTES), the full-size image's width and height as displayed, and
    with_stats, check-images' statistics of the same decode (image_checks.statistics), and
    `small`, grey resized to 32x32 as phash resizes it ((32, 32) float64, `resize_lanczos`):
    the overlay codes are made from it and the 32x32 methods hash it without resizing again."""

    grey: np.ndarray
    signature: bytes
    width: int
    height: int
    stats: object | None = None  # image_checks.statistics.ImageStats
    small: np.ndarray | None = None


def decode(data: bytes, trim: bool = True) -> tuple[Image.Image, int, int]:
    """Decode image bytes to the small grey picture every method hashes (borders trimmed
    unless trim=False).

    Returns (picture in mode 'L', width, height), width and height being the full-size
    image's as displayed (after EXIF rotation). Raises Unreadable with a reason."""
    d = prepare(data, trim)
    return Image.fromarray(d.grey, "L"), d.width, d.height


def prepare(data: bytes, trim: bool = True, with_stats: bool = False) -> Decoded:
    """One decode of image bytes: the trimmed grey picture and the verification signature
    (with_stats: and check-images' statistics, so one decode serves both commands).
    trim=False keeps the borders and any text box (to compare with imagehash on the whole picture).
    Raises Unreadable with a reason."""
    return _finish([_picture(data, trim, with_stats)])[0]


class _Picture(NamedTuple):
    """What one decode gives before its codes (`_finish` makes those for many at once):
    `Decoded`'s fields, the signature's thumbnail and flags, and the whole picture at
    32x32 when it was trimmed (None: the same as `small`)."""

    hashed: np.ndarray
    thumb: np.ndarray
    flags: int
    width: int
    height: int
    stats: object | None
    small: np.ndarray
    whole: np.ndarray | None


def _picture(data: bytes, trim: bool, with_stats: bool) -> _Picture:
    """`prepare` up to the codes. Raises Unreadable with a reason."""
    rgb, width, height = decode_rgb(data)
    return _picture_of(rgb, width, height, trim, with_stats)


def _picture_of(rgb: np.ndarray, width: int, height: int, trim: bool, with_stats: bool) -> _Picture:
    """`_picture` of a decoded picture ((h, w, 3) uint8; width, height: the file's as displayed)."""
    grey = grey_of(rgb)
    h, w = grey.shape
    ring = _ring(grey)  # the border test and the text boxes' background, computed once
    background, boxes = text_boxes(grey, ring) if trim else (ring[0], [])
    clean_rgb, clean = _painted(rgb, grey, background, boxes)
    box = trim_box(clean) if trim else (0, h, 0, w)
    grey_t = transposed(grey)  # what the grey resizes read, made once
    clean_t = grey_t if clean is grey else transposed(clean)
    stats = None
    if with_stats:
        from ..image_checks.statistics import measure_rgb  # it imports this module

        stats = measure_rgb(rgb, width, height, grey, box if trim else None, grey_t)
    open_frame = not ring[1]
    flags = (verify.OPEN_FRAME if open_frame else 0) | (verify.TEXT_BOX if clean is not grey else 0)
    if clean is not grey:  # where the box was: the score allows one only there (verify.pair_scores)
        flags |= box_corners(boxes, h, w) << verify.CORNERS_SHIFT
    edges = None if box == (0, h, 0, w) else refine_box(clean, box)
    hashed = clean if edges is None else _cut_out(clean, edges, clean_t)  # nothing trimmed: what imagehash hashes
    small = resize_lanczos([hashed], METHODS["phash"].size, None if edges else [clean_t])[0]
    # The whole picture's code is the trimmed one's when nothing was trimmed.
    whole = None if edges is None else resize_lanczos([clean], METHODS["phash"].size, [clean_t])[0]
    thumb = verify.thumbnail(clean_rgb, edges, verify.SIDE)
    return _Picture(hashed, thumb, flags, width, height, stats, small, whole)


def _finish(pictures: Sequence[_Picture]) -> list[Decoded]:
    """Each `_picture`'s Decoded: its overlay codes made for all of them at once (one
    numpy pass: 30 against 90 CPU us a picture one by one, 64 product photos; the same
    numbers) and its crop code, then its signature."""
    if not pictures:
        return []
    from . import align  # it imports this module

    codes = overlay_codes_many(np.stack([p.small for p in pictures]), [p.whole for p in pictures])
    out = []
    for p, c in zip(pictures, codes):
        # The thumbnail already is SIDE x SIDE: signature's resize of it (no box) is the identity.
        signature = verify.signature(p.thumb, None, c, p.flags, int(align.crop_code(p.small)))
        out.append(Decoded(p.hashed, signature, p.width, p.height, p.stats, p.small))
    return out


def _cut_out(grey: np.ndarray, edges: tuple[float, float, float, float], columns: np.ndarray | None = None) -> np.ndarray:
    """The trimmed box (top, bottom, left, right; fractions of a pixel) of grey, resampled
    at about its own size (Pillow resamples a fractional box so). columns: `transposed(grey)`."""
    top, bottom, left, right = edges
    size = (max(1, round(right - left)), max(1, round(bottom - top)))
    return resample(grey, size, BILINEAR, (left, top, right, bottom), columns)


def without_text_boxes(rgb: np.ndarray, grey: np.ndarray,
                       ring: tuple[int, bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, grey) with each text box (`text_boxes`) painted in the border's colour: a box
    touching two sides made them non-flat and the copy kept its whole frame, and what of it
    lies inside the trimmed box moved its hash (trimmed like their original: 0 -> 42 of 60
    product photos with a box in a corner, 26 -> 35 with one along the bottom). The
    arrays themselves when there is none. ring: `_ring(grey)` when already known."""
    return _painted(rgb, grey, *text_boxes(grey, ring))


def _painted(rgb: np.ndarray, grey: np.ndarray, background: int,
             boxes: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """`without_text_boxes` once `text_boxes` has found the boxes (and the border's grey)."""
    if not boxes:
        return rgb, grey
    ring = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    colour = np.median(ring, axis=0).round().astype(np.uint8)
    rgb, grey = rgb.copy(), grey.copy()
    for top, bottom, left, right in boxes:
        rgb[top:bottom, left:right], grey[top:bottom, left:right] = colour, background
    return rgb, grey


def box_corners(boxes: list[tuple[int, int, int, int]], h: int, w: int) -> int:
    """The frame corners the boxes (top, bottom, left, right; `text_boxes`) touch in a picture
    of h x w, as bits: 1 top left, 2 top right, 4 bottom left, 8 bottom right (a banner along
    the bottom touches both bottom corners)."""
    out = 0
    for top, bottom, left, right in boxes:
        rows = ([0] if top == 0 else []) + ([2] if bottom == h else [])
        cols = ([0] if left == 0 else []) + ([1] if right == w else [])
        for r in rows:
            for c in cols:
                out |= 1 << (r + c)
    return out


def _ring(grey: np.ndarray) -> tuple[int, bool]:
    """(the median grey of the picture's outer lines, whether it has a border: TEXT_BOX_RING of
    those lines within FLAT_TOLERANCE of that median, as on a product on a plain background)."""
    median, near, n = compiled().ring_level(np.ascontiguousarray(grey, dtype=np.uint8), FLAT_TOLERANCE)  # a lower median
    return int(median), bool(near >= TEXT_BOX_RING * n)


def text_boxes(grey: np.ndarray, ring: tuple[int, bool] | None = None) -> tuple[int, list[tuple[int, int, int, int]]]:
    """(the border's grey, boxes as (top, bottom, left, right)): rectangles of one flat grey
    that is not the border's, anchored at a corner of a picture with a border (TEXT_BOX_RING
    of its outer lines within FLAT_TOLERANCE of their median), at most TEXT_BOX_AREA of the
    picture, TEXT_BOX_FLAT of them flat (the text) and ending at a sharp edge: a "SALE" box
    or a banner along a side. grey: (h, w) uint8; ring: `_ring(grey)` when already known."""
    h, w = grey.shape
    background, bordered = _ring(grey) if ring is None else ring
    boxes: list[tuple[int, int, int, int]] = []
    if not bordered:
        return background, boxes
    x = grey.astype(np.int16)
    for down in (False, True):
        for across in (False, True):
            v = x[::-1] if down else x
            v = v[:, ::-1] if across else v
            size = _corner_box(v, background)
            if size:
                bh, bw = size
                boxes.append(((h - bh, h) if down else (0, bh)) + ((w - bw, w) if across else (0, bw)))
    return background, boxes


def _corner_box(v: np.ndarray, background: int) -> tuple[int, int] | None:
    """(height, width) of the flat box at v's top left corner (`text_boxes`), or None."""
    h, w = v.shape
    colour = int(v[0, 0])
    if abs(colour - background) <= FLAT_TOLERANCE:
        return None
    row, col = np.abs(v[0] - colour) <= FLAT_TOLERANCE, np.abs(v[:, 0] - colour) <= FLAT_TOLERANCE
    bw = w if row.all() else int(np.argmin(row))
    bh = h if col.all() else int(np.argmin(col))
    if bw < 2 or bh < 2 or bw * bh > TEXT_BOX_AREA * h * w:
        return None
    if np.mean(np.abs(v[:bh, :bw] - colour) <= FLAT_TOLERANCE) < TEXT_BOX_FLAT:
        return None
    sharp = (bh == h or np.mean(np.abs(v[bh, :bw] - colour) > FLAT_TOLERANCE) >= TEXT_BOX_EDGE) and \
        (bw == w or np.mean(np.abs(v[:bh, bw] - colour) > FLAT_TOLERANCE) >= TEXT_BOX_EDGE)
    return (bh, bw) if sharp else None


def overlay_codes(trimmed: np.ndarray, whole: np.ndarray | None = None) -> np.ndarray:
    """The phash of the trimmed picture once per OVERLAY_REGIONS region, the region filled
    with the mean grey of the rest, then the same of the whole picture's bottom strip: a
    copy with a text box, badge or banner in that region hashes as its original does (a
    banner along the bottom of a photo without a border is trimmed away: its copy's
    trimmed bottom code meets its original's whole one). trimmed, whole: the pictures at
    phash's 32x32 (`resize_lanczos`; whole None: the same as trimmed).
    Returns (verify.OVERLAY_CODES,) uint64."""
    return overlay_codes_many(trimmed[None], [whole])[0]


def overlay_codes_many(trimmed: np.ndarray, whole: Sequence[np.ndarray | None]) -> np.ndarray:
    """`overlay_codes` of B pictures: trimmed (B, 32, 32) float64, whole one (32, 32) or None
    each. Every step works row by row (numpy's stacked products and row sums), so each
    picture's codes are the numbers it gets alone. Returns (B, verify.OVERLAY_CODES) uint64."""
    phash = METHODS["phash"]
    # Filled at 32x32 after phash's own LANCZOS resize (each filled copy resized: 1-4 ms a
    # photo; Pillow's BOX: fewer box copies found, 0.72 / 0.88 and 0.62 / 0.57 against
    # 0.75 / 0.88 in a corner and 0.68 / 0.68 along the bottom).
    outside, count, filled = _overlay_masks(phash.size)
    n, k = len(trimmed), len(OVERLAY_REGIONS) + 1
    x = np.empty((n, k, trimmed[0].size))
    x[:, :-1] = trimmed.reshape(n, 1, -1)
    # Without a whole picture the last code is the trimmed bottom strip's again (the same mask).
    x[:, -1] = [t.reshape(-1) if w is None else w.reshape(-1) for t, w in zip(trimmed, whole)]
    x *= outside
    x = x.reshape(n * k, -1)
    # The DCT is linear: the filled picture's is the rest's plus the rest's mean times the
    # region's. Batched 8x32 products: a (k, 1024) x (1024, 64) one costs 7x more (OpenBLAS).
    low = _low_dct(x) + (x.sum(axis=1) / np.tile(count, n))[:, None] * np.tile(filled, (n, 1))
    middle = np.sort(low, axis=1)[:, 31:33].mean(axis=1, keepdims=True)  # the median of 64: np.median costs 0.25 ms here
    return pack(low > middle).reshape(n, k)


@lru_cache(maxsize=4)
def _overlay_masks(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each overlay code's region on a picture of size (width, height), the bottom strip's
    again for the whole picture's code: (outside: (verify.OVERLAY_CODES, width * height)
    float64, 1 outside the region; the count outside; the region's 64 low DCT terms)."""
    w, h = size
    out = np.zeros((len(OVERLAY_REGIONS), h, w), dtype=bool)
    for k, (t, b, l, r) in enumerate(OVERLAY_REGIONS):
        out[k, round(t * h):round(b * h), round(l * w):round(r * w)] = True
    inside = np.concatenate([out, out[-1:]]).reshape(len(OVERLAY_REGIONS) + 1, -1).astype(np.float64)
    return 1.0 - inside, np.maximum((1.0 - inside).sum(axis=1), 1), _low_dct(inside)


def _low_dct(x: np.ndarray) -> np.ndarray:
    """phash's 64 low DCT terms (row-major 8x8) of each flattened 32x32 picture: (k, 1024) -> (k, 64)."""
    c = METHODS["phash"]._C
    return (c @ x.reshape(len(x), 32, 32) @ c.T).reshape(len(x), 64)


def refine_box(grey: np.ndarray, box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """`refine_box_reference`, compiled (numba): the numpy reference, which it is tested
    equal to, spent ~0.5 ms a picture, as much as the decode."""
    _kernels = compiled()

    t, b, l, r = _kernels.refine_box(np.ascontiguousarray(grey, dtype=np.uint8), *box, REFINE_MARGIN,
                                     REFINE_LOW, REFINE_HIGH)
    return float(t), float(b), float(l), float(r)


def refine_box_reference(grey: np.ndarray, box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """`trim_box`'s (top, bottom, left, right), each trimmed side moved to a fraction of a
    pixel: where the content reaches half a line's worth, counting each pixel by how far
    it is from the border's grey level (0 within REFINE_LOW levels, 1 from REFINE_HIGH on),
    over the REFINE_MARGIN lines either side of the integer cut.

    Why: at 64-112 px a catalogue item is 30-40 lines tall, and brightening a photo or a
    corner overlay moved the integer cut by a line or two, which moved the trimmed phash
    and the 8x8 signature (copies found, 80 product photos, benchmarks/dedup_bench.py
    transforms: with the same box for the copy as for its original, brightness +15% 99%
    and SALE overlay 100%, with each picture's own integer box 69% and 64%, with the
    refined box 75% and 82%; resize 60% 80% -> 86%, pad 10% 65% -> 79%; distinct
    candidate pairs passing the verifier among 600 product photos: 0 -> 1 of ~330).
    grey: (h, w) uint8. Returns float (top, bottom, left, right) within the picture."""
    h, w = grey.shape
    t, b, l, r = box
    m = REFINE_MARGIN
    top, bottom, left, right = max(t - m, 0), min(b + m, h), max(l - m, 0), min(r + m, w)
    x = grey[top:bottom, left:right].astype(np.float64)
    out = [float(t), float(b), float(l), float(r)]
    # (side is cut, the lines from the outside in, axis along a line, start offset)
    sides = [(t > 0, x, 1), (b < h, x[::-1], 1), (l > 0, x, 0), (r < w, x[:, ::-1], 0)]
    starts = [top, h - bottom, left, w - right]
    for k, (cut, region, axis) in enumerate(sides):
        if not cut or region.size == 0:
            continue
        outer = region[0] if axis == 1 else region[:, 0]
        weight = np.clip((np.abs(region - np.median(outer)) - REFINE_LOW) / (REFINE_HIGH - REFINE_LOW), 0, 1)
        profile = weight.mean(axis=axis)
        cum = np.cumsum(profile / max(float(profile.max()), 1e-6))
        if cum[-1] <= 0.5:
            continue
        edge = starts[k] + float(np.interp(0.5, cum, np.arange(1, len(cum) + 1)))
        out[k] = edge if k in (0, 2) else (h if k == 1 else w) - edge
    if out[1] - out[0] < 1 or out[3] - out[2] < 1:  # a degenerate refinement: keep the integer box
        return float(t), float(b), float(l), float(r)
    return out[0], out[1], out[2], out[3]


def grey_of(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (h, w) uint8 grey with Pillow's "L" weights and rounding
    (ITU-R 601-2 luma in 16-bit fixed point), as imagehash's convert("L") computes it.
    Compiled: 0.026 CPU ms a 112x112 decode against numpy's 0.065 (tested equal to Pillow's)."""
    _kernels = compiled()

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    out = np.empty(rgb.shape[:2], dtype=np.uint8)
    _kernels.grey_into(rgb, out)
    return out


def trim_box(grey: np.ndarray, tolerance: int = BORDER_TOLERANCE, mass: float = BORDER_MASS) -> tuple[int, int, int, int]:
    """The picture's box without its uniform borders, as (top, bottom, left, right) slice
    bounds; `trim_box_reference` says how. Compiled (numba): ~20x faster than the numpy
    reference it is tested equal to, which spent ~1 ms a picture, a third of the decode."""
    _kernels = compiled()

    box = _kernels.trim_box(np.ascontiguousarray(grey, dtype=np.uint8), tolerance, FLAT_TOLERANCE, ISLAND_SHARE, mass,
                            FLAT_SHARE, LINE_CONTENT, TRIM_ROUNDS, MIN_TRIMMED)
    return int(box[0]), int(box[1]), int(box[2]), int(box[3])


def load_kernels() -> None:
    """Load the compiled kernels a hash uses now (from numba's disk cache; ~0.7 s the first
    time in a process, measured), by hashing a small drawn picture. Called in the parent
    before a forked pool starts, so the workers inherit them instead of each loading them
    again (~0.07 s a worker), or each compiling them in the first run after they changed
    (the 20,000 photos on 2 workers, trim kernels alone preloaded: 31.9 workers' CPU s, ~20 after)."""
    rgb = np.full((48, 40, 3), 255, dtype=np.uint8)
    rgb[12:36, 10:30] = (180, 40, 60)  # an item on a white border: trimmed, refined, cut out
    _finish([_picture_of(rgb, 40, 48, True, True)])  # width, height


def trim_box_reference(grey: np.ndarray, tolerance: int = BORDER_TOLERANCE,
                       mass: float = BORDER_MASS) -> tuple[int, int, int, int]:
    """The picture's box without its uniform borders, as (top, bottom, left, right)
    slice bounds. grey: (h, w) uint8 (grey, not colour: a third of the work, and a flat
    border differs from what it frames in brightness almost always).

    A side has a border when its outermost line is flat (FLAT_SHARE of its pixels within
    FLAT_TOLERANCE of their median colour). The pixels that differ from that colour by more
    than `tolerance` are the content; the side is cut up to where `mass` of the content begins (so a few stray
    pixels, a small corner badge, do not hold the cut back), and never past a line that
    is mostly content, plus the one line where the border blends into what it frames.
    A side is cut again only for a border of another colour (a black letterbox around a
    product on white: the black, then the white), at most TRIM_ROUNDS times. A side is
    never cut below MIN_TRIMMED pixels, so a flat or tiny picture keeps its box."""
    h, w = grey.shape[:2]
    box = [0, h, 0, w]  # top, bottom, left, right
    x = grey.astype(np.int16)
    refs: list[np.int16 | None] = [None] * 4
    for _ in range(TRIM_ROUNDS):
        view = x[box[0]:box[1], box[2]:box[3]]
        cuts = [0, 0, 0, 0]
        for side, (line, axis, rev) in enumerate([(view[0], 1, False), (view[-1], 1, True),
                                                  (view[:, 0], 0, False), (view[:, -1], 0, True)]):
            cut, ref = _cut(view, line, axis, tolerance, mass, rev)
            if cut and refs[side] is not None and abs(int(ref) - int(refs[side])) <= tolerance:
                cut = 0  # the same background again: one cut per border colour
            if cut:
                cuts[side], refs[side] = cut, ref
        t, b, l, r = cuts
        if box[1] - box[0] - t - b < min(MIN_TRIMMED, box[1] - box[0]):
            t = b = 0
        if box[3] - box[2] - l - r < min(MIN_TRIMMED, box[3] - box[2]):
            l = r = 0
        if not any((t, b, l, r)):
            break
        box = [box[0] + t, box[1] - b, box[2] + l, box[3] - r]
    return box[0], box[1], box[2], box[3]


def _cut(box: np.ndarray, line: np.ndarray, axis: int, tolerance: int, mass: float,
         reverse: bool = False) -> tuple[int, np.int16 | None]:
    """(lines to cut from one side of `box` ((h, w) int16), the border's grey level) for
    the side whose outermost line is `line`; the lines run along `axis` (1: rows, 0: columns)."""
    if line.size == 0:
        return 0, None
    ref = np.int16(np.median(line))  # int16 arithmetic: several times faster than float64 here
    if np.count_nonzero(np.abs(line - ref) <= FLAT_TOLERANCE) < FLAT_SHARE * line.size:
        return 0, None
    profile = np.count_nonzero(np.abs(box - ref) > tolerance, axis=axis)
    if reverse:
        profile = profile[::-1]
    total = profile.sum()
    if total == 0:
        return 0, None
    start = _past_islands(profile, ISLAND_SHARE * total)
    rest = profile[start:]
    cut = start + int(np.searchsorted(np.cumsum(rest), mass * rest.sum(), side="right"))
    full = np.flatnonzero(profile > LINE_CONTENT * box.shape[axis])  # a line mostly content is never cut
    if len(full):
        cut = min(cut, int(full[0]))
    return (cut + 1 if cut else 0), ref  # + the blended line: JPEG at reduced scale mixes border and content


def _past_islands(profile: np.ndarray, limit: float) -> int:
    """The first line past the islands at the start of `profile` (content pixels per line,
    from the outside in): runs of content lines that an empty line separates from the
    rest, each holding under `limit` pixels (a badge, a "SALE" overlay in a corner)."""
    start = 0
    while True:
        nz = np.flatnonzero(profile[start:])
        if not len(nz):
            return start
        first = start + int(nz[0])
        gaps = np.flatnonzero(profile[first:] == 0)
        if not len(gaps) or profile[first:first + int(gaps[0])].sum() >= limit:
            return start
        start = first + int(gaps[0])


def decode_rgb(data: bytes, side: int = DECODE_PX) -> tuple[np.ndarray, int, int]:
    """Decode image bytes to the reduced RGB picture ((h, w, 3) uint8, untrimmed; both sides
    kept >= `side` where the picture has them) and the full-size width and height as
    displayed. Raises Unreadable with a reason."""
    if not data:
        raise Unreadable("empty-file")
    fast = _decode_jpeg_fast(data, side)
    if fast is not None:
        return fast
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning, EXIF noise: not our user's problem
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            scale = _reduction(width, height, side)
            if im.format == "JPEG":
                im.draft("RGB" if im.mode in ("L", "RGB") else im.mode, (side, side))
                scale = 1  # libjpeg already reduced it
            im.load()
            orientation = im.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            im = ImageOps.exif_transpose(im) if orientation != 1 else im
            rgb = _to_rgb(im)
            if scale > 1:
                rgb = rgb.reduce(scale)
            return np.asarray(rgb), width, height
    except Unreadable:
        raise
    except UnidentifiedImageError as exc:
        raise Unreadable("not-an-image", str(exc)) from None
    except Image.DecompressionBombError as exc:
        raise Unreadable("decompression-bomb", str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a property of the file
        text = str(exc)
        reason = "truncated" if "truncated" in text or "premature end" in text.lower() else "decode-error"
        raise Unreadable(reason, f"{type(exc).__name__}: {text}") from None


def _decode_jpeg_fast(data: bytes, side: int = DECODE_PX) -> tuple[np.ndarray, int, int] | None:
    """The same reduced RGB decode as Pillow's draft mode, through simplejpeg (the same
    libjpeg-turbo, called directly): pixel-identical (tested), and on small files about
    twice as fast, where Pillow's per-call overhead is most of the cost. Colour costs
    ~10% over grey (0.19 vs 0.17 ms on 224x224 product photos): the chroma is decoded
    anyway, only its IDCT and conversion are added. None: let Pillow decode it (not a
    JPEG, CMYK, no simplejpeg, or any error, which Pillow then names)."""
    if _simplejpeg is None or data[:2] != b"\xff\xd8":
        return None
    try:
        height, width, colorspace, _ = _simplejpeg.decode_jpeg_header(data)
        if colorspace not in ("Gray", "YCbCr"):
            return None
        s = _reduction(width, height, side)
        rgb = _simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=-(-width // s), min_height=-(-height // s))
    except Exception:  # noqa: BLE001 - Pillow decodes it again and says what is wrong
        return None
    orientation = exif_orientation(data)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if orientation in _TRANSPOSE:
        rgb = _TRANSPOSE[orientation](rgb)
    return np.ascontiguousarray(rgb), width, height


# EXIF orientation -> the numpy view that shows the picture upright (ImageOps.exif_transpose).
_TRANSPOSE = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1..8) of JPEG bytes, 1 when absent or unreadable. Reads
    only the markers before the image data: ~2 us, against ~40 us for Pillow's open."""
    pos, end = 2, min(len(data), 1 << 17)
    try:
        while pos + 4 <= end and data[pos] == 0xFF:
            marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
            if marker == 0xDA:  # start of scan: no more metadata
                return 1
            if marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
                tiff = pos + 10
                order = "little" if data[tiff:tiff + 2] == b"II" else "big"
                ifd = tiff + int.from_bytes(data[tiff + 4:tiff + 8], order)
                for i in range(int.from_bytes(data[ifd:ifd + 2], order)):
                    entry = ifd + 2 + 12 * i
                    if int.from_bytes(data[entry:entry + 2], order) == 0x0112:
                        value = int.from_bytes(data[entry + 8:entry + 10], order)
                        return value if 1 <= value <= 8 else 1
                return 1
            pos += 2 + length
    except (IndexError, ValueError):
        pass
    return 1


def _reduction(width: int, height: int, side: int = DECODE_PX) -> int:
    """The power-of-two factor libjpeg's draft mode would pick (Pillow's rule): 1 for a
    picture with a side under `side` (a 400x30 banner, a 1x1 pixel)."""
    scale = min(width // side, height // side)
    return next((s for s in (8, 4, 2) if scale >= s), 1)


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB with alpha composited on white and 16-bit scaled by its high byte."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255):
            a = a / 257.0  # 0..65535 -> 0..255
        elif mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")  # L, P, 1, CMYK, YCbCr, LAB, HSV


# ---- the unit of parallel work ---------------------------------------------------------------
class FileJob(NamedTuple):
    """One file to look at, with what the ledger already knows about it.

    bytes/mtime_ns/sha256: the file's fingerprint when it was last read (None if never).
    cached: methods already hashed (with a signature) for that sha256. known_unreadable: that sha256 failed
    to decode before. need_size: the ledger lacks the image's width and height."""

    key: int
    path: str
    bytes: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    cached: tuple[str, ...] = ()
    known_unreadable: bool = False
    need_size: bool = True


class FileResult(NamedTuple):
    """What `hash_batch` found. read: the file's bytes were read; decoded: it was decoded.
    hashes: {method: uint64 as Python int} for the methods computed now; signature: the
    verification signature (verify.SIGNATURE_BYTES) when decoded now. reason: a key of
    REASONS when the file could not be hashed (then decoded is False)."""

    key: int
    bytes: int | None
    mtime_ns: int | None
    sha256: str | None
    width: int | None
    height: int | None
    hashes: dict[str, int]
    reason: str | None = None
    detail: str = ""
    read: bool = False
    decoded: bool = False
    signature: bytes | None = None
    picture_stats: object | None = None  # image_checks.statistics.ImageStats, when decoded now


def hash_batch(jobs: Sequence[FileJob], methods: Sequence[str], with_stats: bool = True) -> list[FileResult]:
    """Fingerprint and hash a batch of files; never raises for a bad file.

    A file whose size and mtime match its fingerprint and whose hashes are all cached is
    not read at all; one whose sha256 is unchanged is not decoded. `methods` may be empty
    (exact duplicates only): then only the sha256 and the header's size are taken.
    with_stats: a decoded file also gets check-images' statistics (`picture_stats`; what
    the command caches); False only to time the hashing alone.
    Returns one FileResult per job, in order."""
    methods = tuple(methods)
    for name in methods:
        method(name)  # fail fast on a typo, before any file is touched
    out: list[FileResult] = []
    decoded: list[tuple[int, Decoded, tuple[str, ...]]] = []
    waiting: list[tuple[int, _Picture, tuple[str, ...]]] = []
    for job in jobs:
        result, picture, todo = _one_file(job, methods, with_stats)
        if picture is not None:
            waiting.append((len(out), picture, todo))
        out.append(result)
        if len(waiting) == FINISH_BATCH:
            decoded += _finished(waiting)
            waiting = []
    decoded += _finished(waiting)
    for i, d, _ in decoded:
        out[i] = out[i]._replace(signature=d.signature, picture_stats=d.stats)
    for name in methods:
        members = [(i, p) for i, p, todo in decoded if name in todo]
        values = METHODS[name].hash_decoded([p for _, p in members])
        for (i, _), value in zip(members, values.tolist()):
            out[i].hashes[name] = int(value)
    return out


def _finished(waiting: list[tuple[int, _Picture, tuple[str, ...]]]) -> list[tuple[int, Decoded, tuple[str, ...]]]:
    """`_finish` of the waiting pictures, each beside its place in the batch and its methods."""
    done = _finish([p for _, p, _ in waiting])
    return [(i, d, todo) for (i, _, todo), d in zip(waiting, done)]


# Pictures whose codes `_finish` makes at once: numpy's per-call cost shared, while what they
# hold (~25 KB each) stays in the core's cache.
FINISH_BATCH = 64


def _one_file(job: FileJob, methods: tuple[str, ...],
              with_stats: bool = True) -> tuple[FileResult, _Picture | None, tuple[str, ...]]:
    def fail(reason: str, detail: str = "", **kw) -> tuple[FileResult, None, tuple]:
        fields = dict(bytes=None, mtime_ns=None, sha256=None, width=None, height=None) | kw
        return FileResult(job.key, hashes={}, reason=reason, detail=detail, **fields), None, ()

    try:
        st = os.stat(job.path)
    except FileNotFoundError:
        return fail("missing-file", job.path)
    except OSError as exc:
        return fail("unreadable-file", str(exc))
    settled = job.known_unreadable or set(methods) <= set(job.cached)
    if job.sha256 and (st.st_size, st.st_mtime_ns) == (job.bytes, job.mtime_ns) and settled and not job.need_size:
        return FileResult(job.key, st.st_size, st.st_mtime_ns, job.sha256, None, None, {}), None, ()
    try:
        with open(job.path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return fail("unreadable-file", str(exc))
    sha = hashlib.sha256(data).hexdigest()
    same = sha == job.sha256
    todo = tuple(m for m in methods if not (same and m in job.cached))
    stat = dict(bytes=len(data), mtime_ns=st.st_mtime_ns, sha256=sha)
    if same and job.known_unreadable:
        return FileResult(job.key, width=None, height=None, hashes={}, read=True, **stat), None, ()
    if not todo:
        width, height = _header_size(data) if job.need_size else (None, None)
        return FileResult(job.key, width=width, height=height, hashes={}, read=True, **stat), None, ()
    try:
        picture = _picture(data, True, with_stats)
    except Unreadable as exc:
        return fail(exc.reason, exc.detail, **stat)
    # A decode serves every method: the signature and the hashes come from one picture.
    todo = methods
    return (FileResult(job.key, width=picture.width, height=picture.height, hashes={}, read=True, decoded=True, **stat),
            picture, todo)


def _header_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height from the header alone (no decode); None when it does not open."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    width, height = height, width
                return width, height
    except Exception:  # noqa: BLE001 - a size we cannot read is just unknown
        return None, None

