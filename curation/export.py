"""`ifa export`: cleaned splits next to the record of every change and a datasheet.

Only active images and labels are exported (set-aside images too with
include_set_aside). Formats are a registry of small writers over one gathered table. The
export is written to a temporary folder beside the destination and renamed into place,
so a failed export never leaves a half-written folder.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import IfaError
from ..progress import SILENT, Progress
from ..taxonomy import Taxonomy
from ..taxonomy.labelstudio_config import IMAGE_NAME
from . import reports
from . import stats as stats_lib
from .ledger import SPLITS, Ledger, check_splits
from .ledger.arrays import label_table
from .ledger.raw_labels import is_raw_label, raw_label_names
from .workspace import Workspace, time_stamp

KEY_STYLES = {"camel": ("imageId", "labelId"), "snake": ("image_id", "label_id")}


@dataclass
class SplitExport:
    """One split as exported: one row per image (image_id, url, path, status) and, aligned
    with it, each image's label ids."""

    name: str
    images: pd.DataFrame
    label_ids: list[list[int]]
    key_style: str = "camel"
    int_ids: bool = False


@dataclass
class ExportResult:
    out_dir: str
    format: str
    splits: dict[str, dict] = field(default_factory=dict)  # split -> images, labels, file
    changes: int = 0
    unreadable_files: dict[str, int] = field(default_factory=dict)  # split -> active images with an unreadable file
    datasheet: str = ""
    plots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ---- formats ---------------------------------------------------------------------------------
def _values(frame: pd.DataFrame, column: str) -> list:
    """A column as a list with None where a value is missing. pandas 3 reads a column of
    strings and None as its string dtype, where a missing value is NaN: NaN is not JSON
    and not a Parquet string, so every writer takes its values through here."""
    col = frame[column]
    return [None if v is None or (isinstance(v, float) and v != v) else v for v in col.tolist()]


def _write_imat(split: SplitExport, taxonomy: Taxonomy, out: Path) -> Path:
    """The challenge JSON, keys spelled as the data came in, so training code reads it unchanged."""
    image_key, label_key = KEY_STYLES[split.key_style]
    ids = _values(split.images, "image_id")
    if split.int_ids:
        ids = [int(i) for i in ids]
    label_ids = split.label_ids if split.int_ids else [[str(l) for l in labs] for labs in split.label_ids]
    doc: dict = {"images": [{image_key: i, "url": u} for i, u in zip(ids, _values(split.images, "url"))]}
    if split.name != "test" or any(split.label_ids):  # the challenge's test has no annotations
        doc["annotations"] = [{image_key: i, label_key: labs} for i, labs in zip(ids, label_ids)]
    path = out / f"{split.name}.json"
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, separators=(",", ":"))
    return path


def _write_csv(split: SplitExport, taxonomy: Taxonomy, out: Path) -> Path:
    """One row per image; `label_ids` is space-separated, `labels` '|'-joined names, so
    `ifa import csv --labels-col labels` reads it back."""
    frame = split.images[["image_id", "url", "path", "status"]].assign(split=split.name)
    frame["label_ids"] = [" ".join(map(str, labs)) for labs in split.label_ids]
    frame["labels"] = ["|".join(taxonomy.names(labs)) for labs in split.label_ids]
    path = out / f"{split.name}.csv"
    frame.to_csv(path, index=False, lineterminator=reports.CSV_LINE_END)  # data: exact, never neutralised
    return path


