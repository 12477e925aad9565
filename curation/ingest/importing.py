"""Import images and labels into the ledger: the challenge JSON, a CSV, or a folder.

Bad input never crashes an import. Each problem is counted and written to
`reports/import-<time>.csv`; with on_error="skip" (the default) the problem is
quarantined (an unknown label is kept with status 'quarantined', an image listed twice
with different labels or whose file is missing is imported but set aside) or skipped
(an image already in another split), and with on_error="fail" nothing is written.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator
from urllib.parse import urlparse

from ...errors import IfaError, UnknownLabel
from ...progress import SILENT, Progress
from ...taxonomy import Taxonomy
from .. import reports
from ..ledger import check_splits
from ..ledger.raw_labels import storable_id
from ..workspace import Workspace

if TYPE_CHECKING:
    from ..ledger.staging import ImportStaging

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
ON_ERROR = ("skip", "fail")

# problem -> what on_error="skip" does about it
# (a problem may say what it did itself, when that differs: a missing file of an image with
# a URL leaves the image active, since `ifa fetch` can still get it)
PROBLEMS = {
    "malformed-entry": "skipped",
    "ragged-row": "skipped",  # a CSV row with more or fewer fields than the header
    "unknown-label": "label quarantined",
    "duplicate-entry": "merged",  # listed twice with the same labels: harmless
    "conflicting-entries": "image set aside",
    "conflicting-sources": "first source kept",
    "other-split": "skipped",
    "missing-file": "image set aside",
    "unsupported-url": "image set aside",
    "unreadable-path": "skipped",  # a symlink loop or a link to nothing
    "annotation-without-image": "skipped",
}
HARMLESS = {"duplicate-entry"}
KEPT_ACTIVE = "kept active: `ifa fetch` can download it from its URL"
# http(s) is what `ifa fetch` downloads; any other scheme (ftp:, file:, s3:, data:) is named.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(//)?")
_OTHER_SCHEMES = {"file", "ftp", "ftps", "data", "s3", "gs", "sftp", "smb", "blob"}
_INTEGER = re.compile(r"^[+-]?\d+$")


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
    actions: dict[str, str] = field(default_factory=dict)  # problem -> what was done, with counts when mixed

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Batch:
    """Normalised rows of one import, before they reach the ledger (plain lists: at a
    million images, pandas frames of Python objects cost more than they give)."""

    images: list[list] = field(default_factory=list)  # [image_id, url, path]
    # (image_id, raw values): a list, or a dict's items() view (read twice, never copied)
    raw_labels: Iterable[tuple[str, Iterable]] = field(default_factory=list)
    set_aside: dict[str, str] = field(default_factory=dict)  # image_id -> reason
    # (image_id, problem, detail, action or None for the problem's usual action)
    issues: list[tuple[str | None, str, str, str | None]] = field(default_factory=list)

    def problem(self, image_id: str | None, problem: str, detail: str, action: str | None = None) -> None:
        self.issues.append((image_id, problem, detail, action))


# ---- public entry points -------------------------------------------------------------------
def import_imat(ws: Workspace, file: Path, split: str, images_dir: Path | None = None,
                on_error: str = "skip", progress: Progress = SILENT) -> ImportResult:
    """Import the challenge JSON (`images`: imageId|image_id + url; `annotations`:
    imageId|image_id + labelId|label_id). Ids may be strings or integers; test files have
    no annotations. `images_dir` maps each id to a local file `<id>.<any ext>`.

    Raises IfaError for unreadable or malformed JSON (with line and column), a bad split,
    or, with on_error="fail", any problem in the data."""
    _check_args(split, on_error)
    file = _check_file(Path(file))
    source = _ChallengeFile(file)
    batch = _Batch()
    # The file is staged chunk by chunk in TEMP tables of the ledger's connection (ledger/
    # staging.py), so no Python object is kept per image. Kept in Python instead (issue 17b),
    # the id -> position dict, urls and label codes grew ~0.3 GiB per million images. Peak RSS
    # / CPU of `ifa import imat --json`, before -> staged: 1M 0.37 GiB / 33.7 s -> 0.06 GiB /
    # 31.0 s; 5M 1.38 GiB / 193.7 s -> 0.06 GiB / 155.2 s (issue 17c's note).
    with ws.ledger.import_staging() as staged:
        with progress.task(f"reading {file.name}") as task:
            key_style, int_ids, odd_urls = _stage_images(source, batch, staged)
            values = _stage_annotations(source, batch, staged)
            task.advance()
        paths: dict[int, str] = {}  # position -> local file, only for images that have one
        if images_dir is not None:
            local = _index_folder(images_dir, batch)
            for at, iid, has_url in staged.images():
                path = _local_path(batch, iid, local, has_url=bool(has_url))
                if path is not None:
                    paths[at] = path
            staged.add_paths(paths.items())
        # A url that is not text (JSON's NaN, a number, an object): as _check_urls does.
        for at, iid, url in staged.rows(odd_urls):
            path = paths.get(at)
            batch.problem(iid, "malformed-entry", f"its url is {url}, not text; imported without a url",
                          "url dropped" if path else "url dropped, image set aside")
            staged.drop_url(at)
            if path is None:
                batch.set_aside[iid] = "import: no url and no local file"
        return _finish_staged(ws, batch, staged, values, file, split, on_error, progress, key_style, int_ids)


def import_csv(ws: Workspace, file: Path, split: str, image_col: str, labels_col: str, sep: str = "|",
               id_col: str | None = None, on_error: str = "skip", progress: Progress = SILENT) -> ImportResult:
    """Import a CSV with one row per image: `image_col` holds a file path (relative to the
    CSV's folder) or an http(s) URL, `labels_col` label names or ids joined by `sep`.
    The image id is `id_col` when given, else the file name without its extension.

    A row with more or fewer fields than the header is a counted problem naming its line
    (its columns cannot be trusted), never read shifted. Raises IfaError for a missing,
    empty or unreadable file, a folder, a missing column, or with on_error="fail" any problem."""
    _check_args(split, on_error)
    file = _check_file(Path(file))
    batch = _Batch()
    seen: dict[str, tuple[str, set, int]] = {}
    with progress.task(f"reading {file.name}") as task:
        for line, where, raw_labels, iid in _csv_rows(file, batch, image_col, labels_col, id_col):
            iid = iid.strip() if id_col else _stem(where)
            if not iid:
                batch.problem(None, "malformed-entry", f"line {line} has no image id")
                continue
            labels = {x.strip() for x in raw_labels.split(sep) if x.strip()} if sep else {raw_labels.strip()} - {""}
            if iid in seen:
                first, first_labels, first_line = seen[iid]
                if where != first:
                    batch.problem(iid, "conflicting-sources", f"line {line} lists the image again with {where or 'no file'}; "
                                  f"kept {first or 'no file'} from line {first_line}")
                if first_labels == labels:
                    if where == first:
                        batch.problem(iid, "duplicate-entry", f"line {line} repeats the image with the same labels")
                else:
                    batch.problem(iid, "conflicting-entries", f"line {line} lists the image again with different labels")
                    batch.set_aside[iid] = "import: listed twice with different labels"
                    first_labels.update(labels)
                continue
            seen[iid] = (where, labels, line)
            batch.images.append([iid, *_csv_source(batch, iid, where, file.parent, line)])
        task.advance()
    batch.raw_labels = [(iid, labels) for iid, (_, labels, _) in seen.items()]
    return _finish(ws, batch, "csv", file, split, on_error, progress)


def _csv_rows(file: Path, batch: _Batch, image_col: str, labels_col: str, id_col: str | None):
    """(line, image cell, labels cell, id cell) per data row, stripped of surrounding space.
    Ragged rows are reported and skipped; blank lines are skipped."""
    # csv.reader rather than pandas.read_csv: it gives each row's line number and its
    # true field count (pandas shifts a long row's columns into the index), and on 200k
    # rows it read 1.5 s against pandas' 4.7 s for read_csv plus the per-row loop (a
    # shared, busy 2-core machine; the ratio is what counts).
    try:
        fh = open(file, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise IfaError(f"{file} cannot be read: {exc.strerror}.") from None
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise IfaError(f"{file} is empty: expected a header row naming the columns "
                               f"{image_col!r} and {labels_col!r}, then one row per image.")
            header = [h.strip() for h in header]
            for col in (image_col, labels_col, id_col):
                if col is not None and col not in header:
                    raise IfaError(f"{file} has no column {col!r}; its columns are {', '.join(map(repr, header))}.")
            at = [header.index(image_col), header.index(labels_col), header.index(id_col) if id_col else None]
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(header):
                    batch.problem(None, "ragged-row", f"line {reader.line_num} has {len(row)} fields, the header "
                                  f"{len(header)}: {_clip(','.join(row))}")
                    continue
                yield (reader.line_num, row[at[0]].strip(), row[at[1]],
                       row[at[2]] if at[2] is not None else "")
        except UnicodeDecodeError:
            raise IfaError(f"{file} is not UTF-8 text; save the CSV as UTF-8 and import it again.") from None
        except csv.Error as exc:
            raise IfaError(f"{file} is not a readable CSV at line {reader.line_num}: {exc}.") from None


def _csv_source(batch: _Batch, iid: str, where: str, base: Path, line: int) -> tuple[str | None, str | None]:
    """(url, path) of one CSV row's image cell, reporting a cell that names no usable file."""
    if _is_url(where):
        return where, None
    if not where:
        return None, None
    candidate = base / where
    url = _SCHEME.match(where)
    if url and not os.path.lexists(candidate) and (url.group(2) or url.group(1).lower() in _OTHER_SCHEMES):
        scheme = url.group(1).lower()
        batch.problem(iid, "unsupported-url", f"line {line}: unsupported URL scheme {scheme!r} in {where}; "
                      "ifa downloads http and https URLs, so give a local path or an http(s) URL")
        batch.set_aside[iid] = f"import: unsupported URL scheme {scheme}"
        return where, None
    path, why = _usable_file(candidate)
    if why:
        batch.problem(iid, "missing-file", f"line {line}: {why}")
        batch.set_aside[iid] = "import: image file missing"
    return None, str(path)


def _usable_file(path: Path) -> tuple[Path, str]:
    """(absolute path, "" when it is a readable regular file or else what is wrong). A name
    spelled in the other Unicode normal form (NFC/NFD: macOS writes NFD) is found too."""
    path = Path(os.path.abspath(path))
    if not os.path.lexists(path):
        for form in ("NFC", "NFD"):
            other = Path(unicodedata.normalize(form, str(path)))
            if os.path.lexists(other):
                path = other
                break
        else:
            return path, f"{path} does not exist"
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return path, f"{path} is a symlink loop"
        if os.path.islink(path):
            return path, f"{path} is a symlink to {os.readlink(path)}, which does not exist"
        return path, f"{path} cannot be read: {exc.strerror}"
    if os.path.isdir(path):
        return path, f"{path} is a folder, not an image file"
    if not os.path.isfile(path):
        return path, f"{path} is not a regular file"
    return Path(os.path.realpath(path)), ""


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def import_folder(ws: Workspace, folder: Path, split: str, on_error: str = "skip",
                  progress: Progress = SILENT) -> ImportResult:
    """Import every image file under `folder` (recursively) without labels; the id is the
    file name without its extension. Raises IfaError when the folder does not exist."""
    _check_args(split, on_error)
    folder = _check_folder(Path(folder), "")
    batch = _Batch()
    seen: dict[str, str] = {}
    for path in sorted(_walk_images(folder, batch)):
        iid = _stem(path)
        if iid in seen:
            batch.problem(iid, "conflicting-entries", f"{path} and {seen[iid]} share the id")
            batch.set_aside[iid] = "import: two files share the id"
            continue
        seen[iid] = path
        batch.images.append([iid, None, os.path.realpath(path)])
    return _finish(ws, batch, "folder", folder, split, on_error, progress)


# ---- shared steps --------------------------------------------------------------------------
def _finish(ws: Workspace, batch: _Batch, fmt: str, source: Path, split: str, on_error: str,
            progress: Progress) -> ImportResult:
    """Check, resolve and record the rows of a CSV or folder import (lists in `batch`)."""
    _check_urls(batch)
    ledger = ws.ledger
    existing = ledger.image_splits(row[0] for row in batch.images) if batch.images else {}
    elsewhere = {i: s for i, s in existing.items() if s != split}
    for iid in sorted(elsewhere):
        batch.problem(iid, "other-split", f"already imported into {elsewhere[iid]}")
    # A generator, read once by record_import 100k rows at a time (ids are unique in
    # batch.images, so every id of `elsewhere` is one row fewer).
    set_aside = batch.set_aside
    images = ((iid, url, path, "set_aside" if iid in set_aside else "active", set_aside.get(iid))
              for iid, url, path in batch.images if iid not in elsewhere)
    n_images = len(batch.images) - len(elsewhere)
    labels, quarantined = _resolve_labels(batch, ws.taxonomy, skip=elsewhere)
    already = {i for i, s in existing.items() if s == split}

    def record(**args) -> dict:
        return ledger.record_import(images=images, labels=labels, **args)

    return _conclude(ws, batch, fmt, source, split, on_error, progress, n_images, len(batch.images), already,
                     quarantined, record)


def _finish_staged(ws: Workspace, batch: _Batch, staged: ImportStaging, values: list, source: Path, split: str, on_error: str,
                   progress: Progress, key_style: str, int_ids: bool) -> ImportResult:
    """_finish for a challenge file staged in `staged` (ledger/staging.py): the same checks,
    problems in the same order, and the same record, with the whole-file work done in SQL."""
    images_read = staged.images_read
    elsewhere = dict(staged.splits(split, same=False))
    for iid in sorted(elsewhere):
        batch.problem(iid, "other-split", f"already imported into {elsewhere[iid]}")
    staged.remove(list(elsewhere))  # skipped: neither the image nor its labels are written
    quarantined = _resolve_staged_labels(batch, staged, values, ws.taxonomy)
    asked = list(dict.fromkeys(iid for iid, *_ in batch.issues if iid is not None))
    already = {iid for iid, _ in staged.splits(split, same=True, image_ids=asked)}
    staged.set_aside({iid: reason for iid, reason in batch.set_aside.items() if iid not in elsewhere})

    def record(**args) -> dict:
        return ws.ledger.record_import(staging=staged, **args)

    return _conclude(ws, batch, "imat", source, split, on_error, progress, staged.offered, images_read, already,
                     quarantined, record, key_style=key_style, int_ids=int_ids)


def _conclude(ws: Workspace, batch: _Batch, fmt: str, source: Path, split: str, on_error: str, progress: Progress,
              n_images: int, images_read: int, already: set, quarantined: list, record,
              key_style: str | None = None, int_ids: bool = False) -> ImportResult:
    """Count and word the problems, refuse (on_error="fail") or record through `record`
    (record_import's keywords but images and labels), then write the report."""
    # Problems with images this split already holds were handled by the import that added
    # them: a rerun neither records nor reports them again (it did nothing about them).
    issues = [(iid, problem, detail, (action or PROBLEMS[problem]) if on_error == "skip" else "import refused")
              for iid, problem, detail, action in batch.issues if iid not in already]
    counts = dict(Counter(problem for _, problem, _, _ in issues))
    taken: dict[str, Counter] = {}  # problem -> action -> how often (a problem's action may vary per image)
    for _, problem, _, action in issues:
        taken.setdefault(problem, Counter())[action] += 1
    actions = {p: next(iter(c)) if len(c) == 1 else ", ".join(f"{n:,} {a}" for a, n in sorted(c.items()))
               for p, c in taken.items()}
    serious = {k: v for k, v in counts.items() if k not in HARMLESS}
    if on_error == "fail" and serious:
        report = _write_report(ws, issues)  # nothing is written to the ledger: the report is all there is
        listed = ", ".join(f"{v} {k}" for k, v in sorted(serious.items()))
        raise IfaError(f"Import refused, nothing was written: {listed}. Each is listed in {report}; "
                       "fix the input or rerun with --on-error skip to quarantine them.")
    with progress.task(f"writing {n_images:,} images to the ledger") as task:
        written = record(
            format=fmt, source=str(Path(source).resolve()), split=split, quarantined=quarantined, issues=issues,
            key_style=key_style, int_ids=int_ids, summary={"problems": counts},
        )
        task.advance()
    nothing_new = written["import_id"] is None
    # The report is written after the commit (a kill before it leaves no report of an import
    # that never happened) and atomically; `ifa history --csv` rebuilds it from the ledger.
    report = "" if nothing_new else str(_write_report(ws, issues))
    return ImportResult(
        format=fmt, source=str(source), split=split, images_read=images_read,
        images_added=written["images_added"], images_existing=written["images_existing"],
        labels_added=written["labels_added"], set_aside=written["set_aside"],
        quarantined_labels=written["quarantined_added"], problems={} if nothing_new else counts, report=report,
        import_id=written["import_id"], nothing_new=nothing_new, actions={} if nothing_new else actions,
    )


def _write_report(ws: Workspace, issues: list[tuple]) -> Path:
    # The csv module (reports.open_csv), not pandas: +85 MB RSS on top of the import's peak.
    path = ws.report_path("import", "csv")
    with reports.open_csv(path) as writer:
        writer.writerow(REPORT_COLUMNS)
        writer.writerows(issues)
    return Path(path)


def _check_urls(batch: _Batch) -> None:
    """A url that is not text (JSON's NaN, a number, an object) is reported and dropped:
    the image keeps its local file, if any, or is set aside."""
    for row in batch.images:
        iid, url, path = row
        if url is not None and not isinstance(url, str):
            batch.problem(iid, "malformed-entry", f"its url is {json.dumps(url)}, not text; imported without a url",
                          "url dropped" if path else "url dropped, image set aside")
            row[1] = None
            if path is None:
                batch.set_aside[iid] = "import: no url and no local file"


def _resolve_labels(batch: _Batch, taxonomy: Taxonomy, skip) -> tuple[Iterator, list]:
    """Map raw label values to taxonomy ids: an iterator of (image_id, sorted ids) for the
    known ones (made as it is read, so the whole list is never held) and a list of
    (image_id, id or raw text, reason) for the unknown ones, which are quarantined and
    reported now. An integer, or text that is one ('-3' from a CSV as -3 from JSON), is an
    id; other text is a name. Unknown names and ids too large for SQLite are kept as their
    raw text."""
    cache: dict[object, int | tuple[str, int | str]] = {}
    quarantined = []
    for iid, raws in batch.raw_labels:
        if iid in skip:
            continue
        for raw in raws:
            hit = cache.get(raw)
            if hit is None:
                hit = cache[raw] = _resolve_label(raw, taxonomy)
            if not isinstance(hit, int):
                message, kept = hit
                batch.problem(iid, "unknown-label", message)
                quarantined.append((iid, kept, "unknown-label"))

    def known() -> Iterator[tuple[str, list[int]]]:
        for iid, raws in batch.raw_labels:
            if iid not in skip:
                ids = {hit for raw in raws if isinstance(hit := cache[raw], int)}
                if ids:
                    yield iid, sorted(ids)

    return known(), quarantined


def _resolve_staged_labels(batch: _Batch, staged: ImportStaging, values: list, taxonomy: Taxonomy) -> list:
    """_resolve_labels for staged annotations: each distinct raw value (`values`, by code) is
    resolved once; known codes are staged as label ids, and the unknown ones are reported and
    returned as quarantined (image_id, id or raw text, reason), in the order images were first
    annotated and each image's values in their order, as _resolve_labels does."""
    known: dict[int, int] = {}
    unknown: dict[int, tuple[str, int | str]] = {}
    for code, raw in enumerate(values):
        hit = _resolve_label(raw, taxonomy)
        if isinstance(hit, int):
            known[code] = hit
        else:
            unknown[code] = hit
    staged.set_label_ids(known)
    quarantined = []
    if unknown:
        for iid, codes in staged.annotated_with(list(unknown)):
            for code in codes:
                hit = unknown.get(code)
                if hit is not None:
                    message, kept = hit
                    batch.problem(iid, "unknown-label", message)
                    quarantined.append((iid, kept, "unknown-label"))
    return quarantined


# Entries staged per SQL statement. A chunk of annotations holds its entries' label strings as
# ijson made them: at 1M images, 100k-entry chunks peaked at 249 MB, 20k at 129 MB (64 MB temp
# cache both), for the same CPU (34.2 s vs 33.7 s). A module constant so tests can stage in
# tiny chunks and cross chunk boundaries.
STAGE_CHUNK = 20_000


def _stage_images(source: _ChallengeFile, batch: _Batch, staged: ImportStaging) -> tuple[str, bool, list[int]]:
    """Stage the images list in `staged`, chunk by chunk: returns the key style (camel/snake),
    whether every id was an integer, and the positions of first entries whose url is not text.
    Entries without an id and repeated ids go to `batch`, in file order."""
    camel = snake = 0
    int_ids = True
    odd_urls: list[int] = []
    pending: list[tuple[int, str | None, object]] = []  # (n, id or None when it has none, url)

    def flush(entries: int) -> None:
        rows = []
        for n, iid, url in pending:
            if iid is not None:
                if url is None:
                    rows.append([n, iid, None, 0, 0])
                elif isinstance(url, str):
                    rows.append([n, iid, url, 1, int(bool(url))])
                else:
                    rows.append([n, iid, json.dumps(url), 2, int(bool(url))])
        repeats = staged.add_images(rows, entries)
        for n, iid, url in pending:
            if iid is None:
                batch.problem(None, "malformed-entry", f"images[{n}] has no imageId/image_id")
            elif n in repeats:
                text, kind = staged.first_url(iid)
                first = json.loads(text) if kind == 2 else text
                if url and url != first:
                    batch.problem(iid, "conflicting-sources", f"images[{n}] repeats the image id with url {url}; "
                                  f"kept the first entry's url {first}")
                else:
                    batch.problem(iid, "duplicate-entry", f"images[{n}] repeats an image id")
            elif url is not None and not isinstance(url, str):
                odd_urls.append(n)
        pending.clear()

    n = -1
    for n, entry in enumerate(source.entries("images")):
        iid = _entry_id(entry)
        if iid is None:
            pending.append((n, None, None))
        else:
            camel += "imageId" in entry
            snake += "image_id" in entry
            int_ids &= isinstance(iid, int) and not isinstance(iid, bool)
            url = entry.get("url")
            if isinstance(url, list):  # some dumps give a list of mirrors; the first is canonical
                url = url[0] if url else None
            pending.append((n, str(iid), url))
        if len(pending) >= STAGE_CHUNK:
            flush(n + 1)
    flush(n + 1)
    return "snake" if snake > camel else "camel", int_ids and staged.images_read > 0, odd_urls


class _LabelCodes:
    """A code per distinct raw label value (as _json_label gives it): `values[code]` is the
    value. Staged annotations hold codes, so each value is one Python object however often
    it is used."""

    def __init__(self) -> None:
        self.values: list = []
        self.codes: dict[object, int] = {}  # raw value -> code
        self.keyed: dict[tuple[type, object], int] = {}  # (type, JSON value) -> code

    def code(self, x) -> int:
        """The code of one label value from JSON; TypeError when it cannot be one (a list)."""
        key = (type(x), x)
        code = self.keyed.get(key)
        if code is None:
            value = _json_label(x)
            code = self.codes.get(value)
            if code is None:
                code = self.codes[value] = len(self.values)
                self.values.append(value)
            self.keyed[key] = code
        return code


def _stage_annotations(source: _ChallengeFile, batch: _Batch, staged: ImportStaging) -> list:
    """Stage each annotated image's distinct raw label values (as codes) in `staged`, chunk by
    chunk; returns the values by code. Malformed entries, labels of unknown images, repeats
    (merged) and conflicting repeats (labels united, image set aside) go to `batch`, in file
    order."""
    labels = _LabelCodes()
    code = labels.code
    annotated = bytearray(staged.entries)  # image position -> 1 once annotated (1 byte an image)
    pending: list[tuple[int, str | None, list | None]] = []  # (n, id, raw labels; None when malformed)

    def flush() -> None:
        at_of = iter(staged.positions([iid for _, iid, raw in pending if raw is not None]))
        rows: list[list] = []  # [position, n, codes] of images first annotated in this chunk
        row_of: dict[int, list] = {}
        for n, iid, raw in pending:
            if raw is None:
                batch.problem(iid, "malformed-entry", f"annotations[{n}] needs imageId/image_id and a labelId/label_id list")
                continue
            at = next(at_of)
            if at is None:
                batch.problem(iid, "annotation-without-image", f"annotations[{n}] names an image the images list lacks")
                continue
            try:
                codes = tuple(dict.fromkeys(code(x) for x in raw))
            except TypeError:  # a list or object where a label id should be
                batch.problem(iid, "malformed-entry", f"annotations[{n}] has a label that is not an id")
                continue
            if annotated[at]:
                row = row_of.get(at)
                before = tuple(row[2]) if row is not None else staged.codes(at)
                if set(codes) == set(before):
                    batch.problem(iid, "duplicate-entry", f"annotations[{n}] repeats the image with the same labels")
                else:
                    batch.problem(iid, "conflicting-entries", f"annotations[{n}] lists the image again with different labels")
                    batch.set_aside[iid] = "import: listed twice with different labels"
                    united = list(dict.fromkeys(before + codes))
                    if row is not None:
                        row[2] = united
                    else:
                        staged.set_codes(at, united)
                continue
            annotated[at] = 1
            row_of[at] = row = [at, n, list(codes)]
            rows.append(row)
        staged.add_annotations(rows)
        pending.clear()

    for n, entry in enumerate(source.entries("annotations")):
        iid = _entry_id(entry)
        raw = entry.get("labelId", entry.get("label_id")) if isinstance(entry, dict) else None
        if iid is None or not isinstance(raw, list):
            pending.append((n, None if iid is None else str(iid), None))
        else:
            pending.append((n, str(iid), raw))
        if len(pending) >= STAGE_CHUNK:
            flush()
    flush()
    return labels.values


def _json_label(value):
    """A label value from JSON as ids and names are compared: true, null and 1.5 as their
    JSON text, so a set of labels never merges true with 1 or 1.0 (they hash alike)."""
    return json.dumps(value) if isinstance(value, (bool, float)) or value is None else value


def _resolve_label(raw, taxonomy: Taxonomy) -> int | tuple[str, int | str]:
    """A label id, or (what is wrong, the value to keep quarantined)."""
    if isinstance(raw, str) and _INTEGER.match(raw.strip()):
        raw = int(raw.strip())
    if isinstance(raw, int):
        if not storable_id(raw):
            return f"Unknown label id {raw}: outside the range of label ids; kept as text.", str(raw)
        try:
            return taxonomy.by_id(raw).id
        except UnknownLabel as exc:
            return str(exc), raw
    name = unicodedata.normalize("NFC", str(raw).strip())
    try:
        return taxonomy.by_name(name).id
    except UnknownLabel as exc:
        return str(exc), name


def _check_args(split: str, on_error: str) -> None:
    check_splits(split)
    if on_error not in ON_ERROR:
        raise IfaError(f"--on-error must be 'skip' or 'fail', not {on_error!r}.")


def _check_folder(folder: Path, option: str) -> Path:
    if not folder.exists():
        raise IfaError(f"{option}{folder} does not exist.")
    if not folder.is_dir():
        raise IfaError(f"{option}{folder} is a file, not a folder of images.")
    return folder


def _check_file(file: Path) -> Path:
    """`file` when it is a file that exists; an IfaError saying what it is instead."""
    if not file.exists():
        if file.is_symlink():
            raise IfaError(f"{file} is a symlink to nothing (or a symlink loop); give the file itself.")
        raise IfaError(f"{file} does not exist.")
    if file.is_dir():
        raise IfaError(f"{file} is a folder; give the file inside it (ifa import folder imports a folder of images).")
    return file


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


def _index_folder(folder: Path, batch: _Batch) -> dict[str, str]:
    folder = _check_folder(Path(folder), "--images ")
    index: dict[str, str] = {}
    for path in sorted(_walk_images(folder, batch)):
        index.setdefault(_stem(path), os.path.realpath(path))
    return index


def _local_path(batch: _Batch, iid: str, local: dict[str, str] | None, has_url: bool) -> str | None:
    if local is None:
        return None
    path = local.get(unicodedata.normalize("NFC", iid))
    if path is None:
        if has_url:  # with a URL, `ifa fetch` can still get it
            batch.problem(iid, "missing-file", "no file named after the image id in the --images folder", KEPT_ACTIVE)
        else:
            batch.problem(iid, "missing-file", "no file named after the image id in the --images folder")
            batch.set_aside[iid] = "import: image file missing"
    return path


def _walk_images(folder: Path, batch: _Batch):
    """Image files under `folder`; a symlink loop or a link to nothing is reported and
    skipped (os.walk does not follow linked folders, so a looping folder link is never entered)."""
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                path = os.path.join(dirpath, name)
                _, why = _usable_file(Path(path))
                if why:
                    batch.problem(_stem(path), "unreadable-path", why)
                    continue
                yield path


def _stem(where: str) -> str:
    """The id a path or URL gives: its file name without extension, in Unicode NFC, so
    a name spelled NFD (as macOS file systems store it) is the same id."""
    return unicodedata.normalize("NFC", Path(urlparse(where).path if _is_url(where) else where).stem)


def _is_url(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))  # schemes are case-insensitive (RFC 3986)
