"""A round's Label Studio projects and their tasks: the plumbing that create, tie-break and
reassign share.

A project is found again by the marker on the first line of its description, so a project
created just before a crash is adopted, not made twice; tasks are imported in batches and
each batch's ids are recorded at once, and tasks imported but not recorded are found by
the `image_id` in their data. So every step here can be rerun after a crash.
"""

from __future__ import annotations

from ..curation.ledger.review import ReviewStore, is_tiebreak
from ..errors import IfaError
from ..progress import SILENT, Progress
from .client import Client, NotFound

# Tasks per import request: 5,000 keeps one request under ~10 s on a busy machine while
# the per-request overhead stays negligible (10,000 tasks import in ~1.6 s when quiet).
IMPORT_BATCH = 5000
ROLE_NAMES = {"annotator1": "annotator 1", "annotator2": "annotator 2", "tiebreak": "tie-break"}
MARKER = "ifa-review"  # first line of every project description: `ifa-review round=R role=X workspace=K`
INSTRUCTIONS = (
    "<p>Label every group that applies to the main fashion item in the photo: one choice in "
    "single-label groups (category, neckline, sleeve, style), all that apply in the others. "
    "Work only in this project; the other annotator labels the same photos separately.</p>"
)


def role_name(role: str) -> str:
    """annotator3 -> `annotator 3`, tiebreak -> `tie-break`, tiebreak2 -> `tie-break 2`."""
    if role in ROLE_NAMES:
        return ROLE_NAMES[role]
    if is_tiebreak(role):
        return f"tie-break {role[8:]}"
    return f"annotator {role[9:]}"


def ensure_project(client: Client, store: ReviewStore, round_id: int, round_name: str, role: str, email: str,
                   user_id: int, storage: set[str], label_config: str, extra: dict | None = None) -> int:
    """The Label Studio project of this round and role: the recorded one, else one created
    earlier but not recorded (adopted by its description marker), else a new one. Also
    makes sure its local-files storage covers `storage`. Returns the project id."""
    # The workspace's key: another workspace's round of the same name on this server is not ours.
    marker = f"{MARKER} round={round_name} role={role} workspace={store.workspace_key()}"
    recorded = store.projects(round_id).get(role)
    project_id = None
    if recorded is not None:
        try:
            client.get(f"api/projects/{recorded.ls_project_id}/", f"checking project {recorded.ls_project_id}")
            project_id = recorded.ls_project_id
        except NotFound:
            raise IfaError(f"Label Studio project {recorded.ls_project_id} ({role_name(role)} of round {round_name}) "
                           f"is gone from {client.url}. Its annotations synced so far are in the ledger; create a "
                           "new round for the images still to review.") from None
    title = _title(round_name, role, email)
    if project_id is None:
        for p in _all_projects(client):
            if (p.get("description") or "").splitlines()[:1] == [marker]:
                project_id = int(p["id"])
                break
    if project_id is None:
        settings = {
            "title": title,
            "description": f"{marker}\nifa review round {round_name}: {role_name(role)} {email}. "
                           "Created by ifa; do not rename the first line.",
            "label_config": label_config,
            "expert_instruction": INSTRUCTIONS,
            "show_instruction": True,
            "maximum_annotations": 1,
            # The two annotators must answer independently: no pre-filled answers.
            "show_collab_predictions": is_tiebreak(role),
            "enable_empty_annotation": False,
            "show_skip_button": True,
            **(extra or {}),
        }
        created = client.request("POST", "api/projects/", f"creating the {role_name(role)} project of {round_name}",
                                 json=settings, idempotent=False)
        project_id = int(created["id"])
    store.set_project(round_id, role, email, user_id, project_id, title)
    if storage:
        ensure_storage(client, project_id, storage)
    return project_id


def _title(round_name: str, role: str, email: str) -> str:
    # Label Studio caps titles at 50 characters; the description carries the full name.
    short = f"TB{role[8:]}" if is_tiebreak(role) else f"A{role[9:]}"
    title = f"{round_name} {short} {email}"
    return title if len(title) <= 50 else title[:49] + "…"


