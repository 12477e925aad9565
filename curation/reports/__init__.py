"""Reports for people: written whole or not at all (here), and the HTML pages (`html.py`).

Start here for how a report file is written: so that a kill never leaves a partial one
under its final name.

Every report (CSV, HTML, text) is written to a hidden temp name beside its final one,
`.<name>.tmp-<pid>`, and renamed into place only when complete: a reader sees either no
report or the whole report. Measured before this: a kill during check-attributes left its
CSV cut at 122,001 of 273,354 lines under the final name. A temp left by a killed writer
(its pid no longer runs) is removed by the next report written to the workspace's
reports folder.

Writers call these after the transaction their report describes has committed, so a
report is never written for a change that did not happen; if a kill lands between the
commit and the rename, `ifa history` rebuilds what the apply did from the event log.
"""

from __future__ import annotations

import csv
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import pandas as pd

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)$")


def temp_name(path: Path, kind: str = "tmp") -> Path:
    """The hidden sibling a writer in this process uses for `path`: `.<name>.<kind>-<pid>`."""
    path = Path(path)
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (ours or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, under another user
        return True
    return True


def dead_temps(folder: Path) -> list[tuple[Path, str, int]]:
    """Hidden `.<name>.tmp-<pid>` / `.<name>.old-<pid>` entries in `folder` whose writer is
    gone: (path, name, pid), sorted. A live pid's temps are someone's work in progress."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for entry in folder.iterdir():
        m = _TEMP.match(entry.name)
        if m and int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"])):
            out.append((entry, m["name"], int(m["pid"])))
    return sorted(out)


def sweep_dead_temps(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the temp files that killed report writers left in `folder` (only those of
    the file `name`, when given); returns them."""
    removed = []
    for path, of, _ in dead_temps(folder):
        if name is not None and of != name:
            continue
        if path.is_file() or path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path to write; on a clean exit it is renamed to `path` (atomic on one
    file system), on an exception it is removed and `path` is left as it was."""
    path = Path(path)
    if _is_reports_folder(path.parent):
        from ..workspace import refuse_links  # reports/ as a link would carry the sweep elsewhere
        refuse_links(path.parent.parent, path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_reports_folder(path.parent):  # never sweep a folder of the user's (--csv FILE) ...
        sweep_dead_temps(path.parent)
    else:  # ... but the temps a killed writer of this very file left there
        sweep_dead_temps(path.parent, path.name)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _is_reports_folder(folder: Path) -> bool:
    return folder.name == "reports" and (folder.parent / "ifa.db").exists()


def write_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns `path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


# RFC 4180 line ends: the csv module then quotes a cell holding a CR as well as one holding
# an LF; with "\n" ends a bare CR went out unquoted and csv readers split the row there.
CSV_LINE_END = "\r\n"
# OWASP's CSV injection advice: a spreadsheet runs a cell beginning with one of these as a
# formula, so cells of CSVs for people get a leading apostrophe (data exports stay exact).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def for_spreadsheet(value):
    """`value` as a cell of a CSV people open in a spreadsheet: text that begins with
    = + - @, a tab or a CR gets a leading apostrophe, so it shows as text and never runs as
    a formula; anything else (numbers, other text, None) is returned as it is."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def from_spreadsheet(value: str) -> str:
    """The text `for_spreadsheet` was given: for reading back an id from a CSV for people
    (`ifa review create --images-from` a check-attributes or flag-noise report)."""
    if value.startswith("'") and value[1:].startswith(_FORMULA_START):
        return value[1:]
    return value


def frame_for_people(frame: "pd.DataFrame") -> "pd.DataFrame":
    """A copy of `frame` with `for_spreadsheet` applied to every text column."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype.kind in "OSU" or str(out[name].dtype) in ("string", "str"):
            out[name] = out[name].map(for_spreadsheet)
    return out


def write_csv(path: Path, frame: "pd.DataFrame") -> Path:
    """Write a frame as a report CSV for people (no index, cells through `for_spreadsheet`,
    RFC 4180 quoting) to `path` atomically; returns `path`."""
    with atomic_path(path) as tmp:
        frame_for_people(frame).to_csv(tmp, index=False, lineterminator=CSV_LINE_END)
    return Path(path)


class _PeopleCsv:
    """A csv writer whose cells go through `for_spreadsheet` (see `open_csv`)."""

    def __init__(self, fh):
        self._writer = csv.writer(fh, lineterminator=CSV_LINE_END)

    def writerow(self, row) -> None:
        self._writer.writerow([for_spreadsheet(v) for v in row])

    def writerows(self, rows) -> None:
        self._writer.writerows([for_spreadsheet(v) for v in row] for row in rows)


@contextmanager
def open_csv(path: Path) -> Iterator[_PeopleCsv]:
    """A csv writer for a report CSV for people at `path` (cells through `for_spreadsheet`,
    RFC 4180 quoting), written atomically as `open_text` does."""
    with open_text(path) as fh:
        yield _PeopleCsv(fh)


@contextmanager
def open_text(path: Path) -> Iterator:
    """Open `path` for writing text (UTF-8, newline='' as csv wants) and make it appear
    only once the block finishes without an error."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            yield fh
