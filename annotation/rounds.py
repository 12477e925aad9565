"""Create a review round: its images, one Label Studio project per annotator, their tasks.

A round follows the paper's cleaning of validation and test: two annotators label every
image independently, each in a project of their own (open-source Label Studio has no task
assignment, so separate projects are what keeps them from seeing each other's answers);
a third breaks ties later (`tiebreak.py`).

Creation is idempotent. The ledger records the round and its images first, then each
project as soon as it exists, then each batch of task ids as soon as Label Studio returns
them. A rerun after a crash adopts a project that was created but not recorded (found by
the marker in its description), records tasks that were imported but not recorded (found
by the `image_id` in their data), and imports only what is still missing, so no image
ever gets a second task.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

import pandas as pd

from ..curation import reports
from ..curation.ledger import check_splits, id_list
from ..curation.ledger.review import ReviewStore, annotator_role, is_tiebreak
from ..curation.ledger.review_queue import set_review_status
from ..curation.workspace import Workspace
from ..errors import IfaError
from ..progress import SILENT, Progress
from ..taxonomy import labeling_config
from . import assignment
from .annotators import check_email
from .client import Client, NotFound, connection_for

# Tasks per import request: 5,000 keeps one request under ~10 s on a busy machine while
# the per-request overhead stays negligible (10,000 tasks import in ~1.6 s when quiet).
IMPORT_BATCH = 5000
ROLE_NAMES = {"annotator1": "annotator 1", "annotator2": "annotator 2", "tiebreak": "tie-break"}
MARKER = "ifa-review"  # first line of every project description: `ifa-review round=R role=X`
INSTRUCTIONS = (
    "<p>Label every group that applies to the main fashion item in the photo: one choice in "
    "single-label groups (category, neckline, sleeve, style), all that apply in the others. "
    "Work only in this project; the other annotator labels the same photos separately.</p>"
)


@dataclass
class ProjectInfo:
    role: str
    email: str
    project_id: int
    url: str
    tasks: int = 0


@dataclass
class CreateResult:
    """What `create_round` did. images: images in the round; tasks_added: per role, tasks
    imported by this call (0 on a rerun with nothing missing); skipped: image ids left out
    with the reason."""

    round: str
    split: str
    server: str
    images: int
    resumed: bool
    simulated: bool
    projects: list[ProjectInfo] = field(default_factory=list)
    tasks_added: dict[str, int] = field(default_factory=dict)
    tasks_adopted: dict[str, int] = field(default_factory=dict)
    gold: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def read_image_ids(path: Path) -> list[str]:
    """Image ids from a text file (one per line; blank lines and # comments ignored) or a
    CSV with an `image_id` column. Raises IfaError when the file is missing or empty."""
    path = Path(path)
    if not path.exists():
        raise IfaError(f"{path} does not exist.")
    with open(path, encoding="utf-8-sig", newline="") as fh:  # keep a CR inside a quoted id
        text = fh.read()
    first = text.splitlines()[0] if text.strip() else ""
    if "," in first or first.strip().lower() == "image_id":
        rows = list(csv.DictReader(io.StringIO(text, newline="")))  # a quoted id may hold a line break
        if not rows or "image_id" not in rows[0]:
            raise IfaError(f"{path} looks like a CSV but has no image_id column (it has: {first}).")
        # reports' ids were written for spreadsheets: '=x is the id =x
        ids = [reports.from_spreadsheet(r["image_id"].strip()) for r in rows if (r.get("image_id") or "").strip()]
    else:
        ids = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not ids:
        raise IfaError(f"{path} lists no image ids.")
    return list(dict.fromkeys(ids))


def role_name(role: str) -> str:
    """annotator3 -> `annotator 3`, tiebreak -> `tie-break`, tiebreak2 -> `tie-break 2`."""
    if role in ROLE_NAMES:
        return ROLE_NAMES[role]
    if is_tiebreak(role):
        return f"tie-break {role[8:]}"
    return f"annotator {role[9:]}"


def create_round(ws: Workspace, *, split: str, annotators: Sequence[str],
                 tiebreaker: str | Sequence[str] | None = None, image_ids: Sequence[str] | None = None,
                 name: str | None = None, limit: int | None = None, per_image: int = 2,
                 gold_ids: Sequence[str] | None = None, gold_rate: float = 0.05,
                 client: Client | None = None, progress: Progress = SILENT) -> CreateResult:
    """Create (or finish creating) a review round over `image_ids` of `split` (default:
    every active image of the split) for a pool of annotators, with a pool of
    tie-breakers named for the later tie-break. Plain data in, so other commands (e.g.
    `curate flag-noise --review`) can send their images to review.

    annotators: two or more distinct emails of Label Studio users (see `annotators.add`);
        each gets a project of their own (role annotator1, annotator2, ...).
    per_image: distinct annotators per image (default 2); the load is balanced and the
        groups rotate (`assignment.assign_images`), deterministically for the round name.
        With exactly two annotators, both label every image.
    tiebreaker: one email or a list (the pool); may also be given later to `tiebreak`.
    gold_ids: images (any split) whose current labels are trusted; each annotator's
        queue gets max(1, round(gold_rate x their tasks)) of them, interleaved. They are
        scored (`ifa review status`), never finalized, and left out of the round's images.
    name: the round's name (default `<split>-<n>`, or the latest round of this split
        whose creation was interrupted, which is then finished).
    limit: only the first N images. client: defaults to the workspace's server.
    Raises IfaError for unknown or duplicate annotators, image ids not in the split, gold
    ids not in the workspace, or a server that does not answer (what was done so far
    stays recorded; rerun to finish the same assignment)."""
    check_splits(split)
    emails = [check_email(e) for e in annotators]
    pool = [tiebreaker] if isinstance(tiebreaker, str) else list(tiebreaker or [])
    pool = list(dict.fromkeys(check_email(e) for e in pool))
    if len(emails) < 2 or len(set(emails)) != len(emails):
        raise IfaError("A round needs two or more different annotators (--annotators A B [C ...]).")
    per_image = int(per_image)
    if not 2 <= per_image <= len(emails):
        raise IfaError(f"--per-image {per_image} must be at least 2 (two answers to compare) and at most the "
                       f"{len(emails)} annotators named.")
    if pool and per_image == len(emails) and all(e in emails for e in pool):
        raise IfaError("The tie-breaker must be a third person, not one of the two annotators."
                       if len(emails) == 2 else
                       "Every image goes to every annotator, so the tie-breaker must be someone else.")
    if not 0 < gold_rate <= 1:
        raise IfaError(f"--gold-rate {gold_rate} must be above 0 and at most 1 (e.g. 0.05 for 5%).")
    client = client or Client(connection_for(ws.root))
    store = ReviewStore(ws.ledger)
    users = {(u.get("email") or "").lower(): u for u in client.users()}
    people = list(dict.fromkeys([*emails, *pool]))
    unknown = [e for e in people if e not in users]
    if unknown:
        raise IfaError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a Label Studio user on "
                       f"{client.url}; add them first: ifa review annotators add {' '.join(unknown)}")

    gold_labels = _gold_labels(ws, store, gold_ids) if gold_ids else {}
    if gold_labels and image_ids is not None:
        image_ids = [i for i in image_ids if str(i) not in gold_labels]
    images, skipped = _select_images(ws, split, image_ids, limit, exclude=set(gold_labels))
    name, resumed = _round_name(store, split, name, emails)
    simulated_users = store.simulated_emails()
    simulated = any(e in simulated_users for e in people)
    round_id = store.create_round(name, split, client.url, simulated)
    if simulated:
        store.set_simulated(round_id)
    recorded = store.projects(round_id)
    roles = [annotator_role(k) for k in range(len(emails))]
    for role, email in zip(roles, emails):
        if role in recorded and recorded[role]["email"] != email:
            raise IfaError(f"Round {name} already has {recorded[role]['email']} as {role_name(role)}, not {email}; "
                           "pick another --name for a round with other annotators.")
    extra_roles = [r for r in recorded if not is_tiebreak(r) and r not in roles]
    if extra_roles:
        raise IfaError(f"Round {name} has {len(recorded) - len([r for r in recorded if is_tiebreak(r)])} annotators, "
                       f"not {len(emails)}; pick another --name for a round with other annotators.")
    if pool and not any(is_tiebreak(r) for r in recorded):
        store.set_pool(round_id, pool, per_image, gold_rate if gold_labels else None)
    elif not pool:
        rnd = store.round(name)
        store.set_pool(round_id, json.loads(rnd["tiebreakers"]) if isinstance(rnd.get("tiebreakers"), str)
                       else ([rnd["tiebreaker"]] if rnd.get("tiebreaker") else []), per_image,
                       gold_rate if gold_labels else None)
    store.add_images(round_id, images)
    if gold_labels:
        store.set_gold(round_id, gold_labels)

    sources = store.image_sources(round_id)
    gold_sources = store.gold_sources(round_id)
    data, roots, no_source = task_data(ws, sources, client.conn.embedded)
    gdata, groots, gmissing = task_data(ws, gold_sources, client.conn.embedded)
    if no_source:
        skipped["no image file or URL"] = no_source
    if gmissing:
        skipped["gold without image file or URL"] = gmissing
    plan = plan_assignment(store, round_id, name, roles, [i for i in sources["image_id"] if i in data],
                           per_image, list(gdata), gold_rate)
    data.update(gdata)
    roots = storage_roots(roots | groots)
    result = CreateResult(name, split, client.url, len(sources) - len(no_source), resumed, simulated)
    config = labeling_config(ws.taxonomy)
    for role, email in zip(roles, emails):
        user_id = int(users[email]["id"])
        project_id = ensure_project(client, store, round_id, name, role, email, user_id, roots, config)
        mine = {i: data[i] for i in plan.get(role, []) if i in data}
        added, adopted = import_missing(client, store, round_id, role, project_id, mine, progress)
        result.tasks_added[role] = added
        result.tasks_adopted[role] = adopted
        result.projects.append(ProjectInfo(role, email, project_id, f"{client.url}/projects/{project_id}",
                                           store.task_counts(round_id).get(role, 0)))
    result.gold = len(gold_labels)
    result.skipped = {k: v for k, v in skipped.items() if v}
    store.mark_complete(round_id)
    # Images a check-attributes rule queued for review are now in a round.
    set_review_status(store.ledger, "sent", image_ids=sources["image_id"].tolist(), reason=f"in review round {name}")
    store.ledger.append_event("review_tasks", new=str(sum(result.tasks_added.values())),
                              reason=f"tasks created for round {name}: {result.tasks_added}", rule=f"review:{name}")
    return result


def plan_assignment(store: ReviewStore, round_id: int, name: str, roles: list[str], images: list[str],
                    per_image: int, gold: list[str], gold_rate: float) -> dict[str, list[str]]:
    """Each annotator role's queue (image ids in import order), recorded in the ledger
    before any task is imported. Images already assigned keep their annotators; new ones
    continue the balance (`assignment.assign_images`, seeded by the round name). Gold
    images are interleaved once, when an annotator's queue is first planned."""
    have = store.assignments(round_id)
    index = {r: k for k, r in enumerate(roles)}
    regular = have[have["gold"] == 0]
    assigned: dict[str, list[int]] = {}
    for role, image_id in zip(regular["role"], regular["image_id"]):
        if role in index:
            assigned.setdefault(image_id, []).append(index[role])
    # Rounds made before assignments were recorded: their tasks are the assignment.
    tasks = store.tasks(round_id)
    skip = set(gold) | set(regular["image_id"])
    for role, image_id in zip(tasks["role"], tasks["image_id"]):
        if role in index and image_id not in skip:
            assigned.setdefault(image_id, [])
            if index[role] not in assigned[image_id]:
                assigned[image_id].append(index[role])
    todo = [i for i in images if len(assigned.get(i, ())) < per_image]
    if todo:
        done = {i: g for i, g in assigned.items() if len(g) >= per_image}
        load, co = assignment.loads_and_overlap(done, len(roles))
        new = assignment.assign_images(todo, len(roles), per_image, seed=name, loads=load, together=co)
        queues: dict[str, list[str]] = {r: [] for r in roles}
        for image_id, group in new.items():
            for a in group:
                queues[roles[a]].append(image_id)
        first_time = have.empty
        golds = (assignment.gold_queue(gold, [len(queues[r]) for r in roles], gold_rate, seed=name)
                 if first_time and gold else [[] for _ in roles])
        start = {r: float(have.loc[have["role"] == r, "position"].max()) + 1 if (have["role"] == r).any() else 0.0
                 for r in roles}
        rows = []
        for role, g in zip(roles, golds):
            for image_id, is_gold, pos in assignment.interleave(queues[role], g):
                rows.append((role, image_id, is_gold, start[role] + pos))
        store.add_assignments(round_id, rows)
        have = store.assignments(round_id)
    return {r: have.loc[have["role"] == r, "image_id"].tolist() for r in roles}


