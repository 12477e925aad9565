"""ifa review without a server: agreement statistics against reference implementations,
answer validation, the ledger's review tables, image-id files."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from ifa.annotation import agreement, answers, state
from ifa.annotation.answers import Answer
from ifa.annotation.client import Client, Connection
from ifa.annotation.rounds import read_image_ids
from ifa.curation.ledger.review import ReviewStore
from ifa.errors import IfaError
from ifa.taxonomy import DISCARD_CHOICE, DISCARD_CONTROL, Taxonomy

TAX = Taxonomy.default()


def names(*pairs):
    return [TAX.by_name(f"{g}:{n}").id for g, n in pairs]


# ---- agreement ------------------------------------------------------------------------------
def test_cohen_kappa_matches_sklearn():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 6, 500)
    b = np.where(rng.random(500) < 0.55, a, rng.integers(0, 6, 500))
    assert agreement.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    A = rng.random((300, 7)) < 0.3
    B = A ^ (rng.random((300, 7)) < 0.1)
    got = agreement.binary_kappa(A, B)
    want = [cohen_kappa_score(A[:, j], B[:, j]) for j in range(7)]
    assert got == pytest.approx(want, abs=1e-12)


def test_kappa_undefined_when_chance_agreement_is_total():
    same = np.zeros(10, dtype=int)
    assert np.isnan(agreement.cohen_kappa(same, same, 3))
    assert np.isnan(agreement.binary_kappa(np.zeros((5, 1), bool), np.zeros((5, 1), bool))[0])


def _masi(x: frozenset, y: frozenset) -> float:
    """MASI distance straight from Passonneau (2006), for checking the vectorised one."""
    if not x and not y:
        return 0.0
    j = len(x & y) / len(x | y)
    m = 1.0 if x == y else 2 / 3 if (x <= y or y <= x) else 1 / 3 if x & y else 0.0
    return 1 - j * m


def test_masi_alpha_matches_definition_and_nltk():
    rng = np.random.default_rng(2)
    A = rng.random((120, 6)) < 0.3
    B = A ^ (rng.random((120, 6)) < 0.15)
    A[:, 0] |= ~A.any(1)  # nltk's masi_distance divides by the union: no empty sets for it
    B[:, 0] |= ~B.any(1)
    sets = [frozenset(np.flatnonzero(r).tolist()) for r in np.vstack([A, B])]
    n = len(A)
    d_o = np.mean([_masi(sets[i], sets[n + i]) for i in range(n)])
    d_e = np.mean([_masi(sets[i], sets[j]) for i in range(2 * n) for j in range(2 * n) if i != j])
    assert agreement.masi_alpha(A, B) == pytest.approx(1 - d_o / d_e, abs=1e-6)
    nltk = pytest.importorskip("nltk.metrics.agreement")
    from nltk.metrics.distance import masi_distance
    task = nltk.AnnotationTask([(c, i, sets[k * n + i]) for k, c in enumerate("ab") for i in range(n)],
                               distance=masi_distance)
    assert agreement.masi_alpha(A, B) == pytest.approx(task.alpha(), abs=1e-6)


def test_masi_alpha_wide_groups_use_the_general_path():
    rng = np.random.default_rng(3)
    A = rng.random((80, 70)) < 0.05
    B = A ^ (rng.random((80, 70)) < 0.02)
    sets = [frozenset(np.flatnonzero(r).tolist()) for r in np.vstack([A, B])]
    d_o = np.mean([_masi(sets[i], sets[80 + i]) for i in range(80)])
    d_e = np.mean([_masi(sets[i], sets[j]) for i in range(160) for j in range(160) if i != j])
    assert agreement.masi_alpha(A, B) == pytest.approx(1 - d_o / d_e, abs=1e-6)


def test_group_agreement_and_confused_pairs():
    a = [names(("category", "Dresses"), ("color", "Black"), ("sleeve", "Sleeveless")),
         names(("category", "Jeans"), ("color", "Black"), ("color", "White")),
         names(("category", "Dresses"), ("sleeve", "Short Sleeves")),
         names(("category", "Skirts"))]
    b = [names(("category", "Dresses"), ("color", "Black"), ("sleeve", "Sleeveless")),
         names(("category", "Jeans"), ("color", "White")),
         names(("category", "Skirts"), ("sleeve", "Short Sleeves")),
         names(("category", "Dresses"))]
    A, B = agreement.label_matrix(a, TAX), agreement.label_matrix(b, TAX)
    g = agreement.group_agreement(A, B, TAX)
    assert g["category"]["exact"] == pytest.approx(0.5)
    codes = lambda M: agreement.group_codes(M, np.flatnonzero(TAX.group_index == TAX.group_names.index("category")))
    assert g["category"]["kappa"] == pytest.approx(cohen_kappa_score(codes(A), codes(B)))
    assert g["sleeve"]["exact"] == 1.0
    assert g["color"]["exact"] == pytest.approx(0.75)
    assert g["color"]["jaccard"] == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert set(g["color"]["label_kappa"]) == {"Black", "White"}
    pairs = agreement.confused_pairs(A, B, TAX)
    top = pairs.iloc[0]
    assert (top["group"], {top["label_a"], top["label_b"]}, top["images"]) == ("category", {"Dresses", "Skirts"}, 2)
    assert len(pairs) == 1  # Black vs nothing is not a pair of labels


# ---- answers ----------------------------------------------------------------------------------
def test_parse_result_validates_against_the_taxonomy():
    ok = answers.to_result(names(("category", "Dresses"), ("color", "Black"), ("color", "Red")), TAX)
    got = answers.parse_result(ok, TAX)
    assert got.valid and got.labels == tuple(sorted(names(("category", "Dresses"), ("color", "Black"), ("color", "Red"))))
    bad_choice = [{"from_name": "category", "to_name": "image", "type": "choices", "value": {"choices": ["Dressez"]}}]
    assert answers.parse_result(bad_choice, TAX).problems == ("unknown choice in category: 'Dressez'",)
    two = [{"from_name": "sleeve", "to_name": "image", "type": "choices",
            "value": {"choices": ["Sleeveless", "Short Sleeves"]}}]
    assert answers.parse_result(two, TAX).problems == ("several choices in single-label group sleeve",)
    ctrl = [{"from_name": "colour", "to_name": "image", "type": "choices", "value": {"choices": ["Black"]}}]
    assert answers.parse_result(ctrl, TAX).problems == ("unknown control 'colour'",)
    assert answers.parse_result([], TAX).problems == ("empty answer",)
    assert answers.parse_result([], TAX, was_cancelled=True).problems == ("skipped",)
    discard = answers.parse_result(answers.to_result([], TAX, discard=True), TAX)
    assert discard.valid and discard.discard
    assert discard == answers.parse_result(
        [{"from_name": DISCARD_CONTROL, "to_name": "image", "type": "choices", "value": {"choices": [DISCARD_CHOICE]}}], TAX)


def test_a_short_check_reads_only_the_groups_it_asked():
    """`answers.restrict`: labels and problems of groups not asked are dropped; an empty
    answer is valid (none of the asked labels applies); problems in asked groups stay."""
    both = answers.parse_result(answers.to_result(names(("category", "Dresses"), ("color", "Black")), TAX), TAX)
    assert answers.restrict(both, ["category"], TAX).labels == tuple(names(("category", "Dresses")))
    two = [{"from_name": "sleeve", "to_name": "image", "type": "choices",
            "value": {"choices": ["Sleeveless", "Short Sleeves"]}}]
    assert answers.restrict(answers.parse_result(two, TAX), ["category"], TAX).valid
    assert not answers.restrict(answers.parse_result(two, TAX), ["sleeve"], TAX).valid
    empty = answers.restrict(answers.parse_result([], TAX), ["color"], TAX)
    assert empty.valid and empty.labels == ()
    assert answers.restrict(answers.parse_result([], TAX, was_cancelled=True), ["color"], TAX).problems == ("skipped",)


def test_compare_answers():
    x, y = Answer((1, 2)), Answer((1, 3))
    assert state.compare(x, Answer((1, 2))) == state.AGREED
    assert state.compare(x, y) == state.DISAGREE
    assert state.compare(x, None) == state.WAITING
    assert state.compare(Answer((), True), Answer((), True)) == state.DISCARDED
    assert state.compare(Answer((), True), x) == state.DISAGREE
    assert state.compare(x, Answer((1, 2), problems=("unknown control 'x'",))) == state.DISAGREE


# ---- ledger --------------------------------------------------------------------------------------
def test_store_upserts_by_annotation_id(sample_ws):
    store = ReviewStore(sample_ws.ledger)
    rid = store.create_round("r", "validation", "http://x")
    assert store.create_round("r", "validation", "http://x") == rid
    with pytest.raises(IfaError, match="already exists"):
        store.create_round("r", "test", "http://x")
    row = {"ls_annotation_id": 7, "role": "annotator1", "image_id": "i", "ls_task_id": 3, "completed_by": 2,
           "by_annotator": True, "result": [{"a": 1}], "labels": [5], "discard": False, "skipped": False,
           "problems": "", "lead_time": 3.0, "created_at": "t0", "updated_at": "t0"}
    assert store.upsert_annotations(rid, [row]) == {"new": 1, "updated": 0, "unchanged": 0}
    assert store.upsert_annotations(rid, [row]) == {"new": 0, "updated": 0, "unchanged": 1}
    edited = {**row, "result": [{"a": 2}], "labels": [6], "updated_at": "t1"}
    assert store.upsert_annotations(rid, [edited]) == {"new": 0, "updated": 1, "unchanged": 0}
    stored = store.annotations(rid)
    assert len(stored) == 1 and stored.iloc[0]["labels"] == [6]
    assert store.annotation_versions(rid)["result"].tolist() == ['[{"a": 1}]']
    assert store.mark_deleted(rid, "annotator1", []) == 1
    assert store.annotations(rid).empty and len(store.annotations(rid, include_deleted=True)) == 1
    assert store.upsert_annotations(rid, [edited])["updated"] == 1  # back in Label Studio: back here
    assert store.record_tasks(rid, "annotator1", [("i", 3), ("j", 4)]) == 2
    assert store.record_tasks(rid, "annotator1", [("i", 9)]) == 0  # an image keeps its task


def test_read_image_ids(tmp_path):
    txt = tmp_path / "ids.txt"
    txt.write_text("# to review\na\n\nb\na\n")
    assert read_image_ids(txt) == ["a", "b"]
    csv = tmp_path / "ids.csv"
    csv.write_text("image_id,reason\nx,noise\ny,rule\n")
    assert read_image_ids(csv) == ["x", "y"]
    (tmp_path / "bad.csv").write_text("id,reason\nx,1\n")
    with pytest.raises(IfaError, match="no image_id column"):
        read_image_ids(tmp_path / "bad.csv")
    with pytest.raises(IfaError, match="does not exist"):
        read_image_ids(tmp_path / "nope.txt")


def test_storage_roots_are_the_image_folders_never_their_ancestor(ws, tmp_path):
    """On a server ifa does not run, each image's own folder is a root, however many there are
    (they once collapsed into their common ancestor, which served everything beside them)."""
    import shutil
    from ifa.annotation.files import task_data
    from ifa.curation.ingest import importing
    from ifa.sample import IMAGES_DIR
    folders = [tmp_path / "photos" / f"{k:02x}" for k in range(20)] + [tmp_path / "photos" / "00" / "inner"]
    lines = ["file,labels"]
    for folder, src in zip(folders, sorted(IMAGES_DIR.glob("*.jpg"))):
        folder.mkdir(parents=True)
        shutil.copy(src, folder / src.name)
        lines.append(f"{(folder / src.name).relative_to(tmp_path)},83")
    (tmp_path / "l.csv").write_text("\n".join(lines) + "\n")
    importing.import_csv(ws, tmp_path / "l.csv", "train", image_col="file", labels_col="labels")
    files = task_data(ws, ws.ledger.images_frame(["train"]), Connection("http://127.0.0.1:9", "t"))
    assert files.roots == {str(f) for f in folders} and not files.refused and not files.missing


def test_unreachable_server_is_a_clear_error():
    from ifa.annotation.server import free_port
    client = Client(Connection(f"http://127.0.0.1:{free_port()}", "token"), retries=1, backoff=0.01)
    with pytest.raises(IfaError, match="did not answer"):
        client.users()


def test_round_names_are_safe_for_rules_and_file_names(sample_ws):
    from ifa.annotation.rounds import _round_name
    store = ReviewStore(sample_ws.ledger)
    assert _round_name(store, "validation", "val-2024.1", ["a@x.io", "b@x.io"]) == ("val-2024.1", False)
    with pytest.raises(IfaError, match="must be 1-40 letters"):
        _round_name(store, "validation", "../evil", ["a@x.io", "b@x.io"])
    assert _round_name(store, "validation", None, ["a@x.io", "b@x.io"]) == ("validation-1", False)


def test_review_report_is_written_whole_or_not_at_all(sample_ws):
    """A report process whose writes fail halfway through the page (a file-size limit, as a
    full disk would) leaves no half-written page in reports/; unlimited, it writes it whole."""
    import subprocess
    import sys
    from pathlib import Path
    store, tax = ReviewStore(sample_ws.ledger), sample_ws.taxonomy
    rid = store.create_round("r", "validation", "http://127.0.0.1:9")
    labels = sample_ws.ledger.labels_frame(["validation"])
    ids = sorted(set(labels["image_id"]))
    store.add_images(rid, ids)
    rows = []
    for k, role in enumerate(("annotator1", "annotator2")):
        store.set_project(rid, role, f"a{k}@x.io", k + 1, k + 10, f"r A{k + 1}")
        store.record_tasks(rid, role, [(i, 1000 * (k + 1) + n) for n, i in enumerate(ids)])
        for n, image_id in enumerate(ids):  # annotator 2 swaps every label for its group's next one
            mine = [int(x) for x in labels.loc[labels["image_id"] == image_id, "label_id"]]
            if k:
                nxt = {g.label_ids[j]: g.label_ids[(j + 1) % len(g.label_ids)] for g in tax.groups
                       for j in range(len(g.label_ids))}
                mine = [nxt[x] for x in mine]
            rows.append({"ls_annotation_id": 1000 * (k + 1) + n, "role": role, "image_id": image_id,
                         "ls_task_id": 1000 * (k + 1) + n, "completed_by": k + 1, "by_annotator": True, "result": [],
                         "labels": sorted(set(mine)), "discard": False, "skipped": False, "problems": "",
                         "lead_time": 5.0, "created_at": "2026-01-01T10:00:00Z", "updated_at": "2026-01-01T10:00:00Z"})
    store.upsert_annotations(rid, rows)
    sample_ws.close()
    code = ("import resource, signal, sys\n"
            "from ifa.annotation.report import report\n"
            "from ifa.curation.workspace import Workspace\n"
            "ws = Workspace.open(sys.argv[1], command='test')\n"
            "ws.ledger.images_frame(['validation'])\n"
            "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot  # its font cache is written here\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))\n"
            "print(report(ws, 'r').html)\n")

    def run(limit: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, str(sample_ws.root), str(limit)], capture_output=True,
                              text=True, timeout=300)

    whole = run(2 ** 40)
    assert whole.returncode == 0, whole.stderr[-2000:]
    page = Path(whole.stdout.strip())
    reports = page.parent
    assert page.read_text().endswith("</body></html>")
    written = sorted(reports.glob("review-r-*"))
    assert sorted(p.suffix for p in written) == [".html", ".png", ".png", ".png"]
    biggest_plot = max(p.stat().st_size for p in written if p.suffix == ".png")
    assert page.stat().st_size > biggest_plot + 1000  # the limit below stops the page, not the plots
    for p in written:
        p.unlink()
    failed = run(biggest_plot + 500)
    assert failed.returncode != 0 and "File too large" in failed.stderr, failed.stderr[-2000:]
    assert [p.suffix for p in reports.glob("review-r-*")].count(".html") == 0
    assert not [p.name for p in reports.iterdir() if p.name.startswith(".review-r")]  # no temp left either
