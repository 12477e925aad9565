"""Answers weighed by each annotator's measured reliability: an EM per group, over arrays.

Two people rarely give exactly the same colour, material and pattern sets, and a careless
or colour-blind annotator should not count as much as a careful one. This module learns,
per group, how reliable each annotator is from all of a round's answers (Dawid and Skene's
EM), anchored by gold answers whose truth is known, and returns each label's posterior:

- multi-label groups (colour, gender, material, pattern): each label of each image is a
  yes/no question; an annotator has one sensitivity and one specificity per group;
- single-label groups (category, neckline, sleeve, style): the group's answer is one of
  its labels or none; an annotator has a confusion matrix per group, shrunk towards their
  overall accuracy in that group so that a round of a few hundred images can fit 106
  categories;
- the cross-fitted model's out-of-sample probability, where there is one, is the prior
  of each question (one more vote, clipped so that it never outweighs two people).

Everything is a pure function over numpy arrays. Shapes: R answers (rows), N items
(images), L labels (columns of `taxonomy.label_ids`), W annotators, G groups.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

Z95 = 1.959964  # two-sided 95% normal quantile
# Beta priors (pseudo-answers) on sensitivity and specificity. Without gold answers an
# annotator is presumed to give 90% of the labels that are there, worth 10 answers: in a
# sparse group (colour is on none of the sample's images) a weak prior lets the EM slide
# into the fit where labels are present and everyone misses them. Gold holding three or
# more of the group's labels an annotator answered replaces the presumption with a weak
# prior: two people who err the same way must not outvote it
# (tests/test_review_aggregation.py, benchmarks/review_cost.py on clothing-cc0).
SENS_PRIOR = (9.0, 1.0)
SENS_PRIOR_WITH_GOLD = (2.0, 1.0)
SPEC_PRIOR = (2.0, 1.0)
# Pseudo-answers pulling a single-label confusion row towards the annotator's accuracy
# in the group (a one-coin model): most of 106 categories are seen a few times a round.
SHRINK = 5.0
# The model's probability is clipped to this range before it becomes a prior: a prior
# of 0.95 is outweighed by two careful annotators who disagree with it.
PRIOR_CLIP = (0.05, 0.95)
EPS = 1e-9
SHARPEN_BELOW = 0.2  # see _sharpen


@dataclass(frozen=True)
class GroupColumns:
    """A label group: its name, its columns in the label matrix, single or multi-label."""

    name: str
    columns: np.ndarray
    single: bool


@dataclass
class Reliability:
    """One group's reliability per annotator, arrays of shape (W,). estimate: the share of
    their answers to the group that are exactly right (expected under the posterior), with
    a 95% Wilson interval [low, high] over `answers`; multi-label groups also carry
    sensitivity (share of present labels given) and specificity (share of absent labels
    left out) with their intervals. NaN where an annotator gave the group no answer."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    answers: np.ndarray
    sensitivity: np.ndarray | None = None
    sensitivity_low: np.ndarray | None = None
    sensitivity_high: np.ndarray | None = None
    specificity: np.ndarray | None = None
    specificity_low: np.ndarray | None = None
    specificity_high: np.ndarray | None = None


@dataclass
class Aggregate:
    """posterior (N, L): P(label present); decision (N, L) bool: the labels decided;
    confidence (N, G): P(the group's decided labels are exactly right), groups in the
    order given; reliability {group: Reliability}; iterations: EM steps per group."""

    posterior: np.ndarray
    decision: np.ndarray
    confidence: np.ndarray
    reliability: dict[str, Reliability]
    iterations: dict[str, int]


_REL_FIELDS = ("estimate", "low", "high", "answers", "sensitivity", "sensitivity_low", "sensitivity_high",
               "specificity", "specificity_low", "specificity_high")


def to_bytes(agg: Aggregate) -> bytes:
    """The aggregation as compressed .npz bytes (for the ledger's cache). The posterior is
    kept as float16 (an error below 1e-3 on probabilities; nothing decides on it: the
    decision and confidence are stored exactly) so that 50,000 images cache in a few MB."""
    arrays = {"posterior": agg.posterior.astype(np.float16), "decision": np.packbits(agg.decision, axis=1),
              "shape": np.array(agg.decision.shape), "confidence": agg.confidence,
              "groups": np.array(list(agg.reliability)),
              "iterations": np.array([agg.iterations[g] for g in agg.reliability])}
    for g, rel in agg.reliability.items():
        for name in _REL_FIELDS:
            value = getattr(rel, name)
            if value is not None:
                arrays[f"rel/{g}/{name}"] = value
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def from_bytes(data: bytes) -> Aggregate:
    """The Aggregate that `to_bytes` wrote."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        L = int(z["shape"][1])
        groups = [str(g) for g in z["groups"]]
        rel = {g: Reliability(**{name: z[f"rel/{g}/{name}"] for name in _REL_FIELDS if f"rel/{g}/{name}" in z.files})
               for g in groups}
        return Aggregate(z["posterior"].astype(float), np.unpackbits(z["decision"], axis=1, count=L).astype(bool),
                         z["confidence"], rel, {g: int(k) for g, k in zip(groups, z["iterations"])})


def group_columns(taxonomy) -> list[GroupColumns]:
    """The taxonomy's groups as column index arrays into `taxonomy.label_ids`."""
    index = taxonomy.group_index
    return [GroupColumns(g.name, np.flatnonzero(index == k), g.single) for k, g in enumerate(taxonomy.groups)]


