"""Second looks at a few pairs, from their files: near misses of the verifier, and
verified pairs whose labels say they are different items.

- A near miss (a score just under --min-similarity) is re-decoded and compared at
  WHOLE_SIDE against the same --min-similarity, the better of two ways: the whole
  pictures, untrimmed (when their shapes agree), and the trimmed pictures with the darker
  one brightened by each of GAINS and trimmed again (`brightened_views`). A brightened
  catalogue shot clips its light parts to the white background and its trimmed box
  shrinks, so its 12x12 signature is misaligned with its original's; the original
  brightened alike is trimmed alike (README verifier table).
- Two images whose labels differ in colour or in a single-label group (another
  category, neckline, sleeve or style) are set aside as copies only when their pixels
  match: mean absolute difference under PIXELS_MATCH grey levels on 64x64 thumbnails.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from ...taxonomy import Taxonomy
from . import align, decodes, finer, hashing, textbox, verify
from . import pairs as pairing

# An image rejoining a cluster verified at --min-similarity with one of its members; against
# the leader itself it needs this much less: a brightened or recompressed copy of an original
# that its padded or higher-contrast copy leads scores 0.94-0.96 there (a compound change).
# benchmarks/dedup_bench.py quality set: 0.01 / 0.02 / 0.03 / 0.04 gave false removals
# 4 / 4 / 5 / 6, brightness +15% products 0.88 / 0.88 / 0.90 / 0.90, resize 60% + q30 0.90 /
# 0.95 / 0.97 / 1.00, recolours merged 0 / 0 / 0 / 0.03.
REJOIN_SLACK = 0.02
# An image still alone after that is compared with the leader of its best candidate scoring
# within this under --min-similarity, unverified (a brightened copy whose original and its
# copies score 0.88-0.92: under NEAR_BAND), at --min-similarity itself. dedup_bench quality:
# 0.04 / 0.06 / 0.08 / 0.10 found brightness +15% products 0.93 / 0.93 / 0.95 / 0.95, false removals 4 each.
NEAREST_BAND = 0.08
NEAR_BAND = 0.04  # a pair scoring within this under --min-similarity is re-decoded (README verifier table)
# Near misses are also compared trimmed with the darker picture brightened by each gain:
# brightening a catalogue shot clips its light parts into the white background, so its
# trimmed box shrinks and its signature is misaligned; the original brightened by the same
# gain and trimmed again has the copy's box (README verifier table).
GAINS = (1.08, 1.15, 1.22)  # +-15% and a little more, as verify.MAX_GAIN
# The brightened views are decoded at this side, not the hash's 64: a 10%-padded copy (the
# kept image of its cluster: the most pixels) decodes at half its original's scale, too
# coarse to align (brightness +15% product copies found 0.57 at 64, 0.70 at 128: dedup_bench).
REDECODE_PX = 128
# An image still alone after `rejoin`'s other looks meets the leader of its best candidate within this
# under --min-similarity by `coarse_similarity` alone: a brightened copy against a padded or contrast +15%
# leader scores 0.95-0.98 at 12x12, 0.92-0.96 at WHOLE_SIDE (dedup_bench quality --seed 1, brightness
# +15% products: 0.08 / 0.12 / 0.16 found 0.88 / 0.90 / 0.90, 0.80 without; false removals 4 each).
COARSE_BAND = 0.12
# The better of two decodes: a white-padded leader met its brightened copy at 0.949 from 128 px, 0.973
# from 256; a higher-contrast one 0.968 / 0.952 (same benchmark: 0.90 -> 0.93, false removals 4).
COARSE_PX = (REDECODE_PX, 256)
BRIGHTENED_CHUNK = 256  # near misses brightened at once: their files' REDECODE_PX decodes are held (~40 MB)
WHOLE_SIDE = 24  # the whole pictures are compared at 24x24 (the item is a part of the frame)
ASPECT_TOLERANCE = 0.03  # whole frames compare only when their shapes agree (log ratio)
# Re-decoded whole pictures pass the shape check only with a 90th-percentile residual under
# 0.07 x 255 levels (signatures: 0.08): two black shoes of another cut scored 0.927 there
# (benchmarks/dedup_bench.py quality set: 4 of 10 pairs of different photos passing, 7 of 178 copies).
WHOLE_SHAPE_SHIFT = 0.03
BOX, BOX_IF_ALONE = 1, 2  # `boxed_pairs`
PIXELS_MATCH = 3.0  # grey levels, 64x64 thumbnails: the same picture, whatever the labels say
COLOUR_GROUP = "color"
# The compiled scorer from this many compares on (not `whole`: there its robust fit differs from the
# reference's in the last digits): the same scores bit for bit on the mixed set's 1,191 near misses,
# 1.4 CPU s with the reference, 0.15 s compiled (benchmarks/dedup_bench.py quality).
KERNEL_MIN = align.KERNEL_MIN
# Whole-frame compares (`whole`) always on the compiled scorer, whatever the call's size (its scores there
# differ from the reference's in the last digits, so a pair's must not depend on the call): the rejoin's
# compares took 2.5 CPU s on the reference, 1.8 s so, the same verdicts (dedup_bench.py's 20,000 photos, replayed).
WHOLE_KERNEL_MIN = 0


@dataclass
class LabelDifference:
    """A verified pair whose labels differ in colour or a single-label group.

    differs: "color: Black vs Blue; category: ..." (label names); pixel_difference: the
    mean absolute grey difference on 64x64 thumbnails (nan when a file does not read)."""

    image_a: str
    image_b: str
    similarity: float
    differs: str
    pixel_difference: float
    path_a: str | None = None
    path_b: str | None = None

    @property
    def pixels_match(self) -> bool:
        return self.pixel_difference < PIXELS_MATCH


def second_look(paths: np.ndarray, width: np.ndarray, height: np.ndarray, near: np.ndarray, similarity: np.ndarray,
                overlay: np.ndarray, min_similarity: float, crop: np.ndarray | None = None,
                files: decodes.Decodes | None = None) -> tuple[np.ndarray, int]:
    """Which candidate pairs are copies, and how many were re-decoded: every pair `SecondLooks`
    would look at again is looked at (the command looks only where the clusters need it: `lazy`).

    paths, width, height: (n,) per image (width/height of the full picture, 0 when unknown).
    near: (P, 2) candidate pairs; similarity: (P,) their signatures' score; overlay: (P,)
    uint8 (or bool) `boxed_pairs`: BOX, BOX_IF_ALONE or 0; crop: (P,) bool, paired by a crop
    code (`align.with_crop_pairs`; None: no aligned look). files: the command's decodes
    (`decodes.Decodes`; default a new one), shared with `rejoin`. Returns ((P,) bool, pairs re-decoded)."""
    looks = SecondLooks(paths, width, height, near, similarity, overlay, crop, min_similarity, files)
    ok = looks.passed()
    rows = np.flatnonzero(looks.undecided(ok))
    ok[rows], redecoded = looks(rows, ok)
    return ok, redecoded


class SecondLooks:
    """The second look of candidate pairs, in three routes tried in order while a pair is not a
    copy: a near miss (a score within NEAR_BAND under min_similarity) compared again on its
    re-decoded trimmed pictures with the darker one brightened, and (when they have the same
    shape) on its whole pictures; a BOX pair, and a BOX_IF_ALONE pair while one of its images
    is in no verified pair, on its re-decoded whole, trimmed and aligned pictures, allowing a
    text box (`redecoded_similarity`); a crop-code pair, or one scoring a little lower whose
    sizes fit a crop, re-decoded and aligned (`align.aligned_look`).

    paths, width, height: (n,) per image (full size, 0 when unknown); near: (P, 2);
    similarity: (P,) the signatures' score; overlay: (P,) `boxed_pairs`; crop: (P,) bool or
    None; files: the decodes shared by every look of one command (default a new one).
    scores: (P,) float32, the score that made each pair a copy: the look's that passed it
    (exact, at or above min_similarity), else its signatures' (a report shows what decided)."""

    def __init__(self, paths: np.ndarray, width: np.ndarray, height: np.ndarray, near: np.ndarray,
                 similarity: np.ndarray, overlay: np.ndarray, crop: np.ndarray | None, min_similarity: float,
                 files: decodes.Decodes | None = None) -> None:
        self.paths, self.width, self.height, self.near, self.similarity = paths, width, height, near, similarity
        self.overlay = np.asarray(overlay, dtype=np.uint8)
        self.crop = None if crop is None else np.asarray(crop, dtype=bool)
        self.min_similarity = min_similarity
        self.files = decodes.Decodes() if files is None else files
        self.scores = np.array(similarity, dtype=np.float32)

    def passed(self) -> np.ndarray:
        """(P,) bool: the pairs whose signatures' score is a copy's."""
        return self.similarity >= self.min_similarity

    def undecided(self, ok: np.ndarray) -> np.ndarray:
        """(P,) bool: the pairs not copies in ok ((P,) bool) that a look may still make copies.
        A BOX_IF_ALONE pair of two images verified in ok, with no other route, is not."""
        a, b = self.near[:, 0], self.near[:, 1]
        verified = self._verified(ok)
        routed = (self.similarity >= self.min_similarity - NEAR_BAND) | _box_route(self.overlay, verified, a, b)
        if self.crop is not None:
            routed |= align.aligned_route(self.width, self.height, self.near, self.similarity, self.crop,
                                          self.min_similarity)
        return ~ok[:len(self.near)] & routed

    def __call__(self, rows: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, int]:
        """The verdicts of the pairs rows ((R,) indices of pairs not copies in ok) after their
        looks, in one batch per route, and how many of them were re-decoded. ok: (P,) bool or
        longer (pairs added after the candidates, ignored): the pairs verified so far, whose
        images are not alone for BOX_IF_ALONE. Returns ((R,) bool, int)."""
        rows = np.asarray(rows, dtype=np.int64)
        near, similarity, overlay = self.near[rows], self.similarity[rows], self.overlay[rows]
        paths, ms, files = self.paths, self.min_similarity, self.files
        a, b = near[:, 0], near[:, 1]
        out = np.zeros(len(rows), dtype=bool)
        passed_at = np.full(len(rows), np.nan, dtype=np.float32)  # what each look that passed a pair scored
        miss = np.flatnonzero(similarity >= ms - NEAR_BAND)
        if len(miss):
            frames = same_shape(self.width[a[miss]], self.height[a[miss]], self.width[b[miss]], self.height[b[miss]])
            again = redecoded_similarity(paths[a[miss]].tolist(), paths[b[miss]].tolist(), None, frames, ms, files)
            out[miss] = _passed(again, ms, miss, passed_at)
        # A pair made by a painted picture only while one of its images is alone: a painted picture
        # pairs with many others, most verified already (benchmarks/dedup_bench.py section 4).
        verified = self._verified(ok)
        verified[near[out].ravel()] = True
        boxed = np.flatnonzero(~out & _box_route(overlay, verified, a, b))
        if len(boxed):
            again = redecoded_similarity(paths[a[boxed]].tolist(), paths[b[boxed]].tolist(), np.ones(len(boxed), bool),
                                         enough=ms, files=files)
            out[boxed] = _passed(again, ms, boxed, passed_at)
        aligned = np.zeros(0, dtype=np.int64)
        if self.crop is not None:
            out, aligned, again = align.aligned_look(paths, self.width, self.height, near, similarity, out,
                                                     self.crop[rows], ms, files)
            _passed(again, ms, aligned, passed_at)
        self.scores[rows[out]] = passed_at[out]
        return out, len(np.union1d(np.union1d(miss, boxed), aligned))

    def _verified(self, ok: np.ndarray) -> np.ndarray:
        """(n,) bool: the images of the candidate pairs that are copies in ok."""
        verified = np.zeros(len(self.paths), dtype=bool)
        verified[self.near[ok[:len(self.near)]].ravel()] = True
        return verified


