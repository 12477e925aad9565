"""`ifa review reassign`: move an annotator's unanswered tasks to someone else.

A leaves (or is careless): A's finished work stays; every task A has not answered moves
to B, except images B already has in the round (an image's annotators stay distinct),
which stay with A and are reported. B gets a project of their own if they are new to the
round.

Crash-safe in three steps, each resumable: the ledger's assignment moves first (one
transaction), then B's missing tasks are imported (recorded batch by batch), then A's
moved tasks are deleted in Label Studio and forgotten. A rerun finds the assignment
already moved and finishes the other two steps. The round is synced first so an answer
A gave since the last sync is not taken away.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..curation.ledger.review import ReviewStore, annotator_role, is_tiebreak
from ..curation.workspace import Workspace
from ..errors import IfaError
from ..progress import SILENT, Progress
from . import rounds, state
from .annotators import check_email, check_people
from .client import Client, NotFound, connection_for
from .files import task_data
from .projects import ensure_project, import_missing
from .sync import sync_round

DELETE_BATCH = 1000


@dataclass
class ReassignResult:
    """moved: tasks now B's; kept: image ids left with A because B already has them;
    deleted: A's tasks removed from A's Label Studio project by this call; to_role: B's
    role in the round (a new one when B was not in it)."""

    round: str
    from_email: str
    to_email: str
    from_role: str
    to_role: str
    to_project_id: int
    moved: int = 0
    imported: int = 0
    deleted: int = 0
    kept: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def reassign(ws: Workspace, round_name: str | None, from_email: str, to_email: str, client: Client | None = None,
             progress: Progress = SILENT) -> ReassignResult:
    """Move `from_email`'s unanswered tasks of the round to `to_email`.

    Raises IfaError when from_email is not an annotator of the round, when both are the
    same person, when to_email is not a Label Studio user, or when the server does not
    answer (rerun to finish)."""
    a, b = check_email(from_email), check_email(to_email)
    if a == b:
        raise IfaError("--from and --to name the same person; name someone else to take the tasks.")
    store = ReviewStore(ws.ledger)
    client = client or Client(connection_for(ws.root))
    name = str(store.round(round_name)["name"])
    sync_round(ws, name, client, progress=progress)
    view = state.load(store, name)
    roles = {view.email(r): r for r in view.annotator_roles}
    if a not in roles:
        raise IfaError(f"{a} is not an annotator of round {name}; its annotators: {', '.join(roles) or 'none'}.")
    user_b = check_people(client, [b])[b]
    role_a = roles[a]
    role_b = roles.get(b) or annotator_role(len(view.annotator_roles))
    _backfill_assignments(store, view)
    move, kept = _split_queue(store, view, role_a, role_b)

    files = task_data(ws, store.image_sources(view.round_id), client.conn).merged(
        task_data(ws, store.gold_sources(view.round_id), client.conn))
    # The newcomer's page is the round's: a check round pre-fills, a short check asks its groups.
    pages = rounds.annotator_pages(ws, store, rounds.recorded(view), files.data, store.images(view.round_id))
    project_b = ensure_project(client, store, view.round_id, name, role_b, b, user_b, files.roots, pages.config,
                               extra=pages.settings)
    plan = store.assignments(view.round_id)
    base = float(plan.loc[plan["role"] == role_b, "position"].max()) if (plan["role"] == role_b).any() else -1.0
    moved = store.move_assignments(view.round_id, role_a, role_b, move, base)
    plan = store.assignments(view.round_id)
    queue_b = plan.loc[plan["role"] == role_b, "image_id"].tolist()
    imported, _ = import_missing(client, store, view.round_id, role_b, project_b,
                                 {i: files.data[i] for i in queue_b if i in files.data}, progress, pages.prefills)
    deleted = _delete_moved(client, store, view, role_a, set(plan.loc[plan["role"] == role_a, "image_id"]))
    ws.ledger.append_event("review_reassign", old=a, new=b,
                           reason=f"{moved} unanswered tasks of round {name} moved from {a} to {b}; {len(kept)} kept "
                                  "(already theirs)", rule=f"review:{name}")
    return ReassignResult(name, a, b, role_a, role_b, project_b, moved, imported, deleted, kept)


def _split_queue(store: ReviewStore, view: state.RoundView, role_a: str, role_b: str) -> tuple[list[str], list[str]]:
    """A's unanswered images: (those that move to B, those B already has and A keeps)."""
    plan = store.assignments(view.round_id)
    answered = set(view.answers.get(role_a, {}))
    theirs = set(plan.loc[plan["role"] == role_b, "image_id"]) | set(view.tasks.loc[view.tasks["role"] == role_b, "image_id"])
    todo = [i for i in plan.loc[plan["role"] == role_a, "image_id"] if i not in answered]
    return [i for i in todo if i not in theirs], [i for i in todo if i in theirs]


def _delete_moved(client: Client, store: ReviewStore, view: state.RoundView, role_a: str, still_a: set[str]) -> int:
    """Delete A's unanswered tasks whose assignment is no longer A's from A's project, then
    forget them; returns how many."""
    answered = set(view.answers.get(role_a, {}))
    tasks_a = store.tasks(view.round_id, role_a)
    gone = tasks_a[~tasks_a["image_id"].isin(still_a) & ~tasks_a["image_id"].isin(answered)]
    project_a = view.projects[role_a].ls_project_id
    deleted = 0
    for start in range(0, len(gone), DELETE_BATCH):
        batch = gone.iloc[start:start + DELETE_BATCH]
        try:
            client.request("POST", "api/dm/actions", f"deleting {len(batch)} moved tasks from project {project_a}",
                           params={"id": "delete_tasks", "project": project_a},
                           json={"selectedItems": {"all": False, "included": [int(t) for t in batch["ls_task_id"]]}},
                           idempotent=True)
        except NotFound:
            pass  # already gone (a rerun after a crash)
        store.forget_tasks(view.round_id, role_a, batch["image_id"].tolist())
        deleted += len(batch)
    return deleted


def _backfill_assignments(store: ReviewStore, view: state.RoundView) -> None:
    """Rounds created before assignments were recorded: their tasks are the assignment."""
    if not store.assignments(view.round_id).empty:
        return
    rows = [(r, i, i in view.gold, float(t)) for r, i, t in zip(view.tasks["role"], view.tasks["image_id"],
                                                                view.tasks["ls_task_id"]) if not is_tiebreak(r)]
    store.add_assignments(view.round_id, rows)
