"""Pull a round's annotations from Label Studio into the ledger.

Each annotation is stored under its Label Studio id, so a rerun changes nothing and an
edited answer replaces the old one (which is kept as a version). A rerun lists only the
tasks Label Studio updated since the last sync began (see `sync_round`). Each page of tasks is
written in one transaction as soon as it arrives: a sync killed midway keeps every page
it finished, and the rerun skips nothing and duplicates nothing. An annotation is only
marked deleted after a complete listing of its project no longer shows it.

Every result is validated against the taxonomy (`answers.parse_result`) and against the
role: an annotation by anyone but the project's annotator is stored, flagged, and not
counted (open-source Label Studio lets every member open every project). In a short check
only the groups asked of the image count (`answers.restrict`); the raw result is kept.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from dataclasses import asdict, dataclass, field

from ..curation.ledger.review import ProjectRow, ReviewStore, is_tiebreak
from ..curation.workspace import Workspace
from ..progress import SILENT, Progress
from ..taxonomy import Taxonomy
from .answers import parse_result, restrict
from .client import LS_TIME, PAGE_SIZE, Client, connection_for


@dataclass
class SyncResult:
    """Counts of one sync, per round and per role (`per_role`)."""

    round: str
    server: str
    fetched: int = 0  # annotations read from Label Studio
    new: int = 0  # new, updated, unchanged: what that did to the ledger
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0  # stored annotations no longer in Label Studio
    skipped: int = 0
    invalid: int = 0  # counted annotations whose result breaks the taxonomy
    wrong_annotator: int = 0  # by someone other than the project's annotator: kept, not counted
    ignored: int = 0  # on tasks that are not the round's
    per_role: dict[str, dict] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RoleCounts:
    """One project's share of a sync (SyncResult.per_role)."""

    email: str
    fetched: int = 0
    new: int = 0
    updated: int = 0
    deleted: int = 0
    listing: str = "full"


def sync_round(ws: Workspace, round_name: str | None = None, client: Client | None = None,
               progress: Progress = SILENT, page_size: int = PAGE_SIZE, full: bool = False) -> SyncResult:
    """Sync every project of the round (latest round when `round_name` is None).

    The first sync of a project lists every annotated task; later ones list only tasks
    Label Studio updated since the previous sync began (a new or edited answer touches
    its task), and fall back to a full listing when the project's annotation count shows
    a deletion. `full` forces full listings. Raises IfaError when the server does not
    answer after retries; pages written before that stay, and a rerun completes the
    sync (the cursor moves only after a project's listing finished)."""
    start = time.perf_counter()
    store = ReviewStore(ws.ledger)
    rnd = store.round(round_name)
    round_id = int(rnd["round_id"])
    client = client or Client(connection_for(ws.root))
    result = SyncResult(rnd["name"], client.url)
    pages = _Pages(client, store, round_id, set(store.images(round_id)), ws.taxonomy, result, page_size,
                   store.check_groups(round_id), _partial_tiebreaks(store, round_id, ws.taxonomy))
    projects = store.projects(round_id)
    # Tasks saved while we list may be missed by this listing; the next sync starts from the
    # server's clock before this one began (1 s margin for a request still committing).
    started = _minus_seconds(client.server_time(), 1.0)
    cursors = {role: None if full else store.sync_cursor(round_id, role) for role in projects}
    counts = {role: RoleCounts(p.email) for role, p in projects.items()}
    _sync_new_answers(pages, projects, cursors, counts, progress)
    for role, project in projects.items():
        if cursors[role] is None:
            counts[role].deleted = _sync_everything(pages, project, counts[role], progress)
        store.set_sync_cursor(round_id, role, started)
    for role, c in counts.items():
        result.per_role[role] = asdict(c)
        result.fetched += c.fetched
        result.new += c.new
        result.updated += c.updated
        result.deleted += c.deleted
    result.unchanged = result.fetched - result.new - result.updated
    result.seconds = time.perf_counter() - start
    if result.new or result.updated or result.deleted:
        ws.ledger.append_event("review_sync", new=f"{result.new} new, {result.updated} updated, {result.deleted} deleted",
                               reason=f"annotations of round {result.round} synced from {client.url}",
                               rule=f"review:{result.round}")
    return result


