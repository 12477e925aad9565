"""Attribute-consistency rules: data in a TOML file over a small registry of rule kinds.

A rule is a row of data (id, kind, description, severity, action, splits, and the kind's
own keys). A kind is one small class that finds the rule's hits over the whole label
table at once (numpy over arrays, never a loop per image) and returns them as `Hits`:
one row per (image, label involved). `attributes.check` owns everything around that:
split filters, the review queue, actions, reports.

The defaults ship in `taxonomy/rules.toml`. A file given with `--rules` extends them: a
rule with a new id is added, a rule with a default's id overrides the keys it sets, and
`enabled = false` switches a rule off; `extend = false` at the top of the file means
"only my rules".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import IfaError
from ...taxonomy import Taxonomy
from ...taxonomy.labels import DATA
from ..ledger.arrays import LABEL_STATUSES, LabelArrays
from ..ledger.schema import SPLITS
from ..rule_files import merged_specs, rule_ids

DEFAULT_RULES = DATA.parent / "rules.toml"
ACTIONS = ("set-aside", "drop-labels", "review", "report")
SEVERITIES = ("error", "warning", "info")
COMMON_KEYS = {"id", "kind", "description", "severity", "action", "splits", "enabled"}
# `restore --rule import` also brings back labels quarantined at import; a rule may not take that name.
# check-images' rules set images aside under their own ids: a user rule here may not take one.
IMAGE_RULES = Path(__file__).parents[1] / "image_checks" / "rules.toml"


# ---- the shared mechanism: a label table view and hits ---------------------------------------
@dataclass(frozen=True)
class Hits:
    """What one rule found, one row per (image, label involved).

    image:   (H,) int64 image positions in the LabelView.
    label:   (H,) int64 label ids; -1 where the hit is about the image, not a label.
    culprit: (H,) bool; True for the labels that broke the rule (what drop-labels drops),
             False for labels that only give the context (e.g. the shoe category).
    status:  (H,) int8 index into LABEL_STATUSES of the label row (default: all active).
    """

    image: np.ndarray
    label: np.ndarray
    culprit: np.ndarray
    status: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.status is None:
            object.__setattr__(self, "status", np.zeros(len(self.image), np.int8))

    @classmethod
    def empty(cls) -> "Hits":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))

    @classmethod
    def concat(cls, parts: list["Hits"]) -> "Hits":
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("image", "label", "culprit", "status")))


class LabelView:
    """The label table of the images being checked, with the per-row lookups every kind
    needs computed once: the taxonomy column of each row (-1 for an id the taxonomy
    lacks), its group, and whether it is active."""

    def __init__(self, arrays: LabelArrays, taxonomy: Taxonomy):
        self.arrays, self.taxonomy = arrays, taxonomy
        self.notes: list[str] = []

    @property
    def n_images(self) -> int:
        return self.arrays.n_images

    @property
    def n_columns(self) -> int:
        return len(self.taxonomy.label_ids)

    @cached_property
    def column(self) -> np.ndarray:
        return self.taxonomy.column_of(self.arrays.label_id)

    @cached_property
    def group(self) -> np.ndarray:
        return np.where(self.column >= 0, self.taxonomy.group_index[np.maximum(self.column, 0)], -1)

    @cached_property
    def active(self) -> np.ndarray:
        return self.arrays.status == 0  # LABEL_STATUSES[0] == "active"

    @cached_property
    def usable(self) -> np.ndarray:
        """Active rows whose label the taxonomy knows: what every label rule looks at."""
        return self.active & (self.column >= 0)

    def column_mask(self, columns: np.ndarray) -> np.ndarray:
        """(L + 1,) bool lookup, True at `columns`; index -1 (unknown) stays False."""
        mask = np.zeros(self.n_columns + 1, dtype=bool)
        mask[np.asarray(columns, dtype=np.int64)] = True
        return mask

    def rows_with(self, columns: np.ndarray) -> np.ndarray:
        """(R,) bool: usable rows whose label is one of `columns`."""
        return self.usable & self.column_mask(columns)[self.column]

    def images_with(self, columns: np.ndarray) -> np.ndarray:
        """(N,) bool: images carrying at least one of `columns` (active)."""
        out = np.zeros(self.n_images, dtype=bool)
        out[self.arrays.row_image[self.rows_with(columns)]] = True
        return out

    def split_mask(self, splits) -> np.ndarray:
        codes = [SPLITS.index(s) for s in splits]
        return np.isin(self.arrays.split, codes)

    def hits(self, rows: np.ndarray, culprit: np.ndarray | bool = True) -> Hits:
        """Hits for the label rows selected by the (R,) bool `rows`."""
        culprit = np.broadcast_to(np.asarray(culprit), rows.shape)
        a = self.arrays
        return Hits(a.row_image[rows], a.label_id[rows], np.array(culprit[rows], dtype=bool), a.status[rows])


# ---- the registry of kinds ------------------------------------------------------------------
KINDS: dict[str, type["RuleKind"]] = {}


def kind(name: str):
    """Register a RuleKind subclass under `name` (the `kind` key in the rules file)."""
    def register(cls: type[RuleKind]) -> type[RuleKind]:
        cls.name = name
        KINDS[name] = cls
        return cls
    return register


class RuleKind:
    """One way of finding violations. Subclasses declare their keys (`params`, with
    defaults), the actions that make sense for them, and `find`."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    actions: ClassVar[tuple[str, ...]] = ACTIONS
    default_splits: ClassVar[tuple[str, ...]] = SPLITS

    def __init__(self, spec: dict, taxonomy: Taxonomy, where: str):
        self.taxonomy, self.where = taxonomy, where
        unknown = sorted(set(spec) - COMMON_KEYS - set(self.params))
        if unknown:
            known = ", ".join(sorted(self.params)) or "none"
            raise IfaError(f"{where}: unknown key(s) {', '.join(unknown)} for kind {self.name!r} (its keys: {known}).")
        self.setup(**{k: spec.get(k, v) for k, v in self.params.items()})

    def setup(self, **params) -> None:
        """Check and store the kind's keys; raise IfaError saying what is wrong."""

    def find(self, view: LabelView) -> Hits:
        raise NotImplementedError

    def describe(self) -> list[str]:
        """Lines for the report saying what exactly the rule checks (e.g. each pair and why)."""
        return [f"{k} = {getattr(self, k)}" for k in self.params if hasattr(self, k)]

    # helpers for setup
    def labels(self, values, key: str) -> np.ndarray:
        """Taxonomy columns of a list of label names or ids."""
        if isinstance(values, (str, int)):
            values = [values]
        if not isinstance(values, list):
            raise IfaError(f"{self.where}: {key} must be a list of label names or ids.")
        ids = []
        for v in values:
            try:
                ids.append(self.taxonomy.lookup(v).id)
            except IfaError as exc:
                raise IfaError(f"{self.where}, {key}: {exc}") from None
        return self.taxonomy.column_of(np.array(ids, dtype=np.int64))

    def groups(self, values, key: str) -> list[int]:
        """Indexes (in taxonomy.groups) of a list of group names."""
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list):
            raise IfaError(f"{self.where}: {key} must be a list of group names.")
        names = self.taxonomy.group_names
        out = []
        for v in values:
            if v not in names:
                raise IfaError(f"{self.where}, {key}: unknown group {v!r}; groups are {', '.join(names)}.")
            out.append(names.index(v))
        return out

    def group_columns(self, groups: list[int]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.taxonomy.group_index, groups))

    def split_name(self, value, key: str) -> str:
        if value not in SPLITS:
            raise IfaError(f"{self.where}: {key} must be one of {', '.join(SPLITS)}, not {value!r}.")
        return value


