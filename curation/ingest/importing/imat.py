"""`ifa import imat`: the challenge JSON (`images` with urls, `annotations` with label ids)."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ....errors import IfaError
from ....progress import SILENT, Progress
from ...workspace import Workspace
from . import core
from .core import (DIFFERENT_LABELS, KEPT_ACTIVE, LIMITS, Entry, ImportResult, Issue, Issues, LabelCodes, Source,
                   Staged, Stager, check_args, different_labels, finish, same_labels, text_problem)
from .files import check_file, check_folder, stem, walk_images

if TYPE_CHECKING:
    from ...ledger.staging import ImportStaging


def import_imat(ws: Workspace, file: Path, split: str, images_dir: Path | None = None,
                on_error: str = "skip", progress: Progress = SILENT) -> ImportResult:
    """Import the challenge JSON (`images`: imageId|image_id + url; `annotations`:
    imageId|image_id + labelId|label_id). Ids may be strings or integers; test files have
    no annotations. `images_dir` maps each id to a local file `<id>.<any ext>`.

    Raises IfaError for unreadable or malformed JSON (with line and column), a bad split,
    or, with on_error="fail", any problem in the data."""
    check_args(split, on_error)
    file = check_file(Path(file))
    source = _ChallengeFile(file)
    issues = Issues()
    keys = _Keys()
    with _long_numbers(), ws.ledger.import_staging() as staged:
        with progress.task(f"reading {file.name}") as task:
            stager = Stager(staged, issues, _repeat).run(_image_entries(source, keys))
            values = _stage_annotations(source, issues, staged)
            task.advance()
        paths = _stage_paths(images_dir, issues, staged) if images_dir is not None else {}
        _drop_odd_urls(stager.odd_urls, paths, issues, staged)
        key_style = "snake" if keys.snake > keys.camel else "camel"
        int_ids = keys.int_ids and staged.images_read > 0
        return finish(ws, Source("imat", file, split, on_error, key_style, int_ids), issues, staged, values, progress)


@dataclass
class _Keys:
    """How the file spells its ids: counts of camelCase and snake_case keys, all ids integers."""

    camel: int = 0
    snake: int = 0
    int_ids: bool = True


def _image_entries(source: "_ChallengeFile", keys: _Keys) -> Iterator[Entry | Issue]:
    for n, entry in enumerate(source.entries("images")):
        raw = _entry_id(entry)
        if raw is None:
            yield Issue(None, "malformed-entry", f"images[{n}] has no imageId/image_id")
            continue
        iid = str(raw)
        if len(iid) > _ID_MOST or "\x00" in iid:  # inline: the common case costs no call
            yield Issue(None, "bad-id", f"images[{n}]: {text_problem('id', iid)}")
            continue
        keys.camel += "imageId" in entry
        keys.snake += "image_id" in entry
        keys.int_ids &= isinstance(raw, int) and not isinstance(raw, bool)
        url = entry.get("url")
        if isinstance(url, list):  # some dumps give a list of mirrors; the first is canonical
            url = url[0] if url else None
        if isinstance(url, str) and (len(url) > _URL_MOST or "\x00" in url):
            yield Issue(iid, "bad-url", f"images[{n}]: {text_problem('url', url)}")
            continue
        yield Entry(n, iid, url)


def _repeat(entry: Entry, first: Staged, same: bool | None) -> tuple[list[Issue], str | None]:
    url, kept = entry.url, first.url_value
    if url and url != kept:
        return [Issue(entry.image_id, "conflicting-sources", f"images[{entry.n}] repeats the image id with url {url}; "
                      f"kept the first entry's url {kept}")], None
    return [Issue(entry.image_id, "duplicate-entry", f"images[{entry.n}] repeats an image id")], None


def _stage_annotations(source: "_ChallengeFile", issues: Issues, staged: ImportStaging) -> list:
    """Stage each annotated image's distinct raw label values (as codes) in `staged`, chunk by
    chunk; returns the values by code. Malformed entries, labels of unknown images, repeats
    (merged) and conflicting repeats (labels united, image set aside) go to `issues`, in file
    order."""
    labels = LabelCodes()
    annotated = bytearray(staged.entries)  # image position -> 1 once annotated (1 byte an image)
    pending: list = []  # (n, id, raw labels; None when malformed), or an Issue
    for n, entry in enumerate(source.entries("annotations")):
        iid = _entry_id(entry)
        raw = entry.get("labelId", entry.get("label_id")) if isinstance(entry, dict) else None
        iid = None if iid is None else str(iid)
        if iid is not None and (len(iid) > _ID_MOST or "\x00" in iid):
            pending.append(Issue(None, "bad-id", f"annotations[{n}]: {text_problem('id', iid)}"))
        elif iid is None or not isinstance(raw, list):
            pending.append((n, iid, None))
        else:
            pending.append((n, iid, raw))
        if len(pending) >= core.STAGE_CHUNK:
            _flush_annotations(pending, labels, annotated, issues, staged)
    _flush_annotations(pending, labels, annotated, issues, staged)
    return labels.values


def _flush_annotations(pending: list, labels: LabelCodes, annotated: bytearray, issues: Issues,
                       staged: ImportStaging) -> None:
    entries = [item for item in pending if not isinstance(item, Issue)]
    at_of = iter(staged.positions([iid for _, iid, raw in entries if raw is not None]))
    rows: list[list] = []  # [position, n, codes] of images first annotated in this chunk
    row_of: dict[int, list] = {}
    for item in pending:
        if isinstance(item, Issue):
            issues.found.append(item)
            continue
        n, iid, raw = item
        if raw is None:
            issues.add(iid, "malformed-entry", f"annotations[{n}] needs imageId/image_id and a labelId/label_id list")
            continue
        at = next(at_of)
        if at is None:
            issues.add(iid, "annotation-without-image", f"annotations[{n}] names an image the images list lacks")
            continue
        try:
            codes = labels.of(raw)
        except TypeError:  # a list or object where a label id should be
            issues.add(iid, "malformed-entry", f"annotations[{n}] has a label that is not an id")
            continue
        if not annotated[at]:
            annotated[at] = 1
            row_of[at] = row = [at, n, list(codes)]
            rows.append(row)
            continue
        row = row_of.get(at)
        before = tuple(row[2]) if row is not None else staged.codes(at)
        if set(codes) == set(before):
            issues.found.append(same_labels(iid, f"annotations[{n}]"))
            continue
        issues.found.append(different_labels(iid, f"annotations[{n}]"))
        issues.set_aside[iid] = DIFFERENT_LABELS
        united = list(dict.fromkeys(before + codes))
        if row is not None:
            row[2] = united
        else:
            staged.set_codes(at, united)
    staged.add_annotations(rows)
    pending.clear()


def _stage_paths(images_dir: Path, issues: Issues, staged: ImportStaging) -> dict[int, str]:
    """Stage the local file of each image that has one in `images_dir`; returns them by position.
    An image without a file is reported (set aside when it has no url either)."""
    local = _index_folder(images_dir, issues)
    paths: dict[int, str] = {}
    for at, iid, has_url in staged.images():
        path = local.get(unicodedata.normalize("NFC", iid))
        if path is not None:
            paths[at] = path
        elif has_url:  # with a URL, `ifa fetch` can still get it
            issues.add(iid, "missing-file", "no file named after the image id in the --images folder", KEPT_ACTIVE)
        else:
            issues.add(iid, "missing-file", "no file named after the image id in the --images folder")
            issues.set_aside[iid] = "import: image file missing"
    staged.add_paths(paths.items())
    return paths


def _drop_odd_urls(odd_urls: list[int], paths: dict[int, str], issues: Issues, staged: ImportStaging) -> None:
    """A url that is not text (JSON's NaN, a number, an object) is reported and dropped:
    the image keeps its local file, if any, or is set aside."""
    for at, iid, url in staged.rows(odd_urls):
        path = paths.get(at)
        issues.add(iid, "malformed-entry", f"its url is {url}, not text; imported without a url",
                   "url dropped" if path else "url dropped, image set aside")
        staged.drop_url(at)
        if path is None:
            issues.set_aside[iid] = "import: no url and no local file"


def _index_folder(folder: Path, issues: Issues) -> dict[str, str]:
    folder = check_folder(Path(folder), "--images ")
    found = list(walk_images(folder))
    issues.found.extend(item for item in found if isinstance(item, Issue))
    index: dict[str, str] = {}
    for path in sorted(item for item in found if not isinstance(item, Issue)):
        index.setdefault(stem(path), os.path.realpath(path))
    return index


def _entry_id(entry) -> object | None:
    if not isinstance(entry, dict):
        return None
    iid = entry.get("imageId", entry.get("image_id"))
    return None if iid is None or iid == "" else iid


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
    except ValueError:
        raise IfaError(f"{file} holds a number of more than {LONGEST_NUMBER:,} digits; no label id is that long, "
                       "so fix or remove it and import again.") from None
    except RecursionError:  # _check_depth refuses such files first; this is the backstop
        raise IfaError(f"{file} is nested too deep to read.") from None
    if not isinstance(data, dict) or "images" not in data:
        raise IfaError(f"{file} is not in the challenge format: expected an object with an 'images' list "
                       "(and 'annotations' for train and validation).")
    return data


_MISSING = object()
_ID_MOST, _URL_MOST = LIMITS["id"].most, LIMITS["url"].most
# ijson's read size for a file with a value over LONG_VALUE bytes: yajl copies a value split
# across reads once per read, so a 200 MB string read 64 KB at a time took minutes and 16 MB
# at a time seconds; other files keep ijson's 64 KB (16 MB cost them +60% CPU and +150 MB).
READ_BUFFER = 1 << 24
LONG_VALUE = 1 << 20
# The most digits a JSON number may have and still be read (a label id over the label limit is
# then quarantined): Python's own limit of 4,300 would end the read in a ValueError.
LONGEST_NUMBER = 50_000


@contextmanager
def _long_numbers():
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(max(before, LONGEST_NUMBER))
    try:
        yield
    finally:
        sys.set_int_max_str_digits(before)


def _scan(file: Path) -> int:
    """The read size for ijson: READ_BUFFER when some value may be over LONG_VALUE bytes, else
    ijson's own. Refuses a file nested deeper than LIMITS["depth"] before it is parsed (ijson's
    memory grows with depth: 20,000 levels took 1 GB), naming the first entry that goes too deep."""
    import numpy as np

    step = np.zeros(256, np.int8)
    step[[ord("["), ord("{")]], step[[ord("]"), ord("}")]] = 1, -1
    most, depth, peak, gap, last_quote, offset = LIMITS["depth"].most, 0, 0, 0, 0, 0
    with open(file, "rb") as fh:  # brackets and quotes inside strings count too: upper bounds
        while chunk := fh.read(1 << 20):
            b = np.frombuffer(chunk, np.uint8)
            at = step[b]
            levels = np.cumsum(at[at != 0], dtype=np.int64) + depth
            if len(levels):
                peak, depth = max(peak, int(levels.max())), int(levels[-1])
            quotes = np.concatenate(([last_quote], np.flatnonzero(b == 34) + offset, [offset + len(b)]))
            gap = max(gap, int(np.diff(quotes).max()))
            last_quote, offset = int(quotes[-2]), offset + len(b)
    if peak > most:
        _find_too_deep(file, most)
    return READ_BUFFER if gap > LONG_VALUE else 64 * 1024


def _find_too_deep(file: Path, most: int) -> None:
    import ijson

    depth, key, n = 0, None, -1
    try:
        with open(file, "rb") as fh:
            for event, value in ijson.basic_parse(fh, use_float=True, buf_size=READ_BUFFER):
                if event in ("start_map", "start_array"):
                    depth += 1
                    n += depth == 2
                    if depth > most:
                        raise IfaError(f"{file}: {key}[{n}] is nested more than {most} levels deep (the challenge "
                                       "format needs 4); fix or remove that entry and import again.")
                elif event in ("end_map", "end_array"):
                    depth -= 1
                elif event == "map_key" and depth == 1:
                    key, n = value, -1
    except (ijson.JSONError, ValueError):
        return  # not valid JSON after all: the reader names the fault


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
        self.buffer = _scan(file)
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
                    for entry in ijson.items(fh, f"{key}.item", use_float=True, buf_size=self.buffer):
                        n += 1
                        yield entry
            except (ijson.JSONError, UnicodeDecodeError, ValueError):  # ValueError: a number over LONGEST_NUMBER
                self.doc = _read_json(self.file)  # raises IfaError naming line and column
        if self.doc is not None:
            value = self.doc.get(key, [] if key == "annotations" else None)
            if not isinstance(value, list):
                raise IfaError(f"{self.file}: 'images' and 'annotations' must be lists.")
            yield from value[n:]
            return
        if n == 0:  # an empty list, a missing key or something that is not a list
            self._check_list(key)

    def _check_list(self, key: str) -> None:
        import ijson

        with open(self.file, "rb") as fh:
            value = next(ijson.items(fh, key, use_float=True, buf_size=self.buffer), _MISSING)
        if key == "images" and value is _MISSING:
            raise IfaError(f"{self.file} is not in the challenge format: expected an object with an 'images' "
                           "list (and 'annotations' for train and validation).")
        if value is not _MISSING and not isinstance(value, list):
            raise IfaError(f"{self.file}: 'images' and 'annotations' must be lists.")
