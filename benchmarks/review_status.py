"""`ifa review status` on a large synced round, read from the ledger only (no server).

    python -m benchmarks.review_status --images 600 --images 50000

Builds a workspace whose ledger holds what `sync` leaves after a two-annotator round:
N validation images, gold 5% in both queues, two answers per image (annotator 2 swaps
15% of annotator 1's labels within their group; `benchmarks.synthetic`). Then times
`status` three times: the first computes the aggregation, the next ones find it cached
in the ledger; then one synced answer more, and `status` again (recomputes).
CPU seconds are given beside wall seconds: the dev machine's load varies.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ifa.annotation import status
from ifa.annotation.answers import to_result
from ifa.curation.ingest import importing
from ifa.curation.ledger.review import ReviewStore, annotator_role
from ifa.curation.workspace import Workspace
from ifa.taxonomy import Taxonomy

from .review_scale import lists_of, noisy
from .synthetic import write_challenge

TAX = Taxonomy.default()
EMAILS = ("a1@bench.invalid", "a2@bench.invalid")


def build(root: Path, n: int) -> Workspace:
    """A workspace with a synced two-annotator round over n images plus 5% gold."""
    n_gold = max(1, n // 20)
    ws = Workspace.init(root / "ws", command="bench")
    importing.import_imat(ws, write_challenge(root / "validation.json", n + n_gold, seed=1, split="validation"),
                          "validation")
    ids = [str(i + 1) for i in range(n + n_gold)]
    images, gold = ids[:n], ids[n:]
    first = lists_of(n + n_gold, 1)
    second = noisy(first, 7)
    store = ReviewStore(ws.ledger)
    rid = store.create_round("bench-status", "validation", "http://127.0.0.1:1")
    store.add_images(rid, images)
    store.set_gold(rid, {g: first[n + k] for k, g in enumerate(gold)})
    next_id = 1
    for k, (email, answers) in enumerate(zip(EMAILS, (first, second))):
        role = annotator_role(k)
        store.set_project(rid, role, email, 100 + k, 10 + k, f"bench {role}")
        store.record_tasks(rid, role, ((i, 1_000_000 * (k + 1) + j) for j, i in enumerate(ids)))
        rows = [{"ls_annotation_id": next_id + j, "role": role, "image_id": i, "ls_task_id": 1_000_000 * (k + 1) + j,
                 "completed_by": 100 + k, "by_annotator": True, "result": to_result(answers[j], TAX),
                 "labels": answers[j], "discard": False, "skipped": False, "problems": "", "lead_time": 9.0,
                 "created_at": "2026-01-01T00:00:00.000000Z", "updated_at": "2026-01-01T00:00:00.000000Z"}
                for j, i in enumerate(ids)]
        store.upsert_annotations(rid, rows)
        next_id += len(ids)
    store.mark_complete(rid)
    return ws


def timed(ws: Workspace) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    status.status(ws, "bench-status")
    return {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3)}


def one_more_answer(ws: Workspace) -> None:
    """annotator 1 edits their first answer (a new updated_at): what a sync stores."""
    store = ReviewStore(ws.ledger)
    rid = int(store.round("bench-status")["round_id"])
    row = store.annotations(rid).iloc[0]
    labels = [int(x) for x in row["labels"]][:-1] or [int(TAX.label_ids[0])]
    store.upsert_annotations(rid, [{"ls_annotation_id": int(row["ls_annotation_id"]), "role": row["role"],
                                    "image_id": row["image_id"], "ls_task_id": int(row["ls_task_id"]),
                                    "completed_by": 100, "by_annotator": True, "result": to_result(labels, TAX),
                                    "labels": labels, "discard": False, "skipped": False, "problems": "",
                                    "lead_time": 9.0, "created_at": "2026-01-01T00:00:00.000000Z",
                                    "updated_at": "2026-01-02T00:00:00.000000Z"}])


def run(n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ws = build(Path(tmp), n)
        out = {"images": n, "build_s": round(time.perf_counter() - t, 1),
               "status": [timed(ws) for _ in range(3)]}
        one_more_answer(ws)
        out["after_new_answer"] = timed(ws)
        out["again"] = timed(ws)
        ws.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, action="append", help="round size (repeatable; default 600)")
    args = ap.parse_args()
    for n in args.images or [600]:
        print(json.dumps(run(n)), flush=True)


if __name__ == "__main__":
    main()
