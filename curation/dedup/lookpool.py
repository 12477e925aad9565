"""The second look across the command's processes: a pool of workers that lives for one
command's second look (near misses, box pairs, aligned pairs, the comparison with a
cluster's leader), each worker with its own `decodes.Decodes` kept across those passes.

A leaf of the second look (`recheck.redecoded_similarity`, `align.aligned_similarity`) hands
its pairs to `Looks.spread`: they are sorted by their first file (a file's pairs in one chunk,
so one decode), cut into chunks that go to the workers, and their scores put back in order.
Each pair is scored from its own two files whatever else is in its chunk, so the scores are
those of the in-process path bit for bit (tests/test_dedup_lookpool.py).
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from concurrent.futures import ProcessPoolExecutor, as_completed
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
# A chunk's largest scoring call (6 compares a pair in `align.aligned_similarity`) stays within one
# block of verify.similarity's compiled scorer, which then runs on one thread: N workers, N threads.
MAX_CHUNK = verify.CHUNK * 4 // 6

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
        self._pool: ProcessPoolExecutor | None = None
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
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def spread(self, fn: Callable[..., np.ndarray], columns: Sequence[Column], *args) -> np.ndarray:
        """fn(*columns, *args, decodes) over the pairs, split among the workers when there are
        MIN_PAIRS or more and workers > 1, else in this process. columns: per-pair sequences
        (the first the pairs' first files; None passes through). Returns fn's (P,) array, in
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
        """`spread` over the pool: each chunk's scores put back at its pairs' places. A pool
        broken under it (a worker killed, for memory) leaves the chunks not yet back to this process."""
        n, parts = len(columns[0]), chunks(columns[0], self.workers)
        out, left = None, dict(enumerate(parts))
        try:
            pool = self._started()
            futures = {pool.submit(_work, fn, [_take(c, idx) for c in columns], args, self.worker_bytes): k
                       for k, idx in left.items()}
            for fut in as_completed(futures):
                part = fut.result()
                idx = left.pop(futures[fut])
                out = _place(out, idx, part, n)
                self._advance(len(idx))
        except BrokenProcessPool:
            self._broken()
        for idx in left.values():
            out = _place(out, idx, fn(*[_take(c, idx) for c in columns], *args, self), n)
            self._advance(len(idx))
        return out

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            hashing.load_kernels()  # forked workers inherit the compiled kernels: once here, not once per worker
            self._pool = executors.process_pool(self.workers)
        return self._pool

    def _broken(self) -> None:
        self._stop()
        self.workers = 1


def chunks(first: Sequence[str], workers: int) -> list[np.ndarray]:
    """The pairs' indices cut into chunks for workers processes: sorted by their first file
    (first: (P,) paths), so a file's pairs share a chunk; CHUNKS_PER_WORKER a worker, each
    at least align.KERNEL_MIN pairs (the compiled scorer's) and at most MAX_CHUNK."""
    n = len(first)
    order = np.array(sorted(range(n), key=first.__getitem__), dtype=np.int64)
    size = min(MAX_CHUNK, max(align.KERNEL_MIN, math.ceil(n / (workers * CHUNKS_PER_WORKER))))
    return [order[lo:lo + size] for lo in range(0, n, size)]


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
