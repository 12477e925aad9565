"""`ifa curate check-images`: measure every image's picture once (cached), run the rules over
the statistics of all images at once, set aside what a set-aside rule found (one event per
image, restorable with `ifa curate restore --rule RULE`), and write the reports."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import IfaError
from ...progress import SILENT, Progress
from .. import executors, reports
from ..dedup.hashing import Unreadable
from ..ledger import Change, check_splits
from ..ledger.hashes import DEDUP_RULE
from ..ledger.image_stats import read_stats, save_stats, stats_candidates
from ..reports.html import Card, Section, write_page
from ..workspace import Workspace
from .rules import ImageRule, load_rules
from .statistics import STAT_NAMES, VERSION, measure

REPORT_NAME = "check-images"
CARDS_PER_RULE = 40
PLACEHOLDER_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class RuleCount:
    images: int
    action: str
    description: str
    test: str


@dataclass
class CheckImagesResult:
    """What a check found and did. `flagged`: one entry per image any rule found, worst first
    within the first rule that found it."""

    rules: dict[str, RuleCount] = field(default_factory=dict)
    flagged: list[dict] = field(default_factory=list)
    applied: bool = False
    set_aside: int = 0
    images_checked: int = 0
    measured: int = 0
    cached: int = 0
    unreadable: int = 0
    without_file: int = 0
    report_csv: str = ""
    report_html: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"rules": {k: {"images": v.images, "action": v.action} for k, v in self.rules.items()},
                "flagged": self.flagged, "applied": self.applied, "set_aside": self.set_aside,
                "images_checked": self.images_checked, "measured": self.measured, "cached": self.cached,
                "unreadable": self.unreadable, "without_file": self.without_file,
                "report_csv": self.report_csv, "report_html": self.report_html, "seconds": round(self.seconds, 2)}


@dataclass(frozen=True)
class _Measured:
    pk: int
    path: str
    bytes: int
    mtime_ns: int
    stats: bytes | None
    thumb_hash: bytes | None
    reason: str | None

    def row(self) -> tuple:
        return (self.pk, self.path, self.bytes, self.mtime_ns, VERSION, self.stats, self.thumb_hash, self.reason)


def run(ws: Workspace, splits: Sequence[str] | None = None, rules_path: Path | None = None, apply: bool = False,
        placeholders: Path | None = None, workers: int | None = None, scheduler: str | None = None,
        progress: Progress = SILENT) -> CheckImagesResult:
    """What the command does: check, apply when asked, write the reports.

    splits: only these (default all). rules_path: a rules file extending the defaults.
    placeholders: a folder of known placeholder pictures (any image matching one is a
    placeholder). workers/scheduler: where files are measured (executors.run_batches).
    Returns a CheckImagesResult. Raises IfaError for an unknown split, a bad rules file or
    an unreadable placeholder folder."""
    start = time.perf_counter()
    rules = load_rules(rules_path)
    known = placeholder_hashes(placeholders) if placeholders is not None else set()
    # Images dedup set aside count too: a placeholder whose copies dedup set aside as duplicates
    # is still one picture served for all of them, and its kept copy must go as well.
    chosen, own = check_splits(splits) or None, [r.id for r in rules] + [DEDUP_RULE]
    images = stats_candidates(ws.ledger, chosen, own, VERSION)
    measured, cached = _measure_files(ws, images, workers, scheduler, progress)
    values, thumbs, reasons = _statistics(read_stats(ws.ledger, chosen, own, VERSION))
    hits = {r.id: r.find(values, thumbs, known) for r in rules}
    result = CheckImagesResult(images_checked=len(images["pk"]), measured=measured, cached=cached,
                               unreadable=sum(r is not None for r in reasons),
                               without_file=sum(p is None for p in images["path"]))
    result.rules = {r.id: RuleCount(int(hits[r.id].sum()), r.action, r.description, r.test) for r in rules}
    order = _worst_first(rules, hits, values)
    result.flagged = [{"image_id": images["image_id"][i], "split": images["split"][i],
                       "rules": [r.id for r in rules if hits[r.id][i]]} for i in order]
    if apply:
        changes = [Change("set_aside", images["image_id"][i], reason=r.description, rule=r.id)
                   for r in rules if r.action == "set-aside" for i in np.flatnonzero(hits[r.id])]
        result.set_aside = ws.ledger.apply_changes(changes, command="curate check-images").get("set_aside", 0)
        result.applied = True
    _write_reports(ws, result, rules, hits, images, values, order)
    result.seconds = time.perf_counter() - start
    return result


def placeholder_hashes(folder: Path) -> set[bytes]:
    """The picture hashes of the images in `folder` (known placeholders). Raises IfaError
    when it is not a folder or holds no readable image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IfaError(f"--placeholders {folder}: not a folder of placeholder pictures.")
    found = set()
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in PLACEHOLDER_SUFFIXES:
            try:
                found.add(measure(path.read_bytes()).thumb_hash)
            except (OSError, Unreadable):
                continue
    if not found:
        raise IfaError(f"--placeholders {folder}: no readable image in it.")
    return found


