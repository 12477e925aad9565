"""`ifa curate dedup` on a real workspace: real photos, transformed copies, broken files.

The scenario (ids -> what the file is):
  train       a, a-copy (same bytes), b, c-big, c-small (c at half size), d1, d2 (same photo,
              JPEG q95 and q60, labels differ), 9 and 10 (same bytes), e (unique),
              trunc / empty / text (unreadable), nofile (URL only: skipped)
  validation  v-a (a re-encoded at q50), v-f (unique)
  test        t-a (a at half size), t-b (b 20% brighter), t-g (unique)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ifa.curation.dedup import run as dedup
from ifa.curation import executors
from ifa.curation.restore import restore
from ifa.errors import IfaError
from ifa.tests.support.dedup import READABLE, clusters_of, make_workspace


@pytest.fixture
def dup_ws(tmp_path: Path):
    ws = make_workspace(tmp_path)
    yield ws
    ws.close()


EXPECTED = {
    "t-a": {"t-a", "v-a", "a", "a-copy"},  # test beats validation beats train
    "t-b": {"t-b", "b"},
    "c-big": {"c-big", "c-small"},  # more pixels
    "d1": {"d1", "d2"},  # same pixels, larger file
    "9": {"9", "10"},  # identical files: the smaller id, by value (9 < 10)
}


def test_finds_clusters_keeps_by_policy_and_reports(dup_ws):
    r = dedup.run(dup_ws, workers=1)
    assert clusters_of(r) == EXPECTED
    assert r.images_hashed == READABLE
    assert r.skipped_no_file == ["nofile"]
    assert {u["image_id"]: u["reason"] for u in r.unreadable} == {
        "trunc": "truncated", "empty": "empty-file", "text": "not-an-image"}
    # v-a and t-a have a train copy (a), t-b has b.
    assert r.cross_split == 3 and r.cross_split_by_split == {"validation": 1, "test": 2}
    # d1/d2 disagree; test images carry no labels and conflict with nothing.
    assert r.label_conflicts == 1 and [c.keep for c in r.clusters if c.label_conflict] == ["d1"]
    assert sorted(r.set_aside) == sorted([("v-a", "t-a"), ("a", "t-a"), ("a-copy", "t-a"), ("b", "t-b"),
                                          ("c-small", "c-big"), ("d2", "d1"), ("10", "9")])
    by_id = {m.image_id: m for c in r.clusters for m in c.members}
    # a-copy is a's file: the same distance to the kept t-a (a at half size), which is 0
    # before border trimming and 4 after it (issue 12 trims borders before hashing: here
    # the flat wall above the jacket; until the flat tolerance came the shaded wall below
    # it too, and the distance was 2).
    assert by_id["a-copy"].distance == by_id["a"].distance <= 4 and by_id["t-a"].distance == 0 and by_id["t-a"].kept
    assert by_id["a-copy"].similarity == by_id["a"].similarity >= dedup.DEFAULT_MIN_SIMILARITY
    assert 0 <= by_id["v-a"].distance <= dedup.DEFAULT_THRESHOLD["phash"]
    assert not r.applied
    assert dup_ws.ledger.set_aside_images(rule="duplicate").empty  # report only: nothing changed
    html = Path(r.report_html).read_text()
    assert "data:image/jpeg;base64" in html and "Cross-split duplicates (2)" in html and "truncated" in html
    assert "labels: Jackets" in html and "labels: Casual Shirts" in html  # d1 and d2, by name (label ids 91, 38)
    csv_rows = Path(r.report_csv).read_text().splitlines()
    assert csv_rows[0].startswith("image_a,split_a,image_b") and len(csv_rows) - 1 == r.pairs
    # The files are now described in the ledger.
    row = dup_ws.ledger.image("c-small")
    assert row["sha256"] and row["bytes"] > 0 and (row["width"], row["height"]) == (200, 355)


def test_apply_restore_and_rerun_are_idempotent(dup_ws):
    ledger = dup_ws.ledger
    r = dedup.run(dup_ws, workers=1, apply=True)
    assert r.applied
    gone = ledger.set_aside_images(rule="duplicate")
    assert dict(zip(gone["image_id"], gone["status_reason"])) == {i: f"duplicate-of:{k}" for i, k in r.set_aside}
    events = len(ledger.events_frame())
    again = dedup.run(dup_ws, workers=1, apply=True)
    assert clusters_of(again) == EXPECTED  # set-aside duplicates still count
    assert again.set_aside == [] and len(ledger.events_frame()) == events  # nothing new to do
    back = restore(ledger, rule="duplicate")
    assert sorted(back.images) == sorted(i for i, _ in r.set_aside)
    assert ledger.set_aside_images(rule="duplicate").empty
    third = dedup.run(dup_ws, workers=1, apply=True)
    assert len(third.set_aside) == len(r.set_aside) and len(ledger.set_aside_images(rule="duplicate")) == len(r.set_aside)


def test_hash_cache_hashes_only_new_or_changed_files(dup_ws):
    first = dedup.run(dup_ws, workers=1, report=False)
    second = dedup.run(dup_ws, workers=1, report=False)
    assert (first.images_hashed, second.images_hashed, second.images_cached) == (READABLE, 0, READABLE)
    assert clusters_of(second) == clusters_of(first)
    # e becomes a copy of t-g: one file changed, one file hashed, a new cross-split pair.
    path = Path(dup_ws.ledger.image("e")["path"])
    path.write_bytes(Path(dup_ws.ledger.image("t-g")["path"]).read_bytes())
    third = dedup.run(dup_ws, workers=1, report=False)
    assert third.images_hashed == 1 and clusters_of(third)["t-g"] == {"t-g", "e"}
    # The unreadable files were not decoded again, and are still reported.
    assert {u["image_id"] for u in third.unreadable} == {"trunc", "empty", "text"}


def test_exact_only_decodes_nothing(dup_ws):
    r = dedup.run(dup_ws, workers=1, exact_only=True, report=False)
    assert r.images_hashed == 0 and r.method is None
    assert clusters_of(r) == {"a": {"a", "a-copy"}, "9": {"9", "10"}}
    assert r.cross_split == 0


def test_split_filter_and_keep_policy_override(dup_ws):
    train = dedup.run(dup_ws, workers=1, splits=["train"], report=False)
    assert clusters_of(train)["a"] == {"a", "a-copy"} and train.cross_split == 0
    # Without the split rule the full-size, best-quality copy of a wins, whatever its split.
    r = dedup.run(dup_ws, workers=1, keep="resolution,bytes", report=False)
    assert r.keep_policy == ("resolution", "bytes", "id")
    assert clusters_of(r)["a"] == EXPECTED["t-a"]
    with pytest.raises(IfaError, match="Unknown keep rule"):
        dedup.run(dup_ws, workers=1, keep="split,colour")


def test_bad_arguments_are_sentences(dup_ws):
    for kwargs, match in [({"splits": ["dev"]}, "Unknown split"), ({"method": "md5"}, "Unknown hash method"),
                          ({"threshold": 40}, "--threshold"), ({"workers": 0}, "--workers")]:
        with pytest.raises(IfaError, match=match):
            dedup.run(dup_ws, **kwargs)


def test_local_process_pool_gives_the_same_result(dup_ws, monkeypatch):
    monkeypatch.setattr(executors, "batch_size", lambda n, w, **kw: 4)  # several batches per worker
    r = dedup.run(dup_ws, workers=2, report=False)
    assert clusters_of(r) == EXPECTED and r.images_hashed == READABLE


def test_cached_files_are_only_stated_here_and_new_ones_hashed_by_the_pool(dup_ws, monkeypatch):
    # Train first: its files are cached; the full run then hashes only the other splits'
    # files (in the pool) and stats the cached ones in this process: same clusters.
    train = dedup.run(dup_ws, workers=2, splits=["train"], report=False)
    both = dedup.run(dup_ws, workers=2, report=False)
    assert 0 < train.images_hashed < READABLE
    assert (both.images_hashed, both.images_cached) == (READABLE - train.images_hashed, train.images_hashed)
    assert clusters_of(both) == EXPECTED

    # A rerun with everything cached never starts a process pool.
    def no_pool(workers):
        raise AssertionError("a rerun from the cache started a process pool")

    monkeypatch.setattr(executors, "process_pool", no_pool)
    again = dedup.run(dup_ws, workers=2, report=False)
    assert (again.images_hashed, again.images_cached) == (0, READABLE) and clusters_of(again) == EXPECTED


@pytest.fixture
def keep_environ():
    """distributed's LocalCluster sets OMP_NUM_THREADS=1 (and MKL/OpenBLAS) in this
    process's environment for its workers; later tests' subprocesses must not inherit it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.slow
