"""Missing-label suggestions that respect the attribute rules.

A model that sees a model wearing shorts and a shirt will happily suggest "Collared" for the
shorts. Before flag-noise shows a suggested (missing) label, the image is checked as it
would be with the suggestion added, by the same rule machinery as `ifa curate
check-attributes` (RuleSet over a LabelView): a suggestion that a rule would hit is dropped
(a second category, a neckline on footwear or trousers, a contradiction pair).

The image "as it would be" is its given labels, less the ones flag-noise itself flags as
wrong on that image, plus the suggestions ranked above it that passed, plus this one. A
suggestion in a single-label group (a category, a neckline) is a swap, as the ranking scores
it: it takes the place of the image's given label in that group; two suggested categories
for one image still conflict.
Statistical rules (rare-label, unseen-pair) judge a dataset, not an image: they are not used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...taxonomy import Taxonomy
from ..attributes.check import find_hits
from ..attributes.rules import LabelView, RuleSet, Statistical
from ..ledger.arrays import LabelArrays
from ..ledger.schema import SPLITS


@dataclass
class RuleFilter:
    """Which suggestions break a rule, and which rule each broke."""

    breaks: np.ndarray  # bool (S,), one per suggestion asked about
    rule_of: list[str | None] = field(default_factory=list)  # the first rule broken, per suggestion


def per_image_rules(rules: RuleSet) -> list:
    """The rules that judge one image's labels by themselves (not the statistical ones)."""
    return [r for r in rules if not isinstance(r.finder, Statistical)]


def rule_breaking(rows: np.ndarray, columns: np.ndarray, labels: np.ndarray, wrong_rows: np.ndarray,
                  wrong_columns: np.ndarray, taxonomy: Taxonomy, rules: RuleSet, split: str = "train") -> RuleFilter:
    """Whether adding each suggested label would break a rule on its image.

    rows, columns: (S,) int, the suggestions (row into `labels`, taxonomy column), most
    likely first; labels: bool (n, K) given labels; wrong_rows, wrong_columns: the given
    labels flagged wrong (left out of the image a suggestion is checked on); rules: the
    attribute rules; split: the split the images are checked as.
    An image's suggestions are judged in rank order, each with the ones before it that
    passed: two categories suggested for one image do not both pass.
    Returns a RuleFilter: breaks[s] is True when a rule's hit on suggestion s's image
    involves the suggested label. Memory: the images with suggestions, not all n."""
    rows, columns = np.asarray(rows, dtype=np.int64), np.asarray(columns, dtype=np.int64)
    n = len(rows)
    breaks = np.zeros(n, dtype=bool)
    rule_of: list[str | None] = [None] * n
    if n == 0:
        return RuleFilter(breaks, rule_of)
    images, image_of = np.unique(rows, return_inverse=True)
    state = labels[images].copy()  # each image as the accepted suggestions leave it
    where = np.searchsorted(images, wrong_rows)
    on = (where < len(images)) & (images[np.minimum(where, len(images) - 1)] == wrong_rows)
    state[where[on], np.asarray(wrong_columns)[on]] = False
    # the k-th suggestion of each image is judged in round k
    order = np.argsort(image_of, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(image_of[order])) + 1]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    chosen = per_image_rules(rules)
    # A suggestion in a single-label group is a swap: the ranking scores it only as far as the
    # image's given label there is wrong too (ranking.log_odds), so it is judged in place of
    # that given label, not beside it. Suggestions accepted before it still count.
    group_of = taxonomy.group_index
    single_group = np.array([g.single for g in taxonomy.groups])[group_of]
    given_there = labels[images]
    for k in range(int(rank.max()) + 1):
        sel = np.flatnonzero(rank == k)
        virtual = state[image_of[sel]].copy()
        for i, (s, col) in enumerate(zip(sel, columns[sel])):
            if single_group[col]:
                virtual[i, (group_of == group_of[col]) & given_there[image_of[s]]] = False
        broken = _judge(virtual, columns[sel], taxonomy, chosen, split)
        for s, rule_id in zip(sel, broken):
            if rule_id is None:
                if single_group[columns[s]]:  # the swap is accepted: the given label goes
                    state[image_of[s], (group_of == group_of[columns[s]]) & given_there[image_of[s]]] = False
                state[image_of[s], columns[s]] = True
            else:
                breaks[s], rule_of[s] = True, rule_id
    return RuleFilter(breaks, rule_of)


