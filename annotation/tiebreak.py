"""`ifa review tiebreak`: send every disagreement (or only the groups in doubt) to a tie-breaker of the pool.

With `--when uncertain`, a group goes to a tie-breaker only where the answers weighed by
each annotator's reliability (`consensus.py`) leave its posterior below --min-confidence;
the task names those groups, its page shows choices for those groups only (the
taxonomy's `asked_config`: the other groups show no choices) and only they are read from
the tie-breaker's answer. The default, `any`, is the paper's rule described below.

An image needs the tie-breaker when both annotators have answered and the answers do not
agree (`state.compare`: a label differs in any group, one discarded, one answer invalid
or skipped). Images where both agree need no third look. Ties are never settled by a
vote: with two annotators a majority does not exist, and crowd-kit's MajorityVote would
silently pick the first label of a 1-1 split.

The tie-break project shows both earlier answers as text above the image, and stores them
as two predictions named after the annotators (model_version `annotator 1: <email>`),
visible in the Data Manager and exports. Neither is pre-filled into the tie-breaker's
answer (see NO_PREFILL), so the third look starts neutral. Run it again as more answers
arrive: images that already have a tie-break task are skipped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence
from xml.etree import ElementTree as ET

from ..curation.ledger.review import ReviewStore, tiebreak_role
from ..curation.workspace import Workspace
from ..errors import IfaError
from ..progress import SILENT, Progress
from ..taxonomy import DISCARD_CONTROL, Taxonomy, asked_config, asked_fields
from . import assignment, consensus, state
from .annotators import check_email, check_people
from .answers import Answer, describe, to_result
from .client import Client, connection_for
from .files import task_data
from .projects import ensure_project, import_missing

ANSWERS_FIELD = "answers"
# Label Studio pre-fills the labeling stream with the predictions whose model_version is the
# project's (Task.get_predictions_for_prelabeling), and sets the project's to the last one
# imported when it is empty: that would pre-fill annotator 2's answer for the tie-breaker.
# Label Studio 1.23 pre-fills the last prediction even when none has the project's version,
# so each task also carries an empty prediction of this version: the page starts with
# nothing ticked, and both answers are shown as tabs and as text.
NO_PREFILL = "none: both answers are shown as text"


@dataclass
class TiebreakResult:
    """disagreements: images that need a tie-breaker (so far; under `when` uncertain,
    images with a group in doubt); groups: the groups they must answer; added: tie-break tasks
    created by this call; waiting: images still missing an annotator's answer.
    tiebreaker/project_id/url: the pool's first tie-breaker and their project;
    pool: per tie-breaker email {role, project_id, url, tasks, added}."""

    round: str
    tiebreaker: str
    project_id: int | None
    url: str | None
    disagreements: int = 0
    added: int = 0
    already: int = 0
    agreed: int = 0
    discarded: int = 0
    waiting: int = 0
    images: list[str] = field(default_factory=list)
    pool: dict[str, dict] = field(default_factory=dict)
    when: str = "any"
    groups: int = 0  # groups the tie-breakers must answer, over all tie-break tasks so far

    def to_dict(self) -> dict:
        return asdict(self)


def tiebreak_config(taxonomy: Taxonomy) -> str:
    """The round's labeling config, its choices per task (`asked_config`: only the groups
    asked), with the two earlier answers shown above the controls."""
    view = ET.fromstring(asked_config(taxonomy))
    header = ET.Element("Header", value="Earlier answers (decide, or discard if there is no clear fashion item)")
    text = ET.Element("Text", name=ANSWERS_FIELD, value=f"${ANSWERS_FIELD}")
    # Above the controls, beside the photo (the root View lays photo and controls side by side).
    controls = next((v for v in view.findall("View") if v.find(".//Choices") is not None), view)
    controls.insert(0, text)
    controls.insert(0, header)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode")


def ask_line(groups: Sequence[str] | None, taxonomy: Taxonomy) -> str:
    """The first line of a tie-break task: which groups to answer (the others are decided)."""
    if not groups or set(groups) == set(taxonomy.group_names):
        return "Answer every group."
    return f"Answer only: {', '.join(groups)} (the other groups are decided; anything chosen there is ignored)."


def tiebreak(ws: Workspace, round_name: str | None = None, tiebreaker: str | Sequence[str] | None = None,
             client: Client | None = None, progress: Progress = SILENT, when: str = "any",
             min_confidence: float = consensus.DEFAULT_MIN_CONFIDENCE, prior: Path | None = None) -> TiebreakResult:
    """Create (or extend) the round's tie-break projects with one task per disagreement.

    Each disagreement goes to one tie-breaker of the pool who did not annotate that image,
    the least loaded first (`assignment.pick_tiebreakers`); each tie-breaker works in a
    project of their own (roles tiebreak, tiebreak2, ...).
    tiebreaker: an email or a list (the pool); needed the first time unless the round was
    created with one (it is recorded then). when: `any` sends every image whose answers
    differ, all groups; `uncertain` only the groups whose aggregated posterior is below
    min_confidence (`consensus.groups_to_ask`; prior: the model's probabilities, default
    the latest flag-noise cross-fit). The groups asked are recorded per image and named in
    the task. Raises IfaError for a bad rule, when no tie-breaker is known,
    when no one in the pool may take an image, or the server does not answer."""
    store = ReviewStore(ws.ledger)
    view = state.load(store, round_name)
    client = client or Client(connection_for(ws.root))
    given = [tiebreaker] if isinstance(tiebreaker, str) else list(tiebreaker or [])
    pool = list(dict.fromkeys(check_email(e) for e in given)) if given else _recorded_pool(view)
    users = check_people(client, [view.email(r) for r in view.annotator_roles], pool, per_image=view.per_image)
    role_of = _roles(view, pool)
    out = TiebreakResult(view.name, pool[0], None, None, when=when)
    asked = consensus.groups_to_ask(ws, view, when, min_confidence, prior)
    counts = Counter(view.outcome(i) for i in view.images)
    out.agreed, out.discarded, out.waiting = counts[state.AGREED], counts[state.DISCARDED], counts[state.WAITING]
    out.images = disagree = list(asked)
    out.disagreements = len(disagree)
    have = set(view.tiebreak_of)
    out.already = len(have & set(disagree))
    new = [i for i in disagree if i not in have]
    groups_of = _record_asked(store, view, when, min_confidence, {i: asked[i] for i in new})
    out.groups = sum(len(groups_of.get(i, ws.taxonomy.group_names)) for i in disagree)
    loads = {view.email(r): int((view.tasks["role"] == r).sum()) for r in view.tiebreak_roles}
    chosen = assignment.pick_tiebreakers({i: {view.email(r) for r in view.annotators_of[i]} for i in new}, pool,
                                         loads, seed=view.name)
    for email in pool:
        mine = [i for i in new if chosen[i] == email]
        if not mine and role_of[email] not in view.projects:
            continue
        project_id, added = _send(ws, store, client, view, role_of[email], email, users[email], mine, groups_of,
                                  progress)
        out.added += added
        url = f"{client.url}/projects/{project_id}"
        out.pool[email] = {"role": role_of[email], "project_id": project_id, "url": url,
                           "tasks": store.task_counts(view.round_id).get(role_of[email], 0), "added": added}
        if email == pool[0]:
            out.project_id, out.url = project_id, url
    return out


def _roles(view: state.RoundView, pool: list[str]) -> dict[str, str]:
    """Each tie-breaker's role: the one they have in this round, or the next free one."""
    role_of = {view.email(r): r for r in view.tiebreak_roles}
    taken = set(view.tiebreak_roles)
    k = 0
    for email in pool:
        if email not in role_of:
            while tiebreak_role(k) in taken:
                k += 1
            role_of[email] = tiebreak_role(k)
            taken.add(role_of[email])
    return role_of


