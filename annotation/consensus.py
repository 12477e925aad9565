"""A round's answers weighed by reliability: the ledger's view read into arrays once, the
aggregation (`aggregation.aggregate`) run over them, the result read back per image and
group. Tie-break (which groups a tie-breaker must answer), finalize (the aggregated
decision where no tie-breaker answered) and status (each annotator's reliability) share
this one reading, so they cannot disagree about a posterior.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..curation.workspace import Workspace
from ..errors import IfaError
from ..taxonomy import Taxonomy
from . import aggregation, state

WHEN = ("any", "uncertain")  # any difference (the paper's rule) | only groups in doubt
DEFAULT_MIN_CONFIDENCE = 0.95


@dataclass
class Consensus:
    """The round's images and gold images (`items`, gold last), the annotator roles in
    worker order, the taxonomy's groups and the aggregation over them."""

    items: list[str]
    roles: list[str]
    groups: list[aggregation.GroupColumns]
    label_ids: np.ndarray
    result: aggregation.Aggregate

    def row(self, image_id: str) -> int:
        return self._index[image_id]

    def __post_init__(self):
        self._index = {i: k for k, i in enumerate(self.items)}

    def confidence(self, image_id: str) -> dict[str, float]:
        """group -> P(the aggregated decision of the group is exactly right)."""
        r = self.row(image_id)
        return {g.name: float(self.result.confidence[r, k]) for k, g in enumerate(self.groups)}

    def labels(self, image_id: str, groups=None) -> tuple[int, ...]:
        """The aggregated decision's label ids (of `groups` only, when given)."""
        r = self.row(image_id)
        cols = np.flatnonzero(self.result.decision[r])
        ids = [int(x) for x in self.label_ids[cols]]
        if groups is None:
            return tuple(sorted(ids))
        wanted = set(groups)
        names = {int(x): g.name for g in self.groups for x in self.label_ids[g.columns]}
        return tuple(sorted(i for i in ids if names[i] in wanted))

    def uncertain(self, image_id: str, min_confidence: float) -> list[str]:
        """The groups whose aggregated posterior is below min_confidence."""
        return [g for g, p in self.confidence(image_id).items() if p < min_confidence]


def check_rule(when: str, min_confidence: float) -> None:
    """Raise IfaError for an unknown --when or a --min-confidence outside (0, 1)."""
    if when not in WHEN:
        raise IfaError(f"--when {when!r} must be one of: {', '.join(WHEN)}.")
    if not 0 < float(min_confidence) < 1:
        raise IfaError(f"--min-confidence {min_confidence} must be above 0 and below 1 (e.g. 0.95).")


def weigh(view: state.RoundView, taxonomy: Taxonomy, prior: tuple[np.ndarray, np.ndarray] | None = None) -> Consensus:
    """Aggregate the round's counted, valid, non-discarding answers of its annotators (not
    its tie-breakers) with the gold images' trusted labels as anchors. prior: (image ids,
    (n, L) probabilities in `taxonomy.label_ids` order) or None."""
    roles = view.annotator_roles
    images = set(view.images)
    items = [*view.images, *[g for g in view.gold if g not in images]]
    index = {i: k for k, i in enumerate(items)}
    cols = {int(x): k for k, x in enumerate(taxonomy.label_ids)}
    rows, item_of, worker_of = [], [], []
    for w, role in enumerate(roles):
        for image_id, answer in view.answers.get(role, {}).items():
            if image_id in index and answer.valid and not answer.discard:
                rows.append([cols[x] for x in answer.labels if x in cols])
                item_of.append(index[image_id])
                worker_of.append(w)
    votes = _matrix(rows, len(cols))
    truth = _matrix([[cols[int(x)] for x in view.gold.get(i, ()) if int(x) in cols] for i in items], len(cols))
    gold_mask = np.array([i in view.gold for i in items], bool)
    groups = aggregation.group_columns(taxonomy)
    matrix = _prior_rows(prior, items, len(cols))
    result = aggregation.aggregate(votes, np.array(item_of, np.int64), np.array(worker_of, np.int64), len(items),
                                   len(roles), groups, gold=truth, gold_mask=gold_mask, prior=matrix)
    return Consensus(items, roles, groups, np.asarray(taxonomy.label_ids), result)


