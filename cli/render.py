"""Shared rendering for the CLI: rich tables and progress on the terminal, JSON for scripts.

Progress and messages go to stderr, so `--json` output on stdout stays parseable.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, \
    TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(data: Any) -> None:
    """Print `data` as JSON on stdout, numpy scalars and NaN made plain."""
    print(json.dumps(_plain(data), indent=2, ensure_ascii=False))


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]], **kwargs) -> Table:
    t = Table(title=title, title_justify="left", **kwargs)
    for col in columns:
        t.add_column(col, justify="right" if col.startswith(("#", "%")) or col in ("images", "labels") else "left")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


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
    """The library's Progress protocol drawn as rich bars on stderr (rate and ETA)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[_RichTask]:
        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TaskProgressColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
        with Progress(*columns, console=err, transient=True, disable=self.quiet) as bar:
            yield _RichTask(bar, bar.add_task(description, total=total))

    def note(self, message: str) -> None:
        if not self.quiet:
            err.print(message)


def done(message: str) -> None:
    """A one-line result on stderr (stdout is kept for the main output)."""
    err.print(f"[green]✓[/] {message}")
