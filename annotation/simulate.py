"""Simulated annotators: real Label Studio users, driven by a script, for the demo and tests.

A simulated annotator is an ordinary account (signed up through the invite link) whose
answers are posted through the API with ITS OWN token, so Label Studio records it as the
author exactly as if a person had clicked Submit; nothing is faked on the server side.
They are marked simulated in the ledger (review_annotators.simulated, and the round's
`simulated` flag), their emails end in `@simulated.ifa.invalid`, and everything the
review commands print or write about them says so.
"""

from __future__ import annotations

import json
import os
import secrets
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import httpx
import numpy as np

from ..curation.ledger.review import ReviewStore
from ..curation.workspace import Workspace
from ..errors import IfaError
from ..taxonomy import Taxonomy
from . import server
from .annotators import ensure_member, log_in, own_token, sign_up
from .answers import to_result
from .client import Client

DOMAIN = "simulated.ifa.invalid"  # .invalid: reserved, never a real mailbox
SECRETS_FILE = "simulated-users.json"

# Chooses an answer for an image from its current labels: returns (label ids, discard).
Chooser = Callable[[str, tuple[int, ...]], tuple[Iterable[int], bool]]


def email(name: str) -> str:
    """`annotator-1` -> `annotator-1@simulated.ifa.invalid`."""
    return f"{name}@{DOMAIN}"


@dataclass(frozen=True)
class SimulatedAnnotator:
    email: str
    user_id: int
    token: str


def annotator(ws: Workspace, client: Client, address: str, secrets_dir: Path | None = None) -> SimulatedAnnotator:
    """Sign up (first time) or log in as a simulated annotator and fetch their own API
    token. Their password lives in `<secrets_dir>/simulated-users.json` (mode 0600;
    default: the workspace's labelstudio/ folder). Records them in the ledger as
    simulated. Raises IfaError when the server refuses or the password is lost on a
    server ifa does not run."""
    address = address.lower()
    folder = Path(secrets_dir) if secrets_dir else server.server_dir(ws.root)
    folder.mkdir(parents=True, exist_ok=True)
    book_path = folder / SECRETS_FILE
    book = json.loads(book_path.read_text()) if book_path.exists() else {}
    key = f"{client.url} {address}"
    user = client.user_by_email(address)
    if user is None:
        password = book.get(key) or secrets.token_urlsafe(16)
        _save(book_path, {**book, key: password})
        session = sign_up(client, address, password)
    else:
        password = book.get(key)
        if password is None:
            if not client.conn.embedded:
                raise IfaError(f"{address} exists on {client.url} but its simulated password is not in {book_path}.")
            password = secrets.token_urlsafe(16)
            server.reset_password(client.conn.embedded_root, address, password)
            _save(book_path, {**book, key: password})
        session = log_in(client.url, address, password)
    try:
        token = own_token(session)
    finally:
        session.close()
    user = client.user_by_email(address)
    ensure_member(client, user)
    ReviewStore(ws.ledger).add_annotator(client.url, address, int(user["id"]), simulated=True)
    return SimulatedAnnotator(address, int(user["id"]), token)


def password(secrets_dir: Path, url: str, address: str) -> str:
    """The password `annotator` chose for a simulated annotator on the server at `url`
    (to log in to the web page as them). Raises IfaError when it is not in the book."""
    book_path = Path(secrets_dir) / SECRETS_FILE
    book = json.loads(book_path.read_text()) if book_path.exists() else {}
    found = book.get(f"{url} {address.lower()}")
    if found is None:
        raise IfaError(f"No simulated password for {address} on {url} in {book_path}.")
    return found


def _save(path: Path, book: dict) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(book, fh, indent=2)


