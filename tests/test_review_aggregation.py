"""Answers weighed by reliability (annotation/aggregation.py): pure arrays, no server.

The answers come from the benchmark's error model (`simulate.slip` with the per-group
tables) on the real labels of the bundled sample's validation split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ifa.annotation import aggregation, simulate
from ifa.curation.ingest import importing
from ifa.sample import IMAGES_DIR, split_file
from ifa.taxonomy import Taxonomy

TAX = Taxonomy.default()
GROUPS = aggregation.group_columns(TAX)
# ../shared/data beside the repository (IFA_SHARED_DATA elsewhere, e.g. from a worktree)
MYNTRA = Path(os.environ.get("IFA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "myntra-products"


def matrix(label_sets) -> np.ndarray:
    cols = {int(x): k for k, x in enumerate(TAX.label_ids)}
    m = np.zeros((len(label_sets), len(cols)), bool)
    for r, labels in enumerate(label_sets):
        m[r, [cols[int(x)] for x in labels]] = True
    return m


def sample_truth(ws) -> list[tuple[int, ...]]:
    importing.import_imat(ws, split_file("validation"), "validation", images_dir=IMAGES_DIR)
    labels = ws.ledger.labels_frame(["validation"])
    return [tuple(sorted(int(x) for x in g)) for _, g in labels.groupby("image_id")["label_id"]]


def blind_trio(truth, group: str):
    """Every image answered by an exact annotator (0) and two (1, 2) who confuse `group`'s
    labels the same systematic way (each with the next one, as red with green): on that
    group the wrong answer is the majority on every image."""
    ids = list(TAX.group(group).label_ids)
    shift = {a: b for a, b in zip(ids, ids[1:] + ids[:1])}
    rows = [(i, 0, list(t)) for i, t in enumerate(truth)]
    rows += [(i, w, sorted(shift.get(x, x) for x in t)) for w in (1, 2) for i, t in enumerate(truth)]
    return matrix([r[2] for r in rows]), np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def check_gold_anchors(truth, group: str, n_gold: int):
    T = matrix(truth)
    k = next(j for j, g in enumerate(GROUPS) if g.name == group)
    cols = GROUPS[k].columns
    V, items, workers = blind_trio(truth, group)
    n = len(truth)
    disputed = np.flatnonzero(T[:, cols].any(1))
    assert len(disputed) > n_gold + 10
    # Without gold the systematic majority wins.
    blind = aggregation.aggregate(V, items, workers, n, 3, GROUPS)
    assert (blind.decision[np.ix_(disputed, cols)] != T[np.ix_(disputed, cols)]).any(1).all()
    gold_mask = np.zeros(n, bool)
    gold_mask[disputed[:n_gold]] = True
    anchored = aggregation.aggregate(V, items, workers, n, 3, GROUPS, gold=T, gold_mask=gold_mask)
    rest = disputed[n_gold:]
    assert (anchored.decision[np.ix_(rest, cols)] == T[np.ix_(rest, cols)]).all()
    if GROUPS[k].single:  # a confusion matrix learns the swap; one sensitivity per group cannot
        assert (anchored.confidence[rest, k] > 0.95).all()
    rel = anchored.reliability[group]
    assert (rel.high[1:] < rel.low[0]).all()  # the blind ones' intervals lie wholly below
    other = "gender" if group != "gender" else "category"
    assert anchored.reliability[other].estimate.min() > 0.9  # ... and only on their blind group
    return rel


def test_gold_anchors_reliability(ws):
    check_gold_anchors(sample_truth(ws), "category", n_gold=5)


@pytest.mark.skipif(not MYNTRA.exists(), reason="the shared Myntra photos are not on this machine")
def test_gold_anchors_a_colour_blind_annotator():
    from benchmarks.review_cost import read_truth

    _, truth = read_truth(MYNTRA, TAX)
    rel = check_gold_anchors(truth[:300], "color", n_gold=15)
    assert rel.sensitivity[1] < 0.2 < 0.5 < rel.sensitivity[0]
    assert rel.specificity[1] < rel.specificity[0]


def test_careless_votes_count_for_less(ws):
    truth = sample_truth(ws)
    T = matrix(truth)
    rng = np.random.default_rng(3)
    pool = ["careful", "careful", "careful", "careless"]
    rows = [(i, w, simulate.slip(t, TAX, simulate.ERROR_TABLES[pool[w]], rng))
            for i, t in enumerate(truth) for w in range(4)] * 1
    V = matrix([r[2] for r in rows])
    items, workers = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    agg = aggregation.aggregate(V, items, workers, len(truth), 4, GROUPS)
    est = np.array([agg.reliability[g.name].estimate for g in GROUPS])  # (G, W)
    assert (est[:, 3] < est[:, :3].min(1)).all()
    # Images where the careless one is right against one careful slip are rare; where
    # the careless one disagrees with two careful people who agree, the careful win.
    assert (agg.decision != T).sum() < (V[workers == 3] != T).sum() / 4


def test_model_prior_is_one_more_vote():
    # One label, two annotators who disagree, equally reliable: the model decides.
    groups = [aggregation.GroupColumns("color", np.array([0]), False)]
    V = np.array([[True], [False]] * 50)
    items = np.repeat(np.arange(50), 2)
    workers = np.tile([0, 1], 50)
    prior = np.full((50, 1), np.nan)
    prior[:25] = 0.9
    prior[25:] = 0.1
    agg = aggregation.aggregate(V, items, workers, 50, 2, groups, prior=prior)
    assert agg.decision[:25, 0].all() and not agg.decision[25:, 0].any()


def test_wilson_and_answers_to_tell():
    p, low, high = aggregation.wilson(np.array([2.0, 0.0]), np.array([3.0, 0.0]))
    assert low[0] < 0.25 and high[0] > 0.9 and np.isnan(p[1]) and (low[1], high[1]) == (0.0, 1.0)
    # One miss in three gold answers tells nothing against a 0.9 median; a dozen more would.
    assert 10 < aggregation.answers_to_tell(2 / 3, 0.9, 3) < 20
    assert aggregation.answers_to_tell(0.3, 0.9, 100) == 0


def test_the_cached_form_reads_back_the_same_decisions():
    """What the ledger caches (`to_bytes`) reads back with the same decisions, confidence and
    reliability; the posterior within float16's precision."""
    rng = np.random.default_rng(3)
    truth = [tuple(sorted(rng.choice(TAX.label_ids, size=4, replace=False))) for _ in range(60)]
    votes = matrix([t for t in truth for _ in range(2)])
    votes ^= rng.random(votes.shape) < 0.01
    items = np.repeat(np.arange(60), 2)
    workers = np.tile([0, 1], 60)
    agg = aggregation.aggregate(votes, items, workers, 60, 2, GROUPS)
    back = aggregation.from_bytes(aggregation.to_bytes(agg))
    assert np.array_equal(back.decision, agg.decision) and np.array_equal(back.confidence, agg.confidence)
    assert np.abs(back.posterior - agg.posterior).max() < 1e-3 and back.iterations == agg.iterations
    for g, rel in agg.reliability.items():
        for name in ("estimate", "low", "high", "answers", "sensitivity", "specificity"):
            a, b = getattr(rel, name), getattr(back.reliability[g], name)
            assert (a is None and b is None) or np.array_equal(a, b, equal_nan=True)


