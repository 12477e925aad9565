"""Rank (image, label) pairs by how likely their given label is wrong, from out-of-sample
probabilities: plain functions over arrays, no ledger, no model.

Inputs everywhere: `labels` bool (n, K), the given labels; `probs` float (n, K), out-of-sample
P(label | image) from a model that never trained on that image; `groups` int (K,), the group
of each column; `single` bool (G,), whether group g allows one label per image.

The method, confident learning per class plus a Bayes ranking:
0. Each class's probabilities are calibrated against the given labels (Platt scaling, shrunk
   toward no change; `fit_calibration`): weak models are overconfident, and every score below
   inherits their confidence.
1. Labels compete in single-label groups: within such a group an image's probabilities are
   scaled down to sum to at most 1 (`competing`).
2. Per class j, the confident-learning thresholds: `t_pos[j]`, the mean probability over the
   images labelled j, and `t_neg[j]`, the mean over the others. An unlabelled image with
   p >= t_pos[j] is confidently j (a *missing* label); a labelled one with p <= t_neg[j] is
   confidently not j (a *wrong* label). These counts, calibrated to the class sizes, give
   each class's noise rates: `rate_add` = P(given | truly absent) and `rate_drop` =
   P(absent | truly present), shrunk toward the rates pooled over all classes (a class with
   30 images cannot support its own estimate; measured, the pooled rates should dominate).
3. Each pair's score is the posterior probability that its label is in error under those
   rates: log-odds log(rate_add / (1 - rate_drop)) - logit(p) for a given label and
   log(rate_drop / (1 - rate_add)) + logit(p) for an absent one. In a single-label group
   that already has a given label, a suggested replacement is only as likely as the given
   label is wrong, so its log-odds are averaged with that label's.

Measured against cleanlab's per-class label quality on the same probabilities, on real photos
with planted noise under four noise models (`python -m benchmarks.noise_bench --quality`; the
table is in the README's benchmark section): ifa's pair average precision leads on every case.
Runs in row chunks, so 1,000,000 x 228 probabilities need no copies of the full matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EPS = 1e-6
CHUNK_ROWS = 32_768
# Each constant below was chosen on the tuning noise models of `python -m benchmarks.noise_bench
# --quality --tune` (the largest mean pair AP over cleanlab with every case >= 1.05) and checked on
# the held-out ones; the grid's numbers are in the README's benchmark section.
SHRINK = 3_000.0  # pseudo-count pulling each class's noise rates to the pooled ones: a small class cannot support its own
MIN_LIFT = 0.0  # no separability gate: under uniform swaps a wrong label lands in a rare class the gate would silence
MISSING_SHIFT = 0.0  # log-odds added to absent pairs: +1 or -1 lowered the worst or the mean case
CALIBRATE = True  # Platt-scale each class first: a weak model's low probabilities are overconfident
CALIBRATION_PRIOR = 1.0  # weight pulling (slope, intercept) to (1, 0); 0.1-10 gave the same precision curve
CALIBRATION_BINS = 256  # per class, over the logits of [EPS, 1 - EPS]: bins 0.11 logit wide
CALIBRATION_STEPS = 50  # Newton steps on the bins (no pass over the rows)
MIN_SLOPE = 0.3  # a fitted slope under this means the class's own errors dominate: keep the model's order
# A class whose probability varies by less than this over all images is one the model
# gives no evidence about (float32 noise is ~1e-7).
SPREAD_EPS = 1e-6
UNSKILLED_PENALTY = 40.0  # log-odds: pushes a pair's score under 1e-17
KINDS = ("wrong", "missing")  # what rank_label_issues returns; flag-noise marks swaps after (suggestions.mark_swaps)


@dataclass
class NoiseRates:
    """Per-class confident-learning estimates (arrays of shape (K,))."""

    t_pos: np.ndarray  # mean competing probability over labelled images (missing-label threshold)
    t_neg: np.ndarray  # mean over unlabelled images (wrong-label threshold)
    rate_add: np.ndarray  # estimated P(label given | truly absent)
    rate_drop: np.ndarray  # estimated P(label absent | truly present)
    n_pos: np.ndarray  # labelled images per class
    est_wrong: np.ndarray  # confident-learning estimate of wrong given labels per class
    est_missing: np.ndarray  # ... of missing labels per class
    min_lift: float = MIN_LIFT
    missing_shift: float = MISSING_SHIFT  # log-odds added to every absent pair's (see MISSING_SHIFT)
    spread: np.ndarray | None = None  # max - min of the model's probability over all images
    slope: np.ndarray | None = None  # per-class calibration (see CALIBRATE); None: the model's probabilities as they are
    intercept: np.ndarray | None = None

    @property
    def calibration(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self.slope is None else (self.slope, self.intercept)

    @property
    def skilled(self) -> np.ndarray:
        """bool (K,): classes the model separates well enough (min_lift) to be flagged at all.
        Whatever min_lift, a class whose probability is the same on every image (`spread` 0:
        a head that collapsed, a constant column) gives no evidence either way: a flag there
        would rest on nothing, and the report lists the class instead (flag.py `_unjudged`)."""
        informative = self.spread > SPREAD_EPS if self.spread is not None else True
        return (self.n_pos > 0) & informative & (self.t_pos >= self.min_lift * self.t_neg)

    @property
    def estimated_errors(self) -> int:
        return int(round(float(self.est_wrong.sum() + self.est_missing.sum())))


def _check(labels: np.ndarray, probs: np.ndarray, groups: np.ndarray | None, single: np.ndarray | None):
    if labels.shape != probs.shape or labels.ndim != 2:
        raise ValueError(f"labels {labels.shape} and probs {probs.shape} must be the same (n, K) shape")
    k = labels.shape[1]
    groups = np.zeros(k, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    if groups.shape != (k,):
        raise ValueError(f"groups must give one group per column ({k}), not {groups.shape}")
    n_groups = int(groups.max()) + 1 if k else 0
    single = np.zeros(n_groups, dtype=bool) if single is None else np.asarray(single, dtype=bool)
    if len(single) < n_groups:
        raise ValueError("single must say, for every group index used, whether it is single-label")
    return groups, [np.flatnonzero(groups == g) for g in np.flatnonzero(single[:n_groups])]


def competing(probs: np.ndarray, single_cols: list[np.ndarray],
              calibration: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """float64 copy of a chunk of `probs`, calibrated per class when `calibration` (slopes,
    intercepts from `fit_calibration`) is given, where each single-label group's probabilities
    are scaled to sum to at most 1 per image (labels of such a group compete)."""
    q = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    if calibration is not None:
        slope, intercept = calibration
        q = np.clip(_sigmoid(slope * _logit(q) + intercept), EPS, 1 - EPS)
    for cols in single_cols:
        sub = q[:, cols]
        q[:, cols] = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1.0)
    return q


# Written here rather than with sklearn's LogisticRegression per class: that would read all
# rows of each of the 228 classes again (228 passes over 1M rows); binning the logits in the
# one chunked pass the ranking already makes leaves a fit on 256 points per class.
def fit_calibration(labels: np.ndarray, probs: np.ndarray, chunk_rows: int = CHUNK_ROWS,
                    prior: float = CALIBRATION_PRIOR, min_slope: float = MIN_SLOPE) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Platt scaling of `probs` against the given `labels`: (slope, intercept),
    float64 arrays of shape (K,), maximising the likelihood of sigmoid(slope logit(p) +
    intercept) with a Gaussian prior of weight `prior` toward (1, 0). One pass over the rows
    (in chunks) bins each class's logits (CALIBRATION_BINS); the fit is then Newton's method
    with step halving on the bins, so it converges on any data (plain Newton from (1, 0)
    diverged on a model twice too confident). A slope under `min_slope` is held there (see
    MIN_SLOPE). The labels hold the very errors being looked for, but they are a few percent of
    each class: the fit measures how far to trust the model's probabilities, not which labels
    are wrong."""
    n, k = labels.shape
    bins = CALIBRATION_BINS
    edge = float(_logit(np.array([EPS]))[0])  # logits lie in [edge, -edge]
    count, pos, xsum = (np.zeros(k * bins) for _ in range(3))
    offset = np.arange(k) * bins
    for s in _chunks(n, chunk_rows):
        x = _logit(np.clip(np.asarray(probs[s], dtype=np.float64), EPS, 1 - EPS))
        idx = (np.clip(((x - edge) / (-2 * edge) * bins).astype(np.int64), 0, bins - 1) + offset).ravel()
        count += np.bincount(idx, minlength=k * bins)
        pos += np.bincount(idx, weights=np.asarray(labels[s], dtype=np.float64).ravel(), minlength=k * bins)
        xsum += np.bincount(idx, weights=x.ravel(), minlength=k * bins)
    count, pos = count.reshape(k, bins), pos.reshape(k, bins)
    x = np.where(count > 0, xsum.reshape(k, bins) / np.maximum(count, 1), 0.0)

    def loss(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        z = a[:, None] * x + b[:, None]
        return (count * np.logaddexp(0.0, z) - pos * z).sum(axis=1) + prior / 2 * ((a - 1) ** 2 + b ** 2)

    slope, intercept = np.ones(k), np.zeros(k)
    held = np.zeros(k, dtype=bool)
    for _ in range(2):  # again, only if some slope ended under min_slope, with those held there
        current = loss(slope, intercept)
        for _ in range(CALIBRATION_STEPS):
            z = slope[:, None] * x + intercept[:, None]
            p = _sigmoid(z)
            r, w = count * p - pos, count * p * (1 - p)
            ga, gb = (r * x).sum(axis=1) + prior * (slope - 1), r.sum(axis=1) + prior * intercept
            haa, hab, hbb = (w * x * x).sum(axis=1) + prior, (w * x).sum(axis=1), w.sum(axis=1) + prior
            det = haa * hbb - hab * hab
            step_a = np.where(held, 0.0, (hbb * ga - hab * gb) / det)
            step_b = np.where(held, gb / hbb, (haa * gb - hab * ga) / det)
            t = np.ones(k)
            for _ in range(30):  # halve each class's step until its loss does not rise
                trial = loss(slope - t * step_a, intercept - t * step_b)
                worse = trial > current + 1e-9
                if not worse.any():
                    break
                t = np.where(worse, t / 2, t)
            slope, intercept = slope - t * step_a, intercept - t * step_b
            current = loss(slope, intercept)
            if max(np.abs(t * step_a).max(initial=0), np.abs(t * step_b).max(initial=0)) < 1e-6:
                break
        low = ~held & (slope < min_slope)
        if not low.any():
            break
        held |= low
        slope = np.where(held, min_slope, slope)
    return slope, intercept


def _chunks(n: int, rows: int):
    for first in range(0, n, rows):
        yield slice(first, min(first + rows, n))


def estimate_rates(labels: np.ndarray, probs: np.ndarray, groups: np.ndarray | None = None,
                   single: np.ndarray | None = None, shrink: float = SHRINK, chunk_rows: int = CHUNK_ROWS,
                   min_lift: float = MIN_LIFT, missing_shift: float = MISSING_SHIFT,
                   calibrate: bool = CALIBRATE) -> NoiseRates:
    """Per-class confident-learning thresholds and noise rates (see the module docstring),
    on the probabilities calibrated per class first when `calibrate` (`fit_calibration`).

    Two passes over the rows: one for the thresholds, one for the confident counts (and up to
    CALIBRATION_STEPS before them for the calibration)."""
    groups, single_cols = _check(labels, probs, groups, single)
    n, k = labels.shape
    cal = fit_calibration(labels, probs, chunk_rows) if calibrate else None
    n_pos = np.zeros(k)
    sum_pos = np.zeros(k)
    sum_all = np.zeros(k)
    low_q, high_q = np.full(k, np.inf), np.full(k, -np.inf)
    for s in _chunks(n, chunk_rows):
        q, y = competing(probs[s], single_cols, cal), labels[s]
        if len(q):  # of the model's own probabilities: competition mixes in the group's other classes
            low_q, high_q = np.minimum(low_q, probs[s].min(axis=0)), np.maximum(high_q, probs[s].max(axis=0))
        n_pos += y.sum(axis=0)
        sum_pos += np.where(y, q, 0.0).sum(axis=0)
        sum_all += q.sum(axis=0)
    n_neg = n - n_pos
    t_pos = np.where(n_pos > 0, sum_pos / np.maximum(n_pos, 1), np.inf)  # no labelled images: never "confidently j"
    t_neg = np.where(n_neg > 0, (sum_all - sum_pos) / np.maximum(n_neg, 1), -np.inf)
    c10, c11, c01, c00 = (np.zeros(k) for _ in range(4))  # c<given><confident truth>
    for s in _chunks(n, chunk_rows):
        q, y = competing(probs[s], single_cols, cal), labels[s]
        low, high = q <= t_neg, q >= t_pos
        c10 += (y & low).sum(axis=0)
        c11 += (y & high).sum(axis=0)
        c01 += (~y & high).sum(axis=0)
        c00 += (~y & low).sum(axis=0)
    # Calibrate the confident counts so each given-label row sums to its class size (CL, eq. 3).
    q10 = n_pos * c10 / np.maximum(c10 + c11, 1)
    q01 = n_neg * c01 / np.maximum(c01 + c00, 1)
    q11, q00 = n_pos - q10, n_neg - q01
    pooled_add = q10.sum() / max((q10 + q00).sum(), 1.0)
    pooled_drop = q01.sum() / max((q01 + q11).sum(), 1.0)
    rate_add = (q10 + shrink * pooled_add) / (q10 + q00 + shrink)
    rate_drop = (q01 + shrink * pooled_drop) / (q01 + q11 + shrink)
    rate_add = np.clip(rate_add, EPS, 0.5)  # noise beyond a coin flip would make the labels meaningless
    rate_drop = np.clip(rate_drop, EPS, 1 - EPS)
    return NoiseRates(t_pos, t_neg, rate_add, rate_drop, n_pos, q10, q01, min_lift, missing_shift,
                      spread=np.maximum(high_q - low_q, 0.0), slope=None if cal is None else cal[0],
                      intercept=None if cal is None else cal[1])


def log_odds(labels: np.ndarray, q: np.ndarray, rates: NoiseRates, single_cols: list[np.ndarray]) -> np.ndarray:
    """Log-odds that each pair's label is in error, for a chunk of competing probabilities `q`."""
    logit = _logit(q)
    prior_wrong = np.log(rates.rate_add) - np.log1p(-rates.rate_drop)
    prior_missing = np.log(rates.rate_drop) - np.log1p(-rates.rate_add) + rates.missing_shift
    s = np.where(labels, prior_wrong - logit, prior_missing + logit)
    for cols in single_cols:
        y, sub = labels[:, cols], s[:, cols]
        given = y.any(axis=1)
        if not given.any():
            continue
        # A replacement in a single-label group needs its given label to be wrong too.
        worst_given = np.where(y, sub, -np.inf).max(axis=1, keepdims=True)
        s[:, cols] = np.where(given[:, None] & ~y, (sub + worst_given) / 2, sub)
    # The model cannot separate these classes: their pairs rank below every other pair (and
    # are never flagged), but keep their order among themselves for whoever reads the whole ranking.
    s[:, ~rates.skilled] -= UNSKILLED_PENALTY
    return s


def scores(labels: np.ndarray, probs: np.ndarray, groups: np.ndarray | None = None, single: np.ndarray | None = None,
           rates: NoiseRates | None = None, shrink: float = SHRINK, chunk_rows: int = CHUNK_ROWS,
           min_lift: float = MIN_LIFT, missing_shift: float = MISSING_SHIFT, calibrate: bool = CALIBRATE) -> np.ndarray:
    """float32 (n, K): for every pair, the estimated probability that its label is in
    error (a given label that is wrong, or an absent label that is missing); about 0 for
    the classes the model does not separate."""
    groups, single_cols = _check(labels, probs, groups, single)
    rates = rates or estimate_rates(labels, probs, groups, single, shrink, chunk_rows, min_lift, missing_shift, calibrate)
    out = np.empty(labels.shape, dtype=np.float32)
    for s in _chunks(len(labels), chunk_rows):
        out[s] = _sigmoid(log_odds(labels[s], competing(probs[s], single_cols, rates.calibration), rates, single_cols))
    return out


def rank_label_issues(labels: np.ndarray, probs: np.ndarray, groups: np.ndarray | None = None,
                      single: np.ndarray | None = None, *, top: int | None = None, min_score: float | None = None,
                      confident_only: bool = True, rates: NoiseRates | None = None, shrink: float = SHRINK,
                      chunk_rows: int = CHUNK_ROWS, min_lift: float = MIN_LIFT,
                      missing_shift: float = MISSING_SHIFT, calibrate: bool = CALIBRATE) -> pd.DataFrame:
    """The likely label errors, most likely first.

    labels: bool (n, K) given labels; probs: float (n, K) out-of-sample probabilities;
    groups: int (K,) group of each column; single: bool (G,) single-label groups.
    confident_only: keep only pairs past the class's confident-learning threshold (a given
    label with p <= t_neg, an absent one with p >= t_pos); classes the model does not
    separate (`NoiseRates.skilled`) are never flagged; min_score: keep pairs scoring at
    least this; top: keep the best `top`. Memory stays at a few chunks plus the kept pairs.

    Returns a DataFrame sorted by score (descending) with columns row (image row), column
    (label column), kind ('wrong' | 'missing'), score (estimated probability of error), prob
    (the model's probability for that label). Raises ValueError for mismatched shapes."""
    groups, single_cols = _check(labels, probs, groups, single)
    rates = rates or estimate_rates(labels, probs, groups, single, shrink, chunk_rows, min_lift, missing_shift, calibrate)
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    n_kept = 0
    for s in _chunks(len(labels), chunk_rows):
        y = labels[s]
        q = competing(probs[s], single_cols, rates.calibration)
        score = _sigmoid(log_odds(y, q, rates, single_cols))
        keep = np.broadcast_to(rates.skilled, y.shape).copy()
        if confident_only:
            keep &= np.where(y, q <= rates.t_neg, q >= rates.t_pos)
        if min_score is not None:
            keep &= score >= min_score
        r, c = np.nonzero(keep)
        if not len(r):
            continue
        kept.append((r + s.start, c, score[r, c].astype(np.float32), np.asarray(probs[s])[r, c].astype(np.float32)))
        n_kept += len(r)
        if top is not None and n_kept > 4 * top:  # bound memory: keep only the running best
            kept = [_best(kept, top)]
            n_kept = len(kept[0][0])
    rows, cols, sc, pr = _best(kept, top) if kept else (np.array([], np.int64),) * 2 + (np.array([], np.float32),) * 2
    order = np.lexsort((cols, rows, -sc))  # ties: by image, then column, so the order is stable
    rows, cols, sc, pr = rows[order], cols[order], sc[order], pr[order]
    return pd.DataFrame({"row": rows.astype(np.int64), "column": cols.astype(np.int64),
                         "kind": np.where(labels[rows, cols], "wrong", "missing") if len(rows) else np.array([], dtype=object),
                         "score": sc, "prob": pr})


def _best(parts: list[tuple[np.ndarray, ...]], top: int | None) -> tuple[np.ndarray, ...]:
    rows, cols, sc, pr = (np.concatenate([p[i] for p in parts]) for i in range(4))
    if top is not None and len(sc) > top:
        idx = np.argpartition(-sc, top - 1)[:top] if top > 0 else np.array([], dtype=np.int64)
        rows, cols, sc, pr = rows[idx], cols[idx], sc[idx], pr[idx]
    return rows, cols, sc, pr


def _logit(q: np.ndarray) -> np.ndarray:
    return np.log(q) - np.log1p(-q)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|
