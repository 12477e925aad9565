"""Run a function over batches in parallel: in this process, a local process pool, or a
Dask distributed cluster. One interface, so the work itself does not care where it runs.

Results come back as batches finish (not in order), with at most a few batches in flight
per worker, so a million-item job never holds all its inputs or outputs in memory and a
caller can save each result as it arrives (a crash loses only the batches in flight).
"""

from __future__ import annotations

import ctypes
import gc
import math
import multiprocessing
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..errors import IfaError

IN_FLIGHT_PER_WORKER = 3
DASK_BATCH = 1000  # files per Dask task: big enough that scheduling overhead (~1 ms/task) is noise
DASK_CONNECT_TIMEOUT = "10s"


def default_workers() -> int:
    """CPUs this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def batch_size(n_items: int, workers: int, largest: int = 1000, smallest: int = 32, per_worker: int = 4) -> int:
    """Items per batch: about `per_worker` batches per worker for small jobs (so the
    workers stay busy to the end), at most `largest`."""
    return max(smallest, min(largest, math.ceil(n_items / max(1, workers * per_worker))))


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for lo in range(0, len(items), size):
        yield items[lo:lo + size]


def tapered_chunks(items: Sequence[Any], size: int, workers: int, smallest: int = 32) -> Iterator[Sequence[Any]]:
    """Batches of `size` items until fewer than two a worker are left, then a quarter of what
    is left per batch (a share by worker count, at least `smallest`): the workers finish within
    a small batch of each other instead of one idling through the other's last full batch
    (20,000 photos on 2 workers: up to ~0.5 s of one core)."""
    lo, share = 0, 2 * max(1, workers)
    while lo < len(items):
        step = min(size, max(smallest, -(-(len(items) - lo) // share)))
        yield items[lo:lo + step]
        lo += step


def run_batches(fn: Callable[..., Any], batches: Iterable[Any], args: tuple = (), *, workers: int | None = None,
                scheduler: str | None = None) -> Iterator[tuple[Any, Any]]:
    """Yield (batch, fn(batch, *args)) for every batch, as each finishes.

    scheduler: a Dask scheduler address (tcp://HOST:PORT): the batches run on that
        cluster's workers, which must have ifa installed and see the same file paths.
    workers: local processes when no scheduler is given (default: all CPUs); 1 runs in
        this process.
    A local worker that dies (killed, out of memory) has its batches run again in a fresh pool.
    Raises IfaError when the scheduler cannot be reached, or when workers die twice on the
    same batches.
    """
    if scheduler:
        yield from _dask(fn, batches, args, scheduler)
    elif (workers or default_workers()) <= 1:
        for batch in batches:
            yield batch, fn(batch, *args)
    else:
        yield from _pool(fn, batches, args, workers or default_workers())


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A local process pool whose workers die with this process and ignore Ctrl-C.

    fork where there is one: workers start in milliseconds and a caller's script needs
    no `if __name__ == "__main__"` guard (spawn re-imports it). Safe here: the children
    only run the submitted function and leave through os._exit, so they never touch the
    parent's SQLite connection or its progress thread.

    Why the initializer: a `kill -9` of the parent otherwise leaves forked workers alive,
    re-parented to PID 1 (measured: two dedup workers of ~285 MB each still hashing 300 s
    later), and Ctrl-C reaches the whole process group, so each worker printed its own
    `Process ForkProcess-2: Traceback ... KeyboardInterrupt` before the parent's clean line.
    The parent alone handles Ctrl-C; it shuts the pool down on the way out.
    """
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods and sys.platform == "linux" else "spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_start,
                               initargs=(os.getpid(),))
    if not hasattr(signal, "pthread_sigmask"):
        return pool
    # Under fork every worker starts on the first submit. Fork them with SIGINT blocked, so
    # a Ctrl-C between a fork and the worker's initializer stays pending in the parent (which
    # handles it once unblocked) instead of killing a half-started worker with a traceback.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    # gc.freeze: the objects the workers inherit are never scanned by their collector, so
    # their pages stay shared instead of being copied on first touch (Python's advice for
    # fork; dedup's hashing workers: page faults 33k -> 20k, CPU 1.9 -> 1.8 s for 3,000
    # photos). The parent unfreezes at once: only the children keep them frozen.
    gc.freeze()
    try:
        pool.submit(int)
    finally:
        gc.unfreeze()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return pool


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_S = 0.5  # where there is no prctl: how often a worker looks for its parent