def _passed(scores: np.ndarray, needed: float, rows: np.ndarray, passed_at: np.ndarray) -> np.ndarray:
    """(R,) bool: which of a look's scores ((R,), nan where a file did not decode) reach needed;
    those scores are written into passed_at at rows ((R,) indices)."""
    ok = np.nan_to_num(scores, nan=0.0) >= needed
    passed_at[rows[ok]] = scores[ok]
    return ok


def _box_route(overlay: np.ndarray, verified: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P,) bool: the pairs (a, b: (P,) images) that get the box look: BOX, and BOX_IF_ALONE while
    one of the two is in no verified pair (verified: (n,) bool). overlay: (P,) `boxed_pairs`."""
    return (overlay == BOX) | ((overlay == BOX_IF_ALONE) & ~(verified[a] & verified[b]))


def boxed_pairs(near: np.ndarray, by_code: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """(P,) uint8: how `second_look` compares each candidate pair as copies with a text box:
    BOX, found by an overlay code (`run.candidate_pairs`) with one picture without a border;
    BOX_IF_ALONE, any other with a box painted over in either (its signature's trimmed
    picture is cut where the box was), while one of its images is alone; 0 otherwise.
    near: (P, 2) pairs; by_code: (P,) bool; flags: (n,) uint8 (verify.OPEN_FRAME, TEXT_BOX)."""
    either = flags[near[:, 0]] | flags[near[:, 1]] if len(near) else np.zeros(0, dtype=np.uint8)
    box = by_code & ((either & verify.OPEN_FRAME) > 0)
    return np.where(box, BOX, np.where((either & verify.TEXT_BOX) > 0, BOX_IF_ALONE, 0)).astype(np.uint8)


@dataclass
class Unverified:
    """The candidate pairs the second look did not verify, for `rejoin`'s last look: near
    (U, 2) row indices, similarity (U,) their signatures' score, rank (n,) each row's
    keep-policy position (0 is kept first; `pairs.leader_clusters`' order)."""

    near: np.ndarray
    similarity: np.ndarray
    rank: np.ndarray


def rejoin(paths: np.ndarray, leader: np.ndarray, verified: np.ndarray, min_similarity: float,
           files: decodes.Decodes | None = None,
           unverified: Unverified | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Images left alone although verified with a member of a cluster, compared directly with
    that cluster's leader on their re-decoded pictures (`redecoded_similarity`, allowing a text
    box, and with the darker picture brightened): a copy verified with its original is lost
    when a padded or brighter copy of the original leads. A pair scoring at least
    min_similarity - REJOIN_SLACK makes the image a member, or one still short whose pictures
    aligned (`align.aligned_similarity`: a crop against a pad) score at least min_similarity.
    Then (given unverified) an image still alone is compared with the leader of its best
    unverified candidate (`nearest_leaders`) at min_similarity, and one still alone with the
    leader of its best candidate within COARSE_BAND by `coarse_similarity` (a brightened copy
    against a padded or higher-contrast copy of its original), at min_similarity. No chaining:
    every member is still compared with its leader itself.

    paths: (n,) files; leader: (n,) `pairs.leader_clusters`; verified: (V, 2) the pairs that
    made it; files: the command's decodes (`second_look`'s; default a new one, shared by the
    looks here). Returns ((J, 2) pairs (image, leader) that passed, (J,) their scores, the
    number of pairs compared: `beside_leaders(leader, verified)` and `nearest_leaders`' twice, none
    when min_similarity is 0)."""
    files = decodes.Decodes() if files is None else files
    if min_similarity <= 0:  # no verification, the hash alone makes copies
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32), 0
    pairs = beside_leaders(leader, verified)
    score, ok = _leader_looks(paths, pairs, min_similarity - REJOIN_SLACK, min_similarity, files)
    if unverified is not None:
        # A pair compared before (with the slack, or by the fuller look) failed already.
        for band, look in ((NEAREST_BAND, _leader_looks), (COARSE_BAND, _coarse_looks)):
            more = nearest_leaders(leader, unverified, min_similarity, pairs[ok, 0], band)
            more = more[~np.isin(more[:, 0] * len(leader) + more[:, 1], pairs[:, 0] * len(leader) + pairs[:, 1])]
            more_score, more_ok = look(paths, more, min_similarity, min_similarity, files)
            pairs, score, ok = (np.concatenate(x) for x in ((pairs, more), (score, more_score), (ok, more_ok)))
    return pairs[ok], score[ok], len(pairs)


def _coarse_looks(paths: np.ndarray, pairs: np.ndarray, needed: float, min_similarity: float,
                  files: decodes.Decodes) -> tuple[np.ndarray, np.ndarray]:
    """`rejoin`'s last look at pairs ((P, 2) image, leader): `coarse_similarity` alone, passing at
    needed (min_similarity unused: `_leader_looks`' signature). Returns ((P,) float32 scores, (P,) bool passed)."""
    score = coarse_similarity(paths[pairs[:, 0]].tolist(), paths[pairs[:, 1]].tolist(), files)
    return score, np.nan_to_num(score, nan=0.0) >= needed


def coarse_similarity(paths_a: Sequence[str], paths_b: Sequence[str],
                      files: decodes.Decodes | None = None) -> np.ndarray:
    """The best score of each pair of files re-decoded (at each side of COARSE_PX) with the darker
    trimmed picture brightened by a gain of GAINS and trimmed again (`brightened_similarity`),
    compared at the signature's verify.SIDE rather than WHOLE_SIDE. nan where a file does not
    decode. Returns (P,) float32."""
    held = decodes.Decodes() if files is None else files
    if not len(paths_a):
        return np.zeros(0, dtype=np.float32)
    return held.spread(_coarse_similarity, (list(paths_a), list(paths_b)))


def _coarse_similarity(paths_a: list[str], paths_b: list[str], held: decodes.Decodes) -> np.ndarray:
    """`coarse_similarity` with held's decodes, in this process."""
    files, pairs = decodes.indexed(paths_a, paths_b)
    return np.fmax(*(_brightened_files(files, pairs, held, -np.inf, verify.SIDE, px) for px in COARSE_PX))


def _leader_looks(paths: np.ndarray, pairs: np.ndarray, needed: float, min_similarity: float,
                  files: decodes.Decodes) -> tuple[np.ndarray, np.ndarray]:
    """`rejoin`'s looks at pairs ((P, 2) image, leader): re-decoded allowing a text box, then
    with the darker brightened, passing at needed; then `coarse_similarity` and aligned, passing
    at min_similarity.
    Returns ((P,) float32 scores, (P,) bool passed)."""
    if not len(pairs):
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=bool)
    pa, pb = paths[pairs[:, 0]].tolist(), paths[pairs[:, 1]].tolist()
    score = redecoded_similarity(pa, pb, np.ones(len(pairs), bool), enough=needed, files=files)
    # A brightened copy of an original that a padded copy leads: the pad trims back to the
    # original, so the near misses' brightened views are what meet it.
    short = np.flatnonzero(~(np.nan_to_num(score, nan=0.0) >= needed))
    if len(short):
        plain = redecoded_similarity([pa[i] for i in short], [pb[i] for i in short], None, np.zeros(len(short), bool),
                                     files=files)
        score[short] = np.fmax(score[short], plain)
    ok = np.nan_to_num(score, nan=0.0) >= needed
    # Then two looser compares, without the slack: the brightened views at the signature's side
    # (`coarse_similarity`; with the slack it set aside a recoloured striped polo: dedup_bench
    # quality, seed 0), and for a crop of an original that its padded copy leads (the crop cuts
    # the item, the pad's trim another side) a search over cuts (at the slack it set aside black
    # for brown shoes: dedup_bench quality).
    for look in (coarse_similarity, align.aligned_similarity):
        short = np.flatnonzero(~ok)
        if len(short):
            again = look([pa[i] for i in short], [pb[i] for i in short], files)
            passed = np.nan_to_num(again, nan=0.0) >= min_similarity
            score[short[passed]], ok[short[passed]] = again[passed], True
    return score, ok


