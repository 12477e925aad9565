"""Shared rendering for the CLI: rich tables and progress on the terminal, JSON for scripts.

Progress and messages go to stderr, so `--json` output on stdout stays parseable.
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from ..progress import SILENT

if TYPE_CHECKING:
    from rich.console import Console  # rich.progress and rich.table load when something is drawn, not at start-up
    from rich.progress import Progress

_CONSOLES = {"out": {}, "err": {"stderr": True}}


def __getattr__(name: str) -> Console:
    """`render.out` (stdout) and `render.err` (stderr), made on first use: rich.console costs
    25 ms, which `ifa --help` need not pay."""
    if name not in _CONSOLES:
        raise AttributeError(name)
    return _console(name)


def _console(name: str) -> Console:
    if name not in globals():
        from rich.console import Console
        globals()[name] = Console(highlight=False, **_CONSOLES[name])
    return globals()[name]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    np = sys.modules.get("numpy")  # numpy scalars can only come from a command that loaded numpy
    if np is not None and isinstance(value, np.integer):
        return int(value)
    if np is not None and isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(data: Any) -> None:
    """Print `data` as JSON on stdout, numpy scalars and NaN made plain."""
    print(json.dumps(_plain(data), indent=2, ensure_ascii=False))


def emit_json_text(chunks: Iterable[str]) -> None:
    """Write JSON text that a library result encoded in pieces (e.g. `CheckResult.json_chunks`)
    to stdout as it comes, so a million-entry list is never one string in memory."""
    write = sys.stdout.write
    for chunk in chunks:
        write(chunk)
    write("\n")


def link(path: str | Path) -> str:
    """A report's path as an absolute file:// URL, which a terminal or browser opens from anywhere."""
    return Path(path).resolve().as_uri()


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]], **kwargs):
    """A rich table of `rows` under `columns`. Every word of a cell keeps its own line, so an
    id, rule id, URL or path is never cut: other words wrap first, and when the longest words
    of all columns cannot stand side by side in the terminal, each row is printed as
    `column: value` lines instead."""
    from rich.table import Table
    columns = list(columns)
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    widest = [max([len(w) for w in col.split()] + [len(w) for row in cells for w in row[i].split()] + [1])
              for i, col in enumerate(columns)]
    if sum(widest) + 3 * len(columns) + 1 > _console("out").width:
        return _records(title, columns, cells)
    t = Table(title=title, title_justify="left", **kwargs)
    for col, width in zip(columns, widest):
        t.add_column(col, min_width=width, overflow="fold",
                     justify="right" if col.startswith(("#", "%")) or col in ("images", "labels") else "left")
    for row in cells:
        t.add_row(*row)
    return t


def _records(title: str, columns: list[str], cells: list[list[str]]):
    """`table`'s narrow-terminal form: a row per block, `column: value` a line, nothing cut."""
    from rich.console import Group
    from rich.text import Text
    lines = [Text(title, style="italic")]
    for row in cells:
        lines.append(Text(""))
        lines += [Text(f"{col or '-'}: {value}", overflow="fold") for col, value in zip(columns, row) if value]
    return Group(*lines)


class _RichTask:
    def __init__(self, bar: Progress, task_id) -> None:
        self.bar, self.task_id = bar, task_id

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.task_id, n)

    def update(self, *, total: int | None = None, description: str | None = None) -> None:
        kwargs = {}
        if total is not None:
            kwargs["total"] = total
        if description is not None:
            kwargs["description"] = description
        self.bar.update(self.task_id, **kwargs)


class RichProgress:
    """The library's Progress protocol drawn as rich bars on stderr (rate and ETA).

    Nested tasks share one live display (rich allows only one at a time): the display
    starts with the first open task and stops when the last one closes."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._bar: Progress | None = None
        self._open = 0

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[_RichTask]:
        if self.quiet:  # --json: nothing to draw, so no rich either (~0.07 s of a cold `curate dedup --json`)
            with SILENT.task(description, total) as silent:
                yield silent
            return
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskProgressColumn, \
                TextColumn, TimeElapsedColumn, TimeRemainingColumn
            columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TaskProgressColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
            # Not a terminal (a log, a pipe): no bars, which would only print blank lines there.
            err = _console("err")
            self._bar = Progress(*columns, console=err, transient=True, disable=self.quiet or not err.is_terminal)
            self._bar.start()
        self._open += 1
        task_id = self._bar.add_task(description, total=total)
        try:
            yield _RichTask(self._bar, task_id)
        finally:
            self._bar.remove_task(task_id)
            self._open -= 1
            if not self._open:
                self._bar.stop()
                self._bar = None

    def note(self, message: str) -> None:
        if self.quiet:
            return
        # printed above the live bars when they are showing
        (self._bar.console if self._bar is not None else _console("err")).print(message)


def done(message: str) -> None:
    """A one-line result on stderr (stdout is kept for the main output)."""
    _console("err").print(f"[green]✓[/] {message}")