@kind("single-group-conflict")
class SingleGroupConflict(RuleKind):
    """More than one active label in a group that allows one (default: every group whose
    cardinality is single). All labels of that group on the image are involved."""

    params = {"groups": None}

    def setup(self, groups) -> None:
        self.group_ids = (self.groups(groups, "groups") if groups is not None
                          else [i for i, g in enumerate(self.taxonomy.groups) if g.single])

    def find(self, view: LabelView) -> Hits:
        rows = view.usable & np.isin(view.group, self.group_ids)
        n_groups = len(self.taxonomy.groups)
        key = view.arrays.row_image[rows] * n_groups + view.group[rows]
        per_image_group = np.bincount(key, minlength=view.n_images * n_groups)
        conflict = np.zeros_like(rows)
        conflict[rows] = per_image_group[key] > 1
        return view.hits(conflict)

    def describe(self) -> list[str]:
        return ["groups: " + ", ".join(self.taxonomy.groups[i].name for i in self.group_ids)]


@kind("unknown-label")
class UnknownLabel(RuleKind):
    """A label id the taxonomy lacks. Import keeps such ids as quarantined labels, so by
    default both active and quarantined labels are checked."""

    params = {"statuses": ["active", "quarantined"]}

    def setup(self, statuses) -> None:
        if not isinstance(statuses, list) or not set(statuses) <= {"active", "quarantined"}:
            raise IfaError(f"{self.where}: statuses must be a list of 'active' and/or 'quarantined'.")
        self.statuses, self.codes = statuses, [LABEL_STATUSES.index(s) for s in statuses]

    def find(self, view: LabelView) -> Hits:
        return view.hits((view.column < 0) & np.isin(view.arrays.status, self.codes))