def answer(url: str, who: SimulatedAnnotator, task_id: int, labels: Iterable[int] = (), *, discard: bool = False,
           taxonomy: Taxonomy | None = None, result: list[dict] | None = None, lead_time: float | None = None,
           skip: bool = False, session: httpx.Client | None = None) -> int:
    """Submit an annotation on `task_id` as `who` (with their own token). Give label ids
    (and/or discard), or a raw `result` to post exactly (e.g. an invalid choice); `skip`
    presses Skip. Returns the Label Studio annotation id. Raises IfaError when refused."""
    if result is None:
        result = to_result(labels, taxonomy or Taxonomy.default(), discard)
    body = {"result": result, "lead_time": lead_time, "was_cancelled": skip}
    try:
        r = (session or httpx).post(f"{url}/api/tasks/{int(task_id)}/annotations/", json=body,
                                    headers={"Authorization": f"Token {who.token}"}, timeout=60)
    except httpx.HTTPError as exc:
        raise IfaError(f"Label Studio at {url} did not answer while {who.email} annotated task {task_id} "
                       f"({type(exc).__name__}).") from None
    if r.status_code >= 300:
        raise IfaError(f"Label Studio refused {who.email}'s annotation of task {task_id}: HTTP {r.status_code} {r.text[:200]}")
    return int(r.json()["id"])


def answer_role(ws: Workspace, url: str, who: SimulatedAnnotator, role: str, choose: Chooser,
                round_name: str | None = None, rng: np.random.Generator | None = None) -> int:
    """Answer every task of `role` in the round that this annotator has not answered yet
    (as far as the ledger knows), choosing with `choose(image_id, current labels)`.
    Returns how many answers were posted."""
    store = ReviewStore(ws.ledger)
    rnd = store.round(round_name)
    rid = int(rnd["round_id"])
    tasks = store.tasks(rid, role)
    done = store.annotations(rid)
    done = set(done.loc[(done["role"] == role) & (done["completed_by"] == who.user_id), "image_id"])
    labels = store.active_labels(rid).groupby("image_id")["label_id"].agg(lambda s: tuple(sorted(int(x) for x in s)))
    labels = {**labels.to_dict(), **store.gold(rid)}  # gold images are not the round's images: their labels too
    rng = rng or np.random.default_rng(0)
    jobs = []
    for image_id, task_id in zip(tasks["image_id"], tasks["ls_task_id"]):
        if image_id not in done:
            chosen, discard = choose(image_id, labels.get(image_id, ()))
            jobs.append((int(task_id), list(chosen), discard, float(rng.uniform(4, 40))))
    # A few at once: Label Studio spends ~0.1-0.3 s per annotation, mostly waiting on SQLite.
    with httpx.Client() as session, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda j: answer(url, who, j[0], j[1], discard=j[2], taxonomy=ws.taxonomy, lead_time=j[3],
                                       session=session), jobs))
    return len(jobs)


def noisy_chooser(taxonomy: Taxonomy, seed: int, swap: float = 0.15, discard: float = 0.0) -> Chooser:
    """An annotator who mostly confirms the current labels: with probability `swap` one
    label is replaced by another of its group (a plausible confusion), with probability
    `discard` the image is discarded; an unlabelled image gets a guessed label of the
    first group. Deterministic per (seed, image)."""
    groups = {g.name: np.array(g.label_ids) for g in taxonomy.groups}

    def choose(image_id: str, current: tuple[int, ...]) -> tuple[list[int], bool]:
        rng = np.random.default_rng([seed, zlib.crc32(image_id.encode())])
        if rng.random() < discard:
            return [], True
        out = list(current)
        if not out:  # an unlabelled image (e.g. the test split): guess a category
            out = [int(rng.choice(groups[taxonomy.groups[0].name]))]
        if rng.random() < swap:
            i = int(rng.integers(len(out)))
            pool = groups[taxonomy.labels[out[i]].group]
            pool = pool[~np.isin(pool, out)]
            if len(pool):
                out[i] = int(rng.choice(pool))
        return sorted(out), False

    return choose


