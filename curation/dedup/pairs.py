"""Pairs of 64-bit hashes within a Hamming distance, and clusters without chaining.

Pure functions over numpy arrays; nothing here knows about images or the ledger.

`pairs_within` is multi-index hashing (Norouzi et al., "Fast search in Hamming space
with multi-index hashing", CVPR 2012): the 64 bits are cut into 4 substrings of 16 bits;
two codes within distance k agree within k // 4 bits on at least one substring
(pigeonhole), so each code is compared only with the codes whose substring lies within
that radius of its own. Codes are sorted by each substring once (a counting sort over
65,536 buckets), so every probe reads a contiguous run of memory; a compiled kernel
(numba) verifies the candidates. Measured on this 2-core machine with 1M codes made
from real phashes (benchmarks/dedup_bench.py): see the numbers in the module constants
below and in the benchmark table. A pure-numpy probe of the same scheme spends ~46 s on
probing alone, which is why the verification loop is compiled.

Real phashes are skewed (white backgrounds, a constant DC bit), so the bits are first
reordered so that each substring carries about the same entropy: a substring made of
near-constant bits would put most codes in a few huge buckets.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SUBSTRINGS = 4
SUB_BITS = 64 // SUBSTRINGS
# Below this many codes the blocked brute force is as fast as building the index.
BRUTE_FORCE_MAX = 3000
# Rows of the sorted order one kernel call scans; small enough to balance two threads,
# large enough that the Python loop around the kernel costs nothing.
BLOCK_ROWS = 1 << 15

_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each element of a uint64 array, as uint8 (same shape)."""
    x = np.asarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0: one instruction per element
        return np.bitwise_count(x).astype(np.uint8, copy=False)
    return _BYTE_POPCOUNT[x.reshape(*x.shape, 1).view(np.uint8)].sum(axis=-1, dtype=np.uint8)


def distances(hashes: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Hamming distance of each pair.

    hashes: (N,) uint64. pairs: (P, 2) integer indices into `hashes`.
    Returns (P,) uint8.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    pairs = np.asarray(pairs)
    if len(pairs) == 0:
        return np.zeros(0, dtype=np.uint8)
    return popcount(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]])