@kind("no-labels")
class NoLabels(RuleKind):
    """An image without a single active label."""

    actions = ("set-aside", "review", "report")

    def find(self, view: LabelView) -> Hits:
        counts = np.bincount(view.arrays.row_image[view.active], minlength=view.n_images)
        empty = np.flatnonzero(counts == 0)
        return Hits(empty.astype(np.int64), np.full(len(empty), -1, np.int64), np.zeros(len(empty), bool))


@kind("contradiction")
class Contradiction(RuleKind):
    """Label pairs that cannot both be true of one item, written as data: each entry of
    `pair` has a side `a` (labels and/or `a_groups`), a side `b` (`b`, `b_groups`) and a
    `why`. An image with any label of a and any label of b is hit; the b labels are the
    culprits (drop-labels drops them), the a labels are context."""

    params = {"pair": []}

    def setup(self, pair) -> None:
        if not isinstance(pair, list) or not pair:
            raise IfaError(f"{self.where}: a contradiction rule needs at least one [[rule.pair]] with a, b and why.")
        self.pairs, self.texts = [], []
        for n, entry in enumerate(pair, start=1):
            where = f"{self.where}, pair {n}"
            extra = set(entry) - {"a", "b", "a_groups", "b_groups", "why"}
            if extra:
                raise IfaError(f"{where}: unknown key(s) {', '.join(sorted(extra))} (keys: a, a_groups, b, b_groups, why).")
            if not str(entry.get("why", "")).strip():
                raise IfaError(f"{where}: say why the pair is a contradiction (why = \"...\").")
            sides, texts = [], []
            for side in ("a", "b"):
                named = self.labels(entry.get(side, []), f"pair {n}, {side}")
                groups = self.groups(entry.get(f"{side}_groups", []), f"pair {n}, {side}_groups")
                cols = np.unique(np.concatenate([named, self.group_columns(groups)]))
                if not len(cols):
                    raise IfaError(f"{where}: side {side} names no label (give {side} and/or {side}_groups).")
                sides.append(cols)
                texts.append(" or ".join(filter(None, [_listing(self.taxonomy.names(self.taxonomy.label_ids[named])),
                                                       " or ".join(f"any {self.taxonomy.groups[g].name} label" for g in groups)])))
            if np.intersect1d(*sides).size:
                raise IfaError(f"{where}: a label is on both sides.")
            self.pairs.append((sides[0], sides[1], str(entry["why"]).strip()))
            self.texts.append((texts[0], texts[1]))

    def describe(self) -> list[str]:
        return [f"{a} with {b}: {why}" for (a, b), (_, _, why) in zip(self.texts, self.pairs)]

    def find(self, view: LabelView) -> Hits:
        parts = []
        for a, b, _ in self.pairs:
            both = view.images_with(a) & view.images_with(b)
            rows = both[view.arrays.row_image] & view.usable
            in_a, in_b = view.column_mask(a)[view.column], view.column_mask(b)[view.column]
            parts.append(view.hits(rows & (in_a | in_b), culprit=in_b))
        return Hits.concat(parts)