def nearest_leaders(leader: np.ndarray, unverified: Unverified, min_similarity: float,
                    joined: np.ndarray, band: float = NEAREST_BAND) -> np.ndarray:
    """(A, 2) int64 pairs (image alone in its cluster and not in joined, the leader of the
    cluster of its best-scoring unverified candidate): that candidate scores at least
    min_similarity - band (default NEAREST_BAND), is in a cluster of two or more, and its leader comes before
    the image in the keep order (else the pair would make the image lead and split the
    cluster). leader: (n,) `pairs.leader_clusters`; joined: (J,) images `rejoin` joined."""
    near = np.asarray(unverified.near, dtype=np.int64).reshape(-1, 2)
    alone = pairing.alone(leader)
    lonely = alone.copy()
    lonely[joined] = False
    both = np.concatenate([near, near[:, ::-1]])
    score = np.concatenate([unverified.similarity, unverified.similarity])
    keep = lonely[both[:, 0]] & ~alone[both[:, 1]] & (score >= min_similarity - band)
    keep &= unverified.rank[leader[both[:, 1]]] < unverified.rank[both[:, 0]]
    both, score = both[keep], score[keep]
    order = np.lexsort((-score, both[:, 0]))  # per image, its best candidate first
    both = both[order]
    first = np.r_[True, both[1:, 0] != both[:-1, 0]] if len(both) else np.zeros(0, dtype=bool)
    return np.stack([both[first, 0], leader[both[first, 1]]], axis=1)


