"""Second looks only where they can change the clusters.

`pairs.leader_clusters` visits images best first: an image not yet taken leads and takes its
verified neighbours not yet taken. A pair whose better-ranked image is itself taken when it
is visited, or whose other image is taken by then, never changes a cluster, whatever its
verdict. So the clusters are made in waves: a scan treats the pairs still undecided
(`recheck.SecondLooks.undecided`) as no copies, the undecided pairs it met (a leader and an image
not taken when the leader was visited) get their second look together, and the next scan
starts again, until a scan meets none. That scan's clusters are those of every pair looked
at: every pair it met is decided, and an undecided one it did not meet could not change it.
Two copies of one original are never compared again: most of the pairs a look would take
on a copy-heavy set (README dedup speed table, benchmarks/dedup_bench.py command).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import pairs as pairing
from . import recheck

# The second look of some pairs: (rows, the pairs verified so far) -> (their verdicts, pairs re-decoded).
Look = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, int]"]


@dataclass
class Verdicts:
    """What is known of the candidate pairs after some second looks.

    ok: (P,) bool copies; undecided: (P,) bool not copies yet, a look may still make them so;
    looked: pairs re-decoded; seconds: the wall seconds those looks took."""

    ok: np.ndarray
    undecided: np.ndarray
    looked: int = 0
    seconds: float = 0.0


def resolved(verdicts: Verdicts, rows: np.ndarray, look: Look) -> Verdicts:
    """verdicts with the undecided pairs among rows ((R,) pair indices) looked at, as one batch.
    Returns a new Verdicts (the looks counted on)."""
    rows = np.asarray(rows, dtype=np.int64)
    rows = rows[verdicts.undecided[rows]]
    if not len(rows):
        return verdicts
    ok, undecided = verdicts.ok.copy(), verdicts.undecided.copy()
    started = time.perf_counter()
    ok[rows], looked = look(rows, verdicts.ok)
    undecided[rows] = False
    return Verdicts(ok, undecided, verdicts.looked + looked, verdicts.seconds + time.perf_counter() - started)


def clusters(rank: np.ndarray, near: np.ndarray, verdicts: Verdicts, look: Look,
             heads: np.ndarray | None = None) -> tuple[np.ndarray, Verdicts]:
    """Leader clusters (`pairs.leader_clusters`) over the pairs that are copies, the undecided
    pairs a scan meets looked at in waves until a scan meets none (module docstring).
    rank: (n,) keep-policy order (a permutation); near: (P, 2) pairs of rows; look: the
    second look (`recheck.SecondLooks`); heads: (n,) the row that pairs for each row (its identical
    files' best; default itself), whose leader it shares. Returns ((n,) leader of each row,
    the verdicts after the looks)."""
    while True:
        leader = pairing.leader_clusters(rank, near[verdicts.ok])
        rows = met(rank, near, leader, verdicts.undecided)
        if not len(rows):
            return (leader if heads is None else leader[heads]), verdicts
        verdicts = resolved(verdicts, rows, look)


def met(rank: np.ndarray, near: np.ndarray, leader: np.ndarray, undecided: np.ndarray) -> np.ndarray:
    """The undecided pairs a leader scan met: a leader and an image still untaken when the
    leader was visited (taken when its own leader was: at rank[leader]). rank, leader: (n,);
    near: (P, 2); undecided: (P,) bool. Returns (M,) pair indices."""
    a, b = near[:, 0], near[:, 1]
    taken_at = rank[leader]
    first_a = (leader[a] == a) & (taken_at[b] > rank[a])
    first_b = (leader[b] == b) & (taken_at[a] > rank[b])
    return np.flatnonzero(undecided & (first_a | first_b))


def beside(leader: np.ndarray, near: np.ndarray, verdicts: Verdicts) -> np.ndarray:
    """The undecided pairs between an image alone and a member of a cluster: what
    `recheck.rejoin` needs decided (`beside_leaders` and `nearest_leaders`; an alone image's
    pairs with leaders and with other alone images were met, so decided). leader: (n,);
    near: (P, 2). Returns (B,) pair indices."""
    alone = pairing.alone(leader)
    one_alone = alone[near[:, 0]] != alone[near[:, 1]]
    return np.flatnonzero(verdicts.undecided & one_alone)


def verified_clusters(rank: np.ndarray, heads: np.ndarray, looks: recheck.SecondLooks) -> tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray, Verdicts]:
    """The command's clusters from its candidate pairs: `clusters`, then images left alone beside
    a cluster compared with its leader (`recheck.rejoin`, after `beside`'s pairs are decided,
    with the pairs looked at and not copies for its nearest-candidate look) and clusters made
    again with the pairs that joined.
    rank: (n,) keep-policy order; heads: (n,) the row standing for each row's identical files
    (itself for most); looks: the candidate pairs' second look. Returns ((n,) leader of each
    row, (P + J, 2) the candidate pairs then the (image, leader) pairs joined, (P + J,) their
    scores, their verdicts)."""
    ok = looks.passed()
    verdicts = Verdicts(ok, looks.undecided(ok))
    leader, verdicts = clusters(rank, looks.near, verdicts, looks, heads)
    verdicts = resolved(verdicts, beside(leader, looks.near, verdicts), looks)
    started = time.perf_counter()
    looked_at = ~verdicts.ok & ~verdicts.undecided  # none of an image alone is undecided now
    unverified = recheck.Unverified(looks.near[looked_at], looks.similarity[looked_at], rank)
    joined, score, compared = recheck.rejoin(looks.paths, leader, looks.near[verdicts.ok], looks.min_similarity,
                                             looks.files, unverified)
    verdicts = Verdicts(np.concatenate([verdicts.ok, np.ones(len(joined), dtype=bool)]),
                        np.concatenate([verdicts.undecided, np.zeros(len(joined), dtype=bool)]),
                        verdicts.looked + compared, verdicts.seconds + time.perf_counter() - started)
    near = np.concatenate([looks.near, joined]).astype(np.int64)
    if len(joined):
        leader, verdicts = clusters(rank, near, verdicts, looks, heads)
    return leader, near, np.concatenate([looks.similarity, score.astype(looks.similarity.dtype)]), verdicts
