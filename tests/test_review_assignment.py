"""Pure assignment logic of review pools: balance, rotation, determinism, gold, tie-breaks.

No server: these are the functions `ifa review create` and `ifa review tiebreak` use to
decide who labels what before anything is sent to Label Studio.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import pytest

from ifa.annotation import assignment
from ifa.errors import IfaError

IDS = [f"img{i:05d}" for i in range(1000)]


def loads(assigned, n):
    return Counter(a for g in assigned.values() for a in g) | Counter({a: 0 for a in range(n)})


@pytest.mark.parametrize("n,k,images", [(2, 2, 37), (3, 2, 101), (5, 2, 1000), (10, 2, 997), (7, 3, 500), (4, 2, 3)])
def test_every_image_gets_k_distinct_annotators_and_loads_differ_by_at_most_one(n, k, images):
    got = assignment.assign_images(IDS[:images], n, k, seed="r1")
    assert set(got) == set(IDS[:images])
    assert all(len(g) == k and len(set(g)) == k and all(0 <= a < n for a in g) for g in got.values())
    counts = loads(got, n)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert sum(counts.values()) == k * images


def test_two_annotators_both_label_every_image():
    got = assignment.assign_images(IDS[:50], 2, 2, seed="x")
    assert set(got.values()) == {(0, 1)}


@pytest.mark.parametrize("n", [3, 5, 10])
def test_pairs_rotate_so_every_two_annotators_share_images(n):
    pairs = n * (n - 1) // 2
    got = assignment.assign_images(IDS[:pairs], n, 2, seed="rot")
    # As many images as pairs: nearly every pair is used once already (balance comes first) ...
    assert len(set(got.values())) >= 0.8 * pairs
    # ... twice as many: every two annotators share images, and no pair hogs the overlap.
    more = assignment.assign_images(IDS[:2 * pairs], n, 2, seed="rot")
    assert set(more.values()) == set(combinations(range(n), 2))
    most = assignment.assign_images(IDS[:10 * pairs], n, 2, seed="rot")
    shared = Counter(most.values())
    assert len(shared) == pairs and max(shared.values()) <= 1.5 * min(shared.values())


def test_deterministic_per_round_name_and_different_across_names():
    a = assignment.assign_images(IDS[:300], 5, 2, seed="test-1")
    assert a == assignment.assign_images(list(reversed(IDS[:300])), 5, 2, seed="test-1")  # input order does not matter
    assert a != assignment.assign_images(IDS[:300], 5, 2, seed="test-2")


def test_continuing_an_assignment_keeps_the_balance():
    first = assignment.assign_images(IDS[:333], 5, 2, seed="r")
    load, co = assignment.loads_and_overlap(first, 5)
    rest = assignment.assign_images(IDS[333:700], 5, 2, seed="r", loads=load, together=co)
    both = {**first, **rest}
    counts = loads(both, 5)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_per_image_must_fit_the_pool():
    with pytest.raises(IfaError, match="per-image"):
        assignment.assign_images(IDS[:5], 2, 3, seed="r")


def test_gold_count_and_queue():
    assert assignment.gold_count(0, 0.05) == 1
    assert assignment.gold_count(10, 0.05) == 1
    assert assignment.gold_count(7941, 0.05) == 397
    gold = [f"g{i}" for i in range(10)]
    queues = assignment.gold_queue(gold, [40, 40, 100, 7], 0.05, seed="r")
    assert [len(q) for q in queues] == [2, 2, 5, 1]
    assert all(len(set(q)) == len(q) for q in queues)
    assert len(set(queues[0]) | set(queues[1])) == 4  # annotators get different gold images while the list allows
    capped = assignment.gold_queue(gold[:3], [1000], 0.05, seed="r")
    assert sorted(capped[0]) == gold[:3]  # never the same gold image twice
    assert assignment.gold_queue(gold, [40], 0.05, seed="r") == assignment.gold_queue(gold, [40], 0.05, seed="r")


def test_gold_is_interleaved_not_bunched():
    regular = [f"r{i}" for i in range(100)]
    queue = assignment.interleave(regular, ["g1", "g2", "g3", "g4", "g5"])
    order = [i for i, _, _ in queue]
    assert len(order) == 105 and set(order) == set(regular) | {"g1", "g2", "g3", "g4", "g5"}
    where = [k for k, (_, gold, _) in enumerate(queue) if gold]
    gaps = [b - a for a, b in zip(where, where[1:])]
    assert min(gaps) >= 15 and where[0] > 0 and where[-1] < 104
    assert [i for i, gold, _ in queue if not gold] == regular  # regular tasks keep their order


def test_tiebreakers_never_get_their_own_images_and_share_evenly():
    images = {f"i{k}": {f"a{k % 5}@x.org", f"a{(k + 1) % 5}@x.org"} for k in range(300)}
    pool = ["a0@x.org", "a1@x.org", "t@x.org"]
    got = assignment.pick_tiebreakers(images, pool, seed="r")
    assert set(got) == set(images)
    assert all(got[i] not in images[i] for i in images)
    counts = Counter(got.values())
    assert set(counts) == set(pool)
    assert pick_again(images, pool) == got
    only_theirs = {"i": {"a@x.org", "b@x.org"}}
    with pytest.raises(IfaError, match="third person"):
        assignment.pick_tiebreakers(only_theirs, ["a@x.org", "b@x.org"])
    spread = assignment.pick_tiebreakers({f"j{k}": {"a@x.org", "b@x.org"} for k in range(90)},
                                         ["t1@x.org", "t2@x.org", "t3@x.org"], loads={"t1@x.org": 30})
    assert Counter(spread.values()) == {"t1@x.org": 10, "t2@x.org": 40, "t3@x.org": 40}  # 40 each in all


def pick_again(images, pool):
    return assignment.pick_tiebreakers(images, pool, seed="r")