def _listing(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 6 else f"{', '.join(names[:5])} or {len(names) - 5} more"


class Statistical(RuleKind):
    """Rules that describe the data rather than judge one image: they only report (and
    flag-noise's suggestions, judged one image at a time, skip them)."""

    actions = ("report",)


@kind("rare-label")
class RareLabel(Statistical):
    """Labels carried by fewer than `min_images` active images of the `reference` split
    (zero included: a label never seen there); every image carrying one is listed."""

    params = {"min_images": 10, "reference": "train"}

    def setup(self, min_images, reference) -> None:
        if not isinstance(min_images, int) or min_images < 1:
            raise IfaError(f"{self.where}: min_images must be a positive integer.")
        self.min_images, self.reference = min_images, self.split_name(reference, "reference")

    def find(self, view: LabelView) -> Hits:
        in_ref = view.split_mask([self.reference])
        if not in_ref.any():
            view.notes.append(f"{self.where}: no {self.reference} images to count labels in; skipped.")
            return Hits.empty()
        ref_rows = view.usable & in_ref[view.arrays.row_image]
        counts = np.bincount(view.column[ref_rows], minlength=view.n_columns)
        rare = np.append(counts < self.min_images, False)  # index -1 (unknown) never rare here
        return view.hits(view.usable & rare[view.column])


@kind("unseen-pair")
class UnseenPair(Statistical):
    """Label pairs that co-occur on images outside the `reference` split but never on a
    reference image, although independence predicts at least `min_expected` reference
    images with both (count_a * count_b / images): absence there is telling, not chance.
    Pairs inside a single-label group are left to single-group-conflict."""

    params = {"reference": "train", "min_expected": 5.0}

    def setup(self, reference, min_expected) -> None:
        if not isinstance(min_expected, (int, float)) or not math.isfinite(min_expected) or min_expected < 0:
            raise IfaError(f"{self.where}: min_expected must be a finite number >= 0, not {min_expected!r}.")
        self.reference, self.min_expected = self.split_name(reference, "reference"), float(min_expected)

    def find(self, view: LabelView) -> Hits:
        in_ref = view.split_mask([self.reference])
        if not in_ref.any():
            view.notes.append(f"{self.where}: no {self.reference} images to compare with; skipped.")
            return Hits.empty()
        on_ref = in_ref[view.arrays.row_image]
        n_cols = view.n_columns
        image, first, second = _pairs(view.arrays.row_image, view.column, view.usable & ~on_ref)
        if not len(image):
            return Hits.empty()
        ref_rows = view.usable & on_ref
        counts = np.bincount(view.column[ref_rows], minlength=n_cols).astype(np.float64)
        candidates = np.unique(first * n_cols + second)
        seen = _cooccurring(view.arrays.row_image[ref_rows], view.column[ref_rows], candidates, n_cols)
        ca, cb = candidates // n_cols, candidates % n_cols
        expected = counts[ca] * counts[cb] / int(in_ref.sum())
        single = np.array([g.single for g in self.taxonomy.groups])
        gi = self.taxonomy.group_index
        same_single = (gi[ca] == gi[cb]) & single[gi[ca]]
        bad = candidates[~seen & (expected >= self.min_expected) & ~same_single]
        hit = np.isin(first * n_cols + second, bad)
        image, first, second = image[hit], first[hit], second[hit]
        ids = self.taxonomy.label_ids
        return Hits(np.repeat(image, 2), np.column_stack([ids[first], ids[second]]).ravel(), np.ones(2 * len(image), bool))


def _pair_rows(image: np.ndarray):
    """For rows sorted by image, yield (i, j) index arrays of every pair of rows on the
    same image (i < j), one batch per distance k = j - i. Each batch keeps only the rows
    whose image still has a row k on, so the work is the number of pairs, not images x
    the longest label list, and there is no loop over images."""
    n = len(image)
    if not n:
        return
    starts = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
    lengths = np.diff(np.r_[starts, n])
    run_end = np.repeat(starts + lengths, lengths)  # one past the last row of each row's image
    rows = np.arange(n)
    k = 1
    while True:
        rows = rows[rows + k < run_end[rows]]
        if not len(rows):
            return
        yield rows, rows + k
        k += 1


def _pairs(row_image: np.ndarray, column: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of labels on the same image among the selected `rows` (rows are sorted
    by image, then column), as (image, column a, column b) with a < b."""
    img, col = row_image[rows], column[rows]
    parts = [(img[i], col[i], col[j]) for i, j in _pair_rows(img)]
    if not parts:
        return img[:0], col[:0], col[:0]
    return tuple(np.concatenate(p) for p in zip(*parts))  # type: ignore[return-value]


def _cooccurring(image: np.ndarray, column: np.ndarray, candidates: np.ndarray, n_cols: int) -> np.ndarray:
    """For each candidate pair code (a * n_cols + b, a < b), whether some image has both
    (image/column: the rows to look in, sorted by image then column)."""
    found = np.zeros(n_cols * n_cols, dtype=bool)
    for i, j in _pair_rows(image):
        found[column[i] * n_cols + column[j]] = True
    return found[candidates]


# ---- rules and loading ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One configured rule: its data and its compiled kind."""

    id: str
    kind: str
    description: str
    severity: str
    action: str
    splits: tuple[str, ...]
    finder: RuleKind = field(repr=False, compare=False)
    source: str = ""

    def find(self, view: LabelView) -> Hits:
        return self.finder.find(view)


@dataclass
class RuleSet:
    """The rules to run, the files they came from, and notes (e.g. a default rule skipped
    because a custom taxonomy lacks its labels)."""

    rules: list[Rule]
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


def load_rules(path: Path | None = None, taxonomy: Taxonomy | None = None) -> RuleSet:
    """The default rules, extended (or replaced, with `extend = false`) by the file at
    `path`. Raises IfaError naming the file, rule and key for anything malformed:
    unreadable TOML, an unknown kind/action/severity/split/label/group, a duplicate id,
    an action the kind cannot take, an id ifa's own commands or check-images use."""
    taxonomy = taxonomy or Taxonomy.default()
    specs, sources = merged_specs(DEFAULT_RULES, None if path is None else Path(path), rule_ids(IMAGE_RULES),
                                  "`ifa curate check-images`")
    out = RuleSet([], sources)
    custom_taxonomy = taxonomy is not Taxonomy.default()
    for spec in specs:
        from_defaults = spec["_source"] == str(DEFAULT_RULES)
        try:
            out.rules.append(_compile(spec, taxonomy))
        except IfaError as exc:
            # The shipped rules name iMaterialist labels; on another dataset's taxonomy a
            # rule whose labels it lacks is skipped rather than blocking every check.
            if custom_taxonomy and from_defaults:
                out.notes.append(f"default rule {spec['id']!r} skipped: {exc}")
                continue
            raise
    return out


def _compile(spec: dict, taxonomy: Taxonomy) -> Rule:
    source = spec.pop("_source", "")
    where = f"{source}, rule {spec['id']!r}"
    kind_name = spec.get("kind")
    if kind_name not in KINDS:
        raise IfaError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind_name!r}.")
    cls = KINDS[kind_name]
    for key in ("description", "action"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise IfaError(f"{where}: {key} is required.")
    if not isinstance(spec.get("enabled", True), bool):
        raise IfaError(f"{where}: enabled must be true or false.")
    severity = spec.get("severity", "warning")
    if severity not in SEVERITIES:
        raise IfaError(f"{where}: severity must be one of {', '.join(SEVERITIES)}, not {severity!r}.")
    action = spec["action"]
    if action not in cls.actions:
        raise IfaError(f"{where}: action must be one of {', '.join(cls.actions)} for kind {kind_name!r}, not {action!r}.")
    splits = spec.get("splits", list(cls.default_splits))
    if isinstance(splits, str):
        splits = [splits]
    if not isinstance(splits, list) or not splits or any(s not in SPLITS for s in splits):
        raise IfaError(f"{where}: splits must be a list drawn from {', '.join(SPLITS)}.")
    return Rule(spec["id"], kind_name, spec["description"].strip(), severity, action, tuple(splits),
                cls(spec, taxonomy, where), source)
