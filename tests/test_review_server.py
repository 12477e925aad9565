"""ifa review against a real Label Studio (the session's `label_studio` fixture).

One round over eight validation photos, answered by three simulated annotators who post
through the API with their own tokens, with planted cases:

  i0 both give the current labels          -> agreed, nothing changes
  i1 both give new labels                  -> agreed, labels replaced
  i2 they differ in sleeve                 -> tie-breaker decides
  i3 one discards                          -> tie-breaker discards: set aside
  i4 both discard                          -> set aside without a tie-break
  i5 one posts a choice the taxonomy lacks -> invalid, tie-breaker decides
  i6 annotator 2 answers in annotator 1's project (wrong project): flagged, not counted;
     annotator 1 never answers              -> waiting, untouched
  i7 one skips, tie-breaker has not answered -> undecided, untouched

The tests run in file order and build on each other (the server start dominates the cost).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from ifa.annotation import finalize, rounds, server, simulate, status, sync, tiebreak
from ifa.annotation.client import Client, Connection
from ifa.curation.ingest import importing
from ifa.curation.ledger.review import ReviewStore
from ifa.curation.restore import restore
from ifa.curation.workspace import Workspace
from ifa.errors import IfaError
from ifa.sample import IMAGES_DIR, split_file
from ifa.tests.support.review import labels_before, review_setting

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROUND = "r1"


@pytest.fixture(scope="module")
def rv(label_studio, tmp_path_factory):
    s = review_setting(label_studio, tmp_path_factory.mktemp("review"), ("ann1", "ann2", "third"))
    s.ids = s.ws.ledger.images_frame(["validation"])["image_id"].tolist()[:8]
    s.before = labels_before(s.labels, s.ids)
    yield s
    s.ws.close()


def lid(rv, group, name):
    return rv.tax.by_name(f"{group}:{name}").id


def task_of(rv, role, image_id):
    t = rv.store.tasks(int(rv.store.round(ROUND)["round_id"]), role)
    return int(t.loc[t["image_id"] == image_id, "ls_task_id"].iloc[0])


def test_create_round_is_idempotent(rv):
    a1, a2, tb = (rv.sims[k].email for k in ("ann1", "ann2", "third"))
    with pytest.raises(IfaError, match="third person"):
        rounds.create_round(rv.ws, split="validation", annotators=[a1, a2], tiebreaker=a2, client=rv.client)
    with pytest.raises(IfaError, match="not a Label Studio user"):
        rounds.create_round(rv.ws, split="validation", annotators=[a1, "nobody@example.com"], tiebreaker=tb,
                            client=rv.client)
    with pytest.raises(IfaError, match="not in the workspace"):
        rounds.create_round(rv.ws, split="validation", annotators=[a1, a2], tiebreaker=tb, image_ids=["nope"],
                            client=rv.client)
    first = rounds.create_round(rv.ws, split="validation", annotators=[a1, a2], tiebreaker=tb, image_ids=rv.ids[:5],
                                name=ROUND, client=rv.client)
    assert first.simulated and first.tasks_added == {"annotator1": 5, "annotator2": 5}
    # A crash after Label Studio imported tasks but before the ledger recorded them (the
    # last one, as a crash would leave it, and a first one, which needs the full listing):
    rid = int(rv.store.round(ROUND)["round_id"])
    with rv.ws.ledger.transaction() as conn:
        conn.execute("DELETE FROM review_tasks WHERE round_id = ? AND role = 'annotator2' AND image_id IN (?, ?)",
                     (rid, rv.ids[0], rv.ids[4]))
    again = rounds.create_round(rv.ws, split="validation", annotators=[a1, a2], tiebreaker=tb, image_ids=rv.ids,
                                name=ROUND, client=rv.client)
    assert again.tasks_added == {"annotator1": 3, "annotator2": 3}
    assert again.tasks_adopted == {"annotator1": 0, "annotator2": 2}
    for p in again.projects:  # exactly one task per image in each project, in Label Studio too
        listed = [t for page in rv.client.task_pages(p.project_id) for t in page]
        assert sorted(t["data"]["image_id"] for t in listed) == sorted(rv.ids)
        assert p.tasks == 8


def test_planted_answers_sync_with_a_kill_and_a_server_stop(rv):
    i = rv.ids
    url, ann1, ann2 = rv.client.url, rv.sims["ann1"], rv.sims["ann2"]
    b = rv.before
    x1 = {lid(rv, "category", "Dresses"), lid(rv, "color", "Black")}
    post = lambda who, role, image, labels=(), **kw: simulate.answer(url, who, task_of(rv, role, image), labels,
                                                                     taxonomy=rv.tax, lead_time=12.5, **kw)
    post(ann1, "annotator1", i[0], b[i[0]]); post(ann2, "annotator2", i[0], b[i[0]])
    post(ann1, "annotator1", i[1], x1); post(ann2, "annotator2", i[1], x1)
    post(ann1, "annotator1", i[2], b[i[2]]); post(ann2, "annotator2", i[2], b[i[2]] | {lid(rv, "sleeve", "Long Sleeved")})
    post(ann1, "annotator1", i[3], discard=True); post(ann2, "annotator2", i[3], b[i[3]])
    post(ann1, "annotator1", i[4], discard=True); post(ann2, "annotator2", i[4], discard=True)
    post(ann1, "annotator1", i[5], b[i[5]])
    post(ann2, "annotator2", i[5], result=[{"from_name": "category", "to_name": "image", "type": "choices",
                                            "value": {"choices": ["Skirtz"]}}])
    post(ann2, "annotator1", i[6], b[i[6]])  # in the other annotator's project
    post(ann2, "annotator2", i[6], b[i[6]])
    post(ann1, "annotator1", i[7], b[i[7]]); post(ann2, "annotator2", i[7], skip=True)
    total = 16
    rid = int(rv.store.round(ROUND)["round_id"])

    # 1. Kill a sync midway (SIGKILL, one task per page so there are many commits).
    state = server.read_state(rv.root)
    code = ("import sys; from ifa.curation.workspace import Workspace; from ifa.annotation import sync; "
            "from ifa.annotation.client import Client, Connection; ws = Workspace.open(sys.argv[1]); "
            "sync.sync_round(ws, 'r1', Client(Connection(sys.argv[2], sys.argv[3])), page_size=1)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(rv.ws.root), state.url, state.token])
    try:
        deadline = time.monotonic() + 120
        while rv.store.annotation_count(rid) == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    at_kill = rv.store.annotation_count(rid)
    assert 0 < at_kill < total, f"the kill did not land midway ({at_kill} of {total} synced)"

    # 2. Stop the server after the next page: a clear error, nothing half-written.
    class StopAfterFirstPage:
        def __init__(self):
            self.pages = 0

        def note(self, message):
            pass

        def task(self, description, total=None):
            outer = self

            class Task:
                def advance(self, n=1):
                    outer.pages += 1
                    if outer.pages == 1:
                        server.stop(rv.root)

                def update(self, **kw):
                    pass

            from contextlib import nullcontext
            return nullcontext(Task())

    fragile = Client(Connection(state.url, state.token, embedded_root=rv.root), retries=1, backoff=0.1)
    with pytest.raises(IfaError, match="embedded Label Studio is not running") as err:
        sync.sync_round(rv.ws, ROUND, fragile, progress=StopAfterFirstPage(), page_size=1)
    assert "rerun" in str(err.value)
    after_stop = rv.store.annotation_count(rid)
    assert at_kill <= after_stop < total
    server.start(rv.root, port=state.port, die_with_parent=True)

    # 3. The rerun completes: every annotation once, keyed by its Label Studio id.
    done = sync.sync_round(rv.ws, ROUND, rv.client)
    assert done.new == total - after_stop and done.fetched == total
    stored = rv.store.annotations(rid)
    assert len(stored) == total and stored["ls_annotation_id"].is_unique
    assert (done.wrong_annotator, done.invalid, done.skipped) == (1, 1, 1)
    assert done.problems == {"unknown choice in category": 1}
    # A rerun with nothing new lists only tasks updated since the last sync: none (issue 13).
    again = sync.sync_round(rv.ws, ROUND, rv.client)
    assert (again.new, again.updated, again.deleted, again.fetched) == (0, 0, 0, 0)
    assert {r["listing"] for r in again.per_role.values()} == {"incremental"}
    full = sync.sync_round(rv.ws, ROUND, rv.client, full=True)  # the full listing changes nothing either
    assert (full.new, full.updated, full.deleted, full.fetched) == (0, 0, 0, total)

    # 4. An annotator edits an answer: the new one counts, the old one is kept.
    ann_id = int(stored.loc[(stored["image_id"] == i[0]) & (stored["role"] == "annotator1"), "ls_annotation_id"].iloc[0])
    time.sleep(1.1)  # Label Studio's updated_at has sub-second resolution, but be safe on a slow disk
    from ifa.annotation.answers import to_result
    r = httpx.patch(f"{url}/api/annotations/{ann_id}/", headers={"Authorization": f"Token {ann1.token}"},
                    json={"result": to_result(b[i[0]] | {lid(rv, "color", "Black")}, rv.tax)})
    assert r.status_code == 200, r.text
    edited = sync.sync_round(rv.ws, ROUND, rv.client)
    assert (edited.new, edited.updated) == (0, 1)
    assert len(rv.store.annotation_versions(rid)) == 1
    r = httpx.patch(f"{url}/api/annotations/{ann_id}/", headers={"Authorization": f"Token {ann1.token}"},
                    json={"result": to_result(b[i[0]], rv.tax)})
    assert sync.sync_round(rv.ws, ROUND, rv.client).updated == 1


def test_status_tiebreak_and_finalize(rv):
    i, b = rv.ids, rv.before
    st = status.status(rv.ws, ROUND)
    assert st.images == 8
    assert st.outcomes == {"agreed": 2, "discarded": 1, "disagree": 4, "waiting": 1}
    assert st.done == {rv.sims["ann1"].email: 7, rv.sims["ann2"].email: 8}
    assert st.roles["annotator1"]["wrong_annotator"] == 1 and st.roles["annotator2"]["invalid"] == 1
    assert {p["image_id"] for p in st.pending if p["annotator"] == rv.sims["ann1"].email} == {i[6]}
    assert st.compared == 3 and set(st.agreement) == set(rv.tax.group_names)
    assert st.agreement["category"]["exact"] == 1.0

    tb = tiebreak.tiebreak(rv.ws, ROUND, client=rv.client)
    assert tb.disagreements == 4 and tb.added == 4 and sorted(tb.images) == sorted([i[2], i[3], i[5], i[7]])
    assert tiebreak.tiebreak(rv.ws, ROUND, client=rv.client).added == 0
    task = rv.client.get(f"api/tasks/{task_of(rv, 'tiebreak', i[2])}/", "reading a tie-break task")
    assert {p["model_version"] for p in task["predictions"]} == {tiebreak.NO_PREFILL} | {
        f"annotator 1: {rv.sims['ann1'].email}", f"annotator 2: {rv.sims['ann2'].email}"}
    assert "Long Sleeved" in task["data"]["answers"]

    url, third = rv.client.url, rv.sims["third"]
    t2 = b[i[2]] | {lid(rv, "sleeve", "Long Sleeved"), lid(rv, "color", "White")}
    simulate.answer(url, third, task_of(rv, "tiebreak", i[2]), t2, taxonomy=rv.tax)
    simulate.answer(url, third, task_of(rv, "tiebreak", i[3]), discard=True, taxonomy=rv.tax)
    simulate.answer(url, third, task_of(rv, "tiebreak", i[5]), b[i[5]], taxonomy=rv.tax)
    sync.sync_round(rv.ws, ROUND, rv.client)
    # What the tie-breaker's labeling stream serves next (i7, the one left): both answers as text.
    session = httpx.Client(base_url=url, headers={"Authorization": f"Token {third.token}"})
    nxt = session.get(f"/api/projects/{tb.project_id}/next/").json()
    assert nxt["data"]["image_id"] == i[7] and "skipped" in nxt["data"]["answers"]
    # Neither annotator's answer is pre-filled for the tie-breaker: only the empty prediction.
    assert [(p["model_version"], p["result"]) for p in nxt["predictions"]] == [(tiebreak.NO_PREFILL, [])]

    dry = finalize.finalize(rv.ws, ROUND)
    assert not dry.applied and os.path.exists(dry.report)
    assert dry.decided == {"agreed": 2, "tiebreak": 2, "discarded": 2}
    assert dry.undecided == {"waiting for an annotator": 1, "waiting for the tie-breaker": 1}
    assert current_labels(rv) == b  # nothing applied yet

    done = finalize.finalize(rv.ws, ROUND, apply=True)
    assert done.applied and done.images_set_aside == 2 and done.changed_images == 4
    x1 = {lid(rv, "category", "Dresses"), lid(rv, "color", "Black")}
    want = {**b, i[1]: x1, i[2]: t2}
    assert current_labels(rv) == want
    imgs = rv.ws.ledger.images_frame(["validation"], status=None).set_index("image_id")
    assert set(imgs.index[imgs["status"] == "set_aside"]) == {i[3], i[4]}
    assert "no clear fashion item" in imgs.at[i[3], "status_reason"] and "tie-breaker" in imgs.at[i[3], "status_reason"]
    labels = rv.ws.ledger.labels_frame(["validation"])
    assert set(labels.loc[labels["image_id"] == i[1], "source"]) == {f"review:{ROUND}"}
    events = len(rv.ws.ledger.events_frame())
    twice = finalize.finalize(rv.ws, ROUND, apply=True)
    assert (twice.labels_added, twice.labels_dropped, twice.images_set_aside) == (0, 0, 0)
    assert len(rv.ws.ledger.events_frame()) == events and current_labels(rv) == want

    undo = restore(rv.ws.ledger, rule=f"review:{ROUND}")
    assert sorted(undo.images) == sorted([i[3], i[4]])
    assert current_labels(rv) == b
    finalize.finalize(rv.ws, ROUND, apply=True)
    assert current_labels(rv) == want


def current_labels(rv) -> dict[str, set[int]]:
    labels = rv.ws.ledger.labels_frame(["validation"], image_status=None)
    return {i: set(labels.loc[labels["image_id"] == i, "label_id"].astype(int)) for i in rv.ids}


def test_cli_wiring(rv, tmp_path, cli):
    state = server.read_state(rv.root)
    env = {"IFA_LS_URL": state.url, "IFA_LS_TOKEN": state.token}
    ws = str(rv.ws.root)
    data = cli.json("review", "status", "-w", ws, "--json")
    assert {"round", "images", "done", "agreement", "pending"} <= set(data) and data["round"] == ROUND
    assert data["pending"][0].keys() == {"image_id", "annotator", "project_id", "task_id"}
    out = cli("review", "sync", "-w", ws, "--json", env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["new"] == 0
    ids = tmp_path / "ids.csv"
    ids.write_text("image_id\n" + "\n".join(rv.ids[:2]) + "\n")
    a1, a2, tb = (rv.sims[k].email for k in ("ann1", "ann2", "third"))
    out = cli("review", "create", "-w", ws, "--split", "validation", "--images-from", str(ids),
              "--annotators", a1, a2, "--tiebreaker", tb, "--name", "cli", "--json", env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["tasks_added"] == {"annotator1": 2, "annotator2": 2}
    out = cli("review", "finalize", "-w", ws, "--round", "cli")
    assert out.exit_code == 0 and "would apply" in out.output
    out = cli("review", "annotators", "list", "-w", ws, "--json", env=env)
    assert any(a["simulated"] and "cli:annotator1" in a["rounds"] for a in json.loads(out.stdout)["annotators"])


def test_server_refuses_a_busy_port_and_reuses_a_running_one(rv, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(IfaError, match="already in use"):
            server.start(tmp_path / "other", port=s.getsockname()[1])
    state, started = server.start(rv.root)
    assert not started and state.url == server.read_state(rv.root).url
    assert oct(os.stat(rv.root / server.STATE_FILE).st_mode & 0o777) == "0o600"


def test_demo_review_step_is_labelled_simulated(label_studio, tmp_path):
    from ifa.annotation.demo import DEMO_ROUND, review_step
    ws = Workspace.init(tmp_path / "demo", command="demo")
    importing.import_imat(ws, split_file("validation"), "validation", images_dir=IMAGES_DIR)
    # The demo starts the embedded server unless one runs; point it at the session's.
    (ws.root / server.DIR_NAME).symlink_to(label_studio)
    summary, data = review_step(ws, limit=6)
    assert summary.startswith("SIMULATED review round") and data["simulated"] and data["images"] == 6
    assert not data["server_stopped"] and server.running(label_studio) is not None  # not its server to stop
    assert sum(data["finalize"]["decided"].values()) + sum(data["finalize"]["undecided"].values()) == 6
    store = ReviewStore(ws.ledger)
    assert bool(store.round(DEMO_ROUND)["simulated"])
    assert store.annotators()["simulated"].all()
    events = ws.ledger.events_frame()
    changed = events[events["rule"] == f"review:{DEMO_ROUND}"]
    assert changed.loc[changed["kind"] == "review_round", "reason"].str.startswith("SIMULATED review round").all()
    assert (changed["kind"] == "review_round").sum() == 1
    assert changed[changed["kind"].isin(["label_added", "label_dropped", "set_aside"])]["reason"].str.startswith(
        "SIMULATED").all()
    ws.close()


def workspace_on_server(label_studio, root, split: str, people: list[str]) -> Workspace:
    """A workspace holding one split of the sample, using the session's server, with
    `people` as its annotators."""
    from ifa.annotation import annotators

    ws = Workspace.init(root, command="test")
    importing.import_imat(ws, split_file(split), split, images_dir=IMAGES_DIR)
    (ws.root / server.DIR_NAME).symlink_to(label_studio)
    state = server.read_state(label_studio)
    client = Client(Connection(state.url, state.token, embedded_root=label_studio), retries=2, backoff=0.2)
    annotators.add(ws, client, people)
    return ws


def test_flag_noise_sends_its_flags_to_a_review_round(label_studio, tmp_path, cli):
    """flag-noise --review: the flagged train images, and only they, become a round."""

    people = ["noise-a@example.com", "noise-b@example.com", "noise-lead@example.com"]
    ws = workspace_on_server(label_studio, tmp_path / "noise", "train", people)
    # Out-of-sample probabilities that agree with every given label except three images,
    # where a model is sure of another category than the one given.
    tax = ws.taxonomy
    labels = ws.ledger.labels_frame(["train"])
    ids = ws.ledger.images_frame(["train"])["image_id"].tolist()
    probs = pd.DataFrame(0.01, index=ids, columns=[str(i) for i in tax.label_ids])
    for image_id, label_id in zip(labels["image_id"], labels["label_id"]):
        probs.loc[image_id, str(label_id)] = 0.95
    categories = set(tax.group("category").label_ids)
    cats = labels[labels["label_id"].isin(categories)].drop_duplicates("image_id")
    swapped = cats.iloc[[0, 40, 80]]
    other = next(c for c in sorted(set(cats["label_id"])) if c not in set(swapped["label_id"]))
    for image_id, label_id in zip(swapped["image_id"], swapped["label_id"]):
        probs.loc[image_id, str(label_id)] = 0.02
        probs.loc[image_id, str(other)] = 0.97
    path = tmp_path / "oos.parquet"
    probs.rename_axis("image_id").reset_index().to_parquet(path)

    root = str(ws.root)
    ws.close()
    # the library returns what it flagged; the command starts the round with annotation/'s library
    # --min-score 0: the whole top 6 is acted on (few planted errors keep these scores under the default cut)
    data = cli.json("curate", "flag-noise", "--probs", str(path), "--top", "6", "--min-score", "0", "--review",
                    "--annotators", people[0], people[1], "--tiebreaker", people[2], "-w", root, "--json")
    flagged = {f["image_id"] for f in data["flags"] if f["score"] >= data["min_score"]}
    assert flagged == set(swapped["image_id"])
    with Workspace.open(Path(root)) as ws:
        store = ReviewStore(ws.ledger)
        tasks = store.tasks(int(store.round(data["review"]["round"])["round_id"]), "annotator1")
        assert set(tasks["image_id"]) == flagged and tasks["ls_task_id"].notna().all()


def test_a_round_takes_images_off_the_review_queue(label_studio, tmp_path):
    """Images a check-attributes rule queued become 'sent' once a round holds them."""
    from ifa.curation.ledger.review_queue import enqueue_review, review_queue

    people = ["queue-a@example.com", "queue-b@example.com", "queue-lead@example.com"]
    ws = workspace_on_server(label_studio, tmp_path / "queue", "validation", people)
    ids = ws.ledger.images_frame(["validation"])["image_id"].tolist()
    enqueue_review(ws.ledger, pd.DataFrame({"image_id": ids[:3], "rule": "gender-contradiction", "reason": "planted"}))
    rounds.create_round(ws, split="validation", annotators=people[:2], tiebreaker=people[2], image_ids=ids[:2])
    queue = review_queue(ws.ledger, statuses=None).set_index("image_id")["status"].to_dict()
    assert queue == {ids[0]: "sent", ids[1]: "sent", ids[2]: "pending"}
    ws.close()


def test_two_workspaces_on_one_server_keep_their_own_projects(rv, tmp_path):
    """A round of the same name in another workspace on the same server gets its own
    projects: adopting the first workspace's (same description, same image ids) would
    record its tasks, and later its annotators' answers, as this workspace's."""
    a1, a2, tb = (rv.sims[k].email for k in ("ann1", "ann2", "third"))
    ws_b = Workspace.init(tmp_path / "b", command="test")
    try:
        importing.import_imat(ws_b, split_file("validation"), "validation", images_dir=IMAGES_DIR)
        for email in (a1, a2, tb):
            simulate.annotator(ws_b, rv.client, email, secrets_dir=rv.root)
        made = rounds.create_round(ws_b, split="validation", annotators=[a1, a2], tiebreaker=tb,
                                   image_ids=rv.ids[:3], name=ROUND, client=rv.client)
        ours = {p.ls_project_id for p in rv.store.projects(int(rv.store.round(ROUND)["round_id"])).values()}
        theirs = {p.project_id for p in made.projects}
        assert theirs and not theirs & ours
        assert made.tasks_added == {"annotator1": 3, "annotator2": 3}
        assert made.tasks_adopted == {"annotator1": 0, "annotator2": 0}
        assert ReviewStore(ws_b.ledger).workspace_key() != rv.store.workspace_key()
    finally:
        ws_b.close()
