"""`ifa review status`: progress per annotator and agreement so far, from the ledger.

Reads only what `sync` stored, so it answers instantly and works with the server down.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..curation.ledger.review import ANNOTATOR_ROLES, ReviewStore
from ..curation.workspace import Workspace
from . import agreement, state


@dataclass
class StatusResult:
    """round, images, done {email: answers counted}, agreement {group: {...}} over the
    images both annotators answered validly without discarding (`compared` of them),
    pending [{image_id, annotator, project_id, task_id}] tasks still to answer, outcomes
    {agreed, discarded, disagree, waiting}, tiebreak progress, most confused label pairs."""

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

    def to_dict(self) -> dict:
        return {
            "round": self.round, "split": self.split, "server": self.server, "simulated": self.simulated,
            "images": self.images, "done": self.done, "roles": self.roles, "compared": self.compared,
            "agreement": self.agreement, "confused": self.confused, "outcomes": self.outcomes,
            "tiebreak": self.tiebreak, "decided": self.decided, "pending": self.pending,
        }


def status(ws: Workspace, round_name: str | None = None, top_confused: int = 10) -> StatusResult:
    """Progress and agreement of the round (latest when None). Raises IfaError when the
    workspace has no such round."""
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
        out.done[project["email"]] = out.done.get(project["email"], 0) + len(answers)
        out.roles[role] = {
            "email": project["email"], "simulated": project["email"] in simulated,
            "project_id": project["ls_project_id"], "tasks": int((view.tasks["role"] == role).sum()),
            "done": len(answers),
            "skipped": sum(1 for a in answers.values() if "skipped" in a.problems),
            "invalid": sum(1 for a in answers.values() if a.problems and "skipped" not in a.problems),
            "wrong_annotator": int((mine["by_annotator"] == 0).sum()),
            "lead_time_median_s": float(mine.loc[mine["by_annotator"] == 1, "lead_time"].median())
            if (mine["by_annotator"] == 1).any() else None,
        }
    outcomes = Counter(view.outcome(i) for i in view.images)
    out.outcomes = {k: outcomes.get(k, 0) for k in (state.AGREED, state.DISCARDED, state.DISAGREE, state.WAITING)}

    a1, a2 = view.answers["annotator1"], view.answers["annotator2"]
    both = [i for i in view.images if i in a1 and i in a2 and a1[i].valid and a2[i].valid
            and not a1[i].discard and not a2[i].discard]
    out.compared = len(both)
    if both:
        A = agreement.label_matrix([a1[i].labels for i in both], taxonomy)
        B = agreement.label_matrix([a2[i].labels for i in both], taxonomy)
        out.agreement = agreement.group_agreement(A, B, taxonomy)
        out.confused = agreement.confused_pairs(A, B, taxonomy, top=top_confused).to_dict("records")

    tb_tasks = view.tasks[view.tasks["role"] == "tiebreak"]
    tb = view.answers.get("tiebreak", {})
    out.tiebreak = {"tasks": len(tb_tasks), "done": sum(1 for i in tb_tasks["image_id"] if i in tb),
                    "email": view.projects.get("tiebreak", {}).get("email")}
    out.decided = len(store.decisions(view.round_id))

    for role in (*ANNOTATOR_ROLES, "tiebreak"):
        if role not in view.projects:
            continue
        answers = view.answers.get(role, {})
        rows = view.tasks[view.tasks["role"] == role]
        todo = rows[~rows["image_id"].isin(list(answers))]
        email, pid = view.projects[role]["email"], int(view.projects[role]["ls_project_id"])
        out.pending.extend({"image_id": i, "annotator": email, "project_id": pid, "task_id": int(t)}
                           for i, t in zip(todo["image_id"], todo["ls_task_id"]))
    return out