def _write_parquet(split: SplitExport, taxonomy: Taxonomy, out: Path) -> Path:
    """One row per image with a list<int32> column of label ids."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    imgs = split.images
    table = pa.table({
        "image_id": pa.array(_values(imgs, "image_id"), pa.string()),
        "split": pa.array([split.name] * len(imgs), pa.string()),
        "url": pa.array(_values(imgs, "url"), pa.string()),
        "path": pa.array(_values(imgs, "path"), pa.string()),
        "status": pa.array(_values(imgs, "status"), pa.string()),
        "label_ids": pa.array(split.label_ids, pa.list_(pa.int32())),
    })
    path = out / f"{split.name}.parquet"
    pq.write_table(table, path)
    return path


def _write_labelstudio(split: SplitExport, taxonomy: Taxonomy, out: Path) -> Path:
    """Label Studio tasks whose annotation holds the final labels, one Choices result per
    group, named as in the labeling config ifa generates."""
    tasks = []
    urls, paths = _values(split.images, "url"), _values(split.images, "path")
    for image_id, url, path, labs in zip(_values(split.images, "image_id"), urls, paths, split.label_ids):
        by_group: dict[str, list[str]] = {}
        for lab in labs:
            label = taxonomy.labels.get(lab)
            if label is not None:
                by_group.setdefault(label.group, []).append(label.name)
        result = [{"from_name": g, "to_name": IMAGE_NAME, "type": "choices", "value": {"choices": by_group[g]}}
                  for g in taxonomy.group_names if g in by_group]
        tasks.append({"data": {IMAGE_NAME: url or path, "image_id": image_id, "split": split.name},
                      "annotations": [{"result": result}]})
    path = out / f"{split.name}.labelstudio.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


# In a temp export folder until every file is written: tells recover_interrupted it is partial.
IN_PROGRESS = ".ifa-export-in-progress"

FORMATS: dict[str, Callable[[SplitExport, Taxonomy, Path], Path]] = {
    "imat": _write_imat,
    "csv": _write_csv,
    "parquet": _write_parquet,
    "labelstudio": _write_labelstudio,
}


# ---- the export --------------------------------------------------------------------------------
def export(ws: Workspace, out_dir: Path | None = None, fmt: str = "imat", splits: Sequence[str] | None = None,
           include_set_aside: bool = False, keys: str | None = None, overwrite: bool = False,
           progress: Progress = SILENT) -> ExportResult:
    """Write the cleaned splits, `changes.csv` and `DATASHEET.md` (with plots) to `out_dir`
    (default `<workspace>/exports/export-<time>`).

    fmt: imat | csv | parquet | labelstudio. keys: camel | snake for imat (default: as
    imported). Raises IfaError for an unknown format, split or key style, or when out_dir
    exists and is not empty (unless overwrite)."""
    if fmt not in FORMATS:
        raise IfaError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if keys is not None and keys not in KEY_STYLES:
        raise IfaError(f"--keys must be 'camel' or 'snake', not {keys!r}.")
    check_splits(splits)
    stamp = datetime.now(timezone.utc)
    out = Path(out_dir) if out_dir else ws.exports_dir / f"export-{time_stamp(stamp)}"
    ws.no_links(ws.exports_dir)
    ws.no_links(out)
    _check_destination(out)
    for folder in dict.fromkeys([out.parent, ws.exports_dir]):
        for line in recover_interrupted(folder):
            progress.note(line)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise IfaError(f"{out} already exists and is not empty; choose a new folder or pass --overwrite.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = reports.temp_name(out, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    (tmp / IN_PROGRESS).touch()
    try:
        with ws.ledger.snapshot():  # split files, changes.csv and DATASHEET: the ledger at one instant
            result = _write_all(ws, tmp, out, fmt, splits, include_set_aside, keys, stamp, progress)
        (tmp / IN_PROGRESS).unlink()
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _check_destination(out: Path) -> None:
    """IfaError unless `out` is a folder (or can become one) whose parent can be written:
    the export is built beside it and renamed into place."""
    if out.is_symlink():  # --overwrite would replace the link, not what it points to, and strand a copy
        raise IfaError(f"{out} is a link (to {os.readlink(out)}); export to the real folder {os.path.realpath(out)} "
                       "or to a new one.")
    if out.exists() and not out.is_dir():
        raise IfaError(f"{out} is a file; give the export a folder (new, or empty, or with --overwrite).")
    parent = Path(os.path.abspath(out)).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise IfaError(f"Cannot export to {out}: {parent} is a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise IfaError(f"Cannot export to {out}: {parent} is not writable (a read-only file system, or no permission); "
                       "choose another folder.")


def _write_all(ws: Workspace, tmp: Path, out: Path, fmt: str, splits, include_set_aside: bool, keys: str | None,
               stamp: datetime, progress: Progress) -> ExportResult:
    ledger, taxonomy = ws.ledger, ws.taxonomy
    result = ExportResult(str(out), fmt)
    gathered = gather(ledger, splits, include_set_aside)
    styles = _key_styles(ledger)
    with progress.task(f"writing {fmt}", total=len(gathered)) as task:
        for split in gathered:
            split.key_style = keys or styles.get(split.name, ("camel", False))[0]
            split.int_ids = styles.get(split.name, ("camel", False))[1]
            path = FORMATS[fmt](split, taxonomy, tmp)
            result.splits[split.name] = {"images": len(split.images), "labels": sum(map(len, split.label_ids)),
                                         "file": str(out / path.name)}
            task.advance()
    changes = changes_frame(ledger, taxonomy, [s.name for s in gathered])
    reports.frame_for_people(changes).to_csv(tmp / "changes.csv", index=False, lineterminator=reports.CSV_LINE_END)
    result.changes = len(changes)
    (tmp / "plots").mkdir()
    before = stats_lib.compute(ledger, taxonomy, [s.name for s in gathered], as_imported=True)
    after = stats_lib.compute(ledger, taxonomy, [s.name for s in gathered])
    result.unreadable_files = {name: s.unreadable_files for name, s in after.splits.items() if s.unreadable_files}
    plots = stats_lib.write_plots(after, tmp / "plots", time_stamp(stamp))
    result.plots = [str(out / "plots" / Path(p).name) for p in plots]
    text = datasheet(ledger, taxonomy, before, after, changes, result, stamp, [Path(p).name for p in plots])
    (tmp / "DATASHEET.md").write_text(text, encoding="utf-8")
    result.datasheet = str(out / "DATASHEET.md")
    return result


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished `tmp` to `out`; an existing `out` is first moved aside to
    `.<name>.old-<pid>`. `tmp` is complete before the first rename, so a kill between the
    two renames leaves the new export whole under its temp name: `recover_interrupted`
    finishes the swap."""
    if out.exists():
        old = reports.temp_name(out, "old")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def recover_interrupted(folder: Path) -> list[str]:
    """Clean up after exports into `folder` whose process is gone (killed, crashed).

    Only hidden folders an export leaves are touched, and only when their pid no longer
    runs (a live pid's folder is another export at work):
    - `.<name>.tmp-<pid>` still marked in progress: a partial export, removed;
    - `.<name>.tmp-<pid>` complete (its DATASHEET.md written, the mark gone): the rename
      into place was interrupted; when `<name>` is missing it is renamed into place (the
      complete new one wins), else removed;
    - `.<name>.old-<pid>` (an export that --overwrite moved aside): removed, or put back
      when `<name>` is still missing after the above (the new one never got written).
    Returns what was done, one line per folder, for a note."""
    done: list[str] = []
    dead = [(path, name) for path, name, _ in reports.dead_temps(folder) if path.is_dir()]
    for path, name in sorted(dead, key=lambda d: ".old-" in d[0].name):  # complete new exports first
        target = path.parent / name
        if path.name.startswith(f".{name}.tmp-"):
            if (path / IN_PROGRESS).exists():
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path.name}, left by an export that did not finish")
            elif (path / "DATASHEET.md").exists():
                if target.exists():
                    shutil.rmtree(path, ignore_errors=True)
                    done.append(f"removed {path.name}, a finished export superseded by {target.name}")
                else:
                    os.replace(path, target)
                    done.append(f"finished the interrupted export into {target}")
        elif (path / "DATASHEET.md").exists():
            if target.exists():
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path.name}, the export an interrupted --overwrite replaced")
            else:
                os.replace(path, target)
                done.append(f"put back {target}, which an interrupted --overwrite had moved aside")
    return done


