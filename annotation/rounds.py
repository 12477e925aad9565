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
from collections import Counter
import io
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

from ..curation import reports
from ..curation.ledger import check_splits, id_list
from ..curation.ledger.review import ReviewStore, annotator_role, is_tiebreak
from ..curation.ledger.review_queue import set_review_status
from ..curation.workspace import Workspace
from ..errors import IfaError
from ..progress import SILENT, Progress
from ..taxonomy import asked_config, asked_fields, labeling_config
from . import assignment, prefill, state
from .annotators import check_email, check_people
from .client import Client, connection_for
from .files import REFUSED, task_data
from .projects import ensure_project, import_missing, role_name


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
    mode: str = "blind"
    projects: list[ProjectInfo] = field(default_factory=list)
    tasks_added: dict[str, int] = field(default_factory=dict)
    tasks_adopted: dict[str, int] = field(default_factory=dict)
    gold: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)
    asked: dict[str, int] = field(default_factory=dict)  # a short check: group -> images asked it

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


@dataclass
class RoundSettings:
    """What a round is asked for (`create_round`'s arguments), checked by `check` before
    anything is recorded or sent."""

    split: str
    annotators: list[str]
    tiebreakers: list[str] = field(default_factory=list)
    image_ids: list[str] | None = None
    name: str | None = None
    limit: int | None = None
    per_image: int = 2
    gold_ids: list[str] | None = None
    gold_rate: float = 0.05
    mode: str = "blind"
    asked: dict[str, tuple[str, ...]] | None = None  # a short check: image -> the groups to answer

    def check(self) -> RoundSettings:
        """A copy with the emails normalised. Raises IfaError for an unknown split, fewer
        than two distinct annotators, --per-image outside 2..annotators, or a gold rate
        outside (0, 1], or an unknown mode."""
        check_splits(self.split)
        prefill.check_mode(self.mode)
        if self.asked is not None and self.mode != "check":
            raise IfaError("A short check (only some groups asked per image) pre-fills the current labels: use "
                           "--mode check.")
        emails = [check_email(e) for e in self.annotators]
        if len(emails) < 2 or len(set(emails)) != len(emails):
            raise IfaError("A round needs two or more different annotators (--annotators A B [C ...]).")
        per_image = int(self.per_image)
        if not 2 <= per_image <= len(emails):
            raise IfaError(f"--per-image {per_image} must be at least 2 (two answers to compare) and at most the "
                           f"{len(emails)} annotators named.")
        if not 0 < self.gold_rate <= 1:
            raise IfaError(f"--gold-rate {self.gold_rate} must be above 0 and at most 1 (e.g. 0.05 for 5%).")
        pool = list(dict.fromkeys(check_email(e) for e in self.tiebreakers))
        return replace(self, annotators=emails, tiebreakers=pool, per_image=per_image)


@dataclass
class _Recorded:
    """A round as `_record_round` left it in the ledger: what the later steps need."""

    round_id: int
    name: str
    resumed: bool
    simulated: bool
    roles: list[str]
    gold: dict[str, list[int]]
    skipped: dict[str, list[str]]
    mode: str = "blind"
    asked: dict[str, tuple[str, ...]] = field(default_factory=dict)  # a short check's groups per image


