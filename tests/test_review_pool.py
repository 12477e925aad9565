"""ifa review for a team (issue 13), against the real Label Studio of the session.

A pool of five simulated annotators (one careless: answers at random), two per image,
gold questions mixed into every queue, two tie-breakers. The tests run in file order and
build on each other (the server start and the answering dominate the cost):

  create  -> every image to exactly two distinct annotators, loads within one, gold
             interleaved in every queue, a rerun adds nothing; the same in Label Studio
  reassign-> one annotator leaves halfway: their unanswered tasks move, never to someone
             who already has the image; finished work stays
  answer, sync, status, report -> the careless one is named by gold accuracy and agreement
  tiebreak-> every disagreement to a tie-breaker who did not annotate the image, evenly
  finalize-> gold labels unchanged; decisions applied to the round's images only
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from ifa.annotation import finalize, reassign, report, rounds, server, simulate, state, status, sync, tiebreak
from ifa.errors import IfaError
from ifa.tests.support.review import labels_before, review_setting

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROUND = "pool-1"
POOL = ["p1", "p2", "p3", "p4", "careless"]
GOLD_RATE = 0.25


@pytest.fixture(scope="module")
def pool(label_studio, tmp_path_factory):
    s = review_setting(label_studio, tmp_path_factory.mktemp("pool"), [*POOL, "p6", "tb1", "tb2"], email_prefix="pool-")
    labelled = sorted(set(s.labels["image_id"]))
    s.ids, s.gold = labelled[:33], labelled[33:45]  # the sample's validation split has 45 labelled images
    s.before = labels_before(s.labels, s.ids + s.gold)
    s.emails = {k: sim.email for k, sim in s.sims.items()}
    yield s
    s.ws.close()


def rid(p) -> int:
    return int(p.store.round(ROUND)["round_id"])


def annotators_per_image(p) -> dict[str, list[str]]:
    """image -> emails of the annotator projects holding a task for it (ledger)."""
    view = state.load(p.store, ROUND)
    return {i: [view.email(r) for r in roles] for i, roles in view.annotators_of.items()}


def listed_in_label_studio(p) -> dict[str, list[str]]:
    """image -> emails whose Label Studio project has a task for it (gold left out)."""
    out: dict[str, list[str]] = {}
    for role, proj in p.store.projects(rid(p)).items():
        if role.startswith("tiebreak"):
            continue
        for page in p.client.task_pages(proj.ls_project_id):
            for t in page:
                if t["data"]["image_id"] not in p.gold:
                    out.setdefault(t["data"]["image_id"], []).append(proj.email)
    return out


def test_create_a_pool_round_with_gold(pool):
    p = pool
    people = [p.emails[k] for k in POOL]
    with pytest.raises(IfaError, match="two or more different annotators"):
        rounds.create_round(p.ws, split="validation", annotators=people[:1], tiebreaker=p.emails["tb1"],
                            client=p.client)
    with pytest.raises(IfaError, match="gold image ids"):
        rounds.create_round(p.ws, split="validation", annotators=people, tiebreaker=p.emails["tb1"],
                            image_ids=p.ids, gold_ids=["nope"], client=p.client)
    made = rounds.create_round(p.ws, split="validation", annotators=people, tiebreaker=[p.emails["tb1"], p.emails["tb2"]],
                               image_ids=p.ids + p.gold[:2], gold_ids=p.gold, gold_rate=GOLD_RATE, name=ROUND,
                               client=p.client)
    assert made.images == 33 and made.gold == 12  # gold images listed as images too are gold only
    per_image = annotators_per_image(p)
    assert set(per_image) == set(p.ids)
    assert all(len(e) == 2 and len(set(e)) == 2 for e in per_image.values())
    assert {i: sorted(e) for i, e in listed_in_label_studio(p).items()} == {i: sorted(e) for i, e in per_image.items()}
    load = Counter(e for es in per_image.values() for e in es)
    assert set(load) == set(people) and max(load.values()) - min(load.values()) <= 1
    pairs = Counter(tuple(sorted(e)) for e in per_image.values())
    assert len(pairs) == 10  # 33 images: every two of the five share images
    tasks = p.store.tasks(rid(p))
    for email, n in load.items():
        role = next(r for r, pr in p.store.projects(rid(p)).items() if pr.email == email)
        mine = tasks[tasks["role"] == role].sort_values("ls_task_id")
        gold_rows = mine["image_id"].isin(p.gold).to_numpy()
        assert gold_rows.sum() == max(1, round(GOLD_RATE * n))
        assert not gold_rows[0] and not gold_rows[-1]  # interleaved, not bunched at either end
    again = rounds.create_round(p.ws, split="validation", annotators=people, tiebreaker=[p.emails["tb1"], p.emails["tb2"]],
                                image_ids=p.ids, gold_ids=p.gold, gold_rate=GOLD_RATE, name=ROUND, client=p.client)
    assert sum(again.tasks_added.values()) == 0 and annotators_per_image(p) == per_image


def test_reassign_keeps_two_distinct_annotators(pool):
    p = pool
    view = state.load(p.store, ROUND)
    role = {view.email(r): r for r in view.annotator_roles}
    leaver = p.emails["p2"]
    tasks = p.store.tasks(rid(p), role[leaver]).sort_values("ls_task_id")
    half = tasks.iloc[: len(tasks) // 2]
    labels = view_labels(p)
    for image_id, task_id in zip(half["image_id"], half["ls_task_id"]):
        simulate.answer(p.client.url, p.sims["p2"], int(task_id), labels.get(image_id, ()), taxonomy=p.tax,
                        lead_time=11.0)
    with pytest.raises(IfaError, match="not an annotator of round"):
        reassign.reassign(p.ws, ROUND, p.emails["p6"], leaver, p.client)
    # The taker: the careful annotator who shares the most of the leaver's unanswered images.
    open_images = set(tasks["image_id"]) - set(half["image_id"])
    per_image = annotators_per_image(p)
    shared = Counter(e for i in open_images for e in per_image.get(i, []) if e != leaver)
    taker = max((p.emails[k] for k in ("p1", "p3", "p4")), key=lambda e: shared[e])
    assert shared[taker] >= 1

    first = reassign.reassign(p.ws, ROUND, leaver, taker, p.client)
    assert first.moved + len(first.kept) == len(open_images)
    assert sorted(first.kept) == sorted(i for i in open_images if taker in per_image.get(i, []))
    assert reassign.reassign(p.ws, ROUND, leaver, taker, p.client).moved == 0  # a rerun moves nothing more
    second = reassign.reassign(p.ws, ROUND, leaver, p.emails["p6"], p.client)  # the rest to a newcomer
    assert second.moved == len(first.kept) and not second.kept and second.to_role == "annotator6"
    per_image = annotators_per_image(p)
    assert set(per_image) == set(p.ids)
    assert all(len(e) == 2 and len(set(e)) == 2 for e in per_image.values())
    assert {i: sorted(e) for i, e in listed_in_label_studio(p).items()} == {i: sorted(e) for i, e in per_image.items()}
    left = p.store.tasks(rid(p), role[leaver])
    assert set(left["image_id"]) == set(half["image_id"])  # the leaver's finished work stays theirs


def view_labels(p) -> dict[str, tuple[int, ...]]:
    return {i: tuple(sorted(v)) for i, v in p.before.items()}


def test_careless_annotator_is_named_by_gold_and_agreement(pool):
    p = pool
    view = state.load(p.store, ROUND)
    by_email = {view.email(r): r for r in view.annotator_roles}
    for seed, k in enumerate([*POOL, "p6"]):
        email = p.emails[k]
        if email not in by_email:
            continue
        choose = (simulate.careless_chooser(p.tax, 99) if k == "careless" else
                  simulate.noisy_chooser(p.tax, seed, swap=0.05))
        simulate.answer_role(p.ws, p.client.url, p.sims[k], by_email[email], choose, ROUND)
    synced = sync.sync_round(p.ws, ROUND, p.client)
    assert synced.new > 0 and synced.wrong_annotator == 0
    # A rerun re-reads at most the answers saved in the second before the last sync began
    # (its safety margin) and changes nothing; once those are behind it, it lists nothing.
    again = sync.sync_round(p.ws, ROUND, p.client)
    assert again.new == again.updated == 0 and again.fetched < synced.fetched
    time.sleep(2.5)
    sync.sync_round(p.ws, ROUND, p.client)
    assert sync.sync_round(p.ws, ROUND, p.client).fetched == 0

    st = status.status(p.ws, ROUND)
    rows = {a["email"]: a for a in st.annotators if not a["role"].startswith("tiebreak")}
    careless = p.emails["careless"]
    for a in rows.values():
        assert set(a) >= {"email", "role", "assigned", "done", "pending", "gold", "agreement", "median_seconds"}
        assert set(a["gold"]) == {"answered", "accuracy", "groups"} and set(a["gold"]["groups"]) == set(p.tax.group_names)
        assert "overall" in a["agreement"] and set(p.tax.group_names) <= set(a["agreement"])
        assert a["pending"] == a["assigned"] - a["done"]
    assert rows[careless]["gold"]["answered"] >= 2
    others = [a for e, a in rows.items() if e != careless and a["gold"]["answered"]]
    assert rows[careless]["gold"]["accuracy"] < min(a["gold"]["accuracy"] for a in others) - 0.3
    assert rows[careless]["agreement"]["overall"] < min(a["agreement"]["overall"] for a in rows.values()
                                                        if a["email"] != careless and a["agreement"]["compared"]) - 0.3
    assert rows[careless]["gold"]["groups"]["category"] < 0.5
    assert all(a["median_seconds"] is not None for a in rows.values() if a["done"])
    assert {x["image_id"] for x in st.pending} == set()  # everyone answered everything, gold included

    rep = report.report(p.ws, ROUND)
    assert list(rep.flagged) == [careless]
    page = Path(rep.html).read_text()
    assert "Agreement matrix" in page and careless in page and all(Path(x).stat().st_size > 1000 for x in rep.pngs)
    assert "class='flag'" in page


def test_tiebreaks_go_to_the_pool_never_to_an_images_annotator(pool):
    p = pool
    tb = tiebreak.tiebreak(p.ws, ROUND, client=p.client)
    assert tb.disagreements > 4 and tb.added == tb.disagreements
    view = state.load(p.store, ROUND)
    pool_emails = {p.emails["tb1"], p.emails["tb2"]}
    got = Counter()
    for image_id, role in view.tiebreak_of.items():
        who = view.email(role)
        assert who in pool_emails
        assert who not in {view.email(r) for r in view.annotators_of[image_id]}
        got[who] += 1
    assert set(got) == pool_emails and max(got.values()) - min(got.values()) <= 1
    assert tiebreak.tiebreak(p.ws, ROUND, client=p.client).added == 0
    # Both earlier answers are named after the image's own annotators.
    image_id, role = next(iter(view.tiebreak_of.items()))
    task = int(view.tasks.loc[(view.tasks["role"] == role) & (view.tasks["image_id"] == image_id), "ls_task_id"].iloc[0])
    data = p.client.get(f"api/tasks/{task}/", "reading a tie-break task")
    assert {pr["model_version"] for pr in data["predictions"]} == {tiebreak.NO_PREFILL} | {
        f"annotator {n}: {view.email(r)}" for n, r in enumerate(view.annotators_of[image_id], 1)}
    for k in ("tb1", "tb2"):
        r = next(r for r in view.tiebreak_roles if view.email(r) == p.emails[k])
        simulate.answer_role(p.ws, p.client.url, p.sims[k], r, simulate.confirming_chooser(), ROUND)
    sync.sync_round(p.ws, ROUND, p.client)


def test_finalize_never_changes_gold_labels(pool):
    p = pool
    done = finalize.finalize(p.ws, ROUND, apply=True)
    assert done.applied and sum(done.decided.values()) == len(p.ids)
    labels = p.ws.ledger.labels_frame(["validation"], image_status=None)
    now = {i: set(labels.loc[labels["image_id"] == i, "label_id"].astype(int)) for i in p.gold}
    assert now == {i: p.before[i] for i in p.gold}
    decided = set(p.store.decisions(rid(p))["image_id"])
    assert decided == set(p.ids) and decided.isdisjoint(p.gold)


def test_cli_pool_wiring(pool, tmp_path, cli):
    p = pool
    st = server.read_state(p.root)
    env = {"IFA_LS_URL": st.url, "IFA_LS_TOKEN": st.token}
    ws = str(p.ws.root)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(p.ids[:6]) + "\n")
    gold = tmp_path / "gold.txt"
    gold.write_text("\n".join(p.gold[:3]) + "\n")
    a = [p.emails[k] for k in ("p1", "p3", "p4")]
    made = cli.json("review", "create", "-w", ws, "--split", "validation", "--images-from", str(ids),
                    "--annotators", *a, "--tiebreaker", p.emails["tb1"], p.emails["tb2"], "--gold", str(gold),
                    "--gold-rate", "0.05", "--name", "cli-pool", "--json", env=env)
    assert made["images"] == 6 and made["gold"] == 3 and len(made["projects"]) == 3
    assert sum(made["tasks_added"].values()) == 6 * 2 + 3  # two per image, one gold each
    out = cli("review", "status", "-w", ws, "--round", "cli-pool", "--json")
    data = json.loads(out.stdout)
    assert [x["email"] for x in data["annotators"]] == a and data["pending"][0].keys() == {
        "image_id", "annotator", "project_id", "task_id"}
    assert len(data["pending"]) == 15 and data["gold"] == 3
    out = cli("review", "reassign", "-w", ws, "--round", "cli-pool", "--from", a[0], "--to",
              p.emails["p6"], "--json", env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["moved"] >= 1
    out = cli("review", "report", "-w", ws, "--round", "cli-pool")
    assert out.exit_code == 0 and "report" in out.output
    out = cli("review", "create", "-w", ws, "--split", "validation", "--annotators", a[0],
              "--tiebreaker", p.emails["tb1"], env=env)
    # The console entry point (cli.app.main) prints an IfaError as one line; here it arrives as the exception.
    assert isinstance(out.exception, IfaError) and "two or more" in str(out.exception)