def _gold_labels(ws: Workspace, store: ReviewStore, gold_ids: Sequence[str]) -> dict[str, list[int]]:
    wanted = list(dict.fromkeys(str(i) for i in gold_ids))
    splits = ws.ledger.image_splits(wanted)
    missing = [i for i in wanted if i not in splits]
    if missing:
        raise IfaError(f"Of the {len(wanted):,} gold image ids, {len(missing)} are not in the workspace "
                       f"({id_list(missing)}). Nothing was created.")
    labels = store.labels_of(wanted)
    empty = [i for i, ls in labels.items() if not ls]
    if empty:
        raise IfaError(f"{len(empty)} gold images have no active labels to trust ({id_list(empty)}); gold images need their labels. Nothing was created.")
    return labels


def _select_images(ws: Workspace, split: str, image_ids: Sequence[str] | None, limit: int | None,
                   exclude: set[str] = frozenset()) -> tuple[list[str], dict[str, list[str]]]:
    frame = ws.ledger.images_frame([split], status=None)
    if exclude:
        frame = frame[~frame["image_id"].isin(exclude)]
    skipped: dict[str, list[str]] = {}
    if image_ids is not None:
        wanted = list(dict.fromkeys(str(i) for i in image_ids))
        splits = ws.ledger.image_splits(wanted)
        missing = [i for i in wanted if i not in splits]
        elsewhere = [i for i in wanted if i in splits and splits[i] != split]
        if missing or elsewhere:
            parts = []
            if missing:
                parts.append(f"{len(missing)} not in the workspace ({id_list(missing)})")
            if elsewhere:
                parts.append(f"{len(elsewhere)} in another split ({id_list(elsewhere)})")
            raise IfaError(f"Of the {len(wanted):,} image ids given, {' and '.join(parts)}; the round is for the "
                           f"{split} split. Nothing was created.")
        frame = frame.set_index("image_id").loc[wanted].reset_index()
    aside = frame["status"] != "active"
    skipped["set aside"] = frame.loc[aside, "image_id"].tolist()
    ids = frame.loc[~aside, "image_id"].tolist()
    if limit is not None:
        ids = ids[: max(0, int(limit))]
    if not ids:
        raise IfaError(f"No active images to review in the {split} split" +
                       (" among the ids given." if image_ids is not None else "; import some first."))
    return ids, skipped


