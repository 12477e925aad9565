"""Import images and labels into the ledger: the challenge JSON, a CSV, or a folder.

Bad input never crashes an import. Each problem is counted and written to
`reports/import-<time>.csv`; with on_error="skip" (the default) the problem is
quarantined (an unknown label is kept with status 'quarantined', an image listed twice
with different labels or whose file is missing is imported but set aside) or skipped
(an image already in another split), and with on_error="fail" nothing is written.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import pandas as pd

from ...errors import IfaError, UnknownLabel
from ...progress import SILENT, Progress
from ...taxonomy import Taxonomy
from .. import reports
from ..ledger import SPLITS
from ..workspace import Workspace

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
ON_ERROR = ("skip", "fail")

# problem -> what on_error="skip" does about it
PROBLEMS = {
    "malformed-entry": "skipped",
    "unknown-label": "label quarantined",
    "duplicate-entry": "merged",  # listed twice with the same labels: harmless
    "conflicting-entries": "image set aside",
    "other-split": "skipped",
    "missing-file": "image set aside",
    "annotation-without-image": "skipped",
}
HARMLESS = {"duplicate-entry"}


REPORT_COLUMNS = ("image_id", "problem", "detail", "action")


@dataclass
class ImportResult:
    """What this import did (a rerun counts only what it added). `problems` counts each
    problem kind; `report` is the CSV listing every problem with its image and the action
    taken ("" when nothing was new: then nothing was recorded and no report written)."""

    format: str
    source: str
    split: str
    images_read: int
    images_added: int
    images_existing: int
    labels_added: int
    set_aside: int
    quarantined_labels: int
    problems: dict[str, int] = field(default_factory=dict)
    report: str = ""
    import_id: int | None = None  # the import's row in the ledger; None when nothing was new
    nothing_new: bool = False  # a rerun that found everything already imported: nothing recorded

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Batch:
    """Normalised rows of one import, before they reach the ledger (plain lists: at a
    million images, pandas frames of Python objects cost more than they give)."""

    images: list[list] = field(default_factory=list)  # [image_id, url, path]
    raw_labels: list[tuple[str, list]] = field(default_factory=list)  # (image_id, raw values)
    set_aside: dict[str, str] = field(default_factory=dict)  # image_id -> reason
    issues: list[tuple[str | None, str, str]] = field(default_factory=list)  # (image_id, problem, detail)

    def problem(self, image_id: str | None, problem: str, detail: str) -> None:
        self.issues.append((image_id, problem, detail))


# ---- public entry points -------------------------------------------------------------------
def import_imat(ws: Workspace, file: Path, split: str, images_dir: Path | None = None,
                on_error: str = "skip", progress: Progress = SILENT) -> ImportResult:
    """Import the challenge JSON (`images`: imageId|image_id + url; `annotations`:
    imageId|image_id + labelId|label_id). Ids may be strings or integers; test files have
    no annotations. `images_dir` maps each id to a local file `<id>.<any ext>`.

    Raises IfaError for unreadable or malformed JSON (with line and column), a bad split,
    or, with on_error="fail", any problem in the data."""
    _check_args(split, on_error)
    file = Path(file)
    source = _ChallengeFile(file)
    batch = _Batch()
    with progress.task(f"reading {file.name}") as task:
        urls, key_style, int_ids = _read_images(source, batch)
        label_sets = _read_annotations(source, batch, urls)
        task.advance()
    local = _index_folder(images_dir) if images_dir is not None else None
    for iid, url in urls.items():
        batch.images.append([iid, url, _local_path(batch, iid, local, has_url=bool(url))])
    batch.raw_labels = list(label_sets.items())
    return _finish(ws, batch, "imat", file, split, on_error, progress, key_style=key_style, int_ids=int_ids)


def import_csv(ws: Workspace, file: Path, split: str, image_col: str, labels_col: str, sep: str = "|",
               id_col: str | None = None, on_error: str = "skip", progress: Progress = SILENT) -> ImportResult:
    """Import a CSV with one row per image: `image_col` holds a file path (relative to the
    CSV's folder) or an http(s) URL, `labels_col` label names or ids joined by `sep`.
    The image id is `id_col` when given, else the file name without its extension.

    Raises IfaError for a missing file or column, or with on_error="fail" any problem."""
    _check_args(split, on_error)
    file = Path(file)
    try:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise IfaError(f"{file} does not exist.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise IfaError(f"{file} is not a readable CSV: {exc}") from None
    for col in (image_col, labels_col, id_col):
        if col is not None and col not in frame.columns:
            raise IfaError(f"{file} has no column {col!r}; its columns are {', '.join(map(repr, frame.columns))}.")
    batch = _Batch()
    seen: dict[str, tuple[str, set]] = {}
    ids = frame[id_col] if id_col else pd.Series([None] * len(frame))
    for n, (where, raw_labels, iid) in enumerate(zip(frame[image_col], frame[labels_col], ids), start=2):
        where = where.strip()
        iid = iid.strip() if id_col else _stem(where)
        if not iid:
            batch.problem(None, "malformed-entry", f"line {n} has no image id")
            continue
        labels = {x.strip() for x in raw_labels.split(sep) if x.strip()} if sep else {raw_labels.strip()} - {""}
        if iid in seen:
            if seen[iid][1] == labels:
                batch.problem(iid, "duplicate-entry", f"line {n} repeats the image with the same labels")
            else:
                batch.problem(iid, "conflicting-entries", f"line {n} lists the image again with different labels")
                batch.set_aside[iid] = "import: listed twice with different labels"
                seen[iid][1].update(labels)
            continue
        seen[iid] = (where, labels)
        url, path = (where, None) if _is_url(where) else (None, (file.parent / where).resolve() if where else None)
        if path is not None and not path.is_file():
            batch.problem(iid, "missing-file", f"{path} does not exist")
            batch.set_aside[iid] = "import: image file missing"
        batch.images.append([iid, url, str(path) if path else None])
    batch.raw_labels = [(iid, labels) for iid, (_, labels) in seen.items()]
    return _finish(ws, batch, "csv", file, split, on_error, progress)


def import_folder(ws: Workspace, folder: Path, split: str, on_error: str = "skip",
                  progress: Progress = SILENT) -> ImportResult:
    """Import every image file under `folder` (recursively) without labels; the id is the
    file name without its extension. Raises IfaError when the folder does not exist."""
    _check_args(split, on_error)
    folder = Path(folder)
    if not folder.is_dir():
        raise IfaError(f"{folder} is not a folder.")
    batch = _Batch()
    seen: dict[str, str] = {}
    for path in sorted(_walk_images(folder)):
        iid = _stem(path)
        if iid in seen:
            batch.problem(iid, "conflicting-entries", f"{path} and {seen[iid]} share the id")
            batch.set_aside[iid] = "import: two files share the id"
            continue
        seen[iid] = path
        batch.images.append([iid, None, str(Path(path).resolve())])
    return _finish(ws, batch, "folder", folder, split, on_error, progress)


# ---- shared steps --------------------------------------------------------------------------
def _finish(ws: Workspace, batch: _Batch, fmt: str, source: Path, split: str, on_error: str,
            progress: Progress, key_style: str | None = None, int_ids: bool = False) -> ImportResult:
    ledger = ws.ledger
    existing = ledger.image_splits([row[0] for row in batch.images]) if batch.images else {}
    elsewhere = {i: s for i, s in existing.items() if s != split}
    for iid in sorted(elsewhere):
        batch.problem(iid, "other-split", f"already imported into {elsewhere[iid]}")
    images = [(iid, url, path, "set_aside" if iid in batch.set_aside else "active", batch.set_aside.get(iid))
              for iid, url, path in batch.images if iid not in elsewhere]
    labels, quarantined = _resolve_labels(batch, ws.taxonomy, skip=elsewhere)

    actions = PROBLEMS if on_error == "skip" else {}
    # Problems with images this split already holds were handled by the import that added
    # them: a rerun neither records nor reports them again (it did nothing about them).
    already = {i for i, s in existing.items() if s == split}
    issues = [(iid, problem, detail, actions.get(problem, "import refused")) for iid, problem, detail in batch.issues
              if iid not in already]
    counts = dict(Counter(problem for _, problem, _, _ in issues))
    serious = {k: v for k, v in counts.items() if k not in HARMLESS}
    if on_error == "fail" and serious:
        report = _write_report(ws, issues)  # nothing is written to the ledger: the report is all there is
        listed = ", ".join(f"{v} {k}" for k, v in sorted(serious.items()))
        raise IfaError(f"Import refused, nothing was written: {listed}. Each is listed in {report}; "
                       "fix the input or rerun with --on-error skip to quarantine them.")
    with progress.task(f"writing {len(images):,} images to the ledger") as task:
        written = ledger.record_import(
            format=fmt, source=str(Path(source).resolve()), split=split, images=images, labels=labels,
            quarantined=quarantined, issues=issues, key_style=key_style, int_ids=int_ids, summary={"problems": counts},
        )
        task.advance()
    nothing_new = written["import_id"] is None
    # The report is written after the commit (a kill before it leaves no report of an import
    # that never happened) and atomically; `ifa history --csv` rebuilds it from the ledger.
    report = "" if nothing_new else str(_write_report(ws, issues))
    return ImportResult(
        format=fmt, source=str(source), split=split, images_read=len(batch.images),
        images_added=written["images_added"], images_existing=written["images_existing"],
        labels_added=written["labels_added"], set_aside=written["set_aside"],
        quarantined_labels=written["quarantined_added"], problems={} if nothing_new else counts, report=report,
        import_id=written["import_id"], nothing_new=nothing_new,
    )


def _write_report(ws: Workspace, issues: list[tuple]) -> Path:
    frame = pd.DataFrame(issues, columns=list(REPORT_COLUMNS))
    return reports.write_csv(ws.report_path("import", "csv"), frame)


def _resolve_labels(batch: _Batch, taxonomy: Taxonomy, skip) -> tuple[list, list]:
    """Map raw label values to taxonomy ids: (image_id, sorted ids) for the known ones and
    (image_id, id, reason) for unknown integer ids, which are quarantined. Unknown names
    have no id to keep, so they are only reported."""
    cache: dict[object, int | str] = {}
    labels, quarantined = [], []
    for iid, raws in batch.raw_labels:
        if iid in skip:
            continue
        ids = []
        for raw in raws:
            hit = cache.get(raw)
            if hit is None:
                try:
                    hit = taxonomy.lookup(raw).id
                except UnknownLabel as exc:
                    hit = str(exc)
                cache[raw] = hit
            if isinstance(hit, int):
                ids.append(hit)
            else:
                batch.problem(iid, "unknown-label", hit)
                if isinstance(raw, int) or str(raw).strip().isdigit():
                    quarantined.append((iid, int(raw), "unknown-label"))
        if ids:
            labels.append((iid, sorted(set(ids))))
    return labels, quarantined


def _read_images(source: _ChallengeFile, batch: _Batch) -> tuple[dict[str, str | None], str, bool]:
    """The images list: image_id -> url in file order, the key style (camel/snake) and
    whether every id was an integer. Entries without an id and repeated ids go to `batch`."""
    camel = snake = 0
    int_ids = True
    urls: dict[str, str | None] = {}
    for n, entry in enumerate(source.entries("images")):
        iid = _entry_id(entry)
        if iid is None:
            batch.problem(None, "malformed-entry", f"images[{n}] has no imageId/image_id")
            continue
        camel += "imageId" in entry
        snake += "image_id" in entry
        int_ids &= isinstance(iid, int) and not isinstance(iid, bool)
        iid = str(iid)
        url = entry.get("url")
        if isinstance(url, list):  # some dumps give a list of mirrors; the first is canonical
            url = url[0] if url else None
        if iid in urls:
            batch.problem(iid, "duplicate-entry", f"images[{n}] repeats an image id")
            continue
        urls[iid] = url
    return urls, "snake" if snake > camel else "camel", int_ids and bool(urls)


def _read_annotations(source: _ChallengeFile, batch: _Batch, urls: dict) -> dict[str, tuple]:
    """The annotations list: image_id -> its distinct raw label values. Malformed entries,
    labels of unknown images, repeats (merged) and conflicting repeats (labels united, image
    set aside) go to `batch`."""
    # Each image's labels as a tuple of distinct raw values, each value one shared object:
    # sets of fresh strings cost ~1 KB an image (730 MB of sets at 1M), tuples ~0.1 KB.
    label_sets: dict[str, tuple] = {}
    canonical: dict[tuple[type, object], object] = {}
    for n, entry in enumerate(source.entries("annotations")):
        iid = _entry_id(entry)
        raw = entry.get("labelId", entry.get("label_id")) if isinstance(entry, dict) else None
        if iid is None or not isinstance(raw, list):
            batch.problem(None if iid is None else str(iid), "malformed-entry",
                          f"annotations[{n}] needs imageId/image_id and a labelId/label_id list")
            continue
        iid = str(iid)
        if iid not in urls:
            batch.problem(iid, "annotation-without-image", f"annotations[{n}] names an image the images list lacks")
            continue
        try:
            labels = tuple(dict.fromkeys(canonical.setdefault((type(x), x), x) for x in raw))
        except TypeError:  # a list or object where a label id should be
            batch.problem(iid, "malformed-entry", f"annotations[{n}] has a label that is not an id")
            continue
        if iid in label_sets:
            if set(labels) == set(label_sets[iid]):
                batch.problem(iid, "duplicate-entry", f"annotations[{n}] repeats the image with the same labels")
            else:
                batch.problem(iid, "conflicting-entries", f"annotations[{n}] lists the image again with different labels")
                batch.set_aside[iid] = "import: listed twice with different labels"
                label_sets[iid] = tuple(dict.fromkeys(label_sets[iid] + labels))
            continue
        label_sets[iid] = labels
    return label_sets


def _check_args(split: str, on_error: str) -> None:
    if split not in SPLITS:
        raise IfaError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    if on_error not in ON_ERROR:
        raise IfaError(f"--on-error must be 'skip' or 'fail', not {on_error!r}.")


def _read_json(file: Path) -> dict:
    try:
        with open(file, "rb") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise IfaError(f"{file} does not exist.") from None
    except json.JSONDecodeError as exc:
        raise IfaError(f"{file} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    except UnicodeDecodeError:
        raise IfaError(f"{file} is not UTF-8 text; is it the challenge's JSON file?") from None
    if not isinstance(data, dict) or "images" not in data:
        raise IfaError(f"{file} is not in the challenge format: expected an object with an 'images' list "
                       "(and 'annotations' for train and validation).")
    return data


_MISSING = object()


class _ChallengeFile:
    """The challenge JSON's `images` and `annotations` lists, read one entry at a time.

    ijson (yajl's C parser) streams each list in its own pass over the file, so memory holds
    one entry, not the document: json.load of 1M images built 1.3 GB of dicts before the
    first check ran. A file ijson rejects is read once more with the json module, which names
    the line and column of the fault (IfaError), or, when it accepts the file after all (NaN,
    a byte-order mark), gives the entries ijson did not reach."""

    def __init__(self, file: Path) -> None:
        self.file, self.doc = file, None
        try:
            with open(file, "rb") as fh:
                head = fh.read(4096).lstrip()
        except FileNotFoundError:
            raise IfaError(f"{file} does not exist.") from None
        except IsADirectoryError:
            raise IfaError(f"{file} is a folder; give the challenge's JSON file.") from None
        if not head.startswith(b"{"):  # not an object: let the json module say what it is
            self.doc = _read_json(file)

    def entries(self, key: str) -> Iterator:
        """The entries of the top-level list `key`, in order. Raises IfaError when the file
        is not valid JSON, lacks `images`, or `key` is there but not a list."""
        import ijson

        n = 0
        if self.doc is None:
            try:
                with open(self.file, "rb") as fh:
                    for entry in ijson.items(fh, f"{key}.item", use_float=True):
                        n += 1
                        yield entry
            except (ijson.JSONError, UnicodeDecodeError):
                self.doc = _read_json(self.file)  # raises IfaError naming line and column
        if self.doc is not None:
            value = self.doc.get(key, [] if key == "annotations" else None)
            if not isinstance(value, list):
                raise IfaError(f"{self.file}: 'images' and 'annotations' must be lists.")
            yield from value[n:]
            return
        if n == 0:  # an empty list, a missing key or something that is not a list
            with open(self.file, "rb") as fh:
                value = next(ijson.items(fh, key, use_float=True), _MISSING)
            if key == "images" and value is _MISSING:
                raise IfaError(f"{self.file} is not in the challenge format: expected an object with an 'images' "
                               "list (and 'annotations' for train and validation).")
            if value is not _MISSING and not isinstance(value, list):
                raise IfaError(f"{self.file}: 'images' and 'annotations' must be lists.")


def _entry_id(entry) -> object | None:
    if not isinstance(entry, dict):
        return None
    iid = entry.get("imageId", entry.get("image_id"))
    return None if iid is None or iid == "" else iid


def _index_folder(folder: Path) -> dict[str, str]:
    folder = Path(folder)
    if not folder.is_dir():
        raise IfaError(f"--images {folder} is not a folder.")
    index: dict[str, str] = {}
    for path in sorted(_walk_images(folder)):
        index.setdefault(_stem(path), str(Path(path).resolve()))
    return index


def _local_path(batch: _Batch, iid: str, local: dict[str, str] | None, has_url: bool) -> str | None:
    if local is None:
        return None
    path = local.get(iid)
    if path is None:
        batch.problem(iid, "missing-file", "no file named after the image id in the --images folder")
        if not has_url:  # with a URL, `ifa fetch` can still get it
            batch.set_aside[iid] = "import: image file missing"
    return path


def _walk_images(folder: Path):
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield os.path.join(dirpath, name)


def _stem(where: str) -> str:
    return Path(urlparse(where).path if _is_url(where) else where).stem


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))
