"""An annotator's answer: a Label Studio result read against the taxonomy, and back.

Label Studio does not check choice values against the labeling config (an annotation
posted through the API with a value the taxonomy lacks is accepted), so every result is
validated here: an unknown control or choice, two choices in a single-label group, or an
empty answer make it invalid. The valid labels in it are still kept, for the tie-breaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..taxonomy import DISCARD_CHOICE, DISCARD_CONTROL, Taxonomy
from ..taxonomy.labelstudio_config import IMAGE_NAME


@dataclass(frozen=True)
class Answer:
    """labels: valid label ids, sorted; discard: the annotator chose `No clear fashion
    item`; problems: why the result is invalid (empty when valid)."""

    labels: tuple[int, ...] = ()
    discard: bool = False
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def valid(self) -> bool:
        return not self.problems


_MAPS: dict[int, tuple[Taxonomy, dict[str, dict[str, int]]]] = {}


def _choice_maps(taxonomy: Taxonomy) -> dict[str, dict[str, int]]:
    """group -> {choice value: label id}, with a case/space-insensitive fallback key.
    Cached per taxonomy object (Taxonomy holds dicts, so it is not hashable)."""
    hit = _MAPS.get(id(taxonomy))
    if hit is not None and hit[0] is taxonomy:
        return hit[1]
    maps: dict[str, dict[str, int]] = {}
    for group in taxonomy.groups:
        m: dict[str, int] = {}
        for lid in group.label_ids:
            name = taxonomy.labels[lid].name
            m[name] = lid
            m.setdefault(_fold(name), lid)
        maps[group.name] = m
    _MAPS[id(taxonomy)] = (taxonomy, maps)
    return maps


def _fold(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def parse_result(result: list[dict] | None, taxonomy: Taxonomy, was_cancelled: bool = False) -> Answer:
    """Read a Label Studio annotation result (a list of regions) as an Answer.

    Problems reported: `unknown control X`, `unknown choice in G: V`, `several choices in
    single-label group G`, `empty answer`, `skipped` (the annotator pressed Skip)."""
    if was_cancelled:
        return Answer(problems=("skipped",))
    maps = _choice_maps(taxonomy)
    single = {g.name for g in taxonomy.groups if g.single}
    labels: set[int] = set()
    per_group: dict[str, set[int]] = {}
    problems: list[str] = []
    discard = False
    for region in result or []:
        control = region.get("from_name")
        values = (region.get("value") or {}).get("choices")
        if region.get("type", "choices") != "choices" or not isinstance(values, list):
            problems.append(f"unexpected region {control!r} of type {region.get('type')!r}")
            continue
        if control == DISCARD_CONTROL:
            if any(v != DISCARD_CHOICE for v in values):
                problems.append(f"unknown choice in {DISCARD_CONTROL}: {', '.join(map(str, values))}")
            discard = discard or DISCARD_CHOICE in values
            continue
        if control not in maps:
            problems.append(f"unknown control {control!r}")
            continue
        for value in values:
            lid = maps[control].get(value, maps[control].get(_fold(value)))
            if lid is None:
                problems.append(f"unknown choice in {control}: {value!r}")
            else:
                per_group.setdefault(control, set()).add(lid)
                labels.add(lid)
    for group, ids in per_group.items():
        if group in single and len(ids) > 1:
            problems.append(f"several choices in single-label group {group}")
    if not labels and not discard and not problems:
        problems.append("empty answer")
    return Answer(tuple(sorted(labels)), discard, tuple(problems))


def restrict(answer: Answer, groups: Iterable[str], taxonomy: Taxonomy) -> Answer:
    """The answer read in `groups` only (a short check asks only those): labels of other
    groups and problems naming them are dropped, and an empty answer is valid (none of
    the asked labels applies)."""
    keep = set(groups)
    others = [g for g in taxonomy.group_names if g not in keep]
    labels = tuple(x for x in answer.labels if taxonomy.labels[x].group in keep)
    problems = tuple(p for p in answer.problems if p != "empty answer" and not any(
        p == f"several choices in single-label group {g}" or p.startswith(f"unknown choice in {g}:") for g in others))
    return Answer(labels, answer.discard, problems)


def to_result(label_ids: Iterable[int], taxonomy: Taxonomy, discard: bool = False,
              groups: Iterable[str] | None = None) -> list[dict]:
    """The Label Studio result that selects these labels (of `groups` only, when given)
    and the discard choice."""
    by_group: dict[str, list[str]] = {}
    keep = None if groups is None else set(groups)
    for lid in sorted(int(i) for i in label_ids):
        if keep is not None and taxonomy.labels[lid].group not in keep:
            continue
        lab = taxonomy.labels[lid]
        by_group.setdefault(lab.group, []).append(lab.name)
    regions = [_region(g, names) for g in taxonomy.group_names if (names := by_group.get(g))]
    if discard:
        regions.append(_region(DISCARD_CONTROL, [DISCARD_CHOICE]))
    return regions


def _region(control: str, choices: list[str]) -> dict:
    return {"from_name": control, "to_name": IMAGE_NAME, "type": "choices", "value": {"choices": choices}}


def describe(answer: Answer, taxonomy: Taxonomy) -> str:
    """One line a person reads: `category: Dresses; color: Black, White` (or discard)."""
    if answer.discard:
        text = f"discard ({DISCARD_CHOICE})"
    else:
        by_group: dict[str, list[str]] = {}
        for lid in answer.labels:
            lab = taxonomy.labels[lid]
            by_group.setdefault(lab.group, []).append(lab.name)
        text = "; ".join(f"{g}: {', '.join(by_group[g])}" for g in taxonomy.group_names if g in by_group) or "(nothing)"
    if answer.problems:
        text += f"  [invalid: {'; '.join(answer.problems)}]"
    return text
