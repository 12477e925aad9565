"""`ifa import csv`: one row per image, its file or URL in one column, labels in one or more."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ....errors import IfaError
from ....progress import SILENT, Progress
from ...ledger import SPLITS
from ...workspace import Workspace
from .core import (DIFFERENT_LABELS, Entry, ImportResult, Issue, Issues, LabelResolver, Source, Staged, Stager,
                   check_args, clip, different_labels, finish, same_labels, text_problem)
from .files import OTHER_SCHEMES, SCHEME, check_file, is_url, link_outside, stem, usable_file


@dataclass(frozen=True)
class Columns:
    """The columns an import reads, by name: the image's file or URL, the label columns (each
    with the group its values are looked up in, or None), an id and a split column."""

    image: str
    labels: tuple[tuple[str, str | None], ...]
    id: str | None = None
    split: str | None = None

    @property
    def names(self) -> list[str]:
        return [c for c in (self.image, *(c for c, _ in self.labels), self.id, self.split) if c is not None]


def import_csv(ws: Workspace, file: Path, split: str, image_col: str, labels_col: str | Sequence[str], sep: str = "|",
               id_col: str | None = None, on_error: str = "skip", progress: Progress = SILENT, *,
               split_col: str | None = None, label_map: Path | None = None,
               group_of: dict[str, str] | None = None) -> ImportResult:
    """Import a CSV with one row per image: `image_col` holds a file path (relative to the
    CSV's folder) or an http(s) URL; each of `labels_col` (a name or a list of names) label
    names or ids joined by `sep`. The image id is `id_col` when given, else the file name
    without its extension. `split_col` names each row's split (empty: `split`); `label_map`
    is a CSV (group, source_value, label) that maps the source's own values to taxonomy
    labels; `group_of` maps a label column to the one group its values are looked up in.

    A row with more or fewer fields than the header is a counted problem naming its line
    (its columns cannot be trusted), never read shifted. Raises IfaError for a missing,
    empty or unreadable file, a folder, a missing column, a bad map or group, or with
    on_error="fail" any problem."""
    check_args(split, on_error)
    file = check_file(Path(file))
    names = [labels_col] if isinstance(labels_col, str) else list(labels_col)
    groups = dict(group_of or {})
    for col, group in groups.items():
        ws.taxonomy.group(group)  # IfaError naming the groups
        if col not in names:
            raise IfaError(f"--group-of names {col!r}, which is not a --labels-col ({', '.join(map(repr, names))}).")
    columns = Columns(image_col, tuple((c, groups.get(c)) for c in names), id_col, split_col)
    resolver = LabelResolver(ws.taxonomy, read_label_map(Path(label_map), ws.taxonomy) if label_map else None)
    issues = Issues()
    with ws.ledger.import_staging() as staged:
        with progress.task(f"reading {file.name}") as task:
            stager = Stager(staged, issues, _repeat).run(_entries(file, columns, sep))
            task.advance()
        return finish(ws, Source("csv", file, split, on_error), issues, staged, stager.codes.values, progress, resolver)


def read_label_map(path: Path, taxonomy) -> dict[tuple[str, str], str]:
    """(group, source value) -> taxonomy label name or id, from a CSV with the columns group,
    source_value and label (an `imat_` prefix on group and label is accepted). Raises IfaError
    for an unreadable file, a missing column, an unknown group or a value mapped twice."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IfaError(f"--map {path} cannot be read as a UTF-8 CSV: {exc}.") from None
    header = [h.strip().removeprefix("imat_") for h in (rows[0] if rows else [])]
    if not {"group", "source_value", "label"} <= set(header):
        raise IfaError(f"--map {path} needs the columns group, source_value and label; it has {', '.join(header) or 'none'}.")
    at = [header.index(c) for c in ("group", "source_value", "label")]
    mapping: dict[tuple[str, str], str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise IfaError(f"--map {path}, line {line}: {len(row)} fields, the header {len(header)}.")
        group, value, label = (row[i].strip() for i in at)
        taxonomy.group(group)  # IfaError naming the groups
        if mapping.setdefault((group, value), label) != label:
            raise IfaError(f"--map {path}, line {line}: {group} value {value!r} is mapped twice.")
    return mapping


def _entries(file: Path, columns: Columns, sep: str) -> Iterator[Entry | Issue]:
    """An Entry per data row (an Issue for a row without an id or with a bad split)."""
    for row in _rows(file, columns):
        if isinstance(row, Issue):
            yield row
            continue
        line, cells = row
        where = cells[columns.image].strip()
        iid = cells[columns.id].strip() if columns.id else stem(where)
        if not iid:
            yield Issue(None, "malformed-entry", f"line {line} has no image id")
            continue
        why = text_problem("id", iid)
        if why:
            yield Issue(None, "bad-id", f"line {line}: {why}")
            continue
        why = text_problem("url", where) if is_url(where) else None
        if why:
            yield Issue(iid, "bad-url", f"line {line}: {why}")
            continue
        split = cells[columns.split].strip().lower() if columns.split else ""
        if split and split not in SPLITS:
            yield Issue(iid, "malformed-entry", f"line {line}: split {clip(split)!r} is not one of {', '.join(SPLITS)}")
            continue
        labels = tuple(dict.fromkeys(
            (group, x) if group else x for col, group in columns.labels for x in _split(cells[col], sep)))
        url, path, problems, set_aside = _source(iid, where, file.parent, line)
        yield Entry(line, iid, url, path, where, labels, split or None, problems, set_aside)


def _split(cell: str, sep: str) -> list[str]:
    if not sep:
        return [cell.strip()] if cell.strip() else []
    return [x.strip() for x in cell.split(sep) if x.strip()]


def _repeat(entry: Entry, first: Staged, same: bool | None) -> tuple[list[Issue], str | None]:
    line, where, iid = entry.n, entry.where, entry.image_id
    found = []
    if where != first.where:
        found.append(Issue(iid, "conflicting-sources", f"line {line} lists the image again with {where or 'no file'}; "
                           f"kept {first.where or 'no file'} from line {first.n}"))
    if same:
        if where == first.where:
            found.append(same_labels(iid, f"line {line}"))
        return found, None
    found.append(different_labels(iid, f"line {line}"))
    return found, DIFFERENT_LABELS


def _rows(file: Path, columns: Columns) -> Iterator[tuple[int, dict[str, str]] | Issue]:
    """(line, {column: cell}) per data row. Ragged rows are yielded as Issues; blank lines
    are skipped."""
    # csv.reader rather than pandas.read_csv: it gives each row's line number and its
    # true field count (pandas shifts a long row's columns into the index), and reads
    # 3x faster than read_csv plus the per-row loop (benchmarks/import_scale.py).
    try:
        fh = open(file, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise IfaError(f"{file} cannot be read: {exc.strerror}.") from None
    with fh:
        reader = csv.reader(fh)
        try:
            at = _header(file, next(reader, None), columns)
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != at["*"]:
                    yield Issue(None, "ragged-row", f"line {reader.line_num} has {len(row)} fields, the header "
                                f"{at['*']}: {clip(','.join(row))}")
                    continue
                yield reader.line_num, {name: row[i] for name, i in at.items() if name != "*"}
        except UnicodeDecodeError:
            raise IfaError(f"{file} is not UTF-8 text; save the CSV as UTF-8 and import it again.") from None
        except csv.Error as exc:
            raise IfaError(f"{file} is not a readable CSV at line {reader.line_num}: {exc}.") from None


def _header(file: Path, header: list[str] | None, columns: Columns) -> dict[str, int]:
    """column name -> its index, and "*" -> the number of fields; IfaError for a missing column."""
    if header is None or not any(h.strip() for h in header):
        wanted = " and ".join(repr(c) for c in (columns.image, *(c for c, _ in columns.labels)))
        raise IfaError(f"{file} is empty: expected a header row naming the columns "
                       f"{wanted}, then one row per image.")
    header = [h.strip() for h in header]
    for col in columns.names:
        if col not in header:
            raise IfaError(f"{file} has no column {col!r}; its columns are {', '.join(map(repr, header))}.")
    return {**{col: header.index(col) for col in columns.names}, "*": len(header)}


def _source(iid: str, where: str, base: Path, line: int) -> tuple[str | None, str | None, tuple[Issue, ...], str | None]:
    """(url, path, problems, why set aside) of one CSV row's image cell."""
    if is_url(where):
        return where, None, (), None
    if not where:
        return None, None, (), None
    candidate = base / where
    url = SCHEME.match(where)
    if url and not os.path.lexists(candidate) and (url.group(2) or url.group(1).lower() in OTHER_SCHEMES):
        scheme = url.group(1).lower()
        issue = Issue(iid, "unsupported-url", f"line {line}: unsupported URL scheme {scheme!r} in {where}; "
                      "ifa downloads http and https URLs, so give a local path or an http(s) URL")
        return where, None, (issue,), f"import: unsupported URL scheme {scheme}"
    path, why = usable_file(candidate)
    if why:
        return None, str(path), (Issue(iid, "missing-file", f"line {line}: {why}"),), "import: image file missing"
    outside = link_outside(where, path, base)
    if outside:
        issue = Issue(iid, outside.problem, f"line {line}: {outside.detail}", "image set aside, no path stored")
        return None, None, (issue,), "import: its file is outside the CSV's folder"
    return None, str(path), (), None
