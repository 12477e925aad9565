"""Pair finding (multi-index hashing) against brute force, and clusters."""

from __future__ import annotations

import numpy as np
import pytest

from ifa.curation.dedup import pairs


def skewed(n: int, seed: int = 0) -> np.ndarray:
    """Codes like real phashes: a few hundred seeds with low-entropy bits (a constant top
    bit, rarely-set bytes), each copied with 0-9 random bit flips, plus exact repeats."""
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**62, 300, dtype=np.uint64) | np.uint64(1 << 63)
    seeds &= ~(rng.integers(0, 2**16, 300, dtype=np.uint64) << np.uint64(16))  # skewed substring
    codes = seeds[rng.integers(0, len(seeds), n)]
    flips = rng.integers(0, 10, n)
    for f in range(1, 10):
        rows = np.flatnonzero(flips >= f)
        codes[rows] ^= np.uint64(1) << rng.integers(0, 64, len(rows)).astype(np.uint64)
    codes[: n // 20] = codes[n // 20: 2 * (n // 20)]  # 5% exact repeats
    return codes


@pytest.mark.parametrize("k", [0, 1, 2, 4, 6, 7, 9])
def test_pairs_within_equals_brute_force(k):
    codes = skewed(pairs.BRUTE_FORCE_MAX + 2000)  # above the cut-over: the index path runs
    found = pairs.pairs_within(codes, k)
    assert np.array_equal(found, pairs.brute_force_pairs(codes, k))
    assert len(found) > 0 and (found[:, 0] < found[:, 1]).all()
    assert (pairs.distances(codes, found) <= k).all()


def test_pairs_within_small_and_empty_inputs():
    assert pairs.pairs_within(np.zeros(0, dtype=np.uint64), 6).shape == (0, 2)
    assert pairs.pairs_within(np.array([5], dtype=np.uint64), 6).shape == (0, 2)
    two = np.array([0b1011, 0b0011], dtype=np.uint64)
    assert pairs.pairs_within(two, 1).tolist() == [[0, 1]]
    assert pairs.pairs_within(two, 0).tolist() == []


def test_pairs_within_rejects_bad_k():
    with pytest.raises(ValueError):
        pairs.pairs_within(np.zeros(3, dtype=np.uint64), 64)


def test_bit_order_balances_entropy_and_keeps_distances():
    codes = skewed(5000)
    order = pairs.balanced_bit_order(codes)
    assert sorted(order.tolist()) == list(range(64))
    moved = pairs.permute_bits(codes, order)
    idx = np.random.default_rng(1).integers(0, len(codes), (500, 2))
    assert np.array_equal(pairs.distances(codes, idx), pairs.distances(moved, idx))


def test_popcount_without_numpy_bitwise_count_matches(monkeypatch):
    x = np.random.default_rng(2).integers(0, 2**64, 1000, dtype=np.uint64)
    want = np.array([bin(int(v)).count("1") for v in x])
    assert np.array_equal(pairs.popcount(x), want)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert np.array_equal(pairs.popcount(x), want)


def test_clusters_join_chains_and_leave_singletons():
    labels = pairs.clusters(6, np.array([[0, 1], [1, 2], [4, 5]]))
    assert labels[0] == labels[1] == labels[2]
    assert labels[4] == labels[5] != labels[0]
    assert len({labels[3], labels[0], labels[4]}) == 3
    assert len(pairs.clusters(3, np.zeros((0, 2), dtype=np.int64))) == 3
