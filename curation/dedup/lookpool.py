"""The second look across the command's processes: a pool of workers that lives for one
command's second look (near misses, box pairs, aligned pairs, the comparison with a
cluster's leader), each worker with its own `decodes.Decodes` kept across those passes.

A leaf of the second look (`recheck.redecoded_similarity`, `align.aligned_similarity`) hands
its pairs to `Looks.spread`: each file has a home worker, the one that got its first pair, and
a pair goes to the home of one of its files while that worker has no more than its share of
the call (`placed`), so a file is decoded, framed and cut into views once for all the passes
and waves, not once per worker; each worker's pairs are cut into chunks, sorted by their
first file, and their scores put back in order.
Each pair is scored from its own two files whatever else is in its chunk, so the scores are
those of the in-process path bit for bit (tests/test_dedup_lookpool.py).
"""

from __future__ import annotations

import math
from collections import deque
from contextlib import ExitStack
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Sequence

import numpy as np

from ...progress import SILENT, Progress, Task
from .. import executors
from . import align, decodes, hashing, verify

# Fewer pairs stay in this process: the chunks' round trips and a cold cache cost more than a second
# core saves (the crossover on the near misses of dedup_bench.py's 20,000 photos: README dedup section).
MIN_PAIRS = 128
CHUNKS_PER_WORKER = 4  # chunks a worker gets per call: they finish within a chunk of each other
IN_FLIGHT = 1  # chunks a worker has at once: a busy worker keeps no second chunk from an idle one
# A chunk's largest scoring call (6 compares a pair in `align.aligned_similarity`) stays within one
# block of verify.similarity's compiled scorer, which then runs on one thread: N workers, N threads.
MAX_CHUNK = verify.CHUNK * 4 // 6
# A worker takes pairs at its files' home up to this times its even share of a call: the rest go to
# the least loaded. On dedup_bench.py's 20,000 photos, replaying the second look on 2 workers: decodes
# 18,000-18,800 -> 16,000 (the files distinct per scale: 13,231), no share over 1.05.
SHARE_SLACK = 1.1

# The workers' decodes together: each holds decodes.MAX_BYTES up to 4 workers, less beyond (16 CPUs: 64 MiB).
POOL_BYTES = 1 << 30

Column = Sequence | np.ndarray | None

_HELD: decodes.Decodes | None = None  # a worker's own decodes, kept across the command's passes