def beside_leaders(leader: np.ndarray, verified: np.ndarray) -> np.ndarray:
    """(L, 2) int64 unique pairs (image alone in its cluster, the leader of a cluster that one
    of its verified neighbours is in). leader: (n,); verified: (V, 2) indices."""
    verified = np.asarray(verified, dtype=np.int64).reshape(-1, 2)
    alone = pairing.alone(leader)
    both = np.concatenate([verified, verified[:, ::-1]])
    both = both[alone[both[:, 0]] & ~alone[both[:, 1]]]
    return np.unique(np.stack([both[:, 0], leader[both[:, 1]]], axis=1), axis=0)


def redecoded_similarity(paths_a: Sequence[str], paths_b: Sequence[str], boxes: np.ndarray | None = None,
                         frames: np.ndarray | None = None, enough: float = np.inf,
                         files: decodes.Decodes | None = None) -> np.ndarray:
    """The verification score of each pair of files re-decoded and compared at WHOLE_SIDE x
    WHOLE_SIDE: the better of their whole, untrimmed pictures (where frames: (P,) bool,
    the two have the same shape; default all) and their trimmed pictures with the darker
    one brightened by each of GAINS (`brightened_similarity`); or (boxes: (P,) bool) the
    best of their whole and trimmed pictures each, less textbox.INSET of each side, allowing
    a text box of up to 10% of the picture (verify.similarity's `whole`), and of the whole
    frame of a picture with a box painted over or without a border placed in the other
    (`textbox.aligned_similarity`) where those score under `enough` (the score that decides;
    the brightened views too). With a finite enough only whether each score reaches it is
    exact (a view under it may be scored by its shape check alone, and the gains stop at the
    first that reaches it); the default (inf) scores every view exactly.
    nan where a file does not decode. Each distinct file is decoded at the hash's scale
    and at REDECODE_PX, as its views need, through files (`decodes.Decodes`, default a new one;
    a `lookpool.Looks` with workers scores chunks of the pairs in its processes, the same
    scores). Returns (P,) float32."""
    held = decodes.Decodes() if files is None else files
    boxes = np.zeros(len(paths_a), dtype=bool) if boxes is None else np.asarray(boxes, dtype=bool)
    frames = np.ones(len(paths_a), dtype=bool) if frames is None else np.asarray(frames, dtype=bool)
    return held.spread(_redecoded_similarity, (list(paths_a), list(paths_b), boxes, frames), enough)