def create_round(ws: Workspace, *, split: str, annotators: Sequence[str],
                 tiebreaker: str | Sequence[str] | None = None, image_ids: Sequence[str] | None = None,
                 name: str | None = None, limit: int | None = None, per_image: int = 2,
                 gold_ids: Sequence[str] | None = None, gold_rate: float = 0.05, mode: str = "blind",
                 asked: dict[str, Sequence[str]] | None = None, client: Client | None = None,
                 progress: Progress = SILENT) -> CreateResult:
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
    mode: `blind` (annotators label from an empty page) or `check` (each task pre-filled
        with the image's current labels, gold with planted mistakes: `prefill.py`); a
        resumed round keeps the mode it was created with.
    asked: a short check (check mode only): image id -> the groups its annotators answer;
        the page offers only those, the pre-fill holds their current labels, answers count
        in them only and finalize keeps the image's other labels (`prefill.py`).
    Raises IfaError for unknown or duplicate annotators, image ids not in the split, gold
    ids not in the workspace, or a server that does not answer (what was done so far
    stays recorded; rerun to finish the same assignment)."""
    pool = [tiebreaker] if isinstance(tiebreaker, str) else list(tiebreaker or [])
    settings = RoundSettings(split, list(annotators), pool, None if image_ids is None else list(image_ids), name,
                             limit, per_image, None if gold_ids is None else list(gold_ids), gold_rate, mode,
                             None if asked is None else {str(i): tuple(g) for i, g in asked.items()}).check()
    client = client or Client(connection_for(ws.root))
    store = ReviewStore(ws.ledger)
    users = check_people(client, settings.annotators, settings.tiebreakers, per_image=settings.per_image)
    recorded = _record_round(ws, store, settings, client.url)
    result = _fill_projects(ws, store, client, recorded, settings, users, progress)
    _finish(store, recorded, result)
    return result


def _record_round(ws: Workspace, store: ReviewStore, settings: RoundSettings, server: str) -> _Recorded:
    """Record the round, its pool, images and gold (a rerun finds them recorded). Raises
    IfaError for bad image or gold ids, or a resumed round with other annotators."""
    gold = _gold_labels(ws, store, settings.gold_ids) if settings.gold_ids else {}
    image_ids = settings.image_ids
    if gold and image_ids is not None:
        image_ids = [i for i in image_ids if str(i) not in gold]
    images, skipped = _select_images(ws, settings.split, image_ids, settings.limit, exclude=set(gold))
    name, resumed = _round_name(store, settings.split, settings.name, settings.annotators)
    simulated_users = store.simulated_emails()
    simulated = any(e in simulated_users for e in [*settings.annotators, *settings.tiebreakers])
    round_id = store.create_round(name, settings.split, server, simulated)
    mode = _round_mode(store, round_id, name, settings.mode, resumed)
    if simulated:
        store.set_simulated(round_id)
    roles = [annotator_role(k) for k in range(len(settings.annotators))]
    _check_same_annotators(store, round_id, name, roles, settings.annotators)
    _record_pool(store, round_id, name, settings, bool(gold))
    store.add_images(round_id, images)
    if gold:
        store.set_gold(round_id, gold)
    if settings.asked is not None:  # a rerun keeps the groups recorded first (their tasks show them)
        store.set_check_groups(round_id, prefill.check_asked(settings.asked, images, ws.taxonomy))
    return _Recorded(round_id, name, resumed, simulated, roles, gold, skipped, mode, store.check_groups(round_id))


def _check_same_annotators(store: ReviewStore, round_id: int, name: str, roles: list[str], emails: list[str]) -> None:
    """A resumed round keeps its annotators: raises IfaError when they differ."""
    recorded = store.projects(round_id)
    for role, email in zip(roles, emails):
        if role in recorded and recorded[role].email != email:
            raise IfaError(f"Round {name} already has {recorded[role].email} as {role_name(role)}, not {email}; "
                           "pick another --name for a round with other annotators.")
    have = [r for r in recorded if not is_tiebreak(r)]
    if any(r not in roles for r in have):
        raise IfaError(f"Round {name} has {len(have)} annotators, not {len(emails)}; pick another --name for a "
                       "round with other annotators.")


def _record_pool(store: ReviewStore, round_id: int, name: str, settings: RoundSettings, has_gold: bool) -> None:
    """The tie-breaker pool, per-image count and gold rate. A rerun without tie-breakers
    keeps the recorded ones (rounds recorded before pools name one `tiebreaker`)."""
    gold_rate = settings.gold_rate if has_gold else None
    if settings.tiebreakers and not any(is_tiebreak(r) for r in store.projects(round_id)):
        store.set_pool(round_id, settings.tiebreakers, settings.per_image, gold_rate)
    elif not settings.tiebreakers:
        store.set_pool(round_id, state.recorded_tiebreakers(store.round(name)), settings.per_image, gold_rate)


def _fill_projects(ws: Workspace, store: ReviewStore, client: Client, rnd: _Recorded, settings: RoundSettings,
                   users: dict[str, int], progress: Progress) -> CreateResult:
    """Plan each annotator's queue, then make their project and import their missing tasks."""
    sources = store.image_sources(rnd.round_id)
    files = task_data(ws, sources, client.conn)
    gold_files = task_data(ws, store.gold_sources(rnd.round_id), client.conn)
    skipped = {**rnd.skipped, "no image file or URL": files.missing,
               "gold without image file or URL": gold_files.missing, REFUSED: files.refused + gold_files.refused}
    plan = plan_assignment(store, rnd.round_id, rnd.name, rnd.roles, [i for i in sources["image_id"] if i in files.data],
                           settings.per_image, list(gold_files.data), settings.gold_rate)
    result = CreateResult(rnd.name, settings.split, client.url, len(sources) - len(files.missing) - len(files.refused),
                          rnd.resumed, rnd.simulated, rnd.mode, gold=len(rnd.gold),
                          skipped={k: v for k, v in skipped.items() if v},
                          asked=dict(Counter(g for gs in rnd.asked.values() for g in gs)))
    files = files.merged(gold_files)
    pages = annotator_pages(ws, store, rnd, files.data, list(sources["image_id"]))
    for role, email in zip(rnd.roles, settings.annotators):
        project_id = ensure_project(client, store, rnd.round_id, rnd.name, role, email, users[email], files.roots,
                                    pages.config, extra=pages.settings)
        mine = {i: files.data[i] for i in plan.get(role, []) if i in files.data}
        result.tasks_added[role], result.tasks_adopted[role] = import_missing(
            client, store, rnd.round_id, role, project_id, mine, progress, pages.prefills)
        result.projects.append(ProjectInfo(role, email, project_id, f"{client.url}/projects/{project_id}",
                                           store.task_counts(rnd.round_id).get(role, 0)))
    return result


@dataclass
class AnnotatorPages:
    """How a round's annotator projects look: the label config, the project settings of its
    mode, and per image the task fields that pre-fill it (None in blind mode)."""

    config: str
    settings: dict
    prefills: dict[str, dict] | None


def annotator_pages(ws: Workspace, store: ReviewStore, rnd: _Recorded, data: dict[str, dict],
                    images: list[str]) -> AnnotatorPages:
    """The pages of the round's annotators (create, and reassign's newcomer, the same):
    a short check's task `data` gains the fields offering only its asked groups (every
    group on gold); check mode pre-fills `images`' current labels and gold's planted ones."""
    if rnd.asked:
        for image_id, fields in data.items():
            fields.update(asked_fields(ws.taxonomy, rnd.asked.get(image_id)))
    config = asked_config(ws.taxonomy) if rnd.asked else labeling_config(ws.taxonomy)
    return AnnotatorPages(config, prefill.project_settings(rnd.mode, short=bool(rnd.asked)),
                          _prefills(ws, store, rnd, images))


def recorded(view: state.RoundView) -> _Recorded:
    """A round already created, as its later steps (reassign) need it."""
    return _Recorded(view.round_id, view.name, True, False, list(view.annotator_roles), dict(view.gold), {},
                     str(view.round.get("mode") or "blind"), dict(view.check_groups))


def _finish(store: ReviewStore, rnd: _Recorded, result: CreateResult) -> None:
    """Mark the round complete, take its images off the review queue, and log the event."""
    store.mark_complete(rnd.round_id)
    # Images a check-attributes rule queued for review are now in a round.
    set_review_status(store.ledger, "sent", image_ids=store.images(rnd.round_id), reason=f"in review round {rnd.name}")
    store.ledger.append_event("review_tasks", new=str(sum(result.tasks_added.values())),
                              reason=f"tasks created for round {rnd.name}: {result.tasks_added}",
                              rule=f"review:{rnd.name}")


def _round_mode(store: ReviewStore, round_id: int, name: str, mode: str, resumed: bool) -> str:
    """Record the mode of a new round; a resumed round keeps the one it was created with."""
    if not resumed:
        store.set_mode(round_id, mode)
    return str(store.round(name).get("mode") or "blind")


def _prefills(ws: Workspace, store: ReviewStore, rnd: _Recorded, images: list[str]) -> dict[str, dict] | None:
    """Check mode's task fields per image: the current labels (of the groups asked, in a
    short check), or for gold the trusted ones with planted mistakes (recorded once, so a
    rerun shows the same); None in blind mode."""
    if rnd.mode != "check":
        return None
    if rnd.gold:
        store.set_gold_prefill(rnd.round_id, [(p.image_id, p.shown, p.mistakes) for p in (
            prefill.plant(i, tuple(ls), ws.taxonomy, rnd.name) for i, ls in rnd.gold.items())])
    shown = {i: s for i, (s, _) in store.gold_prefill(rnd.round_id).items()}
    current = {i: tuple(ls) for i, ls in store.labels_of(images).items()}
    return prefill.predictions(current, shown, ws.taxonomy, rnd.asked)


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
        if all(projects[r].email == e for r, e in zip(roles, emails) if r in projects):
            return str(last["name"]), True  # finish the round whose creation was interrupted
    n = len(mine) + 1
    while f"{split}-{n}" in set(rounds["name"]):
        n += 1
    return f"{split}-{n}", False