def test_dask_cluster_on_loopback(dup_ws, monkeypatch, keep_environ):
    from distributed import LocalCluster

    monkeypatch.setattr(executors, "DASK_BATCH", 5)  # several tasks from 18 files
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        r = dedup.run(dup_ws, scheduler=cluster.scheduler_address, report=False)
    assert clusters_of(r) == EXPECTED and r.images_hashed == READABLE
    assert {u["image_id"] for u in r.unreadable} == {"trunc", "empty", "text"}
    assert dedup.run(dup_ws, workers=1, report=False).images_hashed == 0  # the cluster filled the cache


def test_unreachable_scheduler_is_an_error(dup_ws, monkeypatch):
    monkeypatch.setattr(executors, "DASK_CONNECT_TIMEOUT", "1s")
    with pytest.raises(IfaError, match="Could not reach the Dask scheduler"):
        dedup.run(dup_ws, scheduler="tcp://127.0.0.1:9")


def test_cli_json_shape_and_apply(tmp_path: Path, cli):
    ws = make_workspace(tmp_path)
    root = str(ws.root)
    ws.close()
    data = cli.json("curate", "dedup", "--workspace", root, "--workers", "1", "--json")
    assert set(data) == {"images_hashed", "unreadable", "clusters", "cross_split", "label_conflicts", "possible_copies",
                         "check_by_eye", "left_by_hand", "redecoded_pairs", "redecode_seconds", "applied"}
    assert all(set(x) == {"image_id", "keep", "similarity"} for x in data["check_by_eye"])
    assert data["left_by_hand"] == []
    assert data["images_hashed"] == READABLE and data["applied"] is False
    # What the near misses cost is part of the output (the README's speed table reads it).
    assert isinstance(data["redecoded_pairs"], int) and data["redecode_seconds"] >= 0
    assert data["cross_split"] == 3 and data["label_conflicts"] == 1
    assert all(set(u) == {"image_id", "reason"} for u in data["unreadable"])
    assert all(set(c) == {"keep", "members"} for c in data["clusters"])
    assert all(set(m) == {"image_id", "split", "distance"} for c in data["clusters"] for m in c["members"])
    assert {c["keep"] for c in data["clusters"]} == set(EXPECTED)
    applied = cli("curate", "dedup", "--workspace", root, "--workers", "1", "--apply")
    assert applied.exit_code == 0, applied.output
    assert "report:" in applied.stdout and "would set aside" not in applied.stdout
    back = cli("curate", "restore", "--rule", "duplicate", "--workspace", root, "--json")
    assert back.exit_code == 0 and len(json.loads(back.stdout)["images"]) == 7
    bad = cli("curate", "dedup", "--workspace", root, "--threshold", "99")
    assert bad.exit_code != 0


def test_a_file_deleted_after_hashing_is_reported_and_pairs_with_nothing(dup_ws):
    dedup.run(dup_ws, workers=1, report=False)
    Path(dup_ws.ledger.image("a-copy")["path"]).unlink()
    r = dedup.run(dup_ws, workers=1, report=False)
    assert {"image_id": "a-copy", "reason": "missing-file"} in [{k: u[k] for k in ("image_id", "reason")} for u in r.unreadable]
    assert clusters_of(r)["t-a"] == {"t-a", "v-a", "a"}


def test_label_lookup_leaves_no_transaction_open(dup_ws):
    # active_labels fills a temp table inside a savepoint: released whether or not the
    # caller holds a transaction, and the same labels either way.
    from ifa.curation.ledger import hashes as store

    ledger = dup_ws.ledger
    ids = ["d1", "d2", "a", "no-such-id"]
    first = store.active_labels(ledger, ids)
    assert first and not ledger.conn.in_transaction
    with ledger.transaction():
        assert store.active_labels(ledger, ids) == first
    assert not ledger.conn.in_transaction and store.active_labels(ledger, ids) == first
