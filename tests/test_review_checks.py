"""Short checks and pages that ask only some groups, against the session's real Label Studio.

The sample's train split with six planted category swaps, and out-of-sample probabilities
of the clean labels: `ifa curate flag-noise --review` sends the flagged images as a short
check (their labels pre-filled, only the flagged groups asked). Two simulated annotators
answer (one also ticks a colour nobody asked about, one disagrees on one image); the tests
run in file order and build on each other:

  flag-noise --review -> check-mode tasks offering only the flagged groups
  status              -> pending tasks name their groups; the aggregation is cached and
                         recomputed only when a synced answer changes it
  tiebreak            -> under --when uncertain the tie-breaker's page (headless Chromium)
                         shows no choices of the groups not asked; a blind page shows all
  finalize            -> only the flagged groups change (the report names the check);
                         restore undoes it
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ifa.annotation import quality, rounds, server, simulate, state, status, sync, tiebreak
from ifa.annotation import report as review_report
from ifa.annotation.answers import parse_result
from ifa.annotation.client import Client, Connection
from ifa.curation.ingest import importing
from ifa.curation.ledger.review import ReviewStore
from ifa.curation.noise.model.probs import write_probs
from ifa.curation.restore import restore
from ifa.curation.workspace import Workspace
from ifa.sample import IMAGES_DIR, split_file
from ifa.taxonomy.labelstudio_config import CHOICES_FIELD

from .support.cli import Cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
SWAPS = 6


@pytest.fixture(scope="module")
def sc(label_studio, tmp_path_factory):
    folder = tmp_path_factory.mktemp("checks")
    st = server.read_state(label_studio)
    ws = Workspace.init(folder / "ws", command="test")
    tax = ws.taxonomy
    doc = json.loads(split_file("train").read_text())
    clean = {a["imageId"]: [int(x) for x in a["labelId"]] for a in doc["annotations"]}
    cats = sorted({x for ls in clean.values() for x in ls if tax.labels[x].group == "category"})
    with_cat = sorted(i for i, ls in clean.items() if any(tax.labels[x].group == "category" for x in ls)
                      and any(tax.labels[x].group != "category" for x in ls))
    planted = {}
    for k, image_id in enumerate(with_cat[:SWAPS]):
        old = next(x for x in clean[image_id] if tax.labels[x].group == "category")
        new = next(c for c in cats[k + 1:] + cats if c != old)
        planted[image_id] = (old, new)
    for a in doc["annotations"]:
        if a["imageId"] in planted:
            old, new = planted[a["imageId"]]
            a["labelId"] = [str(new if int(x) == old else x) for x in a["labelId"]]
    (folder / "train.json").write_text(json.dumps(doc))
    importing.import_imat(ws, folder / "train.json", "train", images_dir=IMAGES_DIR)
    ids = np.array(list(clean))
    truth = np.zeros((len(ids), len(tax.label_ids)), bool)
    for r, image_id in enumerate(ids):
        truth[r, tax.column_of(clean[image_id])] = True
    probs = write_probs(folder / "oos.parquet", ids, tax.label_ids, np.where(truth, 0.92, 0.02).astype(np.float32))
    client = Client(Connection(st.url, st.token, embedded_root=label_studio), retries=2, backoff=0.2)
    sims = {k: simulate.annotator(ws, client, simulate.email(f"checks-{k}"), secrets_dir=label_studio)
            for k in ("a", "b", "tb")}
    before = {i: set(ls) for i, ls in current(ws).items()}
    yield SimpleNamespace(ws=ws, st=st, client=client, sims=sims, tax=tax, clean=clean, planted=planted, probs=probs,
                          store=ReviewStore(ws.ledger), before=before,
                          shots=Path(os.environ.get("IFA_SCREENSHOTS", folder)),
                          env={"IFA_LS_URL": st.url, "IFA_LS_TOKEN": st.token})
    ws.close()


def current(ws) -> dict[str, tuple[int, ...]]:
    labels = ws.ledger.labels_frame(["train"], image_status=None)
    return {i: tuple(sorted(int(x) for x in g)) for i, g in labels.groupby("image_id")["label_id"]}


def round_view(sc) -> state.RoundView:
    return state.load(sc.store, sc.round)


def role_of(sc, key: str) -> str:
    view = round_view(sc)
    return next(r for r in view.projects if view.email(r) == sc.sims[key].email)


def test_flag_noise_review_sends_a_short_check(sc):
    # The probabilities are a perfect model's, so every planted swap scores low but above noise.
    out = Cli().json("curate", "flag-noise", "--probs", str(sc.probs), "--min-score", "0.01", "--review",
                     "--annotators", sc.sims["a"].email, sc.sims["b"].email, "--tiebreaker", sc.sims["tb"].email,
                     "--workspace", str(sc.ws.root), "--json", env=sc.env)
    sc.round = out["review"]["round"]
    view = round_view(sc)
    assert view.round["mode"] == "check" and set(view.images) == set(sc.planted)
    # Each image asks only the groups of its flags: here the swapped category.
    assert view.check_groups == {i: ("category",) for i in sc.planted}
    assert out["review"]["asked"] == {"category": SWAPS}
    for role in view.annotator_roles:
        project = sc.client.get(f"api/projects/{view.projects[role].ls_project_id}/", "reading the project")
        assert f'value="${CHOICES_FIELD}category"' in project["label_config"]
        assert project["enable_empty_annotation"] and "not asked" in project["expert_instruction"]
        for image_id, task in zip(*view.tasks.loc[view.tasks["role"] == role, ["image_id", "ls_task_id"]].T.values):
            data = sc.client.get(f"api/tasks/{int(task)}/", "reading a short-check task")
            offered = {g for g in sc.tax.group_names if data["data"][f"{CHOICES_FIELD}{g}"]}
            assert offered == {"category"}
            (pred,) = data["predictions"]
            assert {r["from_name"] for r in pred["result"]} == {"category"}
            # Pre-filled with the current (planted) category: the annotator checks it.
            assert parse_result(pred["result"], sc.tax).labels == (sc.planted[image_id][1],)


def test_status_names_the_groups_and_caches_the_aggregation(sc):
    st = status.status(sc.ws, sc.round)
    assert st.mode == "check" and st.checked == {"category": SWAPS}
    annotators = {sc.sims["a"].email, sc.sims["b"].email}
    mine = [p for p in st.pending if p["annotator"] in annotators]
    assert len(mine) == 2 * SWAPS and all(p["groups"] == ["category"] for p in mine)
    shown = Cli().ok("review", "status", "--round", sc.round, "--workspace", str(sc.ws.root)).stdout
    assert "check mode" in shown and f"a short check: its tasks ask only category ({SWAPS} images)" in shown
    black = next(x for x in sc.tax.group("color").label_ids if sc.tax.labels[x].name == "Black")
    odd = sorted(sc.planted)[0]

    def fixer(image_id, now):  # the clean category, and a colour ticked that nobody asked about
        return sorted({*sc.clean[image_id], black}), False

    def other(image_id, now):  # the clean labels, except on one image another category
        old, new = sc.planted[image_id]
        return (sc.clean[image_id] if image_id != odd else [x if x != old else new for x in sc.clean[image_id]]), False

    simulate.answer_role(sc.ws, sc.client.url, sc.sims["a"], role_of(sc, "a"), fixer, sc.round)
    sync.sync_round(sc.ws, sc.round, sc.client)
    rid = round_view(sc).round_id
    status.status(sc.ws, sc.round)
    first = sc.store.cached_aggregate(rid)
    status.status(sc.ws, sc.round)
    again = sc.store.cached_aggregate(rid)
    assert first[2] == again[2] and first[1] == again[1]  # not recomputed: same count, same time
    simulate.answer_role(sc.ws, sc.client.url, sc.sims["b"], role_of(sc, "b"), other, sc.round)
    sync.sync_round(sc.ws, sc.round, sc.client)
    status.status(sc.ws, sc.round)
    assert sc.store.cached_aggregate(rid)[2] == first[2] + 1  # a new synced answer: computed again
    st = status.status(sc.ws, sc.round)
    assert set(st.agreement) == {"category"}  # the groups not asked are neither compared nor weighed
    assert all(r["answers"] == 0 for a in st.annotators for g, r in a["reliability"].items() if g != "category")
    # The colour ticked outside the check is not part of the answer that counts.
    view = round_view(sc)
    assert all(black not in a.labels for a in view.answers[role_of(sc, "a")].values())
    # Per annotator too: only the asked group is agreement (one image of six differs there);
    # a group kept as it was is no data, not 100%.
    people = {r["role"]: r["agreement"] for r in quality.annotators(view, sc.tax)}
    for role in view.annotator_roles:
        assert people[role]["category"] == round((SWAPS - 1) / SWAPS, 4)
        assert all(people[role][g] is None for g in sc.tax.group_names if g != "category")
    sc.odd = odd


def test_tiebreak_page_shows_only_the_groups_asked(sc):
    made = tiebreak.tiebreak(sc.ws, sc.round, client=sc.client, when="uncertain", min_confidence=0.95)
    assert made.images == [sc.odd]
    view = round_view(sc)
    assert sc.store.tiebreak_groups(view.round_id) == {sc.odd: ("category",)}
    tb_role = view.tiebreak_of[sc.odd]
    tb_task = int(view.tasks.loc[view.tasks["role"] == tb_role, "ls_task_id"].iloc[0])
    data = sc.client.get(f"api/tasks/{tb_task}/", "reading the tie-break task")["data"]
    assert {g for g in sc.tax.group_names if data[f"{CHOICES_FIELD}{g}"]} == {"category"}
    blind = rounds.create_round(sc.ws, split="train", annotators=[sc.sims["a"].email, sc.sims["b"].email],
                                image_ids=[sorted(sc.planted)[1]], name=f"{sc.round}-blind", client=sc.client)
    blind_view = state.load(sc.store, blind.round)
    blind_task = int(blind_view.tasks["ls_task_id"].iloc[0])
    check_task = int(view.tasks.loc[view.tasks["role"] == "annotator1", "ls_task_id"].iloc[0])
    pages = {"tiebreak": (view.projects[tb_role].ls_project_id, tb_task),
             "check": (view.projects["annotator1"].ls_project_id, check_task),
             "blind": (blind_view.projects["annotator1"].ls_project_id, blind_task)}
    seen = choices_on_pages(sc, pages)
    # The tie-breaker starts from nothing ticked (both answers are tabs and text beside it);
    # the short check starts from the image's current labels.
    assert seen["tiebreak:ticked"] == set() and seen["check:ticked"] and seen["blind:ticked"] == set()
    names = {g: {sc.tax.labels[x].name for x in sc.tax.group(g).label_ids} for g in sc.tax.group_names}
    # The tie-breaker's page and the short check's hold the categories and the discard
    # choice, nothing of the other groups.
    for page in ("tiebreak", "check"):
        assert names["category"] <= seen[page] and len(names["category"]) + 1 == len(seen[page])
        assert all(not (names[g] & seen[page]) for g in sc.tax.group_names if g != "category")
    # A blind page is as before: every group's choices.
    assert all(names[g] <= seen["blind"] for g in sc.tax.group_names)


def test_finalize_changes_only_the_flagged_groups(sc):
    view = round_view(sc)
    black = next(x for x in sc.tax.group("color").label_ids if sc.tax.labels[x].name == "Black")

    def breaker(image_id, now):  # the clean category, and Black again outside the check
        return sorted({*sc.clean[image_id], black}), False

    simulate.answer_role(sc.ws, sc.client.url, sc.sims["tb"], view.tiebreak_of[sc.odd], breaker, sc.round)
    sync.sync_round(sc.ws, sc.round, sc.client)
    computed = sc.store.cached_aggregate(view.round_id)[2]
    done = Cli().json("review", "finalize", "--round", sc.round, "--apply", "--workspace", str(sc.ws.root), "--json")
    assert done["undecided"] == {} and sum(done["decided"].values()) == SWAPS
    assert sc.store.cached_aggregate(view.round_id)[2] == computed  # finalize used the cached aggregation
    now = current(sc.ws)
    for image_id, (old, new) in sc.planted.items():
        assert set(now[image_id]) == set(sc.clean[image_id]), image_id  # category fixed, nothing else touched
        assert black not in now[image_id] or black in sc.clean[image_id]
    assert all(set(now[i]) == sc.before[i] for i in sc.before if i not in sc.planted)
    page = Path(review_report.report(sc.ws, sc.round).html).read_text()
    assert f"check (a short check asking only category on {SWAPS:,} images)" in page
    per_group = page.split("Per group")[1].split("</table>")[0]
    assert "<th>category</th>" in per_group and "<th>color</th>" not in per_group
    restore(sc.ws.ledger, rule=f"review:{sc.round}", apply=True)
    assert {i: set(ls) for i, ls in current(sc.ws).items()} == sc.before


def choices_on_pages(sc, pages: dict[str, tuple[int, int]]) -> dict[str, set[str]]:
    """Open each task's labeling page in headless Chromium as the admin; a screenshot of
    each; returns the choice names each page's DOM holds."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from ifa.benchmarks.review_clicks import log_in_form

    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1440,900"):
        opts.add_argument(flag)
    opts.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    out = {}
    try:
        log_in_form(driver, sc.client.url, sc.st.admin_email, sc.st.admin_password, timeout=120)
        for name, (project, task) in pages.items():
            driver.get(f"{sc.client.url}/projects/{project}/data?task={task}")
            deadline = time.monotonic() + 300  # the frontend is slow to start on a loaded 2-core machine
            while not driver.execute_script("return document.querySelectorAll('.lsf-choice').length > 1"):
                if time.monotonic() > deadline:
                    driver.save_screenshot(str(sc.shots / f"labeling-{name}-not-rendered.png"))
                    raise AssertionError(f"the {name} page did not render (screenshot in {sc.shots})")
                time.sleep(0.5)
            time.sleep(2)
            driver.save_screenshot(str(sc.shots / f"labeling-{name}.png"))
            # A choice's text ends with its hotkey, e.g. "Black[1]"; the value is before it.
            texts = driver.execute_script(
                "return [...document.querySelectorAll('.lsf-choice')].map(e => e.innerText)")
            out[name] = {t.split("[")[0].strip() for t in texts}
            ticked = driver.execute_script(
                "return [...document.querySelectorAll('.lsf-choice')].filter(e => e.querySelector('input:checked'))"
                ".map(e => e.innerText)")
            out[f"{name}:ticked"] = {t.split("[")[0].strip() for t in ticked}
    finally:
        driver.quit()
    return out
