"""Review that costs fewer human answers, against the real Label Studio of the session.

A pool of four simulated annotators (three careful, one careless: the benchmark's error
tables, `simulate.ERROR_TABLES`), two per image, gold in every queue, answering the
sample's real labels; a round tie-broken with `--when uncertain`. The tests run in file
order and build on each other:

  weigh    -> gold anchors reliability, the careless annotator's votes count for less
  tiebreak -> only the groups in doubt go to a tie-breaker, the task names only those
  status   -> pending tie-break entries carry their groups; per annotator reliability
  finalize -> the tie-breaker's answer counts only in the groups asked, the rest is the
              aggregated decision; finalizing twice changes nothing; restore undoes it
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from ifa.annotation import consensus, finalize, prefill, reassign, rounds, server, simulate, state, status, sync, tiebreak
from ifa.annotation.answers import parse_result
from ifa.annotation.client import Client, Connection
from ifa.annotation.quality import by_group
from ifa.cli.app import app
from ifa.curation.ingest import importing
from ifa.curation.ledger.review import ReviewStore
from ifa.curation.restore import restore
from ifa.curation.workspace import Workspace
from ifa.errors import IfaError
from ifa.sample import IMAGES_DIR, split_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROUND = "cost-1"
CHECK = "check-1"
POOL = {"c1": "careful", "c2": "careful", "c3": "careful", "sloppy": "careless"}


@pytest.fixture(scope="module")
def rc(label_studio, tmp_path_factory):
    root = label_studio
    st = server.read_state(root)
    ws = Workspace.init(tmp_path_factory.mktemp("cost") / "ws", command="test")
    importing.import_imat(ws, split_file("validation"), "validation", images_dir=IMAGES_DIR)
    client = Client(Connection(st.url, st.token, embedded_root=root), retries=2, backoff=0.2)
    sims = {k: simulate.annotator(ws, client, simulate.email(f"cost-{k}"), secrets_dir=root)
            for k in [*POOL, "tb1", "tb2"]}
    labels = ws.ledger.labels_frame(["validation"])
    truth = {i: tuple(sorted(int(x) for x in g)) for i, g in labels.groupby("image_id")["label_id"]}
    ids = sorted(truth)
    yield SimpleNamespace(ws=ws, root=root, client=client, sims=sims, ids=ids[:33], gold=ids[33:45], truth=truth,
                          store=ReviewStore(ws.ledger), tax=ws.taxonomy, emails={k: s.email for k, s in sims.items()})
    ws.close()


def test_answers_weighed_by_reliability(rc):
    people = [rc.emails[k] for k in POOL]
    rounds.create_round(rc.ws, split="validation", annotators=people, tiebreaker=[rc.emails["tb1"], rc.emails["tb2"]],
                        image_ids=rc.ids, gold_ids=rc.gold, gold_rate=0.25, name=ROUND, client=rc.client)
    view = state.load(rc.store, ROUND)
    for n, (k, kind) in enumerate(POOL.items()):
        role = next(r for r in view.annotator_roles if view.email(r) == rc.emails[k])
        simulate.answer_role(rc.ws, rc.client.url, rc.sims[k], role,
                             simulate.table_chooser(rc.tax, simulate.ERROR_TABLES[kind], seed=n), ROUND)
    sync.sync_round(rc.ws, ROUND, rc.client)
    view = state.load(rc.store, ROUND)
    weighed = consensus.weigh(view, rc.tax)
    table = consensus.reliability(weighed, view)
    sloppy = rc.emails["sloppy"]
    careful = [rc.emails[k] for k in ("c1", "c2", "c3")]
    # Gold anchors: the careless one is measured below every careful one on category.
    assert all(table[sloppy]["category"]["estimate"] < table[e]["category"]["low"] for e in careful)
    for per in table.values():
        r = per["category"]
        assert r["low"] <= r["estimate"] <= r["high"] and r["answers"] > 0
    # Where the careless one and a careful one differ on category, the careful one's answer wins.
    role_of = {view.email(r): r for r in view.annotator_roles}
    wins = []
    for image_id in view.images:
        roles = view.annotators_of[image_id]
        if role_of[sloppy] not in roles:
            continue
        other = next(r for r in roles if r != role_of[sloppy])
        a, b = view.answers[role_of[sloppy]][image_id], view.answers[other][image_id]
        if by_group(a.labels, rc.tax)["category"] != by_group(b.labels, rc.tax)["category"]:
            wins.append(by_group(weighed.labels(image_id), rc.tax)["category"] == by_group(b.labels, rc.tax)["category"])
    assert len(wins) >= 3 and np.mean(wins) >= 0.75


def test_uncertain_sends_only_groups_in_doubt(rc):
    with pytest.raises(IfaError, match="--when"):
        tiebreak.tiebreak(rc.ws, ROUND, client=rc.client, when="sometimes")
    view = state.load(rc.store, ROUND)
    every = consensus.groups_to_ask(rc.ws, view, "any")
    tb = tiebreak.tiebreak(rc.ws, ROUND, client=rc.client, when="uncertain", min_confidence=0.95)
    assert tb.when == "uncertain" and tb.added == tb.disagreements > 0
    weighed = consensus.weigh(view, rc.tax)
    asked = rc.store.tiebreak_groups(state.load(rc.store, ROUND).round_id)
    assert set(asked) == set(tb.images)
    for image_id, groups in asked.items():
        assert list(groups) == weighed.uncertain(image_id, 0.95)
    # At least half the groups the paper's rule would send stay with the aggregation.
    assert tb.groups == sum(len(g) for g in asked.values()) <= 0.5 * 8 * len(every)
    # The tie-breaker's task names only those groups, with both answers as predictions.
    view = state.load(rc.store, ROUND)
    image_id = next(i for i in view.tiebreak_of if len(asked[i]) < 8)
    role = view.tiebreak_of[image_id]
    task = int(view.tasks.loc[(view.tasks["role"] == role) & (view.tasks["image_id"] == image_id), "ls_task_id"].iloc[0])
    data = rc.client.get(f"api/tasks/{task}/", "reading a tie-break task")
    first = data["data"][tiebreak.ANSWERS_FIELD].splitlines()[0]
    assert first.startswith(f"Answer only: {', '.join(asked[image_id])} ")
    assert {p["model_version"] for p in data["predictions"]} == {tiebreak.NO_PREFILL} | {
        f"annotator {n}: {view.email(r)}" for n, r in enumerate(view.annotators_of[image_id], 1)}
    assert tiebreak.tiebreak(rc.ws, ROUND, client=rc.client, when="uncertain").added == 0


def test_status_names_groups_and_reliability(rc):
    st = status.status(rc.ws, ROUND)
    asked = rc.store.tiebreak_groups(state.load(rc.store, ROUND).round_id)
    pending_tb = [p for p in st.pending if "groups" in p]
    assert {p["image_id"] for p in pending_tb} == set(asked)
    assert all(p["groups"] == list(asked[p["image_id"]]) for p in pending_tb)
    assert all("groups" not in p for p in st.pending if p["annotator"] not in {rc.emails["tb1"], rc.emails["tb2"]})
    by_email = {a["email"]: a for a in st.annotators}
    rel = by_email[rc.emails["sloppy"]]["reliability"]
    assert set(rel) == set(rc.tax.group_names) and {"estimate", "low", "high"} <= set(rel["category"])
    assert {"sensitivity", "specificity"} <= set(rel["color"])
    assert by_email[rc.emails["sloppy"]]["reliability_flags"]["category"]["below"]
    assert not any(f["below"] for k in ("c1", "c2", "c3")
                   for f in by_email[rc.emails[k]]["reliability_flags"].values())
    assert st.tiebreak["when"] == "uncertain" and st.mode == "blind"
    json.dumps(st.to_dict())


def test_finalize_takes_the_tiebreak_only_where_asked(rc):
    view = state.load(rc.store, ROUND)
    asked = rc.store.tiebreak_groups(view.round_id)
    every = set(rc.tax.group_names)

    def garbage_outside(image_id, current):
        # Right in the groups asked, wrong in every other: those must not count.
        table = {g: 0.0 if g in asked[image_id] else 1.0 for g in every}
        return simulate.slip(rc.truth[image_id], rc.tax, table, np.random.default_rng(len(image_id))), False

    for k in ("tb1", "tb2"):
        role = next(r for r in view.tiebreak_roles if view.email(r) == rc.emails[k])
        simulate.answer_role(rc.ws, rc.client.url, rc.sims[k], role, garbage_outside, ROUND)
    sync.sync_round(rc.ws, ROUND, rc.client)
    view = state.load(rc.store, ROUND)
    weighed = consensus.weigh(view, rc.tax)
    before = current_labels(rc)
    done = finalize.finalize(rc.ws, ROUND, apply=True)
    assert done.applied and not done.undecided and sum(done.decided.values()) == len(rc.ids)
    decisions = rc.store.decisions(view.round_id).set_index("image_id")
    for image_id in rc.ids:
        d = decisions.loc[image_id]
        final = by_group(d["labels"], rc.tax)
        if image_id in asked:
            assert d["outcome"] == "tiebreak"
            for g in every:
                want = rc.truth[image_id] if g in asked[image_id] else weighed.labels(image_id)
                assert final[g] == by_group(want, rc.tax)[g], (image_id, g)
                assert d["sources"][g] == ("tie-break" if g in asked[image_id] else "aggregation")
        elif d["outcome"] == "aggregated":
            assert set(d["labels"]) == set(weighed.labels(image_id)) and d["posterior"] >= 0.95 ** 8
    assert done.report and "posterior" in open(done.report).readline()
    after = current_labels(rc)
    twice = finalize.finalize(rc.ws, ROUND, apply=True)
    assert (twice.labels_added, twice.labels_dropped, twice.images_set_aside) == (0, 0, 0)
    assert current_labels(rc) == after
    restore(rc.ws.ledger, rule=f"review:{ROUND}")
    assert current_labels(rc) == before


def test_an_empty_tiebreak_answer_means_none_of_the_groups_asked(rc):
    # Asked only pattern on a plain shirt, the right answer is nothing: the page must accept
    # it, sync must count it, and finalize must decide those groups empty.
    view = state.load(rc.store, ROUND)
    asked = rc.store.tiebreak_groups(view.round_id)
    image_id = next(i for i in sorted(view.tiebreak_of) if len(asked[i]) < 8)
    role = view.tiebreak_of[image_id]
    project = rc.store.projects(view.round_id)[role]
    assert rc.client.get(f"api/projects/{project.ls_project_id}/", "reading a tie-break project")[
        "enable_empty_annotation"]
    notes = rc.store.annotations(view.round_id)
    ann = int(notes.loc[(notes["role"] == role) & (notes["image_id"] == image_id), "ls_annotation_id"].iloc[0])
    who = next(s for s in rc.sims.values() if s.email == view.email(role))
    r = httpx.patch(f"{rc.client.url}/api/annotations/{ann}/", json={"result": []},
                    headers={"Authorization": f"Token {who.token}"}, timeout=60)
    assert r.status_code < 300, r.text
    assert sync.sync_round(rc.ws, ROUND, rc.client).updated >= 1
    view = state.load(rc.store, ROUND)
    answer = view.answers[role][image_id]
    assert answer.valid and answer.labels == ()
    decided, _ = finalize.decide(view, consensus.weigh(view, rc.tax), asked)
    final = by_group(decided[image_id].labels, rc.tax)
    assert all(not final[g] for g in asked[image_id])
    assert all(decided[image_id].sources[g] == "tie-break" for g in asked[image_id])


def test_cli_wiring(rc):
    st = server.read_state(rc.root)
    env = {"IFA_LS_URL": st.url, "IFA_LS_TOKEN": st.token}
    runner = CliRunner()
    res = runner.invoke(app, ["review", "tiebreak", "-w", str(rc.ws.root), "--round", ROUND, "--when", "uncertain",
                              "--min-confidence", "0.95", "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["when"] == "uncertain"
    res = runner.invoke(app, ["review", "tiebreak", "-w", str(rc.ws.root), "--round", ROUND, "--when", "maybe"], env=env)
    # The console entry point prints an IfaError as one line; here it arrives as the exception.
    assert res.exit_code != 0 and isinstance(res.exception, IfaError) and "--when" in str(res.exception)
    res = runner.invoke(app, ["review", "status", "-w", str(rc.ws.root), "--round", ROUND, "--json"])
    assert res.exit_code == 0 and "reliability" in json.loads(res.stdout)["annotators"][0]


def test_check_mode_prefills_and_syncs_the_edited_answer(rc):
    ids, gold = rc.ids[:6], rc.gold[:4]
    with pytest.raises(IfaError, match="--mode"):
        rounds.create_round(rc.ws, split="validation", annotators=[rc.emails["c1"], rc.emails["c2"]],
                            tiebreaker=rc.emails["tb1"], image_ids=ids, name=CHECK, mode="guess", client=rc.client)
    made = rounds.create_round(rc.ws, split="validation", annotators=[rc.emails["c1"], rc.emails["c2"]],
                               tiebreaker=rc.emails["tb1"], image_ids=ids, gold_ids=gold, gold_rate=0.5, name=CHECK,
                               mode="check", client=rc.client)
    assert made.mode == "check"
    rid = int(rc.store.round(CHECK)["round_id"])
    planted = rc.store.gold_prefill(rid)
    assert set(planted) == set(gold)
    assert all(shown != rc.truth[i] and mistakes for i, (shown, mistakes) in planted.items())
    view = state.load(rc.store, CHECK)
    for role, proj in view.projects.items():
        if role in view.tiebreak_roles:
            continue
        settings = rc.client.get(f"api/projects/{proj.ls_project_id}/", "reading a check-mode project")
        assert settings["show_collab_predictions"] and settings["model_version"] == prefill.PREFILL_VERSION
        mine = view.tasks[view.tasks["role"] == role]
        for image_id, task in zip(mine["image_id"], mine["ls_task_id"]):
            data = rc.client.get(f"api/tasks/{int(task)}/", "reading a check-mode task")
            (pred,) = data["predictions"]
            shown = parse_result(pred["result"], rc.tax).labels
            assert pred["model_version"] == prefill.PREFILL_VERSION
            assert shown == (planted[image_id][0] if image_id in gold else rc.truth[image_id])
    black = next(x for x in rc.tax.group("color").label_ids if rc.tax.labels[x].name == "Black")
    role_of = {view.email(r): r for r in view.annotator_roles}

    def checker(image_id, current):  # edits the pre-fill: the truth, plus a colour on round images
        return (list(current) if image_id in gold else sorted({*current, black})), False

    def accepter(image_id, current):  # submits the pre-fill unchanged
        return list(planted[image_id][0] if image_id in gold else current), False

    simulate.answer_role(rc.ws, rc.client.url, rc.sims["c1"], role_of[rc.emails["c1"]], checker, CHECK)
    simulate.answer_role(rc.ws, rc.client.url, rc.sims["c2"], role_of[rc.emails["c2"]], accepter, CHECK)
    sync.sync_round(rc.ws, CHECK, rc.client)
    view = state.load(rc.store, CHECK)
    edited = view.answers[role_of[rc.emails["c1"]]]
    assert all(edited[i].labels == tuple(sorted({*rc.truth[i], black})) for i in ids)
    st = status.status(rc.ws, CHECK)
    assert st.mode == "check"
    gold_acc = {a["email"]: a["gold"]["accuracy"] for a in st.annotators}
    assert gold_acc[rc.emails["c1"]] == 1.0 and gold_acc[rc.emails["c2"]] == 0.0


def current_labels(rc) -> dict[str, set[int]]:
    labels = rc.ws.ledger.labels_frame(["validation"], image_status=None)
    return {i: set(labels.loc[labels["image_id"] == i, "label_id"].astype(int)) for i in rc.ids}


def test_reassign_keeps_a_check_rounds_prefill(rc):
    # The newcomer who takes over a check-mode queue gets the same pre-filled page.
    name = "check-2"
    made = rounds.create_round(rc.ws, split="validation", annotators=[rc.emails["c1"], rc.emails["c2"]],
                               tiebreaker=rc.emails["tb1"], image_ids=rc.ids[6:10], name=name, mode="check",
                               client=rc.client)
    assert made.mode == "check"
    moved = reassign.reassign(rc.ws, name, rc.emails["c2"], rc.emails["c3"], rc.client)
    assert moved.moved == 4
    view = state.load(rc.store, name)
    proj = view.projects[moved.to_role]
    settings = rc.client.get(f"api/projects/{proj.ls_project_id}/", "reading the newcomer's project")
    assert settings["show_collab_predictions"] and settings["model_version"] == prefill.PREFILL_VERSION
    mine = view.tasks[view.tasks["role"] == moved.to_role]
    assert len(mine) == 4
    for image_id, task in zip(mine["image_id"], mine["ls_task_id"]):
        (pred,) = rc.client.get(f"api/tasks/{int(task)}/", "reading a reassigned task")["predictions"]
        assert pred["model_version"] == prefill.PREFILL_VERSION
        assert parse_result(pred["result"], rc.tax).labels == rc.truth[image_id]
