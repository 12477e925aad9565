"""Check mode: annotators edit the image's current labels instead of starting empty.

The paper's images were "checked or annotated". In a check-mode round every task carries
the image's current active labels as a Label Studio prediction that pre-fills the
annotator's answer (the project's model_version names it and "use predictions to
prelabel" is on); what they submit, edited or not, is the answer. A gold task is
pre-filled with its trusted labels plus planted mistakes (a label dropped, swapped or
added in one or two groups, recorded in the ledger), so gold measures whether someone
checks: an annotator who submits pre-fills unchanged scores low on gold.
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


def project_settings(mode: str) -> dict:
    """Label Studio project settings for an annotator's project in this mode."""
    if mode == "check":
        return {"show_collab_predictions": True, "model_version": PREFILL_VERSION}
    return {}


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
                taxonomy: Taxonomy) -> dict[str, dict]:
    """Per image id, the task fields that pre-fill it: {"predictions": [...]}, with the
    current labels (or, for gold, the planted labels shown)."""
    out = {}
    for image_id, labels in {**current, **shown_gold}.items():
        out[image_id] = {"predictions": [{"model_version": PREFILL_VERSION, "result": to_result(labels, taxonomy)}]}
    return out
