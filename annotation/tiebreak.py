"""`ifa review tiebreak`: send every disagreement to the third annotator.

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

from dataclasses import asdict, dataclass, field
from xml.etree import ElementTree as ET

from ..curation.ledger.review import ReviewStore
from ..curation.workspace import Workspace
from ..errors import IfaError
from ..progress import SILENT, Progress
from ..taxonomy import Taxonomy, labeling_config
from . import state
from .annotators import check_email
from .answers import Answer, describe, to_result
from .client import Client, connection_for
from .rounds import ROLE_NAMES, ensure_project, import_missing, task_data

ANSWERS_FIELD = "answers"
# Label Studio pre-fills the labeling stream with the predictions whose model_version is the
# project's (Task.get_predictions_for_prelabeling), and sets the project's to the last one
# imported when it is empty: that would pre-fill annotator 2's answer for the tie-breaker.
# A model_version no prediction has keeps the stream neutral; the answers are shown as text.
NO_PREFILL = "none: both answers are shown as text"


@dataclass
class TiebreakResult:
    """disagreements: images that need the tie-breaker (so far); added: tie-break tasks
    created by this call; waiting: images still missing an annotator's answer."""

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

    def to_dict(self) -> dict:
        return asdict(self)


def tiebreak_config(taxonomy: Taxonomy) -> str:
    """The round's labeling config with the two earlier answers shown above the image."""
    view = ET.fromstring(labeling_config(taxonomy))
    header = ET.Element("Header", value="Earlier answers (decide, or discard if there is no clear fashion item)")
    text = ET.Element("Text", name=ANSWERS_FIELD, value=f"${ANSWERS_FIELD}")
    view.insert(0, text)
    view.insert(0, header)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode")


def tiebreak(ws: Workspace, round_name: str | None = None, tiebreaker: str | None = None,
             client: Client | None = None, progress: Progress = SILENT) -> TiebreakResult:
    """Create (or extend) the round's tie-break project with one task per disagreement.

    tiebreaker: the third annotator's email; needed the first time unless the round was
    created with one (it is recorded then). Raises IfaError when no tie-breaker is known,
    when they are one of the two annotators, or the server does not answer."""
    store = ReviewStore(ws.ledger)
    view = state.load(store, round_name)
    client = client or Client(connection_for(ws.root))
    email = check_email(tiebreaker) if tiebreaker else _recorded_tiebreaker(ws, view)
    annotators = {view.projects[r]["email"] for r in ("annotator1", "annotator2") if r in view.projects}
    if "tiebreak" in view.projects and view.projects["tiebreak"]["email"] != email:
        raise IfaError(f"Round {view.name} already has a tie-break project for {view.projects['tiebreak']['email']}; "
                       "leave --tiebreaker out to add tasks to it.")
    if email in annotators:
        raise IfaError("The tie-breaker must be a third person, not one of the two annotators.")
    user = client.user_by_email(email)
    if user is None:
        raise IfaError(f"{email} is not a Label Studio user on {client.url}; add them: ifa review annotators add {email}")

    out = TiebreakResult(view.name, email, None, None)
    disagree = []
    for image_id in view.images:
        outcome = view.outcome(image_id)
        if outcome == state.DISAGREE:
            disagree.append(image_id)
        elif outcome == state.AGREED:
            out.agreed += 1
        elif outcome == state.DISCARDED:
            out.discarded += 1
        else:
            out.waiting += 1
    out.disagreements = len(disagree)
    out.images = disagree
    have = set(view.tasks.loc[view.tasks["role"] == "tiebreak", "image_id"])
    out.already = len(have & set(disagree))
    if not disagree:
        return out

    taxonomy = ws.taxonomy
    sources = store.image_sources(view.round_id)
    sources = sources[sources["image_id"].isin(disagree)]
    data, roots, _ = task_data(ws, sources, client.conn.embedded)
    emails = {r: view.projects[r]["email"] for r in ("annotator1", "annotator2")}
    extra = {}
    for image_id in data:
        answers = {r: view.answers[r][image_id] for r in emails}
        data[image_id][ANSWERS_FIELD] = "\n".join(
            f"{ROLE_NAMES[r]} ({emails[r]}): {describe(a, taxonomy)}" for r, a in answers.items())
        extra[image_id] = {"predictions": [_prediction(f"{ROLE_NAMES[r]}: {emails[r]}", a, taxonomy)
                                           for r, a in answers.items()]}
    project_id = ensure_project(client, store, view.round_id, view.name, "tiebreak", email, int(user["id"]), roots,
                                tiebreak_config(taxonomy), extra={"model_version": NO_PREFILL})
    out.project_id, out.url = project_id, f"{client.url}/projects/{project_id}"
    added, _ = import_missing(client, store, view.round_id, "tiebreak", project_id, data, progress, extra)
    out.added = added
    ws.ledger.append_event("review_tiebreak", new=str(added), reason=f"{added} disagreements of round {view.name} "
                           f"sent to {email}", rule=f"review:{view.name}")
    return out


def _prediction(model_version: str, answer: Answer, taxonomy: Taxonomy) -> dict:
    # Only the valid part of an invalid answer is shown as a prediction (an unknown choice
    # would not render); the text above the image names the problem.
    return {"model_version": model_version, "result": to_result(answer.labels, taxonomy, answer.discard)}


def _recorded_tiebreaker(ws: Workspace, view: state.RoundView) -> str:
    if "tiebreak" in view.projects:
        return view.projects["tiebreak"]["email"]
    if view.round.get("tiebreaker"):
        return str(view.round["tiebreaker"])
    raise IfaError(f"Round {view.name} has no tie-breaker yet; name one with --tiebreaker EMAIL.")
