"""Progress reporting that library code can use without knowing about the terminal.

Library functions take a `progress: Progress` argument (default: silent) and report long
work through it; the CLI passes a rich-backed one that draws on stderr, so `--json`
output on stdout stays clean.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol


class Task(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def update(self, *, total: int | None = None, description: str | None = None) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: int | None = None) -> "contextmanager[Task]": ...

    def note(self, message: str) -> None: ...


class _SilentTask:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, *, total: int | None = None, description: str | None = None) -> None:
        pass


class SilentProgress:
    """Reports nothing; the default for library calls and tests."""

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        yield _SilentTask()

    def note(self, message: str) -> None:
        pass


SILENT = SilentProgress()

