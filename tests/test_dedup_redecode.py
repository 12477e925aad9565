"""The second look decodes each file once per scale for all its passes (near misses, box
pairs, aligned crops, the comparison with a cluster's leader), and the scores are the ones
each pass made with its own decodes. Real Myntra photos from ../shared/data
(IFA_SHARED_DATA elsewhere), copies made here."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from ifa.curation.dedup import align, decodes, hashing, recheck, verify
from ifa.tests.support.dedup import product_copies

DATA = Path(os.environ.get("IFA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MYNTRA = DATA / "myntra-products" / "images"
needs_data = pytest.mark.skipif(not MYNTRA.is_dir(), reason=f"real photos not found under {DATA}")


def _files(tmp_path: Path) -> list[str]:
    """Two product photos and, of each, a brightened, a boxed and a cropped copy."""
    return product_copies(tmp_path, MYNTRA, ("13634", "10063"))


def _passes(files: list[str], held: decodes.Decodes | None) -> list[np.ndarray]:
    """The second look's passes over every pair of files: near misses, box pairs (as the
    comparison with a leader makes them), aligned crops; held None: each its own decodes."""
    a, b = (list(x) for x in zip(*itertools.combinations(files, 2)))
    near = recheck.redecoded_similarity(a, b, files=held)
    boxed = recheck.redecoded_similarity(a, b, np.ones(len(a), bool), enough=0.95, files=held)
    aligned = align.aligned_similarity(a, b, held)
    return [near, boxed, aligned]


@needs_data
def test_each_file_is_decoded_once_per_scale_for_all_passes(tmp_path: Path):
    files = _files(tmp_path)
    held = decodes.Decodes()
    shared = _passes(files, held)
    # The hash's scale and recheck.REDECODE_PX (the brightened views) of each file, once.
    assert held.decoded == 2 * len(files)
    for own, one in zip(_passes(files, None), shared):
        np.testing.assert_array_equal(own, one)
    # The copies still pass where they did: the brightened one on the near-miss pass, the boxed
    # one on the box views, the cropped one aligned (each with its own original: pair 0-1, 0-2, 0-3).
    assert shared[0][0] >= 0.95 and shared[1][1] >= 0.95 and shared[2][2] >= 0.95, shared


@needs_data
def test_a_cache_smaller_than_one_file_decodes_again_and_scores_the_same(tmp_path: Path):
    files = _files(tmp_path)
    small = decodes.Decodes(max_bytes=1)
    scores = _passes(files, small)
    assert small.held <= max(n for _, n in small._items.values())  # only the last entry stays
    assert small.decoded > 2 * len(files)
    for own, one in zip(_passes(files, decodes.Decodes()), scores):
        np.testing.assert_array_equal(own, one)


@needs_data
def test_a_framing_and_the_decode_it_holds_count_that_picture_once(tmp_path: Path):
    path = _files(tmp_path)[0]
    held = decodes.Decodes()
    framed = held.framing(path)  # decodes the file, then frames that picture
    picture, extra = framed.rgb, (0 if framed.clean is framed.rgb else framed.clean.nbytes)
    assert held.held == (picture.nbytes + 64) + (extra + 256)  # the decode, and what the framing adds
    # Past the bound the decode, least recently used, goes; the framing holding its picture counts it now.
    held.max_bytes = held.held + 65 - 1
    held.view(path, "tiny", lambda: np.zeros(1, dtype=np.uint8))  # 65 bytes
    assert ("rgb", path, hashing.DECODE_PX) not in held._items and ("framing", path) in held._items
    assert held.held == (picture.nbytes + extra + 256) + 65 <= held.max_bytes
    assert held.framing(path) is framed and held.decoded == 1


@needs_data
def test_a_pairs_box_score_is_the_same_in_a_small_call_and_a_large_one(tmp_path: Path):
    files = product_copies(tmp_path, MYNTRA, ("13634", "10063", "12044", "11366", "12672", "15818", "12482", "11898"))
    a, b = (list(x) for x in zip(*itertools.combinations(files, 2)))  # 992 pairs below: 3,968 whole-frame compares, 40: 160
    held = decodes.Decodes()
    small = recheck.redecoded_similarity(a[:40], b[:40], np.ones(40, bool), files=held)
    large = recheck.redecoded_similarity(a * 2, b * 2, np.ones(2 * len(a), bool), files=held)
    np.testing.assert_array_equal(small.view(np.uint32), large[:40].view(np.uint32))


def test_an_unreadable_file_raises_each_time_and_is_decoded_once(tmp_path: Path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a picture")
    held = decodes.Decodes()
    for _ in range(2):
        with pytest.raises(hashing.Unreadable):
            held.rgb(str(bad))
    assert held.decoded == 1
    score = recheck.redecoded_similarity([str(bad)], [str(bad)], files=held)
    assert np.isnan(score[0]) and held.decoded == 1


def _near_misses(tmp_path: Path) -> dict[str, str]:
    """A product photo, its JPEG q60 re-encode and its brightness +15% copy, and another product."""
    out = {}
    with Image.open(MYNTRA / "13634.jpg") as im:
        rgb = im.convert("RGB")
    for name, (im, quality) in {"original": (rgb, 90), "q60": (rgb, 60),
                                "bright": (ImageEnhance.Brightness(rgb).enhance(1.15), 90)}.items():
        im.save(tmp_path / f"{name}.jpg", "JPEG", quality=quality)
        out[name] = str(tmp_path / f"{name}.jpg")
    out["other"] = str(MYNTRA / "10063.jpg")
    return out


@needs_data
def test_near_misses_make_only_the_views_that_decide_with_the_verdicts_of_all_views(tmp_path: Path):
    f = _near_misses(tmp_path)
    enough = verify.DEFAULT_MIN_SIMILARITY
    a, b = [f["original"]] * 3, [f["q60"], f["bright"], f["other"]]
    every = recheck.redecoded_similarity(a, b)  # enough inf: every view of every pair, exact
    cheap = recheck.redecoded_similarity(a, b, enough=enough)
    assert (every >= enough).tolist() == (cheap >= enough).tolist() == [True, True, False], (every, cheap)
    # The re-encode passes on its whole pictures: nothing is decoded at REDECODE_PX for it.
    held = decodes.Decodes()
    assert recheck.redecoded_similarity(a[:1], b[:1], enough=enough, files=held)[0] >= enough
    assert held.decoded == 2
    # The brightened copy needs the brightened view (its whole pictures alone miss): both scales.
    held = decodes.Decodes()
    whole_only = recheck.redecoded_similarity(a[1:2], b[1:2], frames=np.ones(1, bool), enough=-np.inf, files=held)
    assert whole_only[0] < enough <= cheap[1] and held.decoded == 2
    assert recheck.redecoded_similarity(a[1:2], b[1:2], enough=enough, files=held)[0] >= enough
    assert held.decoded == 4


@needs_data
def test_a_score_under_enough_may_be_cheaper_but_stays_under_it_and_the_rest_is_exact(tmp_path: Path):
    f = _near_misses(tmp_path)
    thumbs = np.stack([verify.thumbnail(hashing.decode_rgb(Path(p).read_bytes())[0], None, recheck.WHOLE_SIDE).reshape(-1)
                       for p in f.values()])
    pairs = np.array([(i, j) for i in range(len(thumbs)) for j in range(len(thumbs)) if i != j] * 8)  # compiled: >= 64
    for whole in (False, True):
        for kernel_min in (1, 10_000):  # the compiled kernel and the numpy reference
            exact = verify.similarity(thumbs, pairs, whole=whole, kernel_min=kernel_min)
            for enough in (0.9, verify.DEFAULT_MIN_SIMILARITY, np.full(len(pairs), 0.99)):
                cheap = verify.similarity(thumbs, pairs, whole=whole, kernel_min=kernel_min, enough=enough)
                reached = exact >= enough
                np.testing.assert_array_equal(cheap[reached], exact[reached])
                assert (cheap[~reached] < enough if np.isscalar(enough) else cheap[~reached] < enough[~reached]).all()
                assert reached.any() and (~reached).any()