def _redecoded_similarity(paths_a: list[str], paths_b: list[str], boxes: np.ndarray, frames: np.ndarray,
                          enough: float, held: decodes.Decodes) -> np.ndarray:
    """`redecoded_similarity` of the pairs with held's decodes, in this process."""
    files, pairs = decodes.indexed(paths_a, paths_b)
    n = len(files)
    whole = ~boxes & frames
    thumbs, readable, framed = _redecode(files, pairs, boxes, whole, held)
    floor = enough if np.isfinite(enough) else -np.inf  # inf: every view is scored exactly
    out = np.zeros(len(pairs), dtype=np.float32)
    out[whole] = verify.similarity(thumbs, pairs[whole], shape_shift=WHOLE_SHAPE_SHIFT, kernel_min=KERNEL_MIN,
                                   enough=floor)
    # The brightened views only where they can decide, and only of files that decoded so far.
    dim = np.flatnonzero(~boxes & readable[pairs[:, 0]] & readable[pairs[:, 1]])
    dim = dim[out[dim] < enough]
    out[dim] = np.maximum(out[dim], _brightened_files(files, pairs[dim], held, floor))
    # A banner along a side of a photo without a border is trimmed away: its whole picture
    # is what meets the other's trimmed one (and a copy's pad, trimmed, meets the whole).
    # The four views in one call: together they reach the compiled kernel's batch size.
    views = np.concatenate([pairs[boxes] + [da, db] for da in (n, 2 * n) for db in (n, 2 * n)])
    out[boxes] = verify.similarity(thumbs, views, whole=True, kernel_min=WHOLE_KERNEL_MIN,
                                   enough=floor).reshape(4, -1).max(axis=0)
    # A box painted over the item, or a strip trimmed away with a picture's open frame: its
    # whole frame placed in the other picture by the two trimmed boxes (textbox).
    short = np.flatnonzero(boxes)[out[boxes] < enough]  # the aligned views only where they can decide
    if len(short) and any(f is not None and (f.painted or f.open_frame) for f in framed):
        aligned = textbox.aligned_similarity(framed, pairs[short], kernel_min=WHOLE_KERNEL_MIN, enough=floor)
        # What passed placed at 16 px, looked at again finer: look-alike items of one shoot pass at 16.
        out[short] = np.fmax(out[short], finer.vetoed(framed, pairs[short], aligned, enough))
    out[~(readable[pairs[:, 0]] & readable[pairs[:, 1]])] = np.nan
    return out


