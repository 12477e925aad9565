"""check-images rules: rows of data (rules.toml) over two kinds, each a vectorised finder
over the statistics of every image at once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import IfaError
from ..rule_files import merged_specs, rule_ids
from .statistics import STAT_NAMES

DEFAULT_RULES = Path(__file__).with_name("rules.toml")
ACTIONS = ("set-aside", "report")
KINDS = ("threshold", "shared-picture")


@dataclass(frozen=True)
class Condition:
    stat: str
    below: float | None = None
    above: float | None = None

    def holds(self, values: np.ndarray) -> np.ndarray:
        """(N,) bool over (N, len(STAT_NAMES)) statistics."""
        column = values[:, STAT_NAMES.index(self.stat)]
        return column < self.below if self.below is not None else column > self.above

    def __str__(self) -> str:
        return f"{self.stat} < {self.below:g}" if self.below is not None else f"{self.stat} > {self.above:g}"


@dataclass(frozen=True)
class ImageRule:
    """One rule. `find` returns (N,) bool: the images that break it."""

    id: str
    kind: str
    description: str
    action: str
    when: tuple[Condition, ...] = ()
    min_ids: int = 0

    def find(self, values: np.ndarray, thumb: np.ndarray, known: set[bytes] = frozenset()) -> np.ndarray:
        """values: (N, S) float32 statistics (NaN rows: unmeasured); thumb: (N,) object array
        of 32-byte picture hashes (None: unmeasured); known: hashes of known placeholders."""
        measured = ~np.isnan(values).any(axis=1) if len(values) else np.zeros(0, bool)
        if self.kind == "threshold":
            hit = measured.copy()
            for c in self.when:
                hit &= c.holds(np.nan_to_num(values))
            return hit
        return measured & shared_pictures(thumb, measured, self.min_ids, known)

    @property
    def test(self) -> str:
        """What the rule tests, in words for reports."""
        if self.kind == "shared-picture":
            return f"one picture shared by more than {self.min_ids} images"
        return " and ".join(map(str, self.when))


# Bits of the 256-bit hash within which two pictures are one picture: re-encoded and resized
# copies of a placeholder were <= 3 apart; distinct product photos are 40 or more apart.
SAME_PICTURE_BITS = 6
BANDS = 8  # 32-bit bands: copies of one picture share most bands exactly


def shared_pictures(thumb: np.ndarray, measured: np.ndarray, min_ids: int, known: set[bytes]) -> np.ndarray:
    """(N,) bool: images whose picture more than `min_ids` images share, or that match a
    known placeholder. Candidates are the images that share a 32-bit band of the hash with
    more than `min_ids` others (locality-sensitive hashing: no all-pairs comparison); within
    such a band, the images within SAME_PICTURE_BITS of its most common hash are one
    picture, then the same among the rest while a picture still counts more than min_ids."""
    out = np.zeros(len(thumb), bool)
    where = np.flatnonzero(measured)
    if not len(where):
        return out
    fine = np.frombuffer(b"".join(thumb[i] for i in where), np.uint8).reshape(-1, 32)
    bands = fine.view(">u4")  # (M, BANDS)
    for b in range(BANDS):
        _, inverse, counts = np.unique(bands[:, b], return_inverse=True, return_counts=True)
        for g in np.flatnonzero(counts > min_ids):
            members = np.flatnonzero(inverse.ravel() == g)
            members = members[~out[where[members]]]
            while len(members) > min_ids:
                rows, n = np.unique(fine[members], axis=0, return_counts=True)
                close = _bits_apart(fine[members], rows[np.argmax(n)]) <= SAME_PICTURE_BITS
                if close.sum() <= min_ids:
                    break
                out[where[members[close]]] = True
                members = members[~close]
    for k in known:
        out[where[_bits_apart(fine, np.frombuffer(k, np.uint8)) <= SAME_PICTURE_BITS]] = True
    return out


def _bits_apart(rows: np.ndarray, row: np.ndarray) -> np.ndarray:
    return np.unpackbits(rows ^ row, axis=1).sum(axis=1)


def load_rules(path: Path | None = None) -> list[ImageRule]:
    """The default rules extended by the file at `path` (see rules.toml). Raises IfaError
    naming the file, rule and key for anything malformed."""
    from ..attributes.rules import DEFAULT_RULES as ATTRIBUTE_RULES  # the other rules command's ids

    specs, _ = merged_specs(DEFAULT_RULES, path, rule_ids(ATTRIBUTE_RULES), "`ifa curate check-attributes`")
    return [_compile(spec) for spec in specs]


def _compile(spec: dict) -> ImageRule:
    where = f"{spec['_source']}: rule {spec['id']!r}"
    kind, action = spec.get("kind"), spec.get("action", "report")
    if kind not in KINDS:
        raise IfaError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}.")
    if action not in ACTIONS:
        raise IfaError(f"{where}: action must be one of {', '.join(ACTIONS)}, not {action!r}.")
    known = {"id", "kind", "description", "action", "enabled", "_source", "when", "min_ids"}
    if extra := sorted(set(spec) - known):
        raise IfaError(f"{where}: unknown key {extra[0]!r}.")
    description = str(spec.get("description", spec["id"]))
    if kind == "shared-picture":
        min_ids = spec.get("min_ids")
        if not isinstance(min_ids, int) or isinstance(min_ids, bool) or min_ids < 1:
            raise IfaError(f"{where}: min_ids must be a whole number of at least 1.")
        return ImageRule(spec["id"], kind, description, action, min_ids=min_ids)
    when = spec.get("when")
    if not isinstance(when, list) or not when:
        raise IfaError(f"{where}: a threshold rule needs `when`, a list of {{stat = NAME, below|above = X}}.")
    return ImageRule(spec["id"], kind, description, action, when=tuple(_condition(c, where) for c in when))


def _condition(c, where: str) -> Condition:
    if not isinstance(c, dict) or c.get("stat") not in STAT_NAMES or len(c) != 2 or not ({"below", "above"} & set(c)):
        raise IfaError(f"{where}: a condition is {{stat = NAME, below = X}} or {{stat = NAME, above = X}} with NAME one "
                       f"of {', '.join(STAT_NAMES)}; got {c!r}.")
    bound = c.get("below", c.get("above"))
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
        raise IfaError(f"{where}: the bound of {c['stat']!r} must be a finite number, not {bound!r}.")
    return Condition(c["stat"], below=c.get("below"), above=c.get("above"))
