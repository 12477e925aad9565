"""The fingerprint phase of dedup: its process pool, its batches and what a worker ships back."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ifa.curation import executors
from ifa.errors import IfaError
from ifa.curation.dedup import hashing, run
from ifa.curation.image_checks.statistics import ImageStats
from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace
from ifa.sample import IMAGES_DIR, split_file

# What the fingerprint phase writes, without the times it writes them at.
ROWS = {
    "file_stats": "SELECT image_pk, path, bytes, mtime_ns, sha256 FROM file_stats ORDER BY image_pk",
    "image_hashes": "SELECT image_pk, method, sha256, hash, signature FROM image_hashes ORDER BY image_pk, method",
    "image_stats": "SELECT image_pk, path, bytes, mtime_ns, version, stats, thumb_hash, reason FROM image_stats "
                   "ORDER BY image_pk",
    "images": "SELECT pk, sha256, bytes, width, height FROM images ORDER BY pk",
}


def _sample_workspace(root: Path) -> Workspace:
    ws = Workspace.init(root, command="test")
    for split in ("train", "validation", "test"):
        importing.import_imat(ws, split_file(split), split, images_dir=IMAGES_DIR)
    return ws


def _fingerprint(ws: Workspace, workers: int) -> run.DedupResult:
    result = run.DedupResult(method="phash", threshold=run.DEFAULT_THRESHOLD["phash"], keep_policy=run.parse_keep(None),
                             min_similarity=run.DEFAULT_MIN_SIMILARITY)
    assert run._fingerprint(ws, None, ("phash",), workers, None, result, run.SILENT) == {}
    return result


def _rows(ws: Workspace) -> dict[str, list]:
    with sqlite3.connect(ws.db_path) as conn:
        return {table: conn.execute(sql).fetchall() for table, sql in ROWS.items()}


PARENT = os.getpid()
_HASH_BATCH = hashing.hash_batch
_DIED = Path(os.environ.get("TMPDIR", "/tmp")) / f"ifa-test-hash-worker-died-{PARENT}"


def _dies_once(jobs, methods):
    """hash_batch, except that the first pool worker to take a batch with image pk 40 in it is
    killed (SIGKILL, as the out-of-memory killer does) halfway through it."""
    if os.getpid() != PARENT and any(job.key == 40 for job in jobs) and not _DIED.exists():
        _DIED.touch()
        _HASH_BATCH(jobs[:len(jobs) // 2], methods)
        os.kill(os.getpid(), signal.SIGKILL)
    return _HASH_BATCH(jobs, methods)


def test_a_killed_hashing_worker_loses_nothing_and_two_workers_write_what_one_does(tmp_path: Path, monkeypatch):
    one = _sample_workspace(tmp_path / "one")
    alone = _fingerprint(one, 1)
    two = _sample_workspace(tmp_path / "two")
    _DIED.unlink(missing_ok=True)
    monkeypatch.setattr(run.hashing, "hash_batch", _dies_once)
    try:
        pooled = _fingerprint(two, 2)
        assert _DIED.exists(), "no worker took the batch with pk 40"
    finally:
        _DIED.unlink(missing_ok=True)
    assert not multiprocessing.active_children()  # both pools closed
    assert alone.images_hashed == pooled.images_hashed == 310
    want, got = _rows(one), _rows(two)
    assert len(want["image_hashes"]) == len(want["image_stats"]) == 310
    for table in ROWS:
        assert got[table] == want[table], table


def test_batches_taper_so_the_workers_finish_together():
    items = list(range(20_000))
    sizes = [len(b) for b in executors.tapered_chunks(items, 625, 2)]
    assert [x for b in executors.tapered_chunks(items, 625, 2) for x in b] == items
    assert sizes[0] == 625 and max(sizes) == 625
    assert sizes == sorted(sizes, reverse=True)
    assert sum(sizes[-4:]) <= 128  # the last batches are small: no worker idles through a full one
    assert len(sizes) <= 1.5 * len(items) / 625  # and not many more transactions
    assert [len(b) for b in executors.tapered_chunks(list(range(70)), 32, 2)] == [32, 32, 6]


def test_image_statistics_travel_between_processes_as_bytes():
    stats = hashing.prepare((IMAGES_DIR / sorted(os.listdir(IMAGES_DIR))[0]).read_bytes(), with_stats=True).stats
    shipped = pickle.dumps(stats, protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(shipped)
    assert b"numpy" not in shipped  # numpy's array pickling cost most of a file result's
    assert isinstance(back, ImageStats) and back.thumb_hash == stats.thumb_hash
    assert back.values.dtype == np.float32 and back.values.tobytes() == stats.values.tobytes()


def test_compiled_lanczos_weights_and_column_copies_are_the_references():
    for out_size in (32, 8, 17, 1):
        for in_size in range(1, 300):
            assert np.array_equal(hashing._lanczos_matrix(in_size, out_size),
                                  hashing._lanczos_matrix_reference(in_size, out_size)), (in_size, out_size)
    grey = np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8)
    for g in (grey, grey[::-1, 3:], grey[:, ::2], grey[:1], grey[:, :1]):
        got = hashing.transposed(g)
        assert got.flags.c_contiguous and np.array_equal(got, g.T)


def _dies_on_13(batch):
    """The batch's numbers doubled, except that a pool worker given 13 is killed (SIGKILL), every
    time, as by a file that crashes the decoder; the test's own process records that it ran it."""
    if 13 in batch:
        if os.getpid() != PARENT:
            os.kill(os.getpid(), signal.SIGKILL)
        _DIED.touch()
    return [2 * x for x in batch]


def test_a_batch_that_kills_every_worker_stops_the_run_with_a_sentence_not_the_command(tmp_path: Path):
    _DIED.unlink(missing_ok=True)
    got = {}
    try:
        with pytest.raises(IfaError, match="died twice"):
            for batch, doubled in executors.run_batches(_dies_on_13, executors.chunks(list(range(40)), 5), workers=2):
                got.update(zip(batch, doubled))
        assert not _DIED.exists(), "the batch that kills a worker ran in the command's own process"
    finally:
        _DIED.unlink(missing_ok=True)
    assert not multiprocessing.active_children()
    assert all(got[x] == 2 * x for x in got) and 13 not in got


def _dies_on_0(batch):
    """The batch's numbers doubled, except that the first pool worker given 0 is killed (SIGKILL)."""
    if 0 in batch and os.getpid() != PARENT and not _DIED.exists():
        _DIED.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return [2 * x for x in batch]


def _after_a_death(batches):
    """The batches, each after the first only once a worker has died: the pool is broken
    before the next one is submitted."""
    import time

    yield batches[0]
    while not _DIED.exists():
        time.sleep(0.01)
    time.sleep(0.5)  # the pool's own thread notices the death and marks the pool broken
    yield from batches[1:]


def test_a_worker_dying_between_two_submits_loses_no_batch():
    # Found as a flake: the pool broke while batches were still being handed to it, and the
    # submit's BrokenProcessPool ended the whole command instead of a rerun of what was lost.
    _DIED.unlink(missing_ok=True)
    got = {}
    try:
        batches = _after_a_death(list(executors.chunks(list(range(40)), 5)))
        for batch, doubled in executors.run_batches(_dies_on_0, batches, workers=2):
            got.update(zip(batch, doubled))
        assert _DIED.exists()
    finally:
        _DIED.unlink(missing_ok=True)
    assert got == {x: 2 * x for x in range(40)}
    assert not multiprocessing.active_children()