def gather(ledger: Ledger, splits: Sequence[str] | None = None, include_set_aside: bool = False) -> list[SplitExport]:
    """Active images (and set-aside ones when asked) with their active labels, per split."""
    table = label_table(ledger, splits, image_status=None if include_set_aside else "active")
    images = table.images
    bounds = np.searchsorted(table.image_index, np.arange(len(images) + 1))
    # Raw label text kept at import (an unknown name) is never exported, even once restored.
    per_image = [[l for l in table.label_id[a:b].tolist() if not is_raw_label(l)] for a, b in zip(bounds[:-1], bounds[1:])]
    out = []
    for name in SPLITS:
        if splits and name not in splits:
            continue
        rows = np.flatnonzero(images["split"].to_numpy() == name)
        if len(rows) or (splits and name in splits):
            out.append(SplitExport(name, images.iloc[rows].reset_index(drop=True), [per_image[i] for i in rows]))
    return out


def _key_styles(ledger: Ledger) -> dict[str, tuple[str, bool]]:
    """Per split, the key spelling and id type of its last challenge-JSON import."""
    imports = ledger.imports_frame()
    imports = imports[imports["format"] == "imat"]
    return {row.split: (row.key_style or "camel", bool(row.int_ids)) for row in imports.itertuples()}


# ---- the record of changes -----------------------------------------------------------------------
CHANGE_NAMES = {"set_aside": "set aside", "restored": "restored", "label_dropped": "label dropped",
                "label_added": "label added", "label_restored": "label restored"}