def _redecode(files: list[str], pairs: np.ndarray, boxes: np.ndarray, whole: np.ndarray,
              held: decodes.Decodes) -> tuple[np.ndarray, np.ndarray, list[textbox.Framing | None]]:
    """The hash-scale views of the files of pairs ((P, 2) indices into files) through held:
    ((3n, WHOLE_SIDE^2 * 3) whole thumbnails of the files of pairs compared whole (whole: (P,)
    bool), then for files of box pairs (boxes: (P,) bool) trimmed ones and whole ones less
    textbox.INSET of each side (a pad's edge leaves a line along the trimmed box); zeros
    elsewhere, (n,) bool: each file made its views (True for a file that needed none), (n,)
    `textbox.framing` of the files of box pairs, else None)."""
    n, size = len(files), WHOLE_SIDE * WHOLE_SIDE * 3
    thumbs = np.zeros((3 * n, size), dtype=np.uint8)
    framed: list[textbox.Framing | None] = [None] * n
    readable = np.ones(n, dtype=bool)
    boxed, seen = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    boxed[pairs[boxes].ravel()], seen[pairs[whole].ravel()] = True, True
    for i in np.flatnonzero(boxed | seen).tolist():
        readable[i] = _decode_one(held, files[i], seen[i], boxed[i], i, thumbs, framed)
    return thumbs, readable, framed


def _decode_one(held: decodes.Decodes, path: str, whole: bool, boxed: bool, i: int, thumbs: np.ndarray,
                framed: list[textbox.Framing | None]) -> bool:
    """`_redecode`'s views of file i (at path) written into its rows. Returns whether it decoded."""
    n = len(framed)
    try:
        if whole:
            thumbs[i] = held.view(path, "whole",
                                  lambda: verify.thumbnail(held.rgb(path)[0], None, WHOLE_SIDE).reshape(-1))
        if boxed:
            framed[i] = held.framing(path)
            thumbs[[n + i, 2 * n + i]] = held.view(path, "inset", lambda: _inset_views(held.framing(path)))
    except (OSError, hashing.Unreadable):
        return False
    return True


