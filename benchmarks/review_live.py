"""Review cost through the real Label Studio path: the round a user runs, answered by
simulated annotators through the API as themselves.

    python -m benchmarks.review_cost --live --data ../shared/data/myntra-products --seeds 1

Per dataset (the same images, gold and truth as the offline run of the same seed,
`review_cost.run`): the picked rows' real labels are imported with `import csv` into a
fresh workspace (split validation), an embedded Label Studio is started (or the one
given), and the round runs through the library calls the CLI makes: `create` (a pool of
six, two per image, gold 5%), six simulated annotators answering with the error tables
of `annotation.simulate.ERROR_TABLES`, `sync`. The synced workspace is then copied and
the two tie-break rules run on the same answers: `tiebreak --when any` in one copy and
`--when uncertain` in the other, careful tie-breakers answering the groups asked through
the API, `sync`, `finalize --apply`. Scored: the ledger's labels after finalize against
the truth, on the round's images.
"""

from __future__ import annotations

import csv
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ifa.annotation import finalize, rounds, server, simulate, state, sync, tiebreak
from ifa.annotation.client import Client, Connection
from ifa.curation.ingest import importing
from ifa.curation.ledger.review import ReviewStore
from ifa.curation.workspace import Workspace
from ifa.taxonomy import Taxonomy

from .review_cost import POOL, Outcome, read_truth

TIEBREAKERS = ("tb1", "tb2")


@dataclass
class LiveOutcome(Outcome):
    """One tie-break rule's round on the real server (review_cost.Outcome's columns: the
    labels left after finalize against the truth, what the tie-breakers answered), plus the
    Label Studio annotations of the whole round (gold and tie-breaks included)."""

    annotations: int = 0


@dataclass
class Submitted:
    """What the simulated annotators posted, keyed (email, image_id) -> label ids."""

    answers: dict

    def chooser(self, email: str, inner: simulate.Chooser) -> simulate.Chooser:
        def choose(image_id, current):
            labels, discard = inner(image_id, current)
            self.answers[email, image_id] = tuple(sorted(int(x) for x in labels))
            return labels, discard
        return choose


def pick(data: Path, images: int, gold_rate: float, seed: int, taxonomy: Taxonomy):
    """The offline run's sample (`review_cost.run`, same seed): (round ids, gold ids, truth {id: labels})."""
    ids, labels = read_truth(data, taxonomy)
    rng = np.random.default_rng(seed)
    n_gold = max(1, round(gold_rate * images))
    chosen = rng.choice(len(ids), size=images + n_gold, replace=False)
    truth = {ids[k]: labels[k] for k in chosen}
    order = [ids[k] for k in chosen]
    return order[:images], order[images:], truth