def changes_frame(ledger: Ledger, taxonomy: Taxonomy, splits: Sequence[str] | None = None) -> pd.DataFrame:
    """Every per-image change from the event log: image_id, split, change, old, new, reason,
    rule, command, time. A label dropped and another added in the same single-label group
    by the same decision is one 'relabelled' row."""
    events = ledger.events_frame()
    events = events[events["image_id"].notna() & events["kind"].isin(list(CHANGE_NAMES))].copy()
    split_of = ledger.image_splits(events["image_id"].unique().tolist()) if len(events) else {}
    events["split"] = events["image_id"].map(split_of)
    if splits:
        events = events[events["split"].isin(list(splits))]
    names = {i: l.name for i, l in taxonomy.labels.items()}
    names.update(raw_label_names(ledger, events["label_id"].dropna().astype("int64").unique().tolist()))
    groups = {i: l.group for i, l in taxonomy.labels.items()}
    single = {g.name for g in taxonomy.groups if g.single}
    label = events["label_id"].map(lambda v: names.get(int(v), f"<unknown {int(v)}>") if pd.notna(v) else "")
    is_label = events["kind"].str.startswith("label_")
    events["old"] = np.where(is_label & (events["kind"] == "label_dropped"), label, np.where(is_label, "", events["old"]))
    events["new"] = np.where(is_label & (events["kind"] != "label_dropped"), label, np.where(is_label, "", events["new"]))
    events["change"] = events["kind"].map(CHANGE_NAMES)
    events["group"] = events["label_id"].map(lambda v: groups.get(int(v)) if pd.notna(v) else None)

    # Pair a drop with an add of the same image, group, rule and moment in a single-label group.
    key = ["image_id", "group", "rule", "time", "command"]
    pairable = events["group"].isin(single) & events["kind"].isin(["label_dropped", "label_added"])
    drops = events[pairable & (events["kind"] == "label_dropped")].drop_duplicates(key)
    adds = events[pairable & (events["kind"] == "label_added")].drop_duplicates(key)
    both = drops.merge(adds[key + ["new", "event_id"]], on=key, suffixes=("", "_add"))
    if len(both):
        both["change"] = "relabelled"
        both["new"] = both["new_add"]
        events = events[~events["event_id"].isin(set(both["event_id"]) | set(both["event_id_add"]))]
        events = pd.concat([events, both[events.columns]], ignore_index=True).sort_values("event_id")
    cols = ["image_id", "split", "change", "old", "new", "reason", "rule", "command", "time"]
    return events[cols].fillna("").reset_index(drop=True)


# ---- the datasheet -------------------------------------------------------------------------------
def datasheet(ledger: Ledger, taxonomy: Taxonomy, before: stats_lib.Stats, after: stats_lib.Stats,
              changes: pd.DataFrame, result: ExportResult, stamp: datetime, plots: list[str]) -> str:
    """DATASHEET.md: Table 1 before and after, the plots, duplicates and leakage removed,
    changes in effect by rule (attribute rules, duplicates, noise flags, review rounds)."""
    lines = [f"# Datasheet: {Path(result.out_dir).name}", "",
             f"Exported {stamp:%Y-%m-%d %H:%M} UTC by ifa {__version__} in format `{result.format}`. "
             "Only active images and labels are exported; `changes.csv` lists every change and its reason.", ""]
    lines += _splits_section(before, after) + _plots_section(after, plots) + _duplicates_section(ledger)
    if result.unreadable_files:
        lines += ["", "## Unreadable files", "",
                  f"{sum(result.unreadable_files.values()):,} exported active images have a file dedup could not decode ("
                  + ", ".join(f"{k}: {v:,}" for k, v in result.unreadable_files.items())
                  + "); `ifa show ID` says why. `ifa curate dedup --apply` sets them aside."]
    lines += _rules_section(ledger)
    counts = changes["change"].value_counts()
    lines += ["", "## Change log", "", f"`changes.csv`: {len(changes):,} changes ("
              + (", ".join(f"{k}: {v:,}" for k, v in counts.items()) or "none") + ")."]
    return "\n".join(lines) + "\n"