class _Segments:
    """Sums rows of an (R, ...) array by key (e.g. rows -> items): sorted once, reused."""

    def __init__(self, keys: np.ndarray, n: int):
        self.order = np.argsort(keys, kind="stable")
        k = keys[self.order]
        self.starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if len(k) else np.zeros(0, np.int64)
        self.ids = k[self.starts]
        self.n = n

    def sum(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n, *values.shape[1:]), dtype=np.float64)
        if len(self.ids):
            out[self.ids] = np.add.reduceat(values[self.order], self.starts, axis=0)
        return out


def wilson(hits: np.ndarray, n: np.ndarray, z: float = Z95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rate, low, high): the Wilson score interval of hits/n (arrays, soft counts allowed);
    NaN rate and [0, 1] where n is 0."""
    hits, n = np.asarray(hits, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, hits / n, np.nan)
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = np.where(n > 0, np.clip(centre - half, 0, 1), 0.0)
    high = np.where(n > 0, np.clip(centre + half, 0, 1), 1.0)
    return p, low, high


def answers_to_tell(estimate: float, reference: float, answered: float, z: float = Z95) -> int:
    """How many more answers (e.g. gold) an annotator would need before a 95% interval
    around `estimate` excludes `reference` (0 when it already does; normal approximation)."""
    gap = abs(float(estimate) - float(reference))
    if gap < 1e-6:
        return -1  # no number of answers separates an estimate from itself
    p = min(max(float(estimate), 0.02), 0.98)
    need = int(np.ceil(z * z * p * (1 - p) / (gap * gap)))
    return max(0, need - int(answered))


def aggregate(votes: np.ndarray, items: np.ndarray, workers: np.ndarray, n_items: int, n_workers: int,
              groups: list[GroupColumns], gold: np.ndarray | None = None, gold_mask: np.ndarray | None = None,
              prior: np.ndarray | None = None, iterations: int = 50, tol: float = 1e-4,
              asked: np.ndarray | None = None) -> Aggregate:
    """Weigh every answer by its annotator's per-group reliability (EM, gold-anchored).

    votes: (R, L) bool, one row per valid, non-discarding answer; items: (R,) int in
    [0, N), the image each row answers; workers: (R,) int in [0, W), who answered.
    groups: `group_columns(taxonomy)`. gold: (N, L) bool truth, used on rows of
    `gold_mask` (N,) bool: those items' posteriors are fixed to it, so they anchor each
    annotator's reliability. prior: (N, L) float model probabilities, NaN where none.
    asked: (R, G) bool, the groups each row was asked (a short check asks only some; None:
    all): a group is fitted on the rows that were asked it, so an empty group nobody was
    asked does not count as an answer. Each group's EM stops when no annotator parameter
    or label rate moves by `tol`, or after `iterations` steps. Returns an Aggregate.
    Raises ValueError when shapes disagree."""
    votes = np.asarray(votes, dtype=bool)
    items, workers = np.asarray(items, np.int64), np.asarray(workers, np.int64)
    if votes.ndim != 2 or len(items) != len(votes) or len(workers) != len(votes):
        raise ValueError("votes must be (R, L) with items and workers of length R")
    L = votes.shape[1]
    gold_mask = np.zeros(n_items, bool) if gold_mask is None else np.asarray(gold_mask, bool)
    gold = np.zeros((n_items, L), bool) if gold is None else np.asarray(gold, bool)
    by_item = _Segments(items, n_items)
    out = Aggregate(np.zeros((n_items, L)), np.zeros((n_items, L), bool), np.zeros((n_items, len(groups))), {}, {})
    for k, g in enumerate(groups):
        cols = g.columns
        gprior = None if prior is None else np.asarray(prior, float)[:, cols]
        fit = _fit_single if g.single else _fit_multi
        rows = slice(None) if asked is None or asked[:, k].all() else np.asarray(asked[:, k], bool)
        segments = by_item if isinstance(rows, slice) else _Segments(items[rows], n_items)
        post, decision, conf, rel, steps = fit(votes[rows][:, cols], items[rows], workers[rows], segments, n_workers,
                                               gold[:, cols], gold_mask, gprior, iterations, tol)
        out.posterior[:, cols] = post
        out.decision[:, cols] = decision
        out.confidence[:, k] = conf
        out.reliability[g.name] = rel
        out.iterations[g.name] = steps
    return out


def _fit_multi(V, items, workers, by_item, W, truth, gold_mask, prior, iterations, tol):
    """Binary EM per label with one (sensitivity, specificity) per annotator: returns
    (posterior (N, C), decision, confidence (N,), Reliability, steps)."""
    Vf = V.astype(np.float64)
    n_votes = by_item.sum(np.ones((len(V), 1)))[:, 0]
    share = by_item.sum(Vf) / np.maximum(n_votes, 1)[:, None]
    # Start from the hard majority (a tie is 0.5): a soft start gives every lone "yes" weight
    # and can slide into the degenerate fit where labels are present and everyone misses them.
    post = np.where(n_votes[:, None] > 0, (share > 0.5) + 0.5 * (share == 0.5), 0.0)
    post[gold_mask] = truth[gold_mask]
    base = None
    if prior is not None:
        p = np.clip(prior, *PRIOR_CLIP)
        base = np.log(p / (1 - p))
    weight = _first_weights(items, gold_mask)
    # Gold anchors sensitivity only through the labels it has: a group gold never holds
    # (colour on catalogue-less photos) keeps the presumption.
    gold_present = truth[items].sum(1) * gold_mask[items] if len(items) else np.zeros(0)
    has_gold = np.bincount(workers, gold_present, minlength=W) >= 3
    steps, prev = 0, None
    for steps in range(1, iterations + 1):
        se, sp = _sens_spec(Vf, _sharpen(post)[items], workers, W, weight if steps == 1 else None, has_gold)[:2]
        pi = (post.sum(0) + 1) / (len(post) + 2)
        logit = np.log(pi / (1 - pi))[None, :] if base is None else np.where(np.isnan(base), np.log(pi / (1 - pi)), base)
        a, b = np.log(se / (1 - sp)), np.log((1 - se) / sp)
        llr = by_item.sum(b[workers][:, None] + Vf * (a - b)[workers][:, None])
        new = 1 / (1 + np.exp(-(logit + llr)))
        new[gold_mask] = truth[gold_mask]
        post, params = new, np.r_[se, sp, pi]
        if prev is not None and np.abs(params - prev).max() < tol:
            break
        prev = params
    decision = post > 0.5
    conf = np.prod(np.where(decision, post, 1 - post), axis=1) if post.shape[1] else np.ones(len(post))
    return post, decision, conf, _multi_reliability(Vf, post[items], workers, W), steps


def _first_weights(items: np.ndarray, gold_mask: np.ndarray) -> np.ndarray | None:
    """Row weights of the first M-step: only the gold answers where there are any, so
    the start is what gold says of each annotator, not what the majority says (a
    majority that errs the same way would otherwise hold the EM where it started)."""
    on_gold = gold_mask[items] if len(items) else np.zeros(0, bool)
    return on_gold.astype(np.float64) if on_gold.any() else None


def _sens_spec(Vf, P, workers, W, weight=None, has_gold=None):
    """Per annotator: (sensitivity, specificity, soft positives, soft negatives, true
    positives, true negatives) given the posterior rows P (R, C) of the items answered;
    weight (R,) scales each row (None: all 1); has_gold (W,) bool picks the weaker
    sensitivity prior for annotators with gold answers."""
    w = 1.0 if weight is None else weight
    tp = np.bincount(workers, (P * Vf).sum(1) * w, minlength=W)
    pos = np.bincount(workers, P.sum(1) * w, minlength=W)
    tn = np.bincount(workers, ((1 - P) * (1 - Vf)).sum(1) * w, minlength=W)
    neg = np.bincount(workers, (1 - P).sum(1) * w, minlength=W)
    gold = np.zeros(W, bool) if has_gold is None else has_gold
    a = np.where(gold, SENS_PRIOR_WITH_GOLD[0], SENS_PRIOR[0])
    b = np.where(gold, SENS_PRIOR_WITH_GOLD[1], SENS_PRIOR[1])
    se = (tp + a) / (pos + a + b)
    sp = (tn + SPEC_PRIOR[0]) / (neg + sum(SPEC_PRIOR))
    return np.clip(se, 1e-4, 1 - 1e-4), np.clip(sp, 1e-4, 1 - 1e-4), pos, neg, tp, tn


def _multi_reliability(Vf, P, workers, W) -> Reliability:
    right = np.exp(np.log(np.where(Vf > 0, P, 1 - P) + EPS).sum(1))  # P(the row's group answer is exact)
    n = np.bincount(workers, minlength=W).astype(float)
    est, low, high = wilson(np.bincount(workers, right, minlength=W), n)
    _, _, pos, neg, tp, tn = _sens_spec(Vf, P, workers, W)
    se, se_lo, se_hi = wilson(tp, pos)
    sp, sp_lo, sp_hi = wilson(tn, neg)
    return Reliability(est, low, high, n, se, se_lo, se_hi, sp, sp_lo, sp_hi)


def _fit_single(V, items, workers, by_item, W, truth, gold_mask, prior, iterations, tol):
    """Dawid-Skene over the group's labels plus `none`, each annotator's confusion matrix
    shrunk towards their accuracy: returns (posterior (N, C), decision, confidence (N,),
    Reliability, steps)."""
    C = V.shape[1]
    K = C + 1
    chosen = np.where(V.any(1), V.argmax(1), C)
    onehot = np.zeros((len(V), K))
    onehot[np.arange(len(V)), chosen] = 1
    counts = by_item.sum(onehot)
    total = counts.sum(1, keepdims=True)
    post = np.where(total > 0, counts / np.maximum(total, 1), 1.0 / K)
    gold_rows = np.c_[truth, ~truth.any(1)].astype(float)
    post[gold_mask] = gold_rows[gold_mask]
    by_cell = _Segments(workers * K + chosen, W * K)
    model = _single_prior(prior)
    weight = _first_weights(items, gold_mask)
    steps, prev = 0, None
    for steps in range(1, iterations + 1):
        rows = post[items] if steps > 1 or weight is None else post[items] * weight[:, None]
        logconf = np.log(_confusion(by_cell.sum(rows).reshape(W, K, K).transpose(0, 2, 1), onehot))
        pi = (post.sum(0) + 1) / (len(post) + K)
        logprior = np.log(pi)[None, :] if model is None else np.log(np.where(np.isnan(model), pi, 0.5 * model + 0.5 * pi))
        logpost = logprior + by_item.sum(logconf[workers, :, chosen])
        logpost -= logpost.max(1, keepdims=True)
        new = np.exp(logpost)
        new /= new.sum(1, keepdims=True)
        new[gold_mask] = gold_rows[gold_mask]
        post, params = new, np.r_[np.exp(logconf).ravel(), pi]
        if prev is not None and np.abs(params - prev).max() < tol:
            break
        prev = params
    best = post.argmax(1)
    decision = np.zeros((len(post), C), bool)
    has = best < C
    decision[np.flatnonzero(has), best[has]] = True
    right = post[items, chosen]
    n = np.bincount(workers, minlength=W).astype(float)
    rel = Reliability(*wilson(np.bincount(workers, right, minlength=W), n), n)
    return post[:, :C], decision, post.max(1), rel, steps


def _confusion(counts: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """(W, K, K) P(answer c | truth k) from soft counts [w, k, c], each row shrunk by
    SHRINK pseudo-answers towards a one-coin row: the annotator's accuracy on the diagonal,
    the rest spread like the round's answers."""
    W, K, _ = counts.shape
    diag = np.einsum("wkk->w", counts)
    acc = (diag + 1) / (counts.sum((1, 2)) + 2)
    q = (onehot.sum(0) + 1) / (len(onehot) + K)
    off = q[None, :] / np.maximum(1 - q[:, None], EPS)  # [k, c]: spread over c != k
    np.fill_diagonal(off, 0)
    off /= np.maximum(off.sum(1, keepdims=True), EPS)
    coin = (1 - acc)[:, None, None] * off[None] + acc[:, None, None] * np.eye(K)[None]
    conf = (counts + SHRINK * coin) / (counts.sum(2, keepdims=True) + SHRINK)
    return np.maximum(conf, 1e-6)


def _single_prior(prior: np.ndarray | None) -> np.ndarray | None:
    """The model's probabilities over a single-label group's labels plus `none`, (N, K),
    normalized; NaN rows where the model has none."""
    if prior is None:
        return None
    p = np.clip(prior, *PRIOR_CLIP)
    none = np.prod(1 - p, axis=1, keepdims=True)
    dist = np.c_[p, none]
    return dist / dist.sum(1, keepdims=True)


def _sharpen(post: np.ndarray) -> np.ndarray:
    """Posteriors for the multi-label M-step with the faint ones cut to 0: hundreds of
    labels each at a few percent would otherwise add up to "present labels everyone
    missed" and drag every sensitivity down (review_cost on clothing-cc0, no colour)."""
    return np.where(post < SHARPEN_BELOW, 0.0, post)