def _send(ws: Workspace, store: ReviewStore, client: Client, view: state.RoundView, role: str, email: str,
          user_id: int, images: list[str], groups_of: dict[str, tuple[str, ...]], progress: Progress) -> tuple[int, int]:
    """Make the tie-breaker's project and import a task per image, showing both earlier
    answers and the groups to answer (`groups_of`, else every group); returns (project id,
    tasks added)."""
    taxonomy = ws.taxonomy
    sources = store.image_sources(view.round_id)
    files = task_data(ws, sources[sources["image_id"].isin(images)], client.conn)
    extra = {}
    for image_id, data in files.data.items():
        roles = view.annotators_of[image_id]
        labelled = [(f"annotator {n}", view.email(r), view.answers[r][image_id]) for n, r in enumerate(roles, 1)]
        groups = groups_of.get(image_id)
        data[ANSWERS_FIELD] = "\n".join([ask_line(groups, taxonomy)]
                                        + [f"{who} ({e}): {describe(a, taxonomy)}" for who, e, a in labelled])
        data.update(asked_fields(taxonomy, groups))
        extra[image_id] = {"predictions": [*(_prediction(f"{who}: {e}", a, taxonomy, groups) for who, e, a in labelled),
                                           {"model_version": NO_PREFILL, "result": []}]}
    project_id = ensure_project(client, store, view.round_id, view.name, role, email, user_id, files.roots,
                                tiebreak_config(taxonomy), extra={"model_version": NO_PREFILL,
                                                                  "enable_empty_annotation": _may_be_empty(groups_of, taxonomy)})
    added, _ = import_missing(client, store, view.round_id, role, project_id, files.data, progress, extra)
    if added:
        ws.ledger.append_event("review_tiebreak", new=str(added), reason=f"{added} disagreements of round "
                               f"{view.name} sent to {email}", rule=f"review:{view.name}")
    return project_id, added