def _judge(given: np.ndarray, columns: np.ndarray, taxonomy: Taxonomy, chosen: list, split: str) -> list[str | None]:
    """For each virtual image (a row of bool `given`) plus its suggested column: the id of
    the first rule whose hit involves the suggested label, or None."""
    m = len(columns)
    kept = given.copy()
    kept[np.arange(m), columns] = True
    image, col = np.nonzero(kept)  # row-major: sorted by image, then column
    label_id = taxonomy.label_ids[col].astype(np.int64)
    order = np.lexsort((label_id, image))
    arrays = LabelArrays(np.arange(m, dtype=np.int64), np.full(m, SPLITS.index(split), dtype=np.int8),
                         image[order].astype(np.int64), label_id[order], np.zeros(len(order), dtype=np.int8))
    hits = find_hits(LabelView(arrays, taxonomy), chosen, splits=[split])
    suggested = taxonomy.label_ids[columns].astype(np.int64)
    involved = hits[hits["label"].to_numpy() == suggested[hits["_image"].to_numpy()]]
    out: list[str | None] = [None] * m
    for image_pos, rule_pos in zip(involved["_image"].to_numpy(), involved["_rule"].to_numpy()):
        if out[image_pos] is None:  # hits come sorted by rule: the first rule in the file wins
            out[image_pos] = chosen[int(rule_pos)].id
    return out


def rank_within_rules(labels: np.ndarray, probs: np.ndarray, taxonomy: Taxonomy, rules: RuleSet, *, rates,
                      top: int | None, min_score: float | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """`ranking.rank_label_issues` (its scores untouched) without the missing-label
    suggestions that would break a rule (`rule_breaking`).

    With `top`, asks the ranking for more pairs until `top` survive the filter (or the
    ranking has no more), so the rules never shrink the list a user asked for; a swap
    (a suggested category beside a category flagged wrong) passes only when the wrong flag
    is in the list shown too.
    Returns (the ranked frame as rank_label_issues gives it, with suggestions that take the
    place of a given label marked by `mark_swaps`; {rule id: suggestions dropped})."""
    from . import ranking

    single = np.array([g.single for g in taxonomy.groups])
    ask = top
    while True:
        ranked = ranking.rank_label_issues(labels, probs, taxonomy.group_index, single, top=ask, min_score=min_score,
                                           rates=rates)
        rule_of = _filter(ranked, labels, taxonomy, rules)
        kept = ranked[rule_of.isna().to_numpy()]
        if top is None or len(kept) >= top or len(ranked) < ask:
            break
        ask *= 4
    if top is not None:
        # judge again against only the wrong flags that made the list; what breaks now gives
        # way to the next pair. Dropping suggestions never makes another break, so this ends.
        while len(kept) > top:
            again = _filter(kept.head(top), labels, taxonomy, rules)
            if again.isna().all():
                break
            rule_of[again.dropna().index] = again.dropna()
            kept = kept.drop(again.dropna().index)
        kept = kept.head(top)
        rule_of = rule_of[rule_of.index <= (kept.index.max() if len(kept) else -1)]  # count only within the list
    dropped = {str(k): int(v) for k, v in rule_of.dropna().value_counts(sort=False).items()}
    kept = kept.reset_index(drop=True)
    return mark_swaps(kept, labels, probs, taxonomy), dropped


def mark_swaps(ranked: pd.DataFrame, labels: np.ndarray, probs: np.ndarray, taxonomy: Taxonomy) -> pd.DataFrame:
    """`ranked` with a `replaces` column (the taxonomy column of the given label a suggestion
    takes the place of, -1 for none) and kind 'swap' for every suggestion in a single-label
    group where the image already has a label: the ranking scores it in that label's place
    (`ranking.log_odds`), so it is a swap, never a second label. Of two given labels there
    (already a conflict), the one the model finds less likely is replaced.

    labels: bool (n, K) given labels; probs: (n, K) the model's probabilities."""
    out = ranked.copy()
    replaces = np.full(len(out), -1, dtype=np.int64)
    rows, cols = out["row"].to_numpy(np.int64), out["column"].to_numpy(np.int64)
    missing = (out["kind"] == "missing").to_numpy()
    for g, group in enumerate(taxonomy.groups):
        if not group.single:
            continue
        in_group = np.flatnonzero(taxonomy.group_index == g)
        sel = np.flatnonzero(missing & np.isin(cols, in_group))
        if not len(sel):
            continue
        given = labels[rows[sel]][:, in_group]
        p = np.where(given, np.asarray(probs[rows[sel]][:, in_group], dtype=np.float64), np.inf)
        has = given.any(axis=1)
        replaces[sel[has]] = in_group[p[has].argmin(axis=1)]
    out["replaces"] = replaces
    out.loc[replaces >= 0, "kind"] = "swap"
    return out


def _filter(ranked: pd.DataFrame, labels: np.ndarray, taxonomy: Taxonomy, rules: RuleSet) -> pd.Series:
    """Per row of `ranked` (same index): the rule its suggestion breaks, or NaN."""
    rows, cols = ranked["row"].to_numpy(), ranked["column"].to_numpy()
    missing = (ranked["kind"] == "missing").to_numpy()
    verdict = rule_breaking(rows[missing], cols[missing], labels, rows[~missing], cols[~missing], taxonomy, rules)
    out = pd.Series(np.nan, index=ranked.index, dtype=object)
    out.iloc[np.flatnonzero(missing)[verdict.breaks]] = [r for r in verdict.rule_of if r is not None]
    return out