def _all_projects(client: Client) -> list[dict]:
    out, page = [], 1
    while True:
        data = client.get("api/projects/", "listing projects", page=page, page_size=100)
        items = data.get("results", []) if isinstance(data, dict) else data
        out.extend(items)
        if not isinstance(data, dict) or not data.get("next") or not items:
            return out
        page += 1


def ensure_storage(client: Client, project_id: int, roots: set[str]) -> None:
    """Local-files storage on the project for each root folder (Label Studio serves a file
    only from a folder some project's storage names). Never synced: tasks are imported
    with their file URLs, so the storage only grants access."""
    have = client.get("api/storages/localfiles", f"listing storages of project {project_id}", project=project_id)
    have_paths = {s.get("path") for s in (have or [])}
    for root in sorted(roots - have_paths):
        client.request("POST", "api/storages/localfiles", f"adding local storage {root} to project {project_id}",
                       json={"project": project_id, "path": root, "use_blob_urls": True, "title": f"ifa {root}"[:50]},
                       idempotent=False)


def import_missing(client: Client, store: ReviewStore, round_id: int, role: str, project_id: int,
                   data: dict[str, dict], progress: Progress = SILENT,
                   extra: dict[str, dict] | None = None) -> tuple[int, int]:
    """Import a task for every image in `data` that this role lacks; record each batch's
    task ids at once. `extra` adds per-image task fields (e.g. predictions). Returns
    (tasks imported, tasks adopted: imported by an interrupted run but not recorded)."""
    adopted = reconcile_tasks(client, store, round_id, role, project_id, set(data))
    have = set(store.tasks(round_id, role)["image_id"])
    missing = [i for i in data if i not in have]
    added = 0
    with progress.task(f"{role_name(role)}: importing tasks", total=len(missing)) as bar:
        for start in range(0, len(missing), IMPORT_BATCH):
            batch = missing[start:start + IMPORT_BATCH]
            tasks = [{"data": data[i], **((extra or {}).get(i, {}))} for i in batch]
            resp = client.request("POST", f"api/projects/{project_id}/import",
                                  f"importing {len(batch):,} tasks into project {project_id}",
                                  params={"return_task_ids": "true", "commit_to_project": "true"}, json=tasks,
                                  idempotent=False)
            ids = resp.get("task_ids") or []
            if len(ids) != len(batch):
                # Should not happen; the ids cannot be matched by position, so match by data.
                reconcile_tasks(client, store, round_id, role, project_id, set(batch))
            else:
                store.record_tasks(round_id, role, zip(batch, ids))
            added += len(batch)
            bar.advance(len(batch))
    return added, adopted


def reconcile_tasks(client: Client, store: ReviewStore, round_id: int, role: str, project_id: int,
                    wanted: set[str]) -> int:
    """Record tasks Label Studio has but the ledger lacks (an import that landed just
    before a crash). Lists tasks only when the counts differ. Returns how many were
    recorded."""
    recorded = store.tasks(round_id, role)
    info = client.get(f"api/projects/{project_id}/", f"reading project {project_id}")
    if int(info.get("task_number") or 0) <= len(recorded):
        return 0
    known = set(recorded["image_id"])
    pairs = []
    # An interrupted import leaves its tasks after the last recorded one; list only those
    # first, and everything only if that does not account for the difference.
    tail = int(recorded["ls_task_id"].max()) if len(recorded) else 0
    for after in (tail, 0):
        for page in client.task_pages(project_id, after=after):
            for t in page:
                iid = str((t.get("data") or {}).get("image_id", ""))
                if iid in wanted and iid not in known:
                    pairs.append((iid, int(t["id"])))
                    known.add(iid)
        if after == 0 or len(recorded) + len(pairs) >= int(info.get("task_number") or 0):
            break
    return store.record_tasks(round_id, role, pairs)