def _may_be_empty(groups_of: dict[str, tuple[str, ...]], taxonomy: Taxonomy) -> bool:
    # A task asking only some groups may rightly be answered with nothing (no pattern on a
    # plain shirt); asking all eight, an empty answer is a slip the page should refuse.
    return any(len(g) < len(taxonomy.group_names) for g in groups_of.values())


def _record_asked(store: ReviewStore, view: state.RoundView, when: str, min_confidence: float,
                  new: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Record the rule and the groups the new tasks ask; returns every recorded image's groups."""
    store.set_tiebreak_rule(view.round_id, when, min_confidence if when == "uncertain" else None)
    store.set_tiebreak_groups(view.round_id, new)
    return store.tiebreak_groups(view.round_id)


def _prediction(model_version: str, answer: Answer, taxonomy: Taxonomy, groups: Sequence[str] | None) -> dict:
    # Only the valid part of an invalid answer, in the groups asked, is shown as a
    # prediction (a choice the page does not offer would not render); the text above the
    # image gives the whole answer and names any problem.
    result = to_result(answer.labels, taxonomy, answer.discard)
    if groups is not None:
        result = [r for r in result if r["from_name"] in groups or r["from_name"] == DISCARD_CONTROL]
    return {"model_version": model_version, "result": result}


def _recorded_pool(view: state.RoundView) -> list[str]:
    if isinstance(view.round.get("tiebreakers"), str) and view.round["tiebreakers"]:  # the pool as recorded
        pool = state.recorded_tiebreakers(view.round)
    else:  # rounds recorded before pools: their tie-break projects, else the one tie-breaker
        pool = [view.email(r) for r in view.tiebreak_roles] or state.recorded_tiebreakers(view.round)
    if not pool:
        raise IfaError(f"Round {view.name} has no tie-breaker yet; name one with --tiebreaker EMAIL.")
    return pool
