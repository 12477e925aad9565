"""Who labels which image: pure functions, no server, no ledger.

Open-source Label Studio has no task assignment or overlap setting (Enterprise features),
so ifa decides the assignment itself and gives each annotator a project of their own:

- `assign_images`: each image to `per_image` distinct annotators, load balanced (task
  counts differ by at most one) and the groups rotated so every two annotators share
  images once there are enough (agreement between two people needs overlap);
- `gold_queue`: each annotator's gold questions, max(1, round(rate x tasks)), spread
  through their queue so they look like any other task;
- `pick_tiebreakers`: each disagreement to a tie-breaker who did not annotate the image,
  spread evenly over the pool.

Everything is deterministic for a given `seed` (the round's name): a rerun after a crash
computes the same answer, and images added later continue from the loads so far.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

from ..errors import IfaError


def _key(seed: str, item: str) -> bytes:
    return hashlib.blake2b(f"{seed}\0{item}".encode(), digest_size=8).digest()


def shuffled(items: Sequence[str], seed: str) -> list[str]:
    """`items` in an order fixed by `seed` (a hash per item: stable when items are added)."""
    return sorted(items, key=lambda i: _key(seed, str(i)))


def assign_images(image_ids: Sequence[str], n_annotators: int, per_image: int = 2, seed: str = "",
                  loads: Sequence[int] | None = None,
                  together: Sequence[Sequence[int]] | None = None) -> dict[str, tuple[int, ...]]:
    """Each image to `per_image` distinct annotators (indices 0..n_annotators-1).

    Greedy over the images in a seed-fixed order: take the annotators with the fewest
    tasks (which keeps every two loads within one of each other), and among those tied,
    the ones who have shared the fewest images with the ones already picked (which rotates
    the groups: all pairs are used before any pair repeats). `loads`/`together` continue
    an earlier assignment (tasks per annotator, images shared per pair).
    Returns {image_id: sorted annotator indices}. Raises IfaError when per_image is not
    between 1 and n_annotators. ~1 s for 40,000 images and a pool of 10."""
    n, k = int(n_annotators), int(per_image)
    if n < 1 or not 1 <= k <= n:
        raise IfaError(f"Each image needs {k} distinct annotators but the pool has {n}; use --per-image between "
                       f"1 and {n}, or name more annotators.")
    load = list(loads) if loads is not None else [0] * n
    co = [list(r) for r in together] if together is not None else [[0] * n for _ in range(n)]
    # Ties beyond load and overlap go to a seed-fixed order of the annotators, rotated per
    # image so no one is always first.
    base = sorted(range(n), key=lambda a: _key(seed, f"annotator {a}"))
    out: dict[str, tuple[int, ...]] = {}
    for step, image_id in enumerate(shuffled([str(i) for i in image_ids], seed)):
        rank = {a: (j - step) % n for j, a in enumerate(base)}
        # Taking the least loaded k keeps every two loads within one. A joint choice of the
        # pair with the least overlap was tried: no better coverage (all 45 pairs of a pool
        # of 10 within 90 images either way) and 1.6x slower, so one pick at a time.
        picked: list[int] = []
        for _ in range(k):
            picked.append(min((a for a in range(n) if a not in picked),
                              key=lambda a: (load[a], sum(co[a][p] for p in picked), rank[a])))
        for a in picked:
            load[a] += 1
            for b in picked:
                if a != b:
                    co[a][b] += 1
        out[image_id] = tuple(sorted(picked))
    return out


def loads_and_overlap(assigned: Mapping[str, Sequence[int]], n_annotators: int) -> tuple[list[int], list[list[int]]]:
    """Tasks per annotator and images shared per pair of an assignment (to continue it)."""
    load = [0] * n_annotators
    co = [[0] * n_annotators for _ in range(n_annotators)]
    for group in assigned.values():
        for a in group:
            load[a] += 1
            for b in group:
                if a != b:
                    co[a][b] += 1
    return load, co


def gold_count(tasks: int, rate: float) -> int:
    """Gold questions for an annotator with `tasks` regular tasks: max(1, round(rate x tasks))."""
    return max(1, int(round(rate * tasks)))


def gold_queue(gold_ids: Sequence[str], tasks_per_annotator: Sequence[int], rate: float,
               seed: str = "") -> list[list[str]]:
    """The gold images each annotator gets: gold_count(tasks, rate) of them (at most all
    of them), taken in turn from a seed-fixed order so that annotators see different
    gold images where the list allows and the same image never twice."""
    order = shuffled([str(g) for g in gold_ids], seed)
    if not order:
        return [[] for _ in tasks_per_annotator]
    out, start = [], 0
    for tasks in tasks_per_annotator:
        g = min(gold_count(tasks, rate), len(order))
        out.append([order[(start + j) % len(order)] for j in range(g)])
        start = (start + g) % len(order)
    return out


def interleave(regular: Sequence[str], gold: Sequence[str]) -> list[tuple[str, bool, float]]:
    """An annotator's queue: (image_id, is_gold, position), the gold images spread evenly
    between the regular ones (Label Studio serves a project's tasks in id order, and ifa
    imports them in position order)."""
    rows = [(i, False, float(p)) for p, i in enumerate(regular)]
    g = len(gold)
    for j, image_id in enumerate(gold):
        rows.append((image_id, True, (j + 0.5) * len(regular) / g - 0.5 if g else 0.0))
    rows.sort(key=lambda r: (r[2], r[1]))
    return rows


def pick_tiebreakers(images: Mapping[str, set[str]], pool: Sequence[str], loads: Mapping[str, int] | None = None,
                     seed: str = "") -> dict[str, str]:
    """Each image (image_id -> emails of its annotators) to one tie-breaker of `pool` who
    is not among them: the least loaded so far (`loads`: tasks they already have), ties
    in a seed-fixed rotation. Returns {image_id: email}. Raises IfaError naming an image
    no one in the pool may take."""
    load = {e: int((loads or {}).get(e, 0)) for e in pool}
    out: dict[str, str] = {}
    for step, image_id in enumerate(shuffled(list(images), seed)):
        allowed = [e for e in pool if e not in images[image_id]]
        if not allowed:
            who = " and ".join(sorted(images[image_id]))
            raise IfaError(f"Image {image_id} was labelled by {who}, and the tie-breaker pool has no one else; the "
                           "tie-breaker must be a third person, not one of the image's annotators: name another "
                           "with --tiebreaker.")
        best = min(allowed, key=lambda e: (load[e], (pool.index(e) - step) % len(pool)))
        load[best] += 1
        out[image_id] = best
    return out