def siding_chooser(answers: dict) -> Chooser:
    """A tie-breaker who takes one annotator's answer (`answers`: image_id -> Answer, e.g.
    `state.load(...).answers["annotator1"]`), or keeps the current labels without one."""
    def choose(image_id: str, current: tuple[int, ...]) -> tuple[list[int], bool]:
        a = answers.get(image_id)
        return (list(current), False) if a is None or not a.valid else (list(a.labels), a.discard)
    return choose


def confirming_chooser() -> Chooser:
    """A tie-breaker who keeps the image's current labels (the demo's stand-in for a
    careful third look)."""
    return lambda image_id, current: (list(current), False)


def careless_chooser(taxonomy: Taxonomy, seed: int) -> Chooser:
    """A careless annotator who answers at random: one random label in every single-label
    group and 0-2 random labels in every multi-label group, whatever the photo shows.
    Deterministic per (seed, image)."""
    def choose(image_id: str, current: tuple[int, ...]) -> tuple[list[int], bool]:
        rng = np.random.default_rng([seed, zlib.crc32(image_id.encode()), 7])
        out: list[int] = []
        for group in taxonomy.groups:
            ids = np.array(group.label_ids)
            n = 1 if group.single else int(rng.integers(0, 3))
            out.extend(int(x) for x in rng.choice(ids, size=min(n, len(ids)), replace=False))
        return sorted(out), False

    return choose


# Error models of the review benchmark and tests: per group, the chance that an answer to
# that group is wrong. A careful person slips on 5% of groups; a careless one answers half
# the groups at random; a colour-blind one gets most colours wrong.
CAREFUL = 0.05
ERROR_TABLES: dict[str, dict[str, float]] = {
    "careful": {},
    "careless": {"*": 0.5},
    "colour-blind": {"color": 0.7},
}


def error_rate(table: dict[str, float], group: str) -> float:
    """The table's error rate for `group` (its "*" entry, else CAREFUL, where unnamed)."""
    return table.get(group, table.get("*", CAREFUL))


def slip(truth: tuple[int, ...], taxonomy: Taxonomy, table: dict[str, float], rng: np.random.Generator,
         groups: Iterable[str] | None = None) -> list[int]:
    """An answer to `truth` with errors per group drawn from `table` (see ERROR_TABLES):
    a wrong single-label group gets another label or none; a wrong multi-label group loses,
    swaps or gains one label. `groups`: only these groups are answered (a tie-breaker's
    partial task); the others are left out of the answer."""
    wanted = set(taxonomy.group_names if groups is None else groups)
    out: list[int] = []
    for group in taxonomy.groups:
        if group.name not in wanted:
            continue
        mine = [int(x) for x in truth if taxonomy.labels[int(x)].group == group.name]
        if rng.random() < error_rate(table, group.name):
            mine = _wrong(mine, np.array(group.label_ids), group.single, rng)
        out.extend(mine)
    return sorted(set(out))


def _wrong(mine: list[int], ids: np.ndarray, single: bool, rng: np.random.Generator) -> list[int]:
    others = ids[~np.isin(ids, mine)]
    if single:
        return [] if mine and (rng.random() < 0.2 or not len(others)) else [int(rng.choice(others))]
    move = (rng.integers(3) if len(others) else 0) if mine else 2
    if move == 0:  # drop one
        return [x for x in mine if x != mine[int(rng.integers(len(mine)))]]
    if move == 1:  # swap one
        k = int(rng.integers(len(mine)))
        return [*mine[:k], int(rng.choice(others)), *mine[k + 1:]]
    return [*mine, int(rng.choice(others))]  # add one


def table_chooser(taxonomy: Taxonomy, table: dict[str, float], seed: int, truth: dict | None = None) -> Chooser:
    """An annotator with per-group error rates from `table`, answering `truth[image_id]`
    (default: the image's current labels). Deterministic per (seed, image)."""
    def choose(image_id: str, current: tuple[int, ...]) -> tuple[list[int], bool]:
        rng = np.random.default_rng([seed, zlib.crc32(image_id.encode()), 11])
        known = truth.get(image_id, current) if truth is not None else current
        return slip(tuple(known), taxonomy, table, rng), False

    return choose