def _inset_views(f: textbox.Framing) -> np.ndarray:
    """(2, WHOLE_SIDE^2 * 3): f's trimmed and whole pictures less textbox.INSET of each side."""
    whole = textbox.inset((0.0, f.rgb.shape[0], 0.0, f.rgb.shape[1]))
    return np.stack([verify.thumbnail(f.clean, textbox.inset(f.box), WHOLE_SIDE).reshape(-1),
                     verify.thumbnail(f.rgb, whole, WHOLE_SIDE).reshape(-1)])


def brightened_views(rgb: np.ndarray, gains: tuple[float, ...] = GAINS) -> np.ndarray:
    """(1 + len(gains), WHOLE_SIDE^2 * 3) uint8: the trimmed thumbnail of rgb ((h, w, 3)
    uint8), then of rgb brightened by each of gains (x -> min(255, gain x), as a
    brightness change does), each trimmed again: what clips into a white background in a
    brightened copy is trimmed away from the original's brightened view too."""
    return _views(rgb, None, (1.0, *gains))


def _views(rgb: np.ndarray, grey: np.ndarray | None, gains: tuple[float, ...], side: int = WHOLE_SIDE) -> np.ndarray:
    """`brightened_views`'s views of rgb by each of gains (1.0: rgb as it is), side x side; grey:
    rgb's `hashing.grey_of` (None: made here)."""
    grey = hashing.grey_of(rgb) if grey is None else grey
    h, w = grey.shape
    out = np.empty((len(gains), side * side * 3), dtype=np.uint8)
    for k, gain in enumerate(gains):
        x, g = (rgb, grey) if gain == 1.0 else (_looked_up(_lut(gain), rgb), _looked_up(_lut(gain), grey))
        box = hashing.trim_box(g)
        out[k] = verify.thumbnail(x, None if box == (0, h, 0, w) else hashing.refine_box(g, box), side).reshape(-1)
    return out


def _looked_up(lut: np.ndarray, values: np.ndarray) -> np.ndarray:
    """np.take(lut, values) for uint8 values, compiled (`_kernels.lut_into`)."""
    values = np.ascontiguousarray(values, dtype=np.uint8)
    out = np.empty_like(values)
    hashing.compiled().lut_into(values.reshape(-1), lut, out.reshape(-1))
    return out


@lru_cache(maxsize=8)
def _lut(gain: float) -> np.ndarray:
    return np.clip(np.round(np.arange(256) * gain), 0, 255).astype(np.uint8)