def brute_force_pairs(hashes: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """All pairs i < j with Hamming distance <= k, by comparing every pair: O(N^2).

    The reference `pairs_within` is tested against and the benchmark's baseline.
    hashes: (N,) uint64. Returns (P, 2) int64, rows sorted, i < j in each row.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    out = []
    for lo in range(0, len(hashes), block):
        rows = hashes[lo:lo + block]
        d = popcount(rows[:, None] ^ hashes[None, lo:])  # only columns >= lo: upper triangle
        i, j = np.nonzero(d <= k)
        keep = j > i  # j is relative to lo, as i is
        out.append(np.stack([i[keep] + lo, j[keep] + lo], axis=1))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(out).astype(np.int64, copy=False)


def pairs_within(hashes: np.ndarray, k: int, threads: int | None = None) -> np.ndarray:
    """All pairs of hashes within Hamming distance k, in sub-quadratic time.

    hashes: (N,) uint64; equal values pair with each other at distance 0.
    k: the largest distance that pairs (0..63). The index is tuned for k <= 7 (radius 1
        per 16-bit substring); larger k works but probes many more buckets.
    threads: kernel threads (default: the CPUs this process may use).
    Returns (P, 2) int64 of indices i < j, rows sorted; each pair once.
    Raises ValueError for k outside 0..63.
    """
    if not 0 <= k <= 63:
        raise ValueError(f"k must be within 0..63, got {k}")
    codes = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(codes)
    if n <= BRUTE_FORCE_MAX:
        return brute_force_pairs(codes, k)
    from . import _kernels as kernel  # numba compiles on first use; keep imports light

    permuted = permute_bits(codes, balanced_bit_order(codes))
    radius = k // SUBSTRINGS
    masks = _masks_within(SUB_BITS, radius)
    tables = [_substring_table(permuted, j) for j in range(SUBSTRINGS)]
    work = [(j, lo, min(lo + BLOCK_ROWS, n)) for j in range(SUBSTRINGS) for lo in range(0, n, BLOCK_ROWS)]
    cap = max(1 << 20, n + 1)  # one row can yield at most n - 1 pairs, so a fresh buffer always progresses

    def scan(item: tuple[int, int, int]) -> list[np.ndarray]:
        j, lo, hi = item
        sorted_codes, order, starts = tables[j]
        found, buf = [], np.empty((cap, 2), dtype=np.int64)
        while lo < hi:
            lo, count = kernel.scan(sorted_codes, order, starts, j, masks, k, radius, lo, hi, buf)
            found.append(buf[:count].copy())
        return found

    threads = threads or _cpus()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        parts = [p for found in pool.map(scan, work) for p in found]
    pairs = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    pairs.sort(axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def balanced_bit_order(hashes: np.ndarray, sample: int = 100_000, seed: int = 0) -> np.ndarray:
    """A permutation of the 64 bit positions that spreads entropy evenly over the 4
    substrings: bits in falling order of entropy, each to the substring with the least
    entropy so far that still has room. Returns (64,) int64; entry d is the source bit
    of destination bit d."""
    codes = np.asarray(hashes, dtype=np.uint64)
    if len(codes) > sample:
        codes = np.random.default_rng(seed).choice(codes, sample, replace=False)
    bits = ((codes[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).astype(np.float64)
    p = bits.mean(axis=0) if len(codes) else np.full(64, 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.nan_to_num(p * np.log2(p)) + np.nan_to_num((1 - p) * np.log2(1 - p)))
    load, slots = np.zeros(SUBSTRINGS), [[] for _ in range(SUBSTRINGS)]
    for bit in np.argsort(-h, kind="stable"):
        open_ = [s for s in range(SUBSTRINGS) if len(slots[s]) < SUB_BITS]
        s = min(open_, key=lambda s: load[s])
        slots[s].append(int(bit))
        load[s] += h[bit]
    return np.array([b for s in slots for b in s], dtype=np.int64)


def permute_bits(hashes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Move source bit order[d] of every code to bit d. Hamming distances are unchanged."""
    codes = np.asarray(hashes, dtype=np.uint64)
    out = np.zeros_like(codes)
    one = np.uint64(1)
    for dest, src in enumerate(order):
        out |= ((codes >> np.uint64(src)) & one) << np.uint64(dest)
    return out


def leader_clusters(rank: np.ndarray, pairs: np.ndarray, compiled_min: int = 20_000) -> np.ndarray:
    """Clusters without chaining: every member is a direct neighbour of its cluster's leader.

    Items are visited best first (smallest rank); an item not yet taken leads a cluster
    and takes every neighbour not yet taken. So a~b and b~c with a !~ c never put a and
    c together through b, and one weak pair can only ever move one item.
    rank: (n,) the order of preference (ties broken by index). pairs: (P, 2) indices.
    compiled_min: from this many paired items on the loop runs compiled (numba): a Python
        loop took 83 s for 1M items; below it, loading numba (~1 s) costs more than it saves.
    Returns (n,) int64: the leader of each item (itself for a leader or a loner)."""
    rank = np.asarray(rank)
    n = len(rank)
    leader = np.arange(n, dtype=np.int64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if not len(pairs):
        return leader
    both = np.concatenate([pairs, pairs[:, ::-1]])
    both = both[np.argsort(both[:, 0], kind="stable")]
    starts = np.searchsorted(both[:, 0], np.arange(n + 1)).astype(np.int64)
    nodes = np.unique(both[:, 0])
    visit = np.ascontiguousarray(nodes[np.lexsort((nodes, rank[nodes]))], dtype=np.int64)
    neighbours = np.ascontiguousarray(both[:, 1])
    if len(nodes) >= compiled_min:
        from . import _kernels as kernel  # numba compiles once (cached on disk); keep imports light

        kernel.leader_scan(visit, starts, neighbours, leader)
        return leader
    taken = np.zeros(n, dtype=bool)
    for i in visit.tolist():
        if taken[i]:
            continue
        taken[i] = True
        nb = neighbours[starts[i]:starts[i + 1]]
        nb = nb[~taken[nb]]
        taken[nb] = True
        leader[nb] = i
    return leader


def alone(leader: np.ndarray) -> np.ndarray:
    """(n,) bool: the items in no cluster of two or more. leader: (n,) `leader_clusters`."""
    n = len(leader)
    return (leader == np.arange(n)) & (np.bincount(leader, minlength=n) == 1)


def clusters(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of the graph whose edges are `pairs` (union-find semantics:
    a~b and b~c put a, b, c together). n: number of items. pairs: (P, 2) indices.
    Dedup no longer uses this (it chains: see `leader_clusters`).
    Returns (n,) int64 component label per item; items in no pair get their own label."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    from scipy.sparse import coo_matrix  # only the benchmark's "before" row: scipy.sparse costs ~0.3 s to import
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _masks_within(bits: int, radius: int) -> np.ndarray:
    """Every `bits`-bit mask with at most `radius` bits set, the empty mask first."""
    values = np.arange(1 << bits, dtype=np.uint64)
    weight = popcount(values)
    keep = values[weight <= radius]
    return keep[np.argsort(weight[weight <= radius], kind="stable")]


def _substring_table(codes: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes sorted by substring j (stable), their original indices, and bucket starts
    (65,537 offsets: bucket v holds sorted positions starts[v]..starts[v+1])."""
    keys = ((codes >> np.uint64(SUB_BITS * j)) & np.uint64((1 << SUB_BITS) - 1)).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    starts = np.zeros((1 << SUB_BITS) + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=1 << SUB_BITS), out=starts[1:])
    return codes[order], order.astype(np.int64), starts