def import_truth(ws: Workspace, data: Path, truth: dict) -> None:
    """Import the picked rows (their photo and real labels, as label ids) with `import csv`.
    The photos are copied beside the CSV: the importer refuses paths outside its folder."""
    files = {}
    with open(data / "labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            files[row.get("image_id") or row["id"]] = data / row["image_file"]
    folder = ws.root.parent / f"{ws.root.name}-photos"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with open(folder / "truth.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["image_file", "image_id", "labels"])
        for image_id, labels in truth.items():
            shutil.copyfile(files[image_id], folder / "images" / files[image_id].name)
            out.writerow([f"images/{files[image_id].name}", image_id, "|".join(map(str, labels))])
    result = importing.import_csv(ws, folder / "truth.csv", "validation", image_col="image_file", labels_col="labels",
                                  id_col="image_id", on_error="fail")
    assert result.images_added == len(truth) and result.labels_added == sum(map(len, truth.values())), result


def people(ws: Workspace, client: Client, root: Path, tag: str) -> dict[str, simulate.SimulatedAnnotator]:
    """The pool (review_cost.POOL's kinds, in order) and the tie-breakers, as simulated users."""
    names = [f"{kind}-{k}" for k, kind in enumerate(POOL)] + list(TIEBREAKERS)
    return {n: simulate.annotator(ws, client, simulate.email(f"live-{tag}-{n}"), secrets_dir=root) for n in names}


def answer_pool(ws: Workspace, client: Client, round_name: str, sims: dict, truth: dict, seed: int,
                submitted: Submitted) -> None:
    """Every annotator of the pool answers their queue through the API, with their kind's error table."""
    view = state.load(ReviewStore(ws.ledger), round_name)
    role_of = {view.email(r): r for r in view.annotator_roles}
    for k, kind in enumerate(POOL):
        who = sims[f"{kind}-{k}"]
        inner = simulate.table_chooser(ws.taxonomy, simulate.ERROR_TABLES[kind], seed=1000 * seed + k, truth=truth)
        simulate.answer_role(ws, client.url, who, role_of[who.email], submitted.chooser(who.email, inner), round_name)


def answer_tiebreaks(ws: Workspace, client: Client, round_name: str, sims: dict, truth: dict, seed: int,
                     submitted: Submitted) -> None:
    """Careful tie-breakers answer only the groups their task asks (all eight under `any`)."""
    store = ReviewStore(ws.ledger)
    view = state.load(store, round_name)
    asked = store.tiebreak_groups(view.round_id)
    careful = simulate.ERROR_TABLES["careful"]

    def inner(image_id, current):
        rng = np.random.default_rng([seed, len(image_id), sum(map(ord, image_id)), 13])
        groups = asked.get(image_id)
        mine = simulate.slip(truth[image_id], ws.taxonomy, careful, rng, groups=groups or None)
        if mine or (groups and len(groups) < len(ws.taxonomy.group_names)):
            return mine, False  # nothing in the groups asked is a valid answer: none applies
        # Asked all eight (`any`), an empty answer is a slip sync counts invalid: look again.
        return (simulate.slip(truth[image_id], ws.taxonomy, careful, rng) or list(truth[image_id])), False

    for name in TIEBREAKERS:
        who = sims[name]
        role = next((r for r in view.tiebreak_roles if view.email(r) == who.email), None)
        if role is not None:
            simulate.answer_role(ws, client.url, who, role, submitted.chooser(who.email, inner), round_name)


def mismatches(ws: Workspace, round_name: str, submitted: Submitted) -> int:
    """Answers whose synced labels differ from what was posted (or are missing)."""
    view = state.load(ReviewStore(ws.ledger), round_name)
    synced = {(view.email(r), i): a.labels for r, per in view.answers.items() for i, a in per.items()}
    return sum(synced.get(key) != labels for key, labels in submitted.answers.items())


def final_score(ws: Workspace, round_ids: list[str], truth: dict) -> tuple[float, float, int]:
    """Label-level precision, recall and errors (false + missed) of the ledger's labels after finalize."""
    frame = ws.ledger.labels_frame(["validation"])
    now = frame.groupby("image_id")["label_id"].agg(lambda s: {int(x) for x in s}).to_dict()
    tp = fp = fn = 0
    for image_id in round_ids:
        have, want = now.get(image_id, set()), set(truth[image_id])
        tp, fp, fn = tp + len(have & want), fp + len(have - want), fn + len(want - have)
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1), fp + fn


def run_rule(ws: Workspace, client: Client, round_name: str, rule: str, min_confidence: float, sims: dict,
             truth: dict, round_ids: list[str], seed: int, submitted: Submitted) -> LiveOutcome:
    """`tiebreak --when rule`, the tie-breakers' answers, `sync`, `finalize --apply`; scored."""
    t0 = time.perf_counter()
    sent = tiebreak.tiebreak(ws, round_name, client=client, when=rule, min_confidence=min_confidence)
    answer_tiebreaks(ws, client, round_name, sims, truth, seed, submitted)
    sync.sync_round(ws, round_name, client)
    done = finalize.finalize(ws, round_name, apply=True)
    assert done.applied and not done.undecided, done.undecided
    p, r, e = final_score(ws, round_ids, truth)
    annotations = len(ReviewStore(ws.ledger).annotations(state.load(ReviewStore(ws.ledger), round_name).round_id))
    n = len(round_ids)
    return LiveOutcome(f"live {rule}", round(p, 4), round(r, 4), e, sent.disagreements, sent.groups,
                       round(16 + sent.groups / n, 3), round(time.perf_counter() - t0, 1), annotations)


def client_for(root: Path) -> Client:
    st = server.read_state(root)
    return Client(Connection(st.url, st.token, embedded_root=root), retries=2, backoff=0.2)


def live(data: Path, images: int, gold_rate: float, min_confidence: float, seed: int, workdir: Path,
         root: Path | None = None) -> dict:
    """The round on a real Label Studio (`root`: a running embedded server's folder; None
    starts one under workdir and stops it at the end). Returns the table's data: per rule a
    LiveOutcome, plus the answers that synced differently from what was posted (0 expected)."""
    tax = Taxonomy.default()
    round_ids, gold_ids, truth = pick(data, images, gold_rate, seed, tax)
    tag = secrets.token_hex(3)  # users, round and projects of this run only, on a shared server
    name = f"live-{tag}"
    ws_any = Workspace.init(workdir / f"ws-{tag}-any", command="benchmark")
    started = root is None
    if started:
        root = server.server_dir(ws_any.root)
        server.start(root, port=server.free_port(), die_with_parent=True)
    submitted = Submitted({})
    try:
        client = client_for(root)
        t0 = time.perf_counter()
        import_truth(ws_any, data, truth)
        sims = people(ws_any, client, root, tag)
        rounds.create_round(ws_any, split="validation", annotators=[s.email for k, s in sims.items() if k not in TIEBREAKERS],
                            tiebreaker=[sims[k].email for k in TIEBREAKERS], image_ids=round_ids, gold_ids=gold_ids,
                            gold_rate=gold_rate, name=name, client=client)
        answer_pool(ws_any, client, name, sims, truth, seed, submitted)
        sync.sync_round(ws_any, name, client)
        setup = time.perf_counter() - t0
        pool_mismatch = mismatches(ws_any, name, submitted)
        ws_any.close()
        # The same synced answers under the other rule: a copy of the workspace (ledger and all).
        shutil.copytree(workdir / f"ws-{tag}-any", workdir / f"ws-{tag}-uncertain", symlinks=True,
                        ignore=shutil.ignore_patterns("labelstudio"))
        outcomes, tb_mismatch, posted = [], 0, len(submitted.answers)
        for rule in ("any", "uncertain"):
            mine = Submitted(dict(submitted.answers))  # the pool's answers, and this rule's tie-breaks
            with Workspace.open(workdir / f"ws-{tag}-{rule}", command="benchmark") as ws:
                outcomes.append(run_rule(ws, client, name, rule, min_confidence, sims, truth, round_ids, seed, mine))
                tb_mismatch += mismatches(ws, name, mine)
                posted += len(mine.answers) - len(submitted.answers)
                if rule == "any":
                    _drop_tiebreak_projects(ws, client, name)
    finally:
        if started:
            server.stop(root)
    return {"data": str(data), "images": images, "gold": len(gold_ids), "round": name, "setup_seconds": round(setup, 1),
            "posted": posted, "mismatched_pool": pool_mismatch, "mismatched_after": tb_mismatch,
            "outcomes": [asdict(o) for o in outcomes]}


def _drop_tiebreak_projects(ws: Workspace, client: Client, round_name: str) -> None:
    # The copy's `tiebreak` would adopt these projects by their description marker (same
    # round name); deleting them lets it make its own, as on a server that never saw them.
    view = state.load(ReviewStore(ws.ledger), round_name)
    for role in view.tiebreak_roles:
        client.request("DELETE", f"api/projects/{view.projects[role].ls_project_id}/", "dropping a tie-break project",
                       idempotent=False)
