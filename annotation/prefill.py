"""Check mode: annotators edit the image's current labels instead of starting empty.

The paper's images were "checked or annotated". In a check-mode round every task carries
the image's current active labels as a Label Studio prediction that pre-fills the
annotator's answer (the project's model_version names it and "use predictions to
prelabel" is on); what they submit, edited or not, is the answer. A gold task is
pre-filled with its trusted labels plus planted mistakes (a label dropped, swapped or
added in one or two groups, recorded in the ledger), so gold measures whether someone
checks: an annotator who submits pre-fills unchanged scores low on gold.

A short check (`curate flag-noise --review`) is a check-mode round that asks each image
only some groups (the flagged ones): its page offers choices in those groups only
(`taxonomy.asked_config`), the pre-fill holds their current labels, its answers count in
those groups only, and finalize keeps the image's other labels as they are.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import IfaError
from ..taxonomy import Taxonomy
from .answers import to_result

MODES = ("blind", "check")
PREFILL_VERSION = "current labels"  # the prediction's model_version, and the project's
CHECK_INSTRUCTIONS = (
    "<p>Check the labels shown in the groups that offer choices: the model doubts them. Untick a label that "
    "does not apply to the main fashion item, tick one that is missing, and submit (an empty answer means none "
    "applies). The groups marked <i>not asked</i> keep their labels.</p>"
)


@dataclass(frozen=True)
class Planted:
    """A gold image's pre-fill: the labels shown and the mistakes planted in them."""

    image_id: str
    shown: tuple[int, ...]
    mistakes: tuple[str, ...]


def check_mode(mode: str) -> str:
    """The mode, or IfaError naming the choices."""
    if mode not in MODES:
        raise IfaError(f"--mode {mode!r} must be one of: {', '.join(MODES)}.")
    return mode


def project_settings(mode: str, short: bool = False) -> dict:
    """Label Studio project settings for an annotator's project in this mode (`short`: a
    short check, where an empty answer is allowed and the instructions say what to check)."""
    if mode != "check":
        return {}
    out = {"show_collab_predictions": True, "model_version": PREFILL_VERSION}
    return {**out, "enable_empty_annotation": True, "expert_instruction": CHECK_INSTRUCTIONS} if short else out


def plant(image_id: str, labels: tuple[int, ...], taxonomy: Taxonomy, seed: str) -> Planted:
    """The trusted labels with a mistake planted in each of one or two groups
    (deterministic per seed and image): a label dropped, swapped for another of its group,
    or added (an empty group can only gain one)."""
    rng = np.random.default_rng([zlib.crc32(seed.encode()), zlib.crc32(image_id.encode())])
    shown = {int(x) for x in labels}
    groups = list(taxonomy.groups)
    mistakes = []
    for k in rng.choice(len(groups), size=int(rng.integers(1, 3)), replace=False):
        group = groups[int(k)]
        mine = sorted(shown & set(group.label_ids))
        others = [x for x in group.label_ids if x not in shown]
        move = ("add",) if not mine else ("drop",) if not others else ("drop", "swap") if group.single else ("drop", "swap", "add")
        move = move[int(rng.integers(len(move)))]
        if move in ("drop", "swap"):
            x = int(rng.choice(mine))
            shown.discard(x)
        if move in ("add", "swap"):
            y = int(rng.choice(others))
            shown.add(y)
        if move == "drop":
            mistakes.append(f"dropped {taxonomy.labels[x].name}")
        elif move == "add":
            mistakes.append(f"added {taxonomy.labels[y].name}")
        else:
            mistakes.append(f"swapped {taxonomy.labels[x].name} for {taxonomy.labels[y].name}")
    return Planted(image_id, tuple(sorted(shown)), tuple(mistakes))


def predictions(current: dict[str, tuple[int, ...]], shown_gold: dict[str, tuple[int, ...]],
                taxonomy: Taxonomy, asked: dict[str, tuple[str, ...]] | None = None) -> dict[str, dict]:
    """Per image id, the task fields that pre-fill it: {"predictions": [...]}, with the
    current labels (or, for gold, the planted labels shown); in a short check (`asked`:
    image -> groups) only the labels of the groups asked, the only ones its page offers."""
    out = {}
    for image_id, labels in {**current, **shown_gold}.items():
        result = to_result(labels, taxonomy, groups=(asked or {}).get(image_id))
        out[image_id] = {"predictions": [{"model_version": PREFILL_VERSION, "result": result}]}
    return out


def check_asked(asked: dict[str, tuple[str, ...]], images: list[str], taxonomy: Taxonomy) -> dict[str, tuple[str, ...]]:
    """A short check's groups per image, in the taxonomy's order, for the round's `images`.
    Raises IfaError for an unknown group or an image given no group."""
    order = {g: k for k, g in enumerate(taxonomy.group_names)}
    unknown = sorted({g for gs in asked.values() for g in gs if g not in order})
    if unknown:
        raise IfaError(f"Unknown groups to check: {', '.join(unknown)}; the groups are {', '.join(order)}.")
    empty = [i for i in images if i in asked and not asked[i]]
    if empty:
        raise IfaError(f"{len(empty)} images are given no group to check; name at least one group per image.")
    return {i: tuple(sorted(set(asked[i]), key=order.__getitem__)) for i in images if i in asked}
