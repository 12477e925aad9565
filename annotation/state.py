"""Where each image of a round stands, read from the ledger (no server needed).

Per image and role, the answer that counts is the latest non-deleted annotation by the
project's own annotator. An image's annotators are the annotator roles holding a task for
it (two of a pool, or both of a two-person round). Their answers agree when all are valid
and either all discard the image or all give exactly the same labels; anything else (a
label differs in any group, one discards, one is invalid or skipped) is a disagreement
for a tie-breaker. Gold images are not the round's images: their answers are scored
against the trusted labels (`gold`), never compared or finalized.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from ..curation.ledger.review import ProjectRow, ReviewStore, is_tiebreak
from .answers import Answer

WAITING, AGREED, DISCARDED, DISAGREE = "waiting", "agreed", "discarded", "disagree"


@dataclass
class RoundView:
    """A round as the ledger holds it. answers[role][image_id] is the counted Answer;
    annotators_of[image_id] the annotator roles with a task for that image (in role
    order); tiebreak_of[image_id] the tie-break role holding its tie-break task; gold
    the gold images' trusted labels."""

    round: dict
    projects: dict[str, ProjectRow]
    images: list[str]
    tasks: pd.DataFrame
    annotations: pd.DataFrame
    answers: dict[str, dict[str, Answer]] = field(default_factory=dict)
    gold: dict[str, tuple[int, ...]] = field(default_factory=dict)
    annotators_of: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tiebreak_of: dict[str, str] = field(default_factory=dict)
    check_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # a short check: image -> groups asked

    @property
    def round_id(self) -> int:
        return int(self.round["round_id"])

    @property
    def name(self) -> str:
        return str(self.round["name"])

    @property
    def annotator_roles(self) -> list[str]:
        return [r for r in self.projects if not is_tiebreak(r)]

    @property
    def tiebreak_roles(self) -> list[str]:
        return [r for r in self.projects if is_tiebreak(r)]

    @property
    def per_image(self) -> int | None:
        """Annotators per image as recorded (None for rounds recorded before pools)."""
        value = self.round.get("per_image")
        return None if value is None or value != value else int(value)

    def email(self, role: str) -> str:
        return self.projects[role].email

    def image_answers(self, image_id: str) -> list[Answer | None]:
        """The counted answers of the image's annotators (None where one is missing)."""
        return [self.answers.get(r, {}).get(image_id) for r in self.annotators_of.get(image_id, ())]

    def outcome(self, image_id: str) -> str:
        roles = self.annotators_of.get(image_id, ())
        if len(roles) < 2:
            return WAITING
        return compare_all(self.image_answers(image_id))


def load(store: ReviewStore, round_name: str | None = None) -> RoundView:
    """The round (latest when None) with its counted answers. Raises IfaError when there
    is no such round."""
    rnd = store.round(round_name)
    rid = int(rnd["round_id"])
    ann = store.annotations(rid)
    view = RoundView(rnd, store.projects(rid), store.images(rid), store.tasks(rid), ann, gold=store.gold(rid),
                     check_groups=store.check_groups(rid))
    counted = ann[ann["by_annotator"] == 1].sort_values(["updated_at", "ls_annotation_id"])
    for role in view.projects:
        rows = counted[counted["role"] == role]
        view.answers[role] = {
            r.image_id: Answer(tuple(int(x) for x in r.labels), bool(r.discard),
                               tuple(r.problems.split("; ")) if r.problems else ())
            for r in rows.itertuples()  # later rows win: the latest answer counts
        }
    annotator_roles = set(view.annotator_roles)
    groups: dict[str, list[str]] = {}
    for role, image_id in zip(view.tasks["role"], view.tasks["image_id"]):
        if role in annotator_roles:
            if image_id not in view.gold:
                groups.setdefault(image_id, []).append(role)
        elif is_tiebreak(role):
            view.tiebreak_of[image_id] = role
    order = {r: k for k, r in enumerate(view.projects)}
    view.annotators_of = {i: tuple(sorted(g, key=order.__getitem__)) for i, g in groups.items()}
    return view


def recorded_tiebreakers(rnd: dict) -> list[str]:
    """The round's recorded tie-breaker pool (a `store.round` row); rounds recorded
    before pools name a single `tiebreaker`."""
    raw = rnd.get("tiebreakers")
    if isinstance(raw, str) and raw:
        return list(json.loads(raw))
    return [str(rnd["tiebreaker"])] if rnd.get("tiebreaker") else []


def compare(a: Answer | None, b: Answer | None) -> str:
    """waiting (an answer is missing), agreed, discarded (both discard), or disagree."""
    return compare_all([a, b])


def compare_all(answers: list[Answer | None]) -> str:
    """compare() for any number of answers: all must agree."""
    if not answers or any(a is None for a in answers):
        return WAITING
    if all(a.valid for a in answers):
        if all(a.discard for a in answers):
            return DISCARDED
        if not any(a.discard for a in answers) and len({a.labels for a in answers}) == 1:
            return AGREED
    return DISAGREE