def _worker_start(parent_pid: int) -> None:
    """Runs first in every pool worker: ignore SIGINT, and die with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked while forking; ignored now
    if not _die_with_parent():
        import threading
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="ifa-parent-watch").start()
    # The parent may have died before the line above ran (the signal is only armed from
    # then on); then this worker already belongs to PID 1 or a subreaper, and leaves now.
    if os.getppid() != parent_pid:
        os._exit(0)


def _die_with_parent() -> bool:
    """Linux: ask the kernel to SIGKILL this process when its parent dies. False elsewhere.

    The kernel ties the signal to the parent *thread* that forked: the pool forks from the
    thread that submits (the caller's), which outlives the pool in every ifa command."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    import time
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


def _pool(fn, batches, args, workers: int) -> Iterator[tuple[Any, Any]]:
    source = iter(batches)
    while True:
        lost = yield from _pooled(fn, source, args, workers)
        if not lost:
            return
        # A worker died (killed, out of memory): a fresh pool runs the batches it took down, then
        # the rest. Never this process: a file that crashes the decoder would take the command down
        # with no word; dying again on the same batches says so instead.
        if (yield from _pooled(fn, iter(lost), args, workers)):
            raise IfaError(
                f"A worker process died twice on the same {len(lost)} batch(es) of work: the machine ran out of "
                "memory, or a file crashes the image decoder. What finished is kept; rerun with fewer --workers, "
                "and if it dies again, move the newest image files aside and rerun.")


def _pooled(fn, source: Iterator[Any], args, workers: int):
    """Yield (batch, result) from one process pool until `source` runs dry; return the
    batches whose results were lost when a worker died (empty when none did)."""
    pool = process_pool(workers)
    pending: dict[Future, Any] = {}
    unsent: list[Any] = []
    try:
        while True:
            while len(pending) < workers * IN_FLIGHT_PER_WORKER:
                batch = next(source, None)
                if batch is None:
                    break
                try:
                    pending[pool.submit(fn, batch, *args)] = batch
                except BrokenProcessPool:  # a worker died since the last submit: this batch never ran
                    unsent.append(batch)
                    break
            if not pending:
                return unsent
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            lost = [pending.pop(fut) for fut in list(done) if isinstance(fut.exception(), BrokenProcessPool)]
            for fut in done:
                if fut in pending:
                    yield pending.pop(fut), fut.result()
            if lost or unsent:
                return unsent + lost + list(pending.values())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _dask(fn, batches, args, address: str) -> Iterator[tuple[Any, Any]]:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
        raise IfaError("--scheduler needs dask.distributed: pip install 'dask[distributed]'.") from exc
    try:
        client = Client(address, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise IfaError(
            f"Could not reach the Dask scheduler at {address} ({exc}). Start one with `dask scheduler` and "
            f"workers with `dask worker {address}`, or leave out --scheduler to use local processes."
        ) from None
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        limit = n_workers * IN_FLIGHT_PER_WORKER
        source = iter(batches)
        owner: dict[str, Any] = {}

        def submit():
            batch = next(source, None)
            if batch is None:
                return None
            fut = client.submit(fn, batch, *args, pure=False)
            owner[fut.key] = batch
            return fut

        first = [f for f in (submit() for _ in range(limit)) if f is not None]
        if not first:
            return
        futures = as_completed(first, loop=client.loop)  # our client is not the default one
        for fut in futures:
            result = fut.result()
            batch = owner.pop(fut.key)
            fut.release()
            nxt = submit()
            if nxt is not None:
                futures.add(nxt)
            yield batch, result
    finally:
        client.close()
