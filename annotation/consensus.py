"""A round's answers weighed by reliability: the ledger's view read into arrays once, the
aggregation (`aggregation.aggregate`) run over them, the result read back per image and
group. Tie-break (which groups a tie-breaker must answer), finalize (the aggregated
decision where no tie-breaker answered) and status (each annotator's reliability) share
this one reading, so they cannot disagree about a posterior; the result is cached in the
ledger (`weigh_cached`), so a second status does not rerun the EM.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..curation.ledger.review import ReviewStore
from ..curation.workspace import Workspace
from ..errors import IfaError
from ..taxonomy import Taxonomy
from . import aggregation, state

WHEN = ("any", "uncertain")  # any difference (the paper's rule) | only groups in doubt
DEFAULT_MIN_CONFIDENCE = 0.95
CACHE_VERSION = 1  # bump when the aggregation's method changes: cached results are then recomputed


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


@dataclass
class _Inputs:
    """What the aggregation reads from a round: the items (images, gold last), annotator
    roles, one vote row per counted answer, the gold truth."""

    items: list[str]
    roles: list[str]
    votes: np.ndarray
    item_of: np.ndarray
    worker_of: np.ndarray
    truth: np.ndarray
    gold_mask: np.ndarray
    asked: np.ndarray | None = None  # (R, G): the groups each row was asked; None: all (not a short check)

    def key(self, label_ids: np.ndarray, prior: str) -> str:
        """A hash of everything the aggregation depends on (`prior`: the prior's identity)."""
        h = hashlib.sha256(f"{CACHE_VERSION}\n{prior}\n{json.dumps([self.items, self.roles])}".encode())
        for a in (np.asarray(label_ids, np.int64), np.packbits(self.votes, axis=1), self.item_of, self.worker_of,
                  np.packbits(self.truth, axis=1), self.gold_mask,
                  np.zeros(0, bool) if self.asked is None else np.packbits(self.asked, axis=1)):
            h.update(np.ascontiguousarray(a).tobytes())
            h.update(str(a.shape).encode())
        return h.hexdigest()


def _inputs(view: state.RoundView, taxonomy: Taxonomy) -> _Inputs:
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
    truth = _matrix([[cols[int(x)] for x in view.gold.get(i, ()) if int(x) in cols] for i in items], len(cols))
    return _Inputs(items, roles, _matrix(rows, len(cols)), np.array(item_of, np.int64), np.array(worker_of, np.int64),
                   truth, np.array([i in view.gold for i in items], bool), _asked_rows(view, taxonomy, items, item_of))


def _asked_rows(view: state.RoundView, taxonomy: Taxonomy, items: list[str], item_of: list[int]) -> np.ndarray | None:
    """(R, G) bool: the groups a short check asked each answer row's image; None elsewhere."""
    if not view.check_groups:
        return None
    names = list(taxonomy.group_names)
    per_item = np.ones((len(items), len(names)), bool)
    for k, image_id in enumerate(items):
        if image_id in view.check_groups:
            per_item[k] = [g in view.check_groups[image_id] for g in names]
    return per_item[np.asarray(item_of, np.int64)]


def _aggregate(inputs: _Inputs, taxonomy: Taxonomy, prior) -> aggregation.Aggregate:
    return aggregation.aggregate(inputs.votes, inputs.item_of, inputs.worker_of, len(inputs.items), len(inputs.roles),
                                 aggregation.group_columns(taxonomy), gold=inputs.truth, gold_mask=inputs.gold_mask,
                                 prior=_prior_rows(prior, inputs.items, len(taxonomy.label_ids)), asked=inputs.asked)


def weigh(view: state.RoundView, taxonomy: Taxonomy, prior: tuple[np.ndarray, np.ndarray] | None = None) -> Consensus:
    """Aggregate the round's counted, valid, non-discarding answers of its annotators (not
    its tie-breakers) with the gold images' trusted labels as anchors. prior: (image ids,
    (n, L) probabilities in `taxonomy.label_ids` order) or None."""
    inputs = _inputs(view, taxonomy)
    return Consensus(inputs.items, inputs.roles, aggregation.group_columns(taxonomy), np.asarray(taxonomy.label_ids),
                     _aggregate(inputs, taxonomy, prior))


def weigh_cached(ws: Workspace, view: state.RoundView, prior: Path | None = None) -> Consensus:
    """`weigh` with the model's prior of `load_prior(ws, prior)`, cached in the ledger: the
    result is recomputed only when the round's counted answers, its gold or the prior file
    (path, size, modification time) changed since it was stored, so status, tiebreak and
    finalize share one computation. Raises IfaError for a prior file that does not fit."""
    store = ReviewStore(ws.ledger)
    inputs = _inputs(view, ws.taxonomy)
    key = inputs.key(ws.taxonomy.label_ids, _prior_identity(ws, prior))
    hit = store.cached_aggregate(view.round_id)
    if hit is not None and hit[0] == key:
        result = aggregation.from_bytes(hit[3])
    else:
        result = _aggregate(inputs, ws.taxonomy, load_prior(ws, prior))
        if not ws.ledger.read_only:  # a status on a read-only workspace computes without caching
            store.cache_aggregate(view.round_id, key, aggregation.to_bytes(result))
    return Consensus(inputs.items, inputs.roles, aggregation.group_columns(ws.taxonomy),
                     np.asarray(ws.taxonomy.label_ids), result)


def _prior_identity(ws: Workspace, path: Path | None) -> str:
    """The prior file `load_prior` would read, as path, size and modification time."""
    found = Path(path) if path is not None else _latest_prior(ws)
    if found is None or not found.exists():
        return "none" if path is None else str(path)  # a missing --prior fails in load_prior
    st = found.stat()
    return f"{found.resolve()} {st.st_size} {st.st_mtime_ns}"


def _latest_prior(ws: Workspace) -> Path | None:
    latest = ws.root / "models" / "flag-noise" / "oos-probs.parquet"  # crossfit.OOS_FILE of flag-noise
    return latest if latest.exists() else None


def groups_to_ask(ws: Workspace, view: state.RoundView, when: str = "any",
                  min_confidence: float = DEFAULT_MIN_CONFIDENCE, prior: Path | None = None) -> dict[str, tuple[str, ...]]:
    """image_id -> the groups its tie-breaker must answer, for images whose annotators
    have all answered. `any` (the paper's rule): every group of every image whose answers
    differ. `uncertain`: only the groups whose aggregated posterior is below
    min_confidence, on any image; an image with an invalid or discarding answer (but not
    discarded by all) needs all its groups. In a short check, only the groups it asked.
    Raises IfaError for a bad rule or prior file."""
    check_rule(when, min_confidence)
    every = tuple(ws.taxonomy.group_names)
    checked = view.check_groups  # a short check asks its own groups only, tie-break included
    if when == "any":
        return {i: checked.get(i, every) for i in view.images if view.outcome(i) == state.DISAGREE}
    weighed = weigh_cached(ws, view, prior)
    out: dict[str, tuple[str, ...]] = {}
    for image_id in view.images:
        outcome = view.outcome(image_id)
        if outcome in (state.WAITING, state.DISCARDED):
            continue
        if any(not a.valid or a.discard for a in view.image_answers(image_id)):
            out[image_id] = checked.get(image_id, every)
        elif doubt := [g for g in weighed.uncertain(image_id, min_confidence) if g in checked.get(image_id, every)]:
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
        path = _latest_prior(ws)
        if path is None:
            return None
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