def test_a_group_not_asked_is_not_an_answer():
    """In a short check the rows of an image not asked a group hold nothing there: fitted
    on the rows asked only, that group's empty answers neither count as answers nor make
    the annotators look reliable; a group asked of no row has no estimate."""
    rng = np.random.default_rng(5)
    truth = [tuple(sorted(rng.choice(TAX.label_ids, size=5, replace=False))) for _ in range(40)]
    votes = matrix([t for t in truth for _ in range(2)])
    items, workers = np.repeat(np.arange(40), 2), np.tile([0, 1], 40)
    names = list(TAX.group_names)
    asked = np.zeros((80, len(names)), bool)
    asked[:, names.index("category")] = True
    asked[:40, names.index("color")] = True  # color asked of the first 20 images only
    votes[40:, [c for g in GROUPS if g.name == "color" for c in g.columns]] = False  # their pages offered none
    agg = aggregation.aggregate(votes, items, workers, 40, 2, GROUPS, asked=asked)
    assert list(agg.reliability["category"].answers) == [40, 40]
    assert list(agg.reliability["color"].answers) == [20, 20]
    assert np.isnan(agg.reliability["pattern"].estimate).all() and list(agg.reliability["pattern"].answers) == [0, 0]
    full = aggregation.aggregate(votes, items, workers, 40, 2, GROUPS)
    assert list(full.reliability["pattern"].answers) == [40, 40]
