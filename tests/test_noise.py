"""Ranking label issues over arrays: planted errors first, groups respected, chunking exact."""

from __future__ import annotations

import numpy as np
import pytest

from ifa.curation.noise import ranking as noise


def _data(n=2000, k=12, seed=0, flips=40):
    """Labels, planted errors and probabilities of a decent model of the CLEAN labels."""
    rng = np.random.default_rng(seed)
    truth = rng.random((n, k)) < np.linspace(0.05, 0.4, k)
    logits = np.where(truth, 2.0, -3.0) + rng.normal(0, 1.2, (n, k))
    probs = (1 / (1 + np.exp(-logits))).astype(np.float32)
    given = truth.copy()
    cells = rng.choice(n * k, flips, replace=False)
    given.flat[cells] = ~given.flat[cells]
    return given, probs, given != truth


def test_planted_errors_rank_first():
    labels, probs, errors = _data()
    ranked = noise.rank_label_issues(labels, probs, confident_only=False, min_score=None)
    top = ranked.head(int(errors.sum()))
    precision = errors[top["row"], top["column"]].mean()
    assert precision > 0.6  # 40 planted errors among 24,000 pairs
    assert ranked["score"].is_monotonic_decreasing
    kinds = np.where(labels[ranked["row"], ranked["column"]], "wrong", "missing")
    assert (ranked["kind"].to_numpy() == kinds).all()


def test_chunked_equals_whole():
    labels, probs, _ = _data(n=700)
    groups = np.arange(12) // 4
    single = np.array([True, False, True])
    whole = noise.rank_label_issues(labels, probs, groups, single, chunk_rows=10_000)
    chunked = noise.rank_label_issues(labels, probs, groups, single, chunk_rows=64)
    assert whole.equals(chunked)
    topped = noise.rank_label_issues(labels, probs, groups, single, top=5, chunk_rows=64)
    assert topped.equals(whole.head(5).reset_index(drop=True))


def test_single_label_group_competes():
    # One single-label group of three labels; a decent model; then two probe images given label 0.
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 600)
    labels = np.eye(3, dtype=bool)[truth]
    probs = np.where(labels, 0.8, 0.1) + rng.normal(0, 0.05, labels.shape)
    probs[0], probs[1] = [0.9, 0.7, 0.05], [0.05, 0.9, 0.05]  # row 0: label 0 looks right; row 1: label 1 does
    labels[0], labels[1] = [True, False, False], [True, False, False]
    probs = np.clip(probs, 0.001, 0.999).astype(np.float32)
    groups = np.zeros(3, dtype=np.int64)
    plain = noise.scores(labels, probs, groups, np.array([False]))
    single = noise.scores(labels, probs, groups, np.array([True]))
    # Row 0 already has a label the model believes, so label 1 is no likely missing label there.
    assert single[0, 1] < plain[0, 1]
    assert single[0, 1] < single[1, 1]
    # Row 1: the given label is wrong and its competitor missing; both outrank row 0's pairs.
    assert min(single[1, 0], single[1, 1]) > max(single[0, 0], single[0, 1])


def test_min_score_and_shapes():
    labels, probs, _ = _data(n=300)
    ranked = noise.rank_label_issues(labels, probs, min_score=0.9, confident_only=False)
    assert (ranked["score"] >= 0.9).all()
    with pytest.raises(ValueError):
        noise.rank_label_issues(labels[:10], probs)
    empty = noise.rank_label_issues(np.zeros((3, 2), bool), np.zeros((3, 2), np.float32), min_score=0.99)
    assert list(empty.columns) == ["row", "column", "kind", "score", "prob"] and len(empty) == 0
