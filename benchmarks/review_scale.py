"""`ifa review` at the paper's scale, against a real embedded Label Studio.

    python -m benchmarks.review_scale                    # ~4-6 min on the 2-core dev machine
    python -m benchmarks.review_scale --test 5000 --sync 2000 --pairs 20000   # quick look

Targets:
- create a round over 39,706 images (the paper's test split) for a pool of 10 annotators,
  two per image, gold 5%: ten projects, 79,412 tasks plus ~3,970 gold tasks, every task
  id in the ledger, in <= 60 s;
- sync 10,000 images with two annotations each (20,000 annotations in the pool's ten
  projects) into the ledger in <= 30 s; a rerun with nothing new in <= 10% of that;
- status and report (HTML + PNGs) over the synced round in <= 10 s each (also timed on
  the 39,706-image round);
- agreement (every group's statistics and the confused pairs) over 100,000 annotation
  pairs in <= 5 s.

Peers, in the same run:
- create: one task per import request (what a naive script does), timed on a sample of
  tasks and extrapolated linearly to the round's tasks;
- sync: the SDK's straightforward listing, `tasks.list(project, fields="all")`, timed on
  the first tasks of the project and extrapolated linearly (`--full-peers` runs it all);
- rerun of sync: a full listing of every annotated task (`sync_round(full=True)`, what
  every sync did before the incremental sync);
- agreement: sklearn's `cohen_kappa_score` looped per single-label group and per label of
  the multi-label groups on all pairs (results must match ifa's), and nltk's
  `AnnotationTask.alpha` with `masi_distance` on a sample (it is quadratic in the pairs;
  extrapolated quadratically).

Labels are `benchmarks.synthetic.label_pairs` (Table 1 group shares, 5.8 labels per
image); annotator 2 swaps 15% of annotator 1's labels within their group. Sync's
annotations are imported with the tasks (`completed_by` = the project's annotator), the
only way to put 20,000 annotations into Label Studio in seconds; they are then read
exactly as people's answers would be.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ifa.annotation import agreement, annotators, assignment, projects, rounds, server, status, sync
from ifa.annotation import report as review_report
from ifa.annotation.answers import to_result
from ifa.annotation.client import Client, connection_for
from ifa.annotation.files import task_data
from ifa.curation.ingest import importing
from ifa.curation.ledger.review import ReviewStore, annotator_role
from ifa.curation.workspace import Workspace
from ifa.taxonomy import Taxonomy, labeling_config

from .synthetic import challenge_json, label_pairs

TAX = Taxonomy.default()
POOL = [f"bench-{k}@ifa.local" for k in range(10)]
TIEBREAKERS = ["bench-tb1@ifa.local", "bench-tb2@ifa.local"]
EMAILS = POOL + TIEBREAKERS


def noisy(lists: list[list[int]], seed: int, swap: float = 0.15) -> list[list[int]]:
    """Annotator 2: each label swapped for another of its group with probability `swap`."""
    rng = np.random.default_rng(seed)
    groups = {g.name: np.array(g.label_ids) for g in TAX.groups}
    out = []
    for labels in lists:
        new = []
        for lab in labels:
            if rng.random() < swap:
                pool = groups[TAX.labels[lab].group]
                lab = int(pool[rng.integers(len(pool))])
            new.append(lab)
        out.append(sorted(set(new)))
    return out


def lists_of(n: int, seed: int) -> list[list[int]]:
    img, lab = label_pairs(n, seed)
    bounds = np.searchsorted(img, np.arange(n + 1))
    return [lab[bounds[i]:bounds[i + 1]].astype(int).tolist() for i in range(n)]


# ---- 1. create ----------------------------------------------------------------------------------
def bench_create(ws: Workspace, client: Client, peer_sample: int, pool: int, gold_ids: list[str]) -> dict:
    people = POOL[:pool]
    start = time.perf_counter()
    res = rounds.create_round(ws, split="test", annotators=people, tiebreaker=TIEBREAKERS, name="bench-test",
                              gold_ids=gold_ids, gold_rate=0.05, client=client)
    seconds = time.perf_counter() - start
    tasks = sum(res.tasks_added.values())
    start = time.perf_counter()
    again = rounds.create_round(ws, split="test", annotators=people, tiebreaker=TIEBREAKERS, name="bench-test",
                                gold_ids=gold_ids, gold_rate=0.05, client=client)
    rerun = time.perf_counter() - start
    assert sum(again.tasks_added.values()) == 0
    store = ReviewStore(ws.ledger)
    rid = int(store.round("bench-test")["round_id"])
    counts = store.task_counts(rid)
    plan = store.assignments(rid)
    regular = plan[plan["gold"] == 0].groupby("role").size()
    gold = plan[plan["gold"] == 1].groupby("role").size()
    assert sum(counts.values()) == tasks == len(plan), (counts, tasks, len(plan))
    assert regular.sum() == 2 * res.images and regular.max() - regular.min() <= 1
    assert all(gold[r] == assignment.gold_count(int(regular[r]), 0.05) for r in regular.index)
    start = time.perf_counter()
    st = status.status(ws, "bench-test")
    status_s = time.perf_counter() - start
    start = time.perf_counter()
    review_report.report(ws, "bench-test")
    report_s = time.perf_counter() - start
    assert len(st.pending) == tasks

    # Peer: one task per request into a scratch project.
    proj = client.request("POST", "api/projects/", "peer project", json={"title": "peer one-per-request",
                          "label_config": labeling_config(TAX)}, idempotent=False)
    start = time.perf_counter()
    for i in range(peer_sample):
        client.request("POST", f"api/projects/{proj['id']}/import", "peer import", params={"return_task_ids": "true"},
                       json=[{"data": {"image": f"https://example.invalid/{i}.jpg", "image_id": f"peer-{i}"}}],
                       idempotent=False)
    per_task = (time.perf_counter() - start) / peer_sample
    return {"images": res.images, "tasks": tasks, "gold_tasks": int(gold.sum()), "pool": pool, "seconds": seconds,
            "rerun_seconds": rerun, "status_seconds": status_s, "report_seconds": report_s,
            "load_min": int(regular.min()), "load_max": int(regular.max()),
            "peer_seconds": per_task * tasks, "peer_sample": peer_sample}


# ---- 2. sync ------------------------------------------------------------------------------------
def _sync_round(ws: Workspace, client: Client, n: int, pool: int) -> tuple[list[str], dict, dict, dict[str, int], float]:
    """A pool round over n validation images whose tasks are imported with their two
    annotations. Returns (image ids, first answers, second answers, role -> project id,
    setup seconds)."""
    store = ReviewStore(ws.ledger)
    rid = store.create_round("bench-sync", "validation", client.url)
    store.set_pool(rid, TIEBREAKERS, 2, None)
    ids = ws.ledger.images_frame(["validation"])["image_id"].tolist()[:n]
    store.add_images(rid, ids)
    labels = ws.ledger.labels_frame(["validation"])
    by_image = labels.groupby("image_id")["label_id"].agg(lambda s: sorted(int(x) for x in s)).to_dict()
    first = [by_image.get(i, []) for i in ids]
    second = dict(zip(ids, noisy(first, 7)))
    first = dict(zip(ids, first))
    plan = assignment.assign_images(ids, pool, 2, seed="bench-sync")
    users = {u["email"]: int(u["id"]) for u in client.users()}
    files = task_data(ws, store.image_sources(rid), client.conn)
    data, roots = files.data, files.roots
    setup = time.perf_counter()
    project_of = {}
    for k, email in enumerate(POOL[:pool]):
        role = annotator_role(k)
        mine = [i for i in ids if k in plan[i]]
        store.add_assignments(rid, [(role, i, False, float(p)) for p, i in enumerate(mine)])
        pid = projects.ensure_project(client, store, rid, "bench-sync", role, email, users[email], roots,
                                    labeling_config(TAX))
        extra = {i: {"annotations": [{"result": to_result(first[i] if plan[i][0] == k else second[i], TAX),
                                      "completed_by": users[email], "lead_time": 9.0}]} for i in mine}
        projects.import_missing(client, store, rid, role, pid, {i: data[i] for i in mine}, extra=extra)
        project_of[role] = pid
    return ids, first, second, project_of, time.perf_counter() - setup


def _timed(fn, *args, **kwargs):
    """(fn's result, wall seconds it took)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def _sdk_listing(client: Client, project_of: dict[str, int], take: int, full_peer: bool) -> tuple[float, int]:
    """The peer: the SDK's plain listing with annotations. Returns (seconds, tasks listed)."""
    start = time.perf_counter()
    got = 0
    for pid in project_of.values():
        for task in client.sdk.tasks.list(project=pid, fields="all"):
            got += 1
            if not full_peer and got >= take:
                break
        if not full_peer and got >= take:
            break
    return time.perf_counter() - start, got


def bench_sync(ws: Workspace, client: Client, n: int, peer_tasks: int, full_peer: bool, pool: int) -> dict:
    """A pool round over n validation images, two per image, whose 2n annotations are
    imported with the tasks (annotator 1 of each image gives the current labels, the
    other swaps 15% of them), then synced."""
    ids, first, second, project_of, setup = _sync_round(ws, client, n, pool)
    res, seconds = _timed(sync.sync_round, ws, "bench-sync", client)
    empty = sum(not first[i] for i in ids) + sum(not second[i] for i in ids)  # a synthetic image may have no labels
    assert res.new == 2 * n and res.invalid == empty and res.wrong_annotator == 0, res
    again, rerun = _timed(sync.sync_round, ws, "bench-sync", client)
    assert again.new == again.updated == 0, again  # fetched: only what the 1 s safety margin re-reads
    full, full_rerun = _timed(sync.sync_round, ws, "bench-sync", client, full=True)
    assert full.new == full.updated == 0 and full.fetched == 2 * n
    st, status_s = _timed(status.status, ws, "bench-sync")
    rep, report_s = _timed(review_report.report, ws, "bench-sync")
    peer_s, got = _sdk_listing(client, projects, 2 * n if full_peer else min(peer_tasks, n), full_peer)
    return {"images": n, "annotations": res.new, "seconds": seconds, "rerun_seconds": rerun,
            "rerun_fetched": again.fetched,
            "full_rerun_seconds": full_rerun, "setup_seconds": setup, "status_seconds": status_s,
            "report_seconds": report_s, "report": rep.html, "peer_seconds": peer_s / got * 2 * n, "peer_tasks": got,
            "category_kappa": st.agreement["category"]["kappa"]}


# ---- 3. agreement ------------------------------------------------------------------------------
def bench_agreement(pairs: int, nltk_sample: int) -> dict:
    a = lists_of(pairs, 11)
    b = noisy(a, 12)
    start = time.perf_counter()
    A, B = agreement.label_matrix(a, TAX), agreement.label_matrix(b, TAX)
    groups = agreement.group_agreement(A, B, TAX)
    confused = agreement.confused_pairs(A, B, TAX)
    seconds = time.perf_counter() - start

    # The same kappas alone, for a like-for-like comparison with the sklearn loop.
    start = time.perf_counter()
    for g, group in enumerate(TAX.groups):
        cols = np.flatnonzero(TAX.group_index == g)
        if group.single:
            agreement.cohen_kappa(agreement.group_codes(A, cols), agreement.group_codes(B, cols), len(cols) + 1)
        else:
            agreement.binary_kappa(A[:, cols], B[:, cols])
    kappa_seconds = time.perf_counter() - start

    from sklearn.metrics import cohen_kappa_score
    start = time.perf_counter()
    sk = {}
    for g, group in enumerate(TAX.groups):
        cols = np.flatnonzero(TAX.group_index == g)
        if group.single:
            sk[group.name] = cohen_kappa_score(agreement.group_codes(A, cols), agreement.group_codes(B, cols))
        else:
            used = cols[(A[:, cols] | B[:, cols]).any(axis=0)]
            sk[group.name] = [cohen_kappa_score(A[:, j], B[:, j]) for j in used]
    sk_seconds = time.perf_counter() - start
    for group in TAX.groups:  # same numbers, or the comparison is void
        mine = groups[group.name]
        want = sk[group.name]
        got = mine["kappa"] if group.single else list(mine["label_kappa"].values())
        assert np.allclose(got, want, equal_nan=True), group.name

    nltk_seconds = None
    try:
        from nltk.metrics.agreement import AnnotationTask
        from nltk.metrics.distance import masi_distance
        m = nltk_sample
        color = np.flatnonzero(TAX.group_index == TAX.group_names.index("color"))
        data = []
        for coder, M in (("a", A), ("b", B)):
            for i in range(m):
                s = frozenset(np.flatnonzero(M[i, color]).tolist()) or frozenset({-1})  # nltk cannot take empty sets
                data.append((coder, i, s))
        start = time.perf_counter()
        AnnotationTask(data, distance=masi_distance).alpha()
        one = time.perf_counter() - start
        multi = sum(1 for g in TAX.groups if not g.single)
        nltk_seconds = one * (pairs / m) ** 2 * multi  # quadratic in pairs, once per multi-label group
    except ImportError:
        pass
    return {"pairs": pairs, "seconds": seconds, "kappa_seconds": kappa_seconds, "sklearn_seconds": sk_seconds, "nltk_seconds": nltk_seconds,
            "nltk_sample": nltk_sample, "top_confused": confused.head(3).to_dict("records"),
            "alpha_color": groups["color"]["alpha_masi"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--test", type=int, default=39706, help="images in the created round (paper's test: 39,706)")
    ap.add_argument("--sync", type=int, default=10000, help="images synced, two annotations each")
    ap.add_argument("--pool", type=int, default=10, help="annotators in the pool (two per image)")
    ap.add_argument("--gold", type=int, default=2000, help="validation images offered as gold to the test round")
    ap.add_argument("--pairs", type=int, default=100000, help="annotation pairs for agreement")
    ap.add_argument("--peer-sample", type=int, default=200, help="tasks imported one per request by the create peer")
    ap.add_argument("--peer-tasks", type=int, default=2000, help="tasks listed by the sync peer before extrapolating")
    ap.add_argument("--nltk-sample", type=int, default=1000, help="pairs given to nltk's alpha before extrapolating")
    ap.add_argument("--full-peers", action="store_true", help="run the sync peer over every task")
    ap.add_argument("--keep", type=Path, help="keep the workspace and Label Studio data here")
    ap.add_argument("--json", action="store_true", help="also print every number as JSON")
    args = ap.parse_args()

    out = {}
    out["agreement"] = bench_agreement(args.pairs, args.nltk_sample)
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="review-scale-"))
    ws = Workspace.init(tmp / "ws", command="benchmark")
    for split, n, seed in (("test", args.test, 1), ("validation", args.sync, 2)):
        # Test has no labels (as in the challenge); validation's are annotator 1's answers.
        # Ids get the split as prefix: the synthetic files number every split from 1.
        doc = challenge_json(n, seed=seed, split=split)
        for item in doc["images"] + doc.get("annotations", []):
            item["imageId"] = f"{split[0]}{item['imageId']}"
        path = tmp / f"{split}.json"
        path.write_text(json.dumps(doc))
        result = importing.import_imat(ws, path, split)
        assert result.images_added == n, result
    start = time.perf_counter()
    root = server.server_dir(ws.root)
    server.start(root, port=server.free_port(), die_with_parent=True)
    out["server_start_seconds"] = time.perf_counter() - start
    try:
        client = Client(connection_for(ws.root))
        annotators.add(ws, client, EMAILS)
        gold_ids = ws.ledger.images_frame(["validation"])["image_id"].tolist()[-args.gold:]
        out["create"] = bench_create(ws, client, args.peer_sample, args.pool, gold_ids)
        out["sync"] = bench_sync(ws, client, args.sync, args.peer_tasks, args.full_peers, args.pool)
    finally:
        server.stop(root)
    out["peak_rss_mb_ifa_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report(out, args)


def report(out: dict, args) -> None:
    c, s, a = out["create"], out["sync"], out["agreement"]
    rows = [
        (f"create: {c['images']:,} images, pool of {c['pool']}, {c['tasks']:,} tasks ({c['gold_tasks']:,} gold)",
         c["seconds"], 60, f"one task per request ({c['peer_sample']} timed, extrapolated)", c["peer_seconds"]),
        ("  rerun of create (nothing missing)", c["rerun_seconds"], None, "", None),
        ("  status over the created round", c["status_seconds"], 10, "", None),
        ("  report over the created round", c["report_seconds"], 10, "", None),
        (f"sync: {s['images']:,} images x 2 = {s['annotations']:,} annotations", s["seconds"], 30,
         f"SDK tasks.list(fields='all') ({s['peer_tasks']:,} tasks timed, extrapolated)", s["peer_seconds"]),
        (f"  rerun of sync (nothing new; {s['rerun_fetched']} re-read)", s["rerun_seconds"], round(0.1 * s["seconds"], 1),
         "full listing of every annotated task (sync before issue 13)", s["full_rerun_seconds"]),
        ("  status over the synced round", s["status_seconds"], 10, "", None),
        ("  report over the synced round", s["report_seconds"], 10, "", None),
        (f"agreement: {a['pairs']:,} pairs, 8 groups + confused pairs", a["seconds"], 5,
         f"nltk alpha+MASI ({a['nltk_sample']:,} pairs timed, x(n/m)^2, 4 groups)", a["nltk_seconds"]),
        ("  of which the kappas alone", a["kappa_seconds"], None,
         "sklearn cohen_kappa_score per group/label (all pairs, same values)", a["sklearn_seconds"]),
    ]
    print()
    print(f"{'step':60} {'ifa s':>8} {'target':>8}  {'peer':70} {'peer s':>9}")
    for step, t, target, peer, pt in rows:
        ts = "" if t is None else f"{t:8.1f}"
        tg = "" if target is None else f"<= {target}"
        ps = "" if pt is None else f"{pt:9.1f}"
        ok = "" if t is None or target is None else ("  ok" if t <= target else "  MISSED")
        print(f"{step:60} {ts:>8} {tg:>8}  {peer:70} {ps:>9}{ok}")
    print()
    print(f"create: task load per annotator {c['load_min']:,}-{c['load_max']:,}; report {s['report']}")
    print(f"server first start {out['server_start_seconds']:.0f} s (not part of any target); sync setup "
          f"(import of tasks with annotations) {s['setup_seconds']:.0f} s; category kappa of the synthetic annotators "
          f"{s['category_kappa']:.3f}; color alpha (MASI) {a['alpha_color']:.3f}; peak RSS of this process "
          f"{out['peak_rss_mb_ifa_process']:.0f} MB; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.json:
        print(json.dumps(out, default=float, indent=2))


if __name__ == "__main__":
    sys.exit(main())