def groups_to_ask(ws: Workspace, view: state.RoundView, when: str = "any",
                  min_confidence: float = DEFAULT_MIN_CONFIDENCE, prior: Path | None = None) -> dict[str, tuple[str, ...]]:
    """image_id -> the groups its tie-breaker must answer, for images whose annotators
    have all answered. `any` (the paper's rule): every group of every image whose answers
    differ. `uncertain`: only the groups whose aggregated posterior is below
    min_confidence, on any image; an image with an invalid or discarding answer (but not
    discarded by all) needs all its groups. Raises IfaError for a bad rule or prior file."""
    check_rule(when, min_confidence)
    every = tuple(ws.taxonomy.group_names)
    if when == "any":
        return {i: every for i in view.images if view.outcome(i) == state.DISAGREE}
    weighed = weigh(view, ws.taxonomy, load_prior(ws, prior))
    out: dict[str, tuple[str, ...]] = {}
    for image_id in view.images:
        outcome = view.outcome(image_id)
        if outcome in (state.WAITING, state.DISCARDED):
            continue
        if any(not a.valid or a.discard for a in view.image_answers(image_id)):
            out[image_id] = every
        elif doubt := weighed.uncertain(image_id, min_confidence):
            out[image_id] = tuple(doubt)
    return out


def _matrix(rows: list[list[int]], n_cols: int) -> np.ndarray:
    m = np.zeros((len(rows), n_cols), bool)
    for r, cols in enumerate(rows):
        m[r, cols] = True
    return m


def _prior_rows(prior, items: list[str], n_cols: int) -> np.ndarray | None:
    if prior is None:
        return None
    ids, probs = prior
    at = {str(i): k for k, i in enumerate(ids)}
    out = np.full((len(items), n_cols), np.nan)
    hit = [(k, at[i]) for k, i in enumerate(items) if i in at]
    if not hit:
        return None
    rows, src = zip(*hit)
    out[list(rows)] = np.asarray(probs, float)[list(src)]
    return out


def load_prior(ws: Workspace, path: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The model's out-of-sample probabilities: `path` (image_id + one column per label
    id), else the latest flag-noise cross-fit in the workspace, else None. Raises IfaError
    for a file that does not fit the workspace."""
    from ..curation.noise.model.probs import read_probs

    if path is None:
        latest = ws.root / "models" / "flag-noise" / "oos-probs.parquet"  # crossfit.OOS_FILE of flag-noise
        if not latest.exists():
            return None
        path = latest
    return read_probs(Path(path), ws.taxonomy.label_ids)


def reliability(consensus: Consensus, view: state.RoundView) -> dict[str, dict[str, dict]]:
    """Per annotator email: {group: {estimate, low, high, answers, and for multi-label
    groups sensitivity/specificity with their low/high}}; 95% Wilson intervals, None where
    the annotator gave the group no answer."""
    out: dict[str, dict[str, dict]] = {}
    for w, role in enumerate(consensus.roles):
        mine = {}
        for name, rel in consensus.result.reliability.items():
            entry = {"estimate": _num(rel.estimate[w]), "low": _num(rel.low[w]), "high": _num(rel.high[w]),
                     "answers": int(rel.answers[w])}
            if rel.sensitivity is not None:
                entry.update({"sensitivity": _num(rel.sensitivity[w]), "sensitivity_low": _num(rel.sensitivity_low[w]),
                              "sensitivity_high": _num(rel.sensitivity_high[w]),
                              "specificity": _num(rel.specificity[w]), "specificity_low": _num(rel.specificity_low[w]),
                              "specificity_high": _num(rel.specificity_high[w])})
            mine[name] = entry
        out[view.email(role)] = mine
    return out


def flags(table: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """Per annotator email: {group: {median, below (their interval lies wholly below the
    pool's median), answers_to_tell (more answers, e.g. gold, before their interval would
    leave the median, where it still holds it)}}."""
    groups = {g for per in table.values() for g in per}
    out: dict[str, dict[str, dict]] = {e: {} for e in table}
    for g in groups:
        values = [per[g]["estimate"] for per in table.values() if per.get(g, {}).get("estimate") is not None]
        if not values:
            continue
        median = float(np.median(values))
        for email, per in table.items():
            r = per.get(g)
            if not r or r["estimate"] is None:
                continue
            below = r["high"] < median
            inside = r["low"] <= median <= r["high"]
            need = aggregation.answers_to_tell(r["estimate"], median, r["answers"]) if inside else 0
            out[email][g] = {"median": round(median, 4), "below": bool(below), "answers_to_tell": need}
    return out


def _num(x) -> float | None:
    x = float(x)
    return None if x != x else round(x, 4)
