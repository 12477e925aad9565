"""`ifa review finalize`: decisions become the images' labels.

Per image: a valid tie-break answer decides the groups the tie-breaker was asked (the
third annotator has the last word; all groups under `--when any`), the answers weighed by
reliability (`consensus.py`) decide the rest; otherwise two agreeing answers decide; in a
round tie-broken with `--when uncertain`, answers that differ only in groups nobody doubts
take the aggregated decision; otherwise the image stays undecided and untouched.
A decision's labels replace the image's active labels (add_label with source
`review:<round>`, drop_label for the rest); a discard sets the image aside with the
reason. A short check (`view.check_groups`) changes only the groups it asked: the
image's other labels stay as they are. Everything goes through `Ledger.apply_changes` in one transaction with the
decisions, under rule `review:<round>`, so `ifa curate restore --rule review:<round>`
undoes it and finalizing twice changes nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..curation import reports
from ..curation.ledger import Change
from ..curation.ledger.review import ReviewStore
from ..curation.workspace import Workspace
from . import consensus, state


@dataclass
class ImageDecision:
    image_id: str
    outcome: str          # agreed | tiebreak | aggregated | discarded
    decided_by: str       # 'agreement', 'aggregation' or the tie-breaker's email
    labels: list[int]
    added: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    set_aside: bool = False
    note: str = ""
    posterior: float | None = None  # P(every group the aggregation decided is right)
    sources: dict[str, str] = field(default_factory=dict)  # group -> agreement | aggregation | tie-break


@dataclass
class FinalizeResult:
    """What finalizing a round decided, and what applying changes (or would change, when
    applied is False)."""

    round: str
    applied: bool
    simulated: bool
    decided: dict[str, int] = field(default_factory=dict)  # images with a decision, by outcome
    undecided: dict[str, int] = field(default_factory=dict)  # images without one, by reason
    labels_added: int = 0
    labels_dropped: int = 0
    images_set_aside: int = 0
    changed_images: int = 0
    report: str = ""  # the CSV listing every image
    decisions: list[ImageDecision] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decisions"] = [x for x in d["decisions"] if x["added"] or x["dropped"] or x["set_aside"]]
        return d


@dataclass(frozen=True)
class Decided:
    """One image's decision: outcome (agreed | tiebreak | aggregated | discarded), who
    decided ('agreement', 'aggregation' or the tie-breaker's email), the labels, the
    posterior that every group the aggregation decided is right (None when it decided
    none), and each group's source (agreement, aggregation, tie-break)."""

    outcome: str
    decided_by: str
    labels: tuple[int, ...]
    posterior: float | None = None
    sources: dict[str, str] = field(default_factory=dict)


def decide(view: state.RoundView, weighed: consensus.Consensus | None = None,
           asked: dict[str, tuple[str, ...]] | None = None) -> tuple[dict[str, Decided], dict[str, str]]:
    """(decisions {image_id: Decided}, undecided {image_id: reason}). A tie-breaker's valid
    answer decides the groups it was asked (`asked`, default all); the other groups, and
    images whose answers differ but were never sent because no group was in doubt (a round
    tie-broken with `--when uncertain`), take the aggregated decision of `weighed`."""
    asked = asked or {}
    uncertain_rule = view.round.get("tiebreak_when") == "uncertain" and weighed is not None
    decisions, undecided = {}, {}
    for image_id in view.images:
        tb_role = view.tiebreak_of.get(image_id)
        tb = view.answers.get(tb_role, {}).get(image_id) if tb_role else None
        outcome = view.outcome(image_id)
        if tb is not None and tb.valid:
            decisions[image_id] = _from_tiebreak(view, weighed, image_id, tb, asked.get(image_id))
        elif outcome == state.AGREED:
            decisions[image_id] = _agreed(view, weighed, image_id)
        elif outcome == state.DISCARDED:
            decisions[image_id] = Decided("discarded", "agreement", ())
        elif outcome == state.WAITING:
            undecided[image_id] = "waiting for an annotator"
        elif tb is not None:
            undecided[image_id] = f"tie-break answer invalid ({'; '.join(tb.problems)})"
        elif tb_role is not None:
            undecided[image_id] = "waiting for the tie-breaker"
        elif uncertain_rule and all(a is not None and a.valid and not a.discard for a in view.image_answers(image_id)):
            decisions[image_id] = _aggregated(weighed, image_id)
        else:
            undecided[image_id] = "disagreement not yet sent: run `ifa review tiebreak`"
    return decisions, undecided


def _agreed(view: state.RoundView, weighed: consensus.Consensus | None, image_id: str) -> Decided:
    labels = view.image_answers(image_id)[0].labels
    if weighed is None:
        return Decided("agreed", "agreement", labels)
    conf = weighed.confidence(image_id)
    return Decided("agreed", "agreement", labels, None, {g: "agreement" for g in conf})


def _aggregated(weighed: consensus.Consensus, image_id: str) -> Decided:
    conf = weighed.confidence(image_id)
    return Decided("aggregated", "aggregation", weighed.labels(image_id), round(float(np.prod(list(conf.values()))), 4),
                   {g: "aggregation" for g in conf})


def _from_tiebreak(view: state.RoundView, weighed: consensus.Consensus | None, image_id: str, tb,
                   groups: tuple[str, ...] | None) -> Decided:
    who = view.email(view.tiebreak_of[image_id])
    if tb.discard:
        return Decided("discarded", who, ())
    if weighed is None or groups is None:
        return Decided("tiebreak", who, tb.labels)
    conf = weighed.confidence(image_id)
    rest = [g for g in conf if g not in groups]
    labels = tuple(sorted({*_in_groups(tb.labels, groups, weighed), *weighed.labels(image_id, rest)}))
    posterior = round(float(np.prod([conf[g] for g in rest])), 4) if rest else None
    return Decided("tiebreak", who, labels, posterior, {g: "tie-break" if g in groups else "aggregation" for g in conf})


def _current(store: ReviewStore, round_id: int) -> dict[str, set[int]]:
    current: dict[str, set[int]] = {}
    for image_id, label_id in store.active_labels(round_id).itertuples(index=False):
        current.setdefault(image_id, set()).add(int(label_id))
    return current


def _within_checks(view: state.RoundView, decisions: dict[str, Decided], current: dict[str, set[int]],
                   taxonomy) -> dict[str, Decided]:
    """The decisions with a short check's images kept to the groups it asked (`within_check`)."""
    out = dict(decisions)
    for image_id, groups in view.check_groups.items():
        if image_id in out and out[image_id].outcome != "discarded":
            out[image_id] = within_check(out[image_id], current.get(image_id, set()), groups, taxonomy)
    return out


def within_check(dec: Decided, have: set[int], groups: tuple[str, ...], taxonomy) -> Decided:
    """A short check's decision: the decided labels in the groups it asked, the image's
    current labels in every other group (whatever the answers held there)."""
    known = {int(x) for x in taxonomy.label_ids}
    kept = {x for x in have if x in known and taxonomy.labels[x].group not in groups}
    asked = {int(x) for x in dec.labels if taxonomy.labels[int(x)].group in groups}
    return replace(dec, labels=tuple(sorted(kept | asked)),
                   sources={g: src for g, src in dec.sources.items() if g in groups})


def _in_groups(labels, groups, weighed: consensus.Consensus) -> list[int]:
    wanted = {int(x) for g in weighed.groups if g.name in groups for x in weighed.label_ids[g.columns]}
    return [int(x) for x in labels if int(x) in wanted]


def weigh(ws: Workspace, view: state.RoundView, prior: Path | None) -> consensus.Consensus | None:
    """The round's answers weighed by reliability (None before any answer)."""
    return consensus.weigh_cached(ws, view, prior) if len(view.annotations) else None


def finalize(ws: Workspace, round_name: str | None = None, apply: bool = False, prior: Path | None = None) -> FinalizeResult:
    """Turn the round's decisions into label changes; apply them with `apply=True`
    (otherwise only report). Answers are weighed by reliability (`consensus.weigh`, with
    `prior` or the latest flag-noise probabilities as the model's vote) for the groups no
    tie-breaker answered. Always writes `reports/review-finalize-<round>-<time>.csv` with
    each decision's posterior and sources. Raises IfaError when there is no such round
    or the prior file does not fit the workspace."""
    store = ReviewStore(ws.ledger)
    view = state.load(store, round_name)
    taxonomy = ws.taxonomy
    rule = f"review:{view.name}"
    simulated = bool(view.round["simulated"])
    tag = "SIMULATED review" if simulated else "review"
    decisions, undecided = decide(view, weigh(ws, view, prior), store.tiebreak_groups(view.round_id))

    images = store.image_sources(view.round_id).set_index("image_id")
    current = _current(store, view.round_id)
    known = set(int(x) for x in taxonomy.label_ids)

    result = FinalizeResult(view.name, apply, simulated)
    changes: list[Change] = []
    decisions = _within_checks(view, decisions, current, taxonomy)
    for image_id, dec in sorted(decisions.items()):
        outcome, who, final = dec.outcome, dec.decided_by, dec.labels
        d = ImageDecision(image_id, outcome, who, list(final), posterior=dec.posterior, sources=dict(dec.sources))
        by = BY.get(who, f"tie-breaker {who}")
        status = images.at[image_id, "status"] if image_id in images.index else None
        if outcome == "discarded":
            if status == "active":
                d.set_aside = True
                changes.append(Change("set_aside", image_id, reason=f"{tag} {view.name}: no clear fashion item ({by})",
                                      rule=rule))
        elif status != "active":
            d.note = f"image is set aside ({images.at[image_id, 'status_reason']}); labels left alone"
        else:
            have = current.get(image_id, set())
            d.added = sorted(set(final) - have)
            d.dropped = sorted((have & known) - set(final))
            changes += [Change("add_label", image_id, lid, reason=f"{tag} {view.name}: {by}", rule=rule, source=rule)
                        for lid in d.added]
            changes += [Change("drop_label", image_id, lid, reason=f"{tag} {view.name}: not in the answer of {by}",
                               rule=rule) for lid in d.dropped]
        result.decisions.append(d)
    result.decided = dict(Counter(x.outcome for x in decisions.values()))
    result.undecided = dict(Counter(undecided.values()))
    result.labels_added = sum(len(d.added) for d in result.decisions)
    result.labels_dropped = sum(len(d.dropped) for d in result.decisions)
    result.images_set_aside = sum(d.set_aside for d in result.decisions)
    result.changed_images = sum(bool(d.added or d.dropped or d.set_aside) for d in result.decisions)

    if apply:
        with ws.ledger.transaction():
            store.record_decisions(view.round_id, [
                {"image_id": i, "outcome": x.outcome, "labels": list(x.labels), "decided_by": x.decided_by,
                 "posterior": x.posterior, "sources": x.sources or None} for i, x in decisions.items()])
            ws.ledger.apply_changes(changes)
            store.mark_finalized(view.round_id)
    result.report = str(_write_report(ws, result, undecided, taxonomy))
    return result


BY = {"agreement": "both annotators", "aggregation": "the answers weighed by each annotator's reliability"}


def _write_report(ws: Workspace, result: FinalizeResult, undecided: dict[str, str], taxonomy):
    path = ws.report_path(f"review-finalize-{result.round}", "csv")
    verb = "applied" if result.applied else "would apply"
    with reports.open_csv(path) as w:
        w.writerow(["image_id", "outcome", "decided_by", "final_labels", "added", "dropped", "set_aside", "status", "note",
                    "posterior", "sources"])
        for d in result.decisions:
            changed = bool(d.added or d.dropped or d.set_aside)
            w.writerow([d.image_id, d.outcome, d.decided_by, "|".join(taxonomy.names(d.labels)),
                        "|".join(taxonomy.names(d.added)), "|".join(taxonomy.names(d.dropped)), int(d.set_aside),
                        verb if changed else "no change", d.note, "" if d.posterior is None else d.posterior,
                        "discard" if d.outcome == "discarded" else "; ".join(f"{g}: {src}" for g, src in d.sources.items())])
        for image_id, reason in sorted(undecided.items()):
            w.writerow([image_id, "undecided", "", "", "", "", 0, "left alone", reason])
    return path