def _darker(views: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(P,) the darker picture of each pair: the lower mean of its trimmed thumbnail (views[:, 0])."""
    mean = views[:, 0].mean(axis=1)
    return np.where(mean[pairs[:, 0]] > mean[pairs[:, 1]], pairs[:, 1], pairs[:, 0])


def brightened_similarity(views: np.ndarray, pairs: np.ndarray, enough: float = -np.inf) -> np.ndarray:
    """The best verification score of each pair's darker picture brightened by a gain of
    GAINS against the other as it is (`brightened_views`; darker: the lower mean of the
    trimmed thumbnail). views: (n, 1 + len(GAINS), V) uint8; pairs: (P, 2). enough: the score
    that decides (verify.similarity's); with it a pair stops at the first gain that reaches it,
    and only whether its score reaches enough is exact. Returns (P,) float32."""
    if not len(pairs):
        return np.zeros(0, dtype=np.float32)
    dark = _darker(views, pairs)
    compiled = (views.shape[1] - 1) * len(pairs) >= KERNEL_MIN
    return _gain_scores(views, dark, pairs[:, 0] + pairs[:, 1] - dark, enough, lambda k, files: None, compiled)


def _gain_scores(views: np.ndarray, dark: np.ndarray, light: np.ndarray, enough: float, make,
                 compiled: bool) -> np.ndarray:
    """`brightened_similarity` of the pairs (dark, light) ((P,) rows of views), gain by gain:
    make(k, files) first fills views[files, k] (the gain's views of the darker pictures still to
    decide). compiled: scored by the compiled kernel, as all gains of all pairs at once would be."""
    n, k = views.shape[:2]
    kernel_min = 0 if compiled else np.iinfo(np.int64).max
    stop = enough if np.isfinite(enough) else np.inf  # without a score that decides, every gain counts
    best = np.full(len(dark), -np.inf, dtype=np.float32)
    left = np.arange(len(dark))
    for g in range(1, k):
        make(g, np.unique(dark[left]))
        tried = np.stack([dark[left] * k + g, light[left] * k], axis=1)
        best[left] = np.maximum(best[left], verify.similarity(views.reshape(n * k, -1), tried, enough=enough,
                                                              shape_shift=WHOLE_SHAPE_SHIFT, kernel_min=kernel_min))
        left = left[best[left] < stop]
    return best


def _brightened_files(files: list[str], pairs: np.ndarray, held: decodes.Decodes, enough: float,
                      side: int = WHOLE_SIDE, px: int = REDECODE_PX) -> np.ndarray:
    """`brightened_similarity` of pairs ((P, 2) indices into files), their views made only as
    each gain needs them and held in held, side x side, BRIGHTENED_CHUNK pairs at a time: a chunk's
    decodes (px, default REDECODE_PX) are held only while its views are made (held, they pushed out the hash-scale
    decodes that the box and aligned passes use again). nan where a file does not decode."""
    out = np.full(len(pairs), np.nan, dtype=np.float32)
    compiled = len(GAINS) * len(pairs) >= KERNEL_MIN  # as `brightened_similarity` over all of them
    for lo in range(0, len(pairs), BRIGHTENED_CHUNK):
        chunk = pairs[lo:lo + BRIGHTENED_CHUNK]
        used, local = np.unique(chunk, return_inverse=True)
        local = local.reshape(chunk.shape)
        views = np.zeros((len(used), 1 + len(GAINS), side * side * 3), dtype=np.uint8)
        decoded = _Pictures(held, side, px)
        readable = np.array([decoded.view(files[f], 1.0, views[u, 0]) for u, f in enumerate(used.tolist())],
                            dtype=bool).reshape(-1)
        fine = np.flatnonzero(readable[local[:, 0]] & readable[local[:, 1]])
        dark = _darker(views, local[fine])

        def make(g: int, rows: np.ndarray) -> None:
            for u in rows.tolist():  # a file gone since its first view: zeros, as it stays
                decoded.view(files[used[u]], GAINS[g - 1], views[u, g])

        out[lo + fine] = _gain_scores(views, dark, local[fine, 0] + local[fine, 1] - dark, enough, make, compiled)
    return out


class _Pictures:
    """Decodes at px (default REDECODE_PX) and their grey levels, held while one chunk's views
    (side x side) are made."""

    def __init__(self, held: decodes.Decodes, side: int = WHOLE_SIDE, px: int = REDECODE_PX) -> None:
        self.held, self.side, self.px = held, side, px
        self.pictures: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def view(self, path: str, gain: float, into: np.ndarray) -> bool:
        """The file's trimmed view brightened by gain (`_views`), held in held, written into `into`.
        Returns whether it decoded."""
        try:
            into[:] = self.held.view(path, f"trimmed {gain} {self.side} {self.px}",
                                     lambda: _views(*self._picture(path), (gain,), self.side)[0])
        except (OSError, hashing.Unreadable):
            return False
        return True

    def _picture(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        if path not in self.pictures:
            rgb = self.held.decode(path, self.px)[0]
            self.pictures[path] = (rgb, hashing.grey_of(rgb))
        return self.pictures[path]


def same_shape(width_a, height_a, width_b, height_b) -> np.ndarray:
    """(P,) bool: the two full-size pictures have the same aspect ratio (within ASPECT_TOLERANCE)."""
    wa, ha, wb, hb = (np.asarray(x, dtype=np.float64) for x in (width_a, height_a, width_b, height_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(np.log((wa / ha) / (wb / hb)))
    return np.nan_to_num(ratio, nan=np.inf) < ASPECT_TOLERANCE


def pixel_difference(path_a: str, path_b: str) -> float:
    """Mean absolute difference of the two files' 64x64 grey thumbnails (nan when one
    does not open): under PIXELS_MATCH they are the same picture."""
    try:
        return float(np.abs(_grey64(path_a) - _grey64(path_b)).mean())
    except Exception:  # noqa: BLE001 - a file that does not open is not the same picture
        return float("nan")


def _grey64(path: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as im:
            return np.asarray(im.convert("L").resize((64, 64)), dtype=np.float64)


def differing_labels(labels_a: Iterable[int], labels_b: Iterable[int], taxonomy: Taxonomy) -> str:
    """What differs between two label sets in colour or a single-label group, as
    "color: Black vs Blue" (groups joined by "; "), or "" when nothing does. A group
    only one image carries is not a difference (a missing label is not another label)."""
    a, b = _by_group(labels_a, taxonomy), _by_group(labels_b, taxonomy)
    parts = []
    for group in taxonomy.groups:
        if not (group.single or group.name == COLOUR_GROUP) or group.name not in a or group.name not in b:
            continue
        if a[group.name] != b[group.name]:
            parts.append(f"{group.name}: {_names(a[group.name], taxonomy)} vs {_names(b[group.name], taxonomy)}")
    return "; ".join(parts)


def _by_group(labels: Iterable[int], taxonomy: Taxonomy) -> dict[str, frozenset[int]]:
    out: dict[str, set[int]] = {}
    for label in labels:
        if label in taxonomy.labels:
            out.setdefault(taxonomy.labels[label].group, set()).add(label)
    return {g: frozenset(ids) for g, ids in out.items()}


def _names(ids: frozenset[int], taxonomy: Taxonomy) -> str:
    return "+".join(sorted(taxonomy.labels[i].name for i in ids))
