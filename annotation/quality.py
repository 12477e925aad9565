"""Annotator quality: gold accuracy, agreement with co-annotators, speed (no server).

Open-source Label Studio has no ground-truth evaluation or agreement matrix (Enterprise
features); ifa computes them from what `sync` stored:

- gold accuracy: on gold images (trusted labels, `--gold`), the share of an annotator's
  answers that give exactly the trusted labels (overall) or exactly the trusted labels
  of a group (per group). A skipped, invalid or discarding answer counts as wrong.
- agreement: over the images an annotator shares with each co-annotator, the share where
  both answers agree (`state.compare_all`: same labels, or both discard; overall) or give
  the same labels in a group (per group, over the pairs both answered validly without
  discarding). The pairwise matrix is the same number per pair of annotators.
- accuracy against final decisions: the share of an annotator's answers on decided
  images that equal the decision.

Exact match is the measure because the paper's cleaning keeps an image's labels only
when two people give the same ones; it is harsh on multi-label groups by design, and the
per-group numbers say where a person goes wrong.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from ..taxonomy import Taxonomy
from . import state
from .answers import Answer


def by_group(labels, taxonomy: Taxonomy) -> dict[str, frozenset[int]]:
    """group name -> the label ids of that group (every group present, maybe empty)."""
    out: dict[str, set[int]] = {g: set() for g in taxonomy.group_names}
    for lid in labels:
        lab = taxonomy.labels.get(int(lid))
        if lab is not None:
            out[lab.group].add(int(lid))
    return {g: frozenset(v) for g, v in out.items()}


def _group_equal(a: Answer, b_labels, taxonomy: Taxonomy, cache: dict) -> dict[str, bool]:
    ka, kb = a.labels, tuple(b_labels)
    ga = cache.get(ka) or cache.setdefault(ka, by_group(ka, taxonomy))
    gb = cache.get(kb) or cache.setdefault(kb, by_group(kb, taxonomy))
    return {g: ga[g] == gb[g] for g in taxonomy.group_names}


def _rate(hits: float, n: int) -> float | None:
    return None if n == 0 else round(hits / n, 4)


def annotators(view: state.RoundView, taxonomy: Taxonomy) -> list[dict]:
    """One dict per project of the round (annotators, then tie-breakers): email, role,
    assigned, done, pending, gold {answered, accuracy, groups {group: accuracy}},
    agreement {overall, <group>: ...} with their co-annotators, median_seconds (median
    Label Studio lead_time of their counted answers). Rates are None without data."""
    cache: dict = {}
    groups = taxonomy.group_names
    tasks = view.tasks
    counted = view.annotations[view.annotations["by_annotator"] == 1]
    lead = counted.groupby("role")["lead_time"].median().to_dict()
    agree = _agreement_counts(view, taxonomy, cache)
    out = []
    for role, project in view.projects.items():
        mine = tasks[tasks["role"] == role]
        answers = view.answers.get(role, {})
        done = int(mine["image_id"].isin(list(answers)).sum()) if len(mine) else 0
        a = agree.get(role, _Agreement(groups))
        median = lead.get(role)
        out.append({
            "email": project.email, "role": role, "assigned": int(len(mine)), "done": done,
            "pending": int(len(mine)) - done,
            "gold": _gold_scores(view, answers, taxonomy, cache),
            "agreement": {"overall": _rate(a.hit, a.n), "compared": a.n,
                          **{g: _rate(a.group_hit[g], a.group_n[g]) for g in groups}},
            "median_seconds": None if median is None or median != median else round(float(median), 2),
        })
    return out


@dataclass
class _Agreement:
    """One role's agreement with its co-annotators, counted over every shared image (per
    group: the images that asked it; a short check asks only its flagged groups)."""

    groups: list[str]
    n: int = 0
    hit: int = 0
    group_n: dict[str, int] = field(default_factory=dict)
    group_hit: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.group_n = {g: 0 for g in self.groups}
        self.group_hit = {g: 0 for g in self.groups}


def _agreement_counts(view: state.RoundView, taxonomy: Taxonomy, cache: dict) -> dict[str, _Agreement]:
    """Agreement per role, accumulated over every image's pairs of annotators."""
    groups = taxonomy.group_names
    out: dict[str, _Agreement] = {}
    for image_id in view.images:
        for r1, r2 in combinations(view.annotators_of.get(image_id, ()), 2):
            a, b = view.answers.get(r1, {}).get(image_id), view.answers.get(r2, {}).get(image_id)
            if a is None or b is None:
                continue
            same = state.compare_all([a, b]) in (state.AGREED, state.DISCARDED)
            both_labelled = a.valid and b.valid and not a.discard and not b.discard
            eq = _group_equal(a, b.labels, taxonomy, cache) if both_labelled else {}
            # A group a short check did not ask was kept, not answered: it is no agreement.
            asked = view.check_groups.get(image_id) or groups
            for r in (r1, r2):
                c = out.setdefault(r, _Agreement(groups))
                c.n += 1
                c.hit += same
                for g in asked if both_labelled else ():
                    c.group_n[g] += 1
                    c.group_hit[g] += eq[g]
    return out


