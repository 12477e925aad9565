"""Where each image of a round stands, read from the ledger (no server needed).

Per image and role, the answer that counts is the latest non-deleted annotation by the
project's own annotator. Two answers agree when both are valid and either both discard
the image or both give exactly the same labels; anything else (a label differs in any
group, one discards, one is invalid or skipped) is a disagreement for the tie-breaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..curation.ledger.review import ANNOTATOR_ROLES, ReviewStore
from .answers import Answer

WAITING, AGREED, DISCARDED, DISAGREE = "waiting", "agreed", "discarded", "disagree"


@dataclass
class RoundView:
    """A round as the ledger holds it. answers[role][image_id] is the counted Answer."""

    round: dict
    projects: dict[str, dict]
    images: list[str]
    tasks: pd.DataFrame
    annotations: pd.DataFrame
    answers: dict[str, dict[str, Answer]] = field(default_factory=dict)

    @property
    def round_id(self) -> int:
        return int(self.round["round_id"])

    @property
    def name(self) -> str:
        return str(self.round["name"])

    def outcome(self, image_id: str) -> str:
        return compare(self.answers["annotator1"].get(image_id), self.answers["annotator2"].get(image_id))


def load(store: ReviewStore, round_name: str | None = None) -> RoundView:
    """The round (latest when None) with its counted answers. Raises IfaError when there
    is no such round."""
    rnd = store.round(round_name)
    rid = int(rnd["round_id"])
    ann = store.annotations(rid)
    view = RoundView(rnd, store.projects(rid), store.images(rid), store.tasks(rid), ann)
    counted = ann[ann["by_annotator"] == 1].sort_values(["updated_at", "ls_annotation_id"])
    for role in (*ANNOTATOR_ROLES, "tiebreak"):
        rows = counted[counted["role"] == role]
        view.answers[role] = {
            r.image_id: Answer(tuple(int(x) for x in r.labels), bool(r.discard),
                               tuple(r.problems.split("; ")) if r.problems else ())
            for r in rows.itertuples()  # later rows win: the latest answer counts
        }
    return view


def compare(a: Answer | None, b: Answer | None) -> str:
    """waiting (an answer is missing), agreed, discarded (both discard), or disagree."""
    if a is None or b is None:
        return WAITING
    if a.valid and b.valid:
        if a.discard and b.discard:
            return DISCARDED
        if not a.discard and not b.discard and a.labels == b.labels:
            return AGREED
    return DISAGREE