class Looks(decodes.Decodes):
    """The command's decodes for its second look, and with workers > 1 a pool of worker
    processes, each with decodes of its own of up to worker_bytes (started by the first call
    with MIN_PAIRS pairs; closed by `close` or on leaving a `with` block, also on an error or
    Ctrl-C). progress: a bar "second look" of the pairs looked at, from the first call on
    (its total grows with each call)."""

    def __init__(self, workers: int = 1, progress: Progress = SILENT, max_bytes: int = decodes.MAX_BYTES) -> None:
        super().__init__(max_bytes)
        self.workers = max(1, int(workers))
        self.worker_bytes = min(max_bytes, POOL_BYTES // self.workers)  # each worker's decodes
        self.progress = progress
        self.total = 0  # pairs handed to `spread`
        self._pools: list[ProcessPoolExecutor] = []  # one process each: a chunk goes to the worker chosen for it
        self._home: dict = {}  # file -> the worker that holds its decodes (`placed`)
        self._open = ExitStack()  # the progress task while it is shown
        self._task: Task | None = None

    def __enter__(self) -> "Looks":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (waiting for them to leave) and close the progress bar; the
        decodes in this process stay."""
        try:
            self._stop()
        finally:
            self._task = None
            self._open.close()

    def _stop(self) -> None:
        pools, self._pools = self._pools, []
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)

    def spread(self, fn: Callable[..., np.ndarray], columns: Sequence[Column], *args) -> np.ndarray:
        """fn(*columns, *args, decodes) over the pairs, split among the workers when there are
        MIN_PAIRS or more and workers > 1, else in this process. columns: per-pair sequences
        (the first two the pairs' files, or one column of items; None passes through). Returns fn's (P,) array, in
        the pairs' order. Raises what fn raises."""
        n = len(columns[0])
        self.total += n
        if self._task is None:
            self._task = self._open.enter_context(self.progress.task("second look", total=self.total))
        self._task.update(total=self.total)
        if self.workers > 1 and n >= MIN_PAIRS:
            return self._spread(fn, columns, args)
        out = fn(*columns, *args, self)
        self._advance(n)
        return out

    def _advance(self, n: int) -> None:
        if self._task is not None:
            self._task.advance(n)

    def _spread(self, fn, columns: Sequence[Column], args: tuple) -> np.ndarray:
        """`spread` over the pool: each worker scores the chunks of its share (`placed`), IN_FLIGHT at
        a time, then takes the last chunks left in another's share; each chunk's scores are put back
        at its pairs' places. A pool broken under it (a worker killed, for memory) leaves the chunks
        not yet back to this process."""
        n = len(columns[0])
        first, second = columns[0], columns[1] if len(columns) > 1 else columns[0]
        queues = [deque(chunks(first, 1, share)) for share in placed(first, second, self._home, self.workers)]
        out, running = None, {}
        try:
            pools = self._started()
            for w in range(self.workers):
                for _ in range(min(IN_FLIGHT, len(queues[w]))):  # its own share first
                    self._feed(w, pools, queues, running, fn, columns, args)
            while running:
                for fut in wait(running, return_when=FIRST_COMPLETED).done:
                    part = fut.result()
                    w, idx = running.pop(fut)
                    out = _place(out, idx, part, n)
                    self._advance(len(idx))
                    self._feed(w, pools, queues, running, fn, columns, args)
        except BrokenProcessPool:
            self._broken()
        for idx in [*(idx for _, idx in running.values()), *(idx for q in queues for idx in q)]:
            out = _place(out, idx, fn(*[_take(c, idx) for c in columns], *args, self), n)
            self._advance(len(idx))
        return out

    def _feed(self, w: int, pools: list[ProcessPoolExecutor], queues: list[deque], running: dict, fn,
              columns: Sequence[Column], args: tuple) -> None:
        """Worker w's next chunk: the first left of its own share, else the last of the longest share left."""
        own = queues[w]
        other = max(queues, key=len)
        if not own and not other:
            return
        idx = own[0] if own else other[-1]
        running[pools[w].submit(_work, fn, [_take(c, idx) for c in columns], args, self.worker_bytes)] = (w, idx)
        # Taken off its queue only once submitted: a submit to a pool that broke meanwhile raises,
        # and the chunk is then scored in this process with the rest.
        if own:
            own.popleft()
        else:
            other.pop()

    def _started(self) -> list[ProcessPoolExecutor]:
        if not self._pools:
            hashing.load_kernels()  # forked workers inherit the compiled kernels: once here, not once per worker
            self._pools = [executors.process_pool(1) for _ in range(self.workers)]
        return self._pools

    def _broken(self) -> None:
        self._stop()
        self.workers = 1


def placed(first: Sequence, second: Sequence, home: dict, workers: int) -> list[np.ndarray]:
    """Which worker scores each pair (first, second: (P,) its files): the home of its first file,
    else of its second, while that worker holds at most SHARE_SLACK times an even share of the
    pairs; else the least loaded, which becomes the home of its files that had none. Pairs with
    a home go first; the rest by first file, so a new file's pairs share a worker. home: file ->
    worker, updated here. Returns per worker (W,) arrays of pair indices, ascending."""
    n = len(first)
    cap = math.ceil(n / workers * SHARE_SLACK)
    load, chosen = [0] * workers, np.empty(n, dtype=np.int64)
    order = sorted(range(n), key=lambda i: (first[i] not in home and second[i] not in home, first[i]))
    for i in order:
        w = home.get(first[i], home.get(second[i]))
        if w is None or load[w] >= cap:
            w = min(range(workers), key=load.__getitem__)
        load[w] += 1
        chosen[i] = w
        home.setdefault(first[i], w)
        home.setdefault(second[i], w)
    return [np.flatnonzero(chosen == w) for w in range(workers)]


def chunks(first: Sequence, workers: int, among: np.ndarray | None = None) -> list[np.ndarray]:
    """The pairs' indices (among: those of first to cut, default all) cut into chunks for workers
    processes: sorted by their first file (first: (P,) paths), so a file's pairs share a chunk;
    CHUNKS_PER_WORKER a worker, each at least align.KERNEL_MIN pairs (the compiled scorer's) and
    at most MAX_CHUNK."""
    among = np.arange(len(first)) if among is None else np.asarray(among, dtype=np.int64)
    order = np.array(sorted(among.tolist(), key=first.__getitem__), dtype=np.int64)
    size = min(MAX_CHUNK, max(align.KERNEL_MIN, math.ceil(len(order) / (workers * CHUNKS_PER_WORKER))))
    return [order[lo:lo + size] for lo in range(0, len(order), size)]


def _take(column: Column, idx: np.ndarray) -> Column:
    if column is None:
        return None
    if isinstance(column, np.ndarray):
        return column[idx]
    return [column[i] for i in idx.tolist()]


def _place(out: np.ndarray | None, idx: np.ndarray, part: np.ndarray, n: int) -> np.ndarray:
    if out is None:
        out = np.empty(n, dtype=part.dtype)
    out[idx] = part
    return out


def _work(fn: Callable[..., np.ndarray], columns: list[Column], args: tuple, max_bytes: int) -> np.ndarray:
    """A chunk in a worker: fn over its pairs with the worker's own decodes."""
    global _HELD
    if _HELD is None:
        _HELD = decodes.Decodes(max_bytes)
    return fn(*columns, *args, _HELD)