def _round_name(store: ReviewStore, split: str, name: str | None, emails: list[str]) -> tuple[str, bool]:
    rounds = store.rounds()
    if name is not None:
        name = name.strip()
        # It becomes part of rule ids (review:<round>), report file names and project titles.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}", name):
            raise IfaError(f"Round name {name!r} must be 1-40 letters, digits, '.', '_' or '-', starting with a "
                           "letter or digit.")
        return name, bool((rounds["name"] == name).any())
    mine = rounds[rounds["split"] == split]
    if len(mine) and not mine.iloc[-1]["complete"]:
        last = mine.iloc[-1]
        projects = store.projects(int(last["round_id"]))
        roles = [annotator_role(k) for k in range(len(emails))]
        if all(projects.get(r, {}).get("email", e) == e for r, e in zip(roles, emails)):
            return str(last["name"]), True  # finish the round whose creation was interrupted
    n = len(mine) + 1
    while f"{split}-{n}" in set(rounds["name"]):
        n += 1
    return f"{split}-{n}", False


def task_data(ws: Workspace, sources: pd.DataFrame, embedded: bool) -> tuple[dict[str, dict], set[str], list[str]]:
    """Task data per image: {"image": how Label Studio loads it, "image_id": id}.

    A local file is served through Label Studio's local-files storage (a raw http URL is
    blocked by the browser unless its server sends CORS headers); an image with only a URL
    is passed as the URL. Returns (data by image id, folders the local storage must cover,
    image ids with neither a file nor a URL)."""
    data: dict[str, dict] = {}
    dirs: set[str] = set()
    missing: list[str] = []
    for row in sources.itertuples():
        path = None
        if isinstance(row.path, str) and row.path:
            p = Path(row.path)
            p = p if p.is_absolute() else (ws.root / p).resolve()
            if p.exists() or not embedded:
                path = p
        if path is not None and (embedded or not isinstance(row.url, str)):
            data[row.image_id] = {"image": f"/data/local-files/?d={quote(str(path).lstrip('/'))}", "image_id": row.image_id}
            dirs.add(str(path.parent))
        elif isinstance(row.url, str) and row.url:
            data[row.image_id] = {"image": row.url, "image_id": row.image_id}
        else:
            missing.append(row.image_id)
    return data, storage_roots(dirs), missing