@dataclass
class _Pages:
    """Reads a round's annotations from Label Studio into the ledger, page by page."""

    client: Client
    store: ReviewStore
    round_id: int
    images: set[str]
    taxonomy: Taxonomy
    result: SyncResult
    page_size: int
    asked: dict[str, tuple[str, ...]]  # a short check: image -> the groups its answers are read in
    tiebreak_asked: dict[str, tuple[str, ...]]  # image -> the groups its tie-breaker was asked, when not all

    def read(self, project: ProjectRow, counts: RoleCounts, bar, **listing) -> set[int]:
        """Store every annotation of the listed tasks, one transaction per page; returns
        the Label Studio ids of the annotations seen."""
        tasks = self.store.tasks(self.round_id, project.role)
        image_of = dict(zip(tasks["ls_task_id"].astype(int), tasks["image_id"]))
        seen: set[int] = set()
        for page in self.client.task_pages(project.ls_project_id, annotations=True, page_size=self.page_size,
                                           **listing):
            rows = [row for task in page for row in self._rows(task, project, image_of, seen)]
            done = self.store.upsert_annotations(self.round_id, rows)
            counts.fetched += len(rows)
            counts.new += done["new"]
            counts.updated += done["updated"]
            bar.advance(len(page))
        return seen

    def _rows(self, task: dict, project: ProjectRow, image_of: dict[int, str], seen: set[int]) -> list[dict]:
        image_id = image_of.get(int(task["id"]))
        if image_id is None:
            candidate = str((task.get("data") or {}).get("image_id", ""))
            image_id = candidate if candidate in self.images else None
        rows = []
        for ann in task.get("annotations") or []:
            if int(ann["id"]) in seen:
                continue
            seen.add(int(ann["id"]))
            if image_id is None:
                self.result.ignored += 1
                continue
            asked = (self.tiebreak_asked.get(image_id) if is_tiebreak(project.role) else None) or self.asked.get(image_id)
            rows.append(_row(ann, task, project.role, image_id, project.ls_user_id, self.taxonomy, self.result, asked))
        return rows


def _sync_new_answers(pages: _Pages, projects: dict[str, ProjectRow], cursors: dict[str, str | None],
                      counts: dict[str, RoleCounts], progress: Progress) -> None:
    """Projects synced before: only the tasks Label Studio updated since (a new or edited
    answer touches its task), then one request for every project's annotation count; a
    project that lost annotations gets its cursor cleared for a full listing."""
    incremental = [r for r in projects if cursors[r] is not None]
    for role in incremental:
        with progress.task(f"sync {role} ({projects[role].email}): new answers") as bar:
            pages.read(projects[role], counts[role], bar, updated_after=cursors[role])
            counts[role].listing = "incremental"
    if not incremental:
        return
    on_server = pages.client.annotation_counts([projects[r].ls_project_id for r in incremental])
    for role in incremental:
        # Label Studio keeps no trace of a deleted annotation: fewer than we hold is the
        # sign, and only then is the project listed in full. (More than we hold: answers
        # that arrived after our listing, or ones outside the round; the next sync has them.)
        if on_server.get(projects[role].ls_project_id, 0) < pages.store.role_annotation_count(pages.round_id, role):
            cursors[role] = None
            counts[role].listing = "full (annotations were deleted in Label Studio)"


def _sync_everything(pages: _Pages, project: ProjectRow, counts: RoleCounts, progress: Progress) -> int:
    """A full listing (first syncs, --full, a project where something was deleted);
    returns how many stored annotations it marked deleted."""
    with progress.task(f"sync {project.role} ({project.email})") as bar:
        seen: set[int] = set()
        # Submitted and skipped tasks are listed separately: Label Studio's filters
        # take one conjunction, and keyset paging needs "id > last" in it.
        for only in ("annotated", "skipped"):
            seen |= pages.read(project, counts, bar, only=only)
    return pages.store.mark_deleted(pages.round_id, project.role, seen)


def _partial_tiebreaks(store: ReviewStore, round_id: int, taxonomy: Taxonomy) -> dict[str, tuple[str, ...]]:
    """image -> the groups its tie-breaker was asked, for tasks asking fewer than all groups
    (`--when uncertain`): only those count, and an empty answer there means none applies
    (pattern on a plain shirt), not an unanswered task."""
    every = len(taxonomy.group_names)
    return {i: g for i, g in store.tiebreak_groups(round_id).items() if len(g) < every}


def _row(ann: dict, task: dict, role: str, image_id: str, annotator_id: int, taxonomy, result: SyncResult,
         asked: tuple[str, ...] | None = None) -> dict:
    completed_by = ann.get("completed_by")
    if isinstance(completed_by, dict):  # an expanded user
        completed_by = completed_by.get("id")
    by_annotator = completed_by is not None and int(completed_by) == annotator_id
    answer = parse_result(ann.get("result"), taxonomy, bool(ann.get("was_cancelled")))
    if asked is not None:  # a short check or a partial tie-break counts the groups it asked, whatever else was chosen
        answer = restrict(answer, asked, taxonomy)
    if not by_annotator:
        result.wrong_annotator += 1
    elif answer.problems == ("skipped",):
        result.skipped += 1
    elif answer.problems:
        result.invalid += 1
        for p in answer.problems:
            kind = p.split(":")[0]
            result.problems[kind] = result.problems.get(kind, 0) + 1
    return {
        "ls_annotation_id": int(ann["id"]), "role": role, "image_id": image_id, "ls_task_id": int(task["id"]),
        "completed_by": completed_by, "by_annotator": by_annotator, "result": ann.get("result") or [],
        "labels": answer.labels, "discard": answer.discard, "skipped": bool(ann.get("was_cancelled")),
        "problems": "; ".join(answer.problems), "lead_time": ann.get("lead_time"),
        "created_at": ann.get("created_at"), "updated_at": ann.get("updated_at"),
    }


def _minus_seconds(stamp: str, seconds: float) -> str:
    return (datetime.strptime(stamp, LS_TIME) - timedelta(seconds=seconds)).strftime(LS_TIME)