def _gold_scores(view: state.RoundView, answers: dict, taxonomy: Taxonomy, cache: dict) -> dict:
    """{answered, accuracy, groups {group: accuracy}} of one role's answers on gold images."""
    groups = taxonomy.group_names
    gold_answers = {i: a for i, a in answers.items() if i in view.gold}
    hits = 0
    ghits = {g: 0 for g in groups}
    for image_id, a in gold_answers.items():
        truth = view.gold[image_id]
        ok = a.valid and not a.discard
        hits += ok and a.labels == tuple(sorted(truth))
        eq = _group_equal(a, truth, taxonomy, cache)
        for g in groups:
            ghits[g] += ok and eq[g]
    n_gold = len(gold_answers)
    return {"answered": n_gold, "accuracy": _rate(hits, n_gold), "groups": {g: _rate(ghits[g], n_gold) for g in groups}}


def agreement_matrix(view: state.RoundView) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(agreement, shared): annotator-by-annotator frames indexed by email. agreement is
    the share of shared images where both answers agree (NaN when none or on the
    diagonal); shared counts the images both answered."""
    roles = view.annotator_roles
    emails = [view.email(r) for r in roles]
    n = len(roles)
    hit = np.zeros((n, n))
    cnt = np.zeros((n, n), dtype=int)
    index = {r: k for k, r in enumerate(roles)}
    for image_id in view.images:
        group = view.annotators_of.get(image_id, ())
        for r1, r2 in combinations(group, 2):
            a, b = view.answers.get(r1, {}).get(image_id), view.answers.get(r2, {}).get(image_id)
            if a is None or b is None:
                continue
            same = state.compare_all([a, b]) in (state.AGREED, state.DISCARDED)
            i, j = index[r1], index[r2]
            cnt[i, j] += 1
            cnt[j, i] += 1
            hit[i, j] += same
            hit[j, i] += same
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(cnt > 0, hit / np.maximum(cnt, 1), np.nan)
    return pd.DataFrame(rate, index=emails, columns=emails), pd.DataFrame(cnt, index=emails, columns=emails)


def accuracy_vs_decisions(view: state.RoundView, decisions: pd.DataFrame) -> dict[str, dict]:
    """Per annotator email: {answered, accuracy}: the share of their answers on decided
    images equal to the decision (labels, or a discard for a discarded image)."""
    final = {r.image_id: (r.outcome, tuple(sorted(int(x) for x in r.labels))) for r in decisions.itertuples()}
    out: dict[str, dict] = {}
    for role in view.annotator_roles:
        n = hit = 0
        for image_id, a in view.answers.get(role, {}).items():
            if image_id not in final:
                continue
            outcome, labels = final[image_id]
            n += 1
            if outcome == "discarded":
                hit += a.valid and a.discard
            else:
                hit += a.valid and not a.discard and a.labels == labels
        out[view.email(role)] = {"answered": n, "accuracy": _rate(hit, n)}
    return out


def confused_by_group(view: state.RoundView, taxonomy: Taxonomy, top: int = 5) -> pd.DataFrame:
    """The label pairs co-annotators swap most often, per group: group, label_a, label_b,
    label_id_a, label_id_b, images, examples (up to 4 image ids)."""
    counts: dict[tuple[str, int, int], list[str]] = defaultdict(list)
    cache: dict = {}
    for image_id in view.images:
        group = view.annotators_of.get(image_id, ())
        for r1, r2 in combinations(group, 2):
            a, b = view.answers.get(r1, {}).get(image_id), view.answers.get(r2, {}).get(image_id)
            if a is None or b is None or not (a.valid and b.valid) or a.discard or b.discard:
                continue
            ga = cache.get(a.labels) or cache.setdefault(a.labels, by_group(a.labels, taxonomy))
            gb = cache.get(b.labels) or cache.setdefault(b.labels, by_group(b.labels, taxonomy))
            for g in taxonomy.group_names:
                if ga[g] == gb[g]:
                    continue
                for x in ga[g] - gb[g]:
                    for y in gb[g] - ga[g]:
                        counts[(g, min(x, y), max(x, y))].append(image_id)
    rows = [(g, taxonomy.labels[x].name, taxonomy.labels[y].name, x, y, len(ids), ids[:4])
            for (g, x, y), ids in counts.items()]
    df = pd.DataFrame(rows, columns=["group", "label_a", "label_b", "label_id_a", "label_id_b", "images", "examples"])
    if df.empty:
        return df
    df = df.sort_values(["group", "images", "label_a"], ascending=[True, False, True])
    return df.groupby("group", sort=False).head(top).reset_index(drop=True)


def throughput(view: state.RoundView) -> pd.DataFrame:
    """Counted answers per annotator email and hour (from Label Studio's created_at):
    columns email, hour (UTC, pandas Timestamp: the bin's start), answers. A round whose
    answers all fall within 12 hours is binned per minute instead, so its chart shows
    its own pace rather than one dot per person."""
    ann = view.annotations
    ann = ann[ann["by_annotator"] == 1]
    if ann.empty:
        return pd.DataFrame(columns=["email", "hour", "answers"])
    emails = {r: view.email(r) for r in view.projects}
    times = pd.to_datetime(ann["created_at"], utc=True, errors="coerce", format="ISO8601")
    hours = times.dt.floor("h" if times.max() - times.min() > pd.Timedelta(hours=12) else "min")
    df = pd.DataFrame({"email": ann["role"].map(emails), "hour": hours}).dropna()
    return df.groupby(["email", "hour"]).size().rename("answers").reset_index()