def storage_roots(dirs: set[str]) -> set[str]:
    """The fewest folders that cover `dirs` (a folder inside another is dropped); many
    sibling folders (content-addressed images/ab/...) collapse into their parent."""
    roots: set[str] = set()
    for d in sorted(dirs, key=len):
        if not any(d == r or d.startswith(r.rstrip("/") + "/") for r in roots):
            roots.add(d)
    if len(roots) > 16:
        common = os.path.commonpath(list(roots))
        if common not in ("/", ""):
            return {common}
    return roots


def ensure_project(client: Client, store: ReviewStore, round_id: int, round_name: str, role: str, email: str,
                   user_id: int, storage: set[str], label_config: str, extra: dict | None = None) -> int:
    """The Label Studio project of this round and role: the recorded one, else one created
    earlier but not recorded (adopted by its description marker), else a new one. Also
    makes sure its local-files storage covers `storage`. Returns the project id."""
    marker = f"{MARKER} round={round_name} role={role}"
    recorded = store.projects(round_id).get(role)
    project_id = None
    if recorded is not None:
        try:
            client.get(f"api/projects/{recorded['ls_project_id']}/", f"checking project {recorded['ls_project_id']}")
            project_id = int(recorded["ls_project_id"])
        except NotFound:
            raise IfaError(f"Label Studio project {recorded['ls_project_id']} ({role_name(role)} of round {round_name}) "
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
