"""`ifa review status`: progress per annotator and agreement so far, from the ledger.

Reads only what `sync` stored, so it works with the server down; the aggregation behind
each annotator's reliability is cached in the ledger (`consensus.weigh_cached`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..curation.ledger.review import ReviewStore
from ..curation.workspace import Workspace
from . import agreement, consensus, quality, state


@dataclass
class StatusResult:
    """round, images, done {email: answers counted}, agreement {group: {...}} over the
    images two annotators answered validly without discarding (`compared` of them; the
    first two answers of each image, pooled over the round), pending [{image_id,
    annotator, project_id, task_id, and for a tie-break task groups: the groups to answer}]
    tasks still to answer (gold tasks too), outcomes
    {agreed, discarded, disagree, waiting}, tiebreak progress, most confused label pairs,
    annotators [{email, role, assigned, done, pending, gold {answered, accuracy, groups},
    agreement {overall, <group>...}, median_seconds, reliability {<group>: {estimate,
    low, high, answers, sensitivity..., specificity...}}, reliability_flags {<group>: {median,
    below, answers_to_tell}}}] (see `quality.annotators`, `consensus.reliability`), gold
    (gold images in the round), mode (blind or check), checked {group: images}: what a short
    check asks (empty for any other round; its pending tasks carry their groups)."""

    round: str
    split: str
    server: str
    simulated: bool
    images: int
    done: dict[str, int] = field(default_factory=dict)
    roles: dict[str, dict] = field(default_factory=dict)
    compared: int = 0
    agreement: dict[str, dict] = field(default_factory=dict)
    confused: list[dict] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    tiebreak: dict = field(default_factory=dict)
    decided: int = 0
    pending: list[dict] = field(default_factory=list)
    annotators: list[dict] = field(default_factory=list)
    gold: int = 0
    mode: str = "blind"
    checked: dict[str, int] = field(default_factory=dict)  # a short check: group -> images it asks

    def to_dict(self) -> dict:
        return {
            "round": self.round, "split": self.split, "server": self.server, "simulated": self.simulated,
            "images": self.images, "done": self.done, "roles": self.roles, "compared": self.compared,
            "agreement": self.agreement, "confused": self.confused, "outcomes": self.outcomes,
            "tiebreak": self.tiebreak, "decided": self.decided, "pending": self.pending,
            "annotators": self.annotators, "gold": self.gold, "mode": self.mode, "checked": self.checked,
        }


def status(ws: Workspace, round_name: str | None = None, top_confused: int = 10, prior: Path | None = None) -> StatusResult:
    """Progress and agreement of the round (latest when None), each annotator's
    reliability per group with 95% intervals (`consensus.reliability`; prior: the model's
    probabilities, default the latest flag-noise cross-fit) and the groups each pending
    tie-break task asks. Raises IfaError when the workspace has no such round."""
    store = ReviewStore(ws.ledger)
    view = state.load(store, round_name)
    taxonomy = ws.taxonomy
    simulated = store.simulated_emails()
    out = StatusResult(view.name, str(view.round["split"]), str(view.round["server"]), bool(view.round["simulated"]),
                       len(view.images))
    ann = view.annotations
    for role, project in view.projects.items():
        answers = view.answers.get(role, {})
        mine = ann[ann["role"] == role]
        out.done[project.email] = out.done.get(project.email, 0) + len(answers)
        out.roles[role] = {
            "email": project.email, "simulated": project.email in simulated,
            "project_id": project.ls_project_id, "tasks": int((view.tasks["role"] == role).sum()),
            "done": len(answers),
            "skipped": sum(1 for a in answers.values() if "skipped" in a.problems),
            "invalid": sum(1 for a in answers.values() if a.problems and "skipped" not in a.problems),
            "wrong_annotator": int((mine["by_annotator"] == 0).sum()),
            "lead_time_median_s": float(mine.loc[mine["by_annotator"] == 1, "lead_time"].median())
            if (mine["by_annotator"] == 1).any() else None,
        }
    outcomes = Counter(view.outcome(i) for i in view.images)
    out.outcomes = {k: outcomes.get(k, 0) for k in (state.AGREED, state.DISCARDED, state.DISAGREE, state.WAITING)}

    out.compared, out.agreement, out.confused = pair_agreement(view, taxonomy, top_confused)

    tb_tasks = view.tasks[view.tasks["role"].isin(view.tiebreak_roles)]
    done_tb = sum(1 for r, i in zip(tb_tasks["role"], tb_tasks["image_id"]) if i in view.answers.get(r, {}))
    out.tiebreak = {"tasks": len(tb_tasks), "done": done_tb,
                    "email": view.email("tiebreak") if "tiebreak" in view.projects else view.round.get("tiebreaker"),
                    "pool": [view.email(r) for r in view.tiebreak_roles]}
    out.decided = len(store.decisions(view.round_id))
    out.gold = len(view.gold)
    out.annotators = quality.annotators(view, taxonomy)
    out.mode = str(view.round.get("mode") or "blind")
    out.tiebreak["when"] = view.round.get("tiebreak_when") or "any"
    weighed = reliability(ws, view, prior)
    for a in out.annotators:
        a.update(weighed.get(a["email"], {}))
    out.pending = pending(view, store.tiebreak_groups(view.round_id), taxonomy.group_names)
    out.checked = checked_counts(view)
    return out


def reliability(ws: Workspace, view: state.RoundView, prior: Path | None) -> dict[str, dict]:
    """Per annotator email: {reliability, reliability_flags} (`consensus.reliability`,
    `consensus.flags`); empty before any answer."""
    if not len(view.annotations):
        return {}
    table = consensus.reliability(consensus.weigh_cached(ws, view, prior), view)
    marks = consensus.flags(table)
    return {e: {"reliability": table[e], "reliability_flags": marks.get(e, {})} for e in table}


def pair_agreement(view: state.RoundView, taxonomy, top_confused: int) -> tuple[int, dict[str, dict], list[dict]]:
    """(images compared, agreement per group, most confused pairs) over each image's first
    two valid, non-discarding answers; a short check's groups not asked are left out
    (their empty answers agree trivially)."""
    first: list[tuple[int, ...]] = []
    second: list[tuple[int, ...]] = []
    for image_id in view.images:
        pair = [a for a in view.image_answers(image_id)[:2] if a is not None]
        if len(pair) == 2 and all(a.valid and not a.discard for a in pair):
            first.append(pair[0].labels)
            second.append(pair[1].labels)
    if not first:
        return 0, {}, []
    A = agreement.label_matrix(first, taxonomy)
    B = agreement.label_matrix(second, taxonomy)
    groups = agreement.group_agreement(A, B, taxonomy)
    if view.check_groups:
        groups = {g: a for g, a in groups.items() if g in checked_counts(view)}
    return len(first), groups, agreement.confused_pairs(A, B, taxonomy, top=top_confused).to_dict("records")


def checked_counts(view: state.RoundView) -> dict[str, int]:
    """A short check's groups: group -> images it asks (empty for any other round)."""
    return dict(Counter(g for gs in view.check_groups.values() for g in gs))


def pending(view: state.RoundView, asked: dict[str, tuple[str, ...]], every: tuple[str, ...]) -> list[dict]:
    """Tasks still to answer: {image_id, annotator, project_id, task_id}, and `groups`, the
    groups to answer, for a tie-break task (`asked`, else the short check's, else every
    group) and for every task of a short check (`view.check_groups`)."""
    out = []
    checked = view.check_groups
    for role, project in view.projects.items():
        answers = view.answers.get(role, {})
        rows = view.tasks[view.tasks["role"] == role]
        todo = rows[~rows["image_id"].isin(list(answers))]
        email, pid = project.email, project.ls_project_id
        tb = role in view.tiebreak_roles
        for i, t in zip(todo["image_id"], todo["ls_task_id"]):
            groups = asked.get(i, checked.get(i, every)) if tb else checked.get(i)
            out.append({"image_id": i, "annotator": email, "project_id": pid, "task_id": int(t),
                        **({"groups": list(groups)} if groups is not None else {})})
    return out