def _splits_section(before: stats_lib.Stats, after: stats_lib.Stats) -> list[str]:
    """The datasheet's splits table and each split's Table 1, before and after."""
    lines = ["## Splits", "", "| split | images before | images after | labels before | labels after | labels per image after (min / mean / max) |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name, a in after.splits.items():
        b = before.splits.get(name)
        lpi = a.labels_per_image
        lines.append(f"| {name} | {b.images if b else 0:,} | {a.images:,} | {b.labels if b else 0:,} | {a.labels:,} | "
                     f"{lpi['min']} / {lpi['mean']:.2f} / {lpi['max']} |")
    for name, a in after.splits.items():
        b = before.splits.get(name)
        lines += ["", f"### Table 1, {name} (before → after)", "",
                  "| group | classes | per image | #labels | #images | % images |", "| --- | ---: | --- | ---: | ---: | ---: |"]
        for g, ga in a.groups.items():
            gb = b.groups[g] if b else None
            lines.append(f"| {g} | {ga.classes} | {ga.cardinality} | {gb.labels if gb else 0:,} → {ga.labels:,} | "
                         f"{gb.images if gb else 0:,} → {ga.images:,} | {gb.percent_images if gb else 0:.1f} → {ga.percent_images:.1f} |")
        lines.append(f"\nLong tail: {a.labels_under_500} labels with fewer than 500 images, {a.labels_over_10k} with more than 10K "
                     f"(before: {b.labels_under_500 if b else '-'} and {b.labels_over_10k if b else '-'}).")
    return lines


def _plots_section(after: stats_lib.Stats, plots: list[str]) -> list[str]:
    """The datasheet's plots, and which splits have none (no labels)."""
    lines: list[str] = []
    unlabelled = [name for name, a in after.splits.items() if not a.labels]
    if plots or unlabelled:
        lines += ["", "## Plots", ""] + [f"![{p}](plots/{p})" for p in plots]
    if unlabelled:
        lines.append(f"\nNo plots for {', '.join(unlabelled)}: {'it has' if len(unlabelled) == 1 else 'they have'} "
                     "no labels (the challenge's test split is published without them).")
    return lines


def _duplicates_section(ledger: Ledger) -> list[str]:
    """The datasheet's duplicates, and the copies of another split's image (leakage)."""
    lines = ["", "## Duplicates and leakage removed", ""]
    dup = ledger.set_aside_images(rule="duplicate")
    if len(dup):
        split_of = ledger.image_splits(dup["image_id"].tolist())
        kept = dup["status_reason"].str.removeprefix("duplicate-of:")
        kept_split = ledger.image_splits(kept.tolist())
        own, other = dup["image_id"].map(split_of), kept.map(kept_split)
        leak = own.notna() & other.notna() & (own != other)
        lines.append(f"{len(dup):,} images set aside as duplicates ({', '.join(f'{k}: {v:,}' for k, v in own.value_counts().items())}); "
                     f"{int(leak.sum()):,} of them were copies of an image in another split (leakage removed).")
    else:
        lines.append("No image is set aside as a duplicate.")
    return lines


def _rules_section(ledger: Ledger) -> list[str]:
    """The datasheet's table of changes in effect, by rule."""
    lines = ["", "## Changes in effect, by rule", "",
             "Rules of `ifa curate check-attributes`, `duplicate` (dedup), noise flags and review rounds (`review:<round>`).", ""]
    in_effect = _in_effect(ledger)
    if len(in_effect):
        lines += ["| rule | command | images set aside | labels dropped | labels added |", "| --- | --- | ---: | ---: | ---: |"]
        for row in in_effect.itertuples(index=False):
            lines.append(f"| {row.rule} | {row.command} | {row.set_aside:,} | {row.dropped:,} | {row.added:,} |")
    else:
        lines.append("No change is in effect: the export equals the import.")
    return lines


def _in_effect(ledger: Ledger) -> pd.DataFrame:
    """Per rule: images it set aside and labels it dropped or added that are still so."""
    images = ledger.set_aside_images()
    labels = ledger.dropped_labels()
    added = ledger.added_labels()
    events = ledger.events_frame()
    command = events.dropna(subset=["rule"]).groupby("rule")["command"].last()
    frame = pd.DataFrame({
        "set_aside": images.groupby("status_rule").size(),
        "dropped": labels.groupby("status_rule").size(),
        "added": added.groupby("source").size(),
    }).fillna(0).astype(int)
    frame.index.name = "rule"
    frame = frame.reset_index()
    frame["command"] = frame["rule"].map(command).fillna("")
    return frame.sort_values("rule").reset_index(drop=True)
