"""`ifa review finalize`: decisions become the images' labels.

Per image: a valid tie-break answer decides (the third annotator has the last word);
otherwise two agreeing answers decide; otherwise the image stays undecided and untouched.
A decision's labels replace the image's active labels (add_label with source
`review:<round>`, drop_label for the rest); a discard sets the image aside with the
reason. Everything goes through `Ledger.apply_changes` in one transaction with the
decisions, under rule `review:<round>`, so `ifa curate restore --rule review:<round>`
undoes it and finalizing twice changes nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from ..curation import reports
from ..curation.ledger import Change
from ..curation.ledger.review import ReviewStore
from ..curation.workspace import Workspace
from . import state


@dataclass
class ImageDecision:
    image_id: str
    outcome: str          # agreed | tiebreak | discarded
    decided_by: str       # 'agreement' or the tie-breaker's email
    labels: list[int]
    added: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    set_aside: bool = False
    note: str = ""


@dataclass
class FinalizeResult:
    """decided: images with a decision, by outcome; undecided: images without one, by
    reason; labels_added / labels_dropped / images_set_aside: what applying changes (or
    would change, when applied is False); report: the CSV listing every image."""

    round: str
    applied: bool
    simulated: bool
    decided: dict[str, int] = field(default_factory=dict)
    undecided: dict[str, int] = field(default_factory=dict)
    labels_added: int = 0
    labels_dropped: int = 0
    images_set_aside: int = 0
    changed_images: int = 0
    report: str = ""
    decisions: list[ImageDecision] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decisions"] = [x for x in d["decisions"] if x["added"] or x["dropped"] or x["set_aside"]]
        return d


def decide(view: state.RoundView) -> tuple[dict[str, tuple[str, str, tuple[int, ...]]], dict[str, str]]:
    """(decisions {image_id: (outcome, decided_by, labels)}, undecided {image_id: reason})."""
    decisions, undecided = {}, {}
    for image_id in view.images:
        tb_role = view.tiebreak_of.get(image_id)
        tb = view.answers.get(tb_role, {}).get(image_id) if tb_role else None
        outcome = view.outcome(image_id)
        if tb is not None and tb.valid:
            decisions[image_id] = ("discarded" if tb.discard else "tiebreak", view.email(tb_role),
                                   () if tb.discard else tb.labels)
        elif outcome == state.AGREED:
            decisions[image_id] = ("agreed", "agreement", view.image_answers(image_id)[0].labels)
        elif outcome == state.DISCARDED:
            decisions[image_id] = ("discarded", "agreement", ())
        elif outcome == state.WAITING:
            undecided[image_id] = "waiting for an annotator"
        elif tb is not None:
            undecided[image_id] = f"tie-break answer invalid ({'; '.join(tb.problems)})"
        elif tb_role is not None:
            undecided[image_id] = "waiting for the tie-breaker"
        else:
            undecided[image_id] = "disagreement not yet sent: run `ifa review tiebreak`"
    return decisions, undecided


def finalize(ws: Workspace, round_name: str | None = None, apply: bool = False) -> FinalizeResult:
    """Turn the round's decisions into label changes; apply them with `apply=True`
    (otherwise only report). Always writes `reports/review-finalize-<round>-<time>.csv`.
    Raises IfaError when there is no such round."""
    store = ReviewStore(ws.ledger)
    view = state.load(store, round_name)
    taxonomy = ws.taxonomy
    rule = f"review:{view.name}"
    simulated = bool(view.round["simulated"])
    tag = "SIMULATED review" if simulated else "review"
    decisions, undecided = decide(view)

    images = store.image_sources(view.round_id).set_index("image_id")
    current: dict[str, set[int]] = {}
    for image_id, label_id in store.active_labels(view.round_id).itertuples(index=False):
        current.setdefault(image_id, set()).add(int(label_id))
    known = set(int(x) for x in taxonomy.label_ids)

    result = FinalizeResult(view.name, apply, simulated)
    changes: list[Change] = []
    for image_id, (outcome, who, final) in sorted(decisions.items()):
        d = ImageDecision(image_id, outcome, who, list(final))
        by = "both annotators" if who == "agreement" else f"tie-breaker {who}"
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
    result.decided = dict(Counter(x[0] for x in decisions.values()))
    result.undecided = dict(Counter(undecided.values()))
    result.labels_added = sum(len(d.added) for d in result.decisions)
    result.labels_dropped = sum(len(d.dropped) for d in result.decisions)
    result.images_set_aside = sum(d.set_aside for d in result.decisions)
    result.changed_images = sum(bool(d.added or d.dropped or d.set_aside) for d in result.decisions)

    if apply:
        with ws.ledger.transaction():
            store.record_decisions(view.round_id, [
                {"image_id": i, "outcome": o, "labels": list(l), "decided_by": w} for i, (o, w, l) in decisions.items()])
            ws.ledger.apply_changes(changes)
            store.mark_finalized(view.round_id)
    result.report = str(_write_report(ws, result, undecided, taxonomy))
    return result


def _write_report(ws: Workspace, result: FinalizeResult, undecided: dict[str, str], taxonomy):
    path = ws.report_path(f"review-finalize-{result.round}", "csv")
    verb = "applied" if result.applied else "would apply"
    with reports.open_csv(path) as w:
        w.writerow(["image_id", "outcome", "decided_by", "final_labels", "added", "dropped", "set_aside", "status", "note"])
        for d in result.decisions:
            changed = bool(d.added or d.dropped or d.set_aside)
            w.writerow([d.image_id, d.outcome, d.decided_by, "|".join(taxonomy.names(d.labels)),
                        "|".join(taxonomy.names(d.added)), "|".join(taxonomy.names(d.dropped)), int(d.set_aside),
                        verb if changed else "no change", d.note])
        for image_id, reason in sorted(undecided.items()):
            w.writerow([image_id, "undecided", "", "", "", "", 0, "left alone", reason])
    return path
