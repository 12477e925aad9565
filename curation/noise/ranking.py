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

Measured on real photos with planted noise (benchmarks/noise_bench.py: myntra-products and
clothing-cc0, 2,500 train photos each, 8% of labels corrupted under four noise models, one
out-of-sample probability file per case from an MLP head on small fixed features cross-fitted
on the noisy labels; 2 shared CPU cores), pair average precision of ifa over cleanlab's per-class
label quality on the same probabilities:

    noise model (split)              myntra          clothing
    uniform swaps (tuning)           0.469 / 0.428   0.277 / 0.235
    missing-label-heavy (tuning)     0.342 / 0.162   0.136 / 0.083
    frequency-weighted (held out)    0.426 / 0.373   0.258 / 0.219
    confusion-driven (held out)      0.364 / 0.327   0.254 / 0.228

ifa leads on all eight (ratio 1.10 to 2.11, mean 1.32; held-out mean 1.14; without the
calibration 1.09 to 1.98, mean 1.28), and on myntra's uniform swaps with the 32 px CNN's
probabilities (0.403 vs 0.362, 1.11). A second draw (--seed 1: other split, other planted
errors) gives 1.03 to 2.06, mean 1.30. Issue 6's constants
(gate 1.5, shrinkage 1000), tuned on frequency-weighted noise only, led there by 1.19 but by
only 1.02 on the features' uniform swaps and trailed on the CNN's (0.92), where most wrong
labels land in rare classes the gate silenced (see SHRINK and MIN_LIFT). On fixed
probabilities of a calibrated model (tests/test_noise.py) ifa leads on every noise model of
both datasets too.
Runs in row chunks, so 1,000,000 x 228 probabilities need no copies of the full matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EPS = 1e-6
CHUNK_ROWS = 32_768
# The constants below were chosen on the TUNING cases of benchmarks/noise_bench.py (uniform swaps
# and missing-label-heavy noise on myntra and clothing, MLP-on-fixed-features probabilities,
# plus myntra's uniform swaps under the 32 px CNN: pair AP of ifa over cleanlab's per-class
# score, the largest mean with every case >= 1.05) and reported on the held-out ones
# (frequency-weighted and confusion-driven swaps); the grid is `noise_bench --tune`.
# Pseudo-count pulling each class's noise rates toward the pooled rates. Mean AP ratio on the
# feature tuning cases (no gate): 1.24 at 100, 1.36 at 1000, 1.42 at 3000, 1.48 at 10,000,
# 1.51 at 30,000; but the CNN's uniform case fell from 1.107 (1000) and 1.056 (3000) to 0.997
# (10,000) and 0.95 (30,000): more shrinkage overfits the feature model. Issue 6's value was
# 1000, measured on frequency-weighted noise only. With the calibration (CALIBRATE) the grid was
# run again (`noise_bench --tune`, calibrate on and off): the same rule picks the same constants,
# now mean 1.506, worst 1.096 (10,000 would have a case at 1.047), and the CNN's case is 1.113.
SHRINK = 3_000.0
# A class the model cannot tell apart gets no flags when its mean probability on labelled images
# is under this many times that on the others. Issue 6 used 1.5 (measured on frequency-weighted
# noise, where such classes hold almost no errors); under uniform swaps a wrong label usually
# lands in a rare class the model barely learned, and a given label it gives almost no
# probability is suspicious even there. With the gate at 1.5 the worst tuning case fell to 1.02
# (1.11 without), the CNN's uniform case to 0.88 (1.06 without), and no tuning case gained from
# any gate (1.0 or 1.5), so there is none.
MIN_LIFT = 0.0
# Log-odds added to every absent (possibly missing) pair's score, to trade missing against wrong
# labels; the grid tried -1, 0 and +1: +1 raised the mean but let a case fall under 1.05, -1
# lowered it (1.30 vs 1.42 at shrinkage 3000).
MISSING_SHIFT = 0.0
# Per-class calibration of the model's probabilities against the given labels (Platt scaling:
# p' = sigmoid(a_j logit(p) + b_j), fitted by Newton's method on all rows, with a Gaussian prior
# of weight CALIBRATION_PRIOR pulling (a_j, b_j) toward (1, 0), i.e. "trust the model as it is").
# Measured on benchmarks/noise_bench.py: the weak models' low probabilities were overconfident
# (clothing-cc0: given labels at p < 0.01 are present 1.1% of the time, 3.7x the mean p there;
# fitted slopes 0.41-0.81, median 0.66-0.70 on clothing, 0.81-0.89 on myntra), so a raw score of
# 0.8 meant a flag right 0.18 of the time on clothing's wrong labels under missing-heavy noise.
# With calibration a score means more nearly the same on every case: the default threshold
# (defaults.DEFAULT_MIN_SCORE, 0.7) keeps precision >= 0.37 on all eight cases (raw scores at 0.8:
# 0.23 on clothing/missing), and pair AP over cleanlab rose from mean 1.277 to 1.322
# (myntra/uniform 1.111 -> 1.096, the frequency and confusion cases -0.01 to +0.02, the missing
# ones +0.13 and +0.18). Prior weight: 0.1 / 1 / 10 gave mean AP ratio 1.326 / 1.322 / 1.300 and
# the same precision curve within 0.02; 1 is the middle. A per-class slope with a shared one
# instead (one temperature for all classes) kept only 0.30 on clothing/missing at the same
# number of flags (0.33 per class): the classes differ.
CALIBRATE = True
CALIBRATION_PRIOR = 1.0
CALIBRATION_BINS = 256  # per class, over the logits of [EPS, 1 - EPS]: bins 0.11 logit wide
CALIBRATION_STEPS = 50  # Newton steps on the bins (no pass over the rows)
# A class fitted with a slope under this is one whose own errors dominate its few labels (a
# model cannot be anti-informative out of sample on a class it learned): keep the model's order
# there. No class of the benchmark's real cases came under 0.39.
MIN_SLOPE = 0.3
# A class whose probability varies by less than this over all images is one the model
# gives no evidence about (float32 noise is ~1e-7).
SPREAD_EPS = 1e-6
UNSKILLED_PENALTY = 40.0  # log-odds: pushes a pair's score under 1e-17
KINDS = ("wrong", "missing")


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
