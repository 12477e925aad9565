"""The label space: groups, their cardinality, and lookups by id and by name.

The shipped default is the official iMaterialist Fashion 2018 map (228 labels in 8 groups);
any other dataset loads from a CSV of the same shape plus a cardinality table.
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import IfaError, UnknownLabel

if TYPE_CHECKING:
    import numpy as np

DATA = Path(__file__).parent / "data"
DEFAULT_LABEL_MAP = DATA / "imat_fashion_2018_label_map_228.csv"
# Paper, Table 1: which groups allow one label per image and which allow several;
# the file's row order is the paper's group order, used everywhere groups are listed.
DEFAULT_GROUPS = DATA / "imat2018_groups.csv"

CARDINALITIES = ("single", "multiple")


@dataclass(frozen=True)
class Label:
    id: int
    name: str
    group: str


@dataclass(frozen=True)
class Group:
    name: str
    cardinality: str  # "single" | "multiple"
    label_ids: tuple[int, ...]

    @property
    def single(self) -> bool:
        return self.cardinality == "single"


def _key(name: str) -> str:
    """Case- and whitespace-insensitive form of a name."""
    return " ".join(str(name).split()).casefold()


@dataclass(frozen=True)
class Taxonomy:
    """Labels and groups of one dataset. Build it with `load` or `default`."""

    labels: dict[int, Label]
    groups: tuple[Group, ...]
    _by_key: dict[str, list[int]] = field(repr=False, compare=False)

    # ---- construction -------------------------------------------------------------
    @classmethod
    def load(cls, label_map: Path, groups: Path) -> "Taxonomy":
        """Read a label map CSV (labelId, taskId, labelName, taskName) and a cardinality
        CSV (group, cardinality; rows in display order).

        Raises IfaError naming the file and row for a malformed or inconsistent table.
        """
        label_map, groups = Path(label_map), Path(groups)
        order: list[tuple[str, str]] = []
        for i, row in enumerate(_read_csv(groups, ("group", "cardinality")), start=2):
            card = row["cardinality"].strip().lower()
            if card not in CARDINALITIES:
                raise IfaError(f"{groups}, line {i}: cardinality must be 'single' or 'multiple', not {row['cardinality']!r}.")
            order.append((row["group"].strip(), card))
        known = {g for g, _ in order}
        if len(known) != len(order):
            raise IfaError(f"{groups}: a group is listed twice.")

        labels: dict[int, Label] = {}
        for i, row in enumerate(_read_csv(label_map, ("labelId", "labelName", "taskName")), start=2):
            try:
                lid = int(row["labelId"])
            except ValueError:
                raise IfaError(f"{label_map}, line {i}: labelId {row['labelId']!r} is not an integer.") from None
            group = row["taskName"].strip()
            if group not in known:
                raise IfaError(f"{label_map}, line {i}: group {group!r} is not in {groups} ({', '.join(sorted(known))}).")
            if lid in labels:
                raise IfaError(f"{label_map}, line {i}: labelId {lid} appears twice.")
            labels[lid] = Label(lid, row["labelName"].strip(), group)
        if not labels:
            raise IfaError(f"{label_map} lists no labels.")

        built = tuple(
            Group(g, card, tuple(sorted(l.id for l in labels.values() if l.group == g))) for g, card in order
        )
        by_key: dict[str, list[int]] = {}
        for lab in labels.values():
            by_key.setdefault(_key(lab.name), []).append(lab.id)
        return cls(labels, built, by_key)

    @classmethod
    def default(cls) -> "Taxonomy":
        """The shipped iMaterialist Fashion 2018 taxonomy (228 labels, 8 groups)."""
        return _default()

    # ---- lookups ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise IfaError(f"Unknown group {name!r}; groups are: {', '.join(self.group_names)}.")

    @cached_property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def by_id(self, label_id: int | str) -> Label:
        """The label with this id. Raises UnknownLabel."""
        try:
            return self.labels[int(label_id)]
        except (KeyError, ValueError):
            raise UnknownLabel(f"Unknown label id {label_id!r}; ids run from {min(self.labels)} to {max(self.labels)}.") from None

    def by_name(self, name: str) -> Label:
        """The label with this name, ignoring case and extra whitespace; `group:name`
        picks one of two same-named labels. Raises UnknownLabel naming the nearest names."""
        key = _key(name)
        ids = self._by_key.get(key)
        if ids is None and ":" in key:
            group, _, rest = key.partition(":")
            ids = [i for i in self._by_key.get(_key(rest), []) if _key(self.labels[i].group) == _key(group)] or None
        if not ids:
            names = [lab.name for lab in self.labels.values()]
            near = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
            if not near:  # difflib is case-sensitive; retry on normalised names
                keyed = {_key(n): n for n in names}
                near = [keyed[k] for k in difflib.get_close_matches(key, list(keyed), n=3, cutoff=0.5)]
            hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise UnknownLabel(f"Unknown label name {name!r}.{hint}")
        if len(ids) > 1:
            opts = ", ".join(f"'{self.labels[i].group}:{self.labels[i].name}'" for i in ids)
            raise UnknownLabel(f"Label name {name!r} is in several groups; write one of {opts}.")
        return self.labels[ids[0]]

    def lookup(self, value: int | str) -> Label:
        """By id when `value` is an integer or all digits, else by name."""
        if isinstance(value, Integral) or str(value).strip().isdigit():
            return self.by_id(int(value))
        return self.by_name(str(value))

    # ---- arrays for vectorised work ---------------------------------------------
    @cached_property
    def label_ids(self) -> np.ndarray:
        """All label ids, sorted; the column order of every label matrix."""
        import numpy as np  # the arrays are for vectorised commands; `ifa show` needs none
        return np.array(sorted(self.labels), dtype=np.int64)

    @cached_property
    def group_index(self) -> np.ndarray:
        """For each entry of `label_ids`, the index of its group in `groups`."""
        import numpy as np
        pos = {g.name: i for i, g in enumerate(self.groups)}
        return np.array([pos[self.labels[i].group] for i in self.label_ids], dtype=np.int64)

    def column_of(self, label_ids: np.ndarray) -> np.ndarray:
        """Column positions in `label_ids` for an array of label ids; -1 for unknown ids."""
        import numpy as np
        label_ids = np.asarray(label_ids, dtype=np.int64)
        pos = np.searchsorted(self.label_ids, label_ids)
        pos = np.clip(pos, 0, len(self.label_ids) - 1)
        return np.where(self.label_ids[pos] == label_ids, pos, -1)

    def names(self, label_ids) -> list[str]:
        return [self.labels[int(i)].name if int(i) in self.labels else f"<unknown {int(i)}>" for i in label_ids]


@lru_cache(maxsize=1)
def _default() -> Taxonomy:
    return Taxonomy.load(DEFAULT_LABEL_MAP, DEFAULT_GROUPS)


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise IfaError(f"{path} lacks the column(s) {', '.join(missing)}; it has {', '.join(reader.fieldnames or [])}.")
            return list(reader)
    except FileNotFoundError:
        raise IfaError(f"Taxonomy file {path} does not exist.") from None
