"""`ifa import folder`: every image file under a folder, without labels."""

from __future__ import annotations

import os
from itertools import chain
from pathlib import Path

from ....progress import SILENT, Progress
from ...workspace import Workspace
from .core import Entry, ImportResult, Issue, Issues, Source, Staged, Stager, check_args, finish
from .files import check_folder, stem, walk_images


def import_folder(ws: Workspace, folder: Path, split: str, on_error: str = "skip",
                  progress: Progress = SILENT) -> ImportResult:
    """Import every image file under `folder` (recursively) without labels; the id is the
    file name without its extension. Two files with one id: the first (in path order) is
    imported and set aside. Raises IfaError when the folder does not exist or the split or
    on_error is unknown."""
    check_args(split, on_error)
    folder = check_folder(Path(folder), "")
    found = list(walk_images(folder))
    problems = [item for item in found if isinstance(item, Issue)]
    paths = sorted(item for item in found if not isinstance(item, Issue))
    entries = (Entry(n, stem(path), path=os.path.realpath(path), where=path) for n, path in enumerate(paths))
    issues = Issues()
    with ws.ledger.import_staging() as staged:
        Stager(staged, issues, _repeat).run(chain(problems, entries))
        return finish(ws, Source("folder", folder, split, on_error), issues, staged, [], progress)


def _repeat(entry: Entry, first: Staged, same: bool | None) -> tuple[list[Issue], str | None]:
    issue = Issue(entry.image_id, "conflicting-entries", f"{entry.where} and {first.where} share the id")
    return [issue], "import: two files share the id"
