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

from ifa.curation.dedup import align, decodes, hashing, recheck
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