def measure_batch(jobs: Sequence[tuple[int, str]]) -> list[_Measured]:
    """Measure files (pk, path): the unit of parallel work. A file that cannot be read or
    decoded is returned with its reason, never raised."""
    out = []
    for pk, path in jobs:
        try:
            st = os.stat(path)
            with open(path, "rb") as fh:
                data = fh.read()
            s = measure(data)
            out.append(_Measured(pk, path, st.st_size, st.st_mtime_ns, s.values.tobytes(), s.thumb_hash, None))
        except OSError as exc:
            out.append(_Measured(pk, path, -1, -1, None, None, f"unreadable-file: {exc.strerror}"))
        except Unreadable as exc:
            out.append(_Measured(pk, path, st.st_size, st.st_mtime_ns, None, None, exc.reason))
    return out


def _measure_files(ws: Workspace, images: dict[str, list], workers: int | None, scheduler: str | None,
                   progress: Progress) -> tuple[int, int]:
    """Measure every local file whose cached statistics are missing or stale; returns
    (measured, cached)."""
    jobs, cached = [], 0
    for pk, path, size, mtime in zip(images["pk"], images["path"], images["cached_bytes"], images["cached_mtime_ns"]):
        if path is None:
            continue
        try:
            st = os.stat(path)
            fresh = size is not None and (st.st_size, st.st_mtime_ns) == (size, mtime)
        except OSError:
            fresh = False
        if fresh:
            cached += 1
        else:
            jobs.append((pk, path))
    if not jobs:
        return 0, cached
    size = executors.batch_size(len(jobs), workers or executors.default_workers(), largest=500)
    with progress.task("measuring pictures", total=len(jobs)) as task:
        for batch, measured in executors.run_batches(measure_batch, executors.chunks(jobs, size), workers=workers,
                                                     scheduler=scheduler):
            save_stats(ws.ledger, [m.row() for m in measured])
            task.advance(len(batch))
    return len(jobs), cached


def _statistics(got: dict[str, list]) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """(N, S) float32 statistics (NaN rows: not measured), (N,) object picture hashes and the
    unreadable reasons, from `read_stats`' columns."""
    n = len(got["pk"])
    values = np.full((n, len(STAT_NAMES)), np.nan, np.float32)
    have = np.array([v is not None for v in got["stats"]], bool)
    if have.any():
        values[have] = np.frombuffer(b"".join(v for v in got["stats"] if v is not None), np.float32).reshape(-1, len(STAT_NAMES))
    thumbs = np.array([None if t is None else bytes(t) for t in got["thumb_hash"]], dtype=object)
    return values, thumbs, got["reason"]


def _severity(rule: ImageRule, values: np.ndarray) -> np.ndarray:
    """(N,) how far past its bound each image is on the rule's first condition (larger is
    worse); 0 for shared pictures."""
    if rule.kind != "threshold":
        return np.zeros(len(values))
    c = rule.when[0]
    column = np.nan_to_num(values[:, STAT_NAMES.index(c.stat)])
    return (c.below - column) / max(abs(c.below), 1e-9) if c.below is not None else (column - c.above) / max(abs(c.above), 1e-9)


def _worst_first(rules: list[ImageRule], hits: dict[str, np.ndarray], values: np.ndarray) -> list[int]:
    """Flagged image positions: by the first rule that found them, worst first within it."""
    order, seen = [], np.zeros(len(values), bool)
    for r in rules:
        found = np.flatnonzero(hits[r.id] & ~seen)
        order += found[np.argsort(-_severity(r, values)[found], kind="stable")].tolist()
        seen[found] = True
    return order


def _write_reports(ws: Workspace, result: CheckImagesResult, rules: list[ImageRule], hits: dict[str, np.ndarray],
                   images: dict[str, list], values: np.ndarray, order: list[int]) -> None:
    """`reports/check-images-<time>.csv` (one row per image and rule, with its statistics)
    and an HTML page of thumbnails per rule, worst first."""
    import pandas as pd

    rows = [{"image_id": images["image_id"][i], "split": images["split"][i], "rule": r.id, "action": r.action,
             **{n: round(float(values[i, k]), 3) for k, n in enumerate(STAT_NAMES)}}
            for i in order for r in rules if hits[r.id][i]]
    csv_path = ws.report_path(REPORT_NAME, "csv")
    reports.write_csv(csv_path, pd.DataFrame(rows, columns=["image_id", "split", "rule", "action", *STAT_NAMES]))
    result.report_csv = str(csv_path)
    sections = []
    for r in rules:
        found = [i for i in order if hits[r.id][i]][:CARDS_PER_RULE]
        cards = [Card(images["image_id"][i], images["path"][i],
                      [images["split"][i]] + [f"{c.stat} {values[i, STAT_NAMES.index(c.stat)]:.2f}" for c in r.when])
                 for i in found]
        verb = "set aside" if r.action == "set-aside" and result.applied else \
            "would be set aside (--apply)" if r.action == "set-aside" else "reported only"
        text = (f"{r.description}. Test: {r.test}. {int(hits[r.id].sum()):,} images, {verb}"
                + (f"; the {len(found)} worst shown." if found else "."))
        sections.append(Section(f"{r.id} ({r.action})", text, [cards[k:k + 6] for k in range(0, len(cards), 6)]))
    intro = (f"{result.images_checked:,} images checked ({result.measured:,} pictures measured, {result.cached:,} from "
             f"cache, {result.unreadable:,} unreadable, {result.without_file:,} without a local file). "
             "Undo a set-aside rule with: ifa curate restore --rule RULE_ID.")
    html_path = csv_path.with_suffix(".html")
    write_page(html_path, "Image check", sections, intro)
    result.report_html = str(html_path)
