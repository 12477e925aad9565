"""flag-noise's clock: the cross-fit's speed measured on its own first batches, and the time
it is expected to take, stated once measured and updated after each fold.

A rate measured beforehand on other hardware and load was off by 3-9x on a busy machine;
the first batches of this very run see the cores as they are now. The clock counts the
rows each fold's training advances (the same counts its progress bar shows) and assumes
the rest of the training runs at the rate measured so far.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from ...progress import SILENT, Progress, Task
from .defaults import describe_seconds

# Batches left out before the rate is measured (the first ones pay for allocation and warm-up),
# and how much training the rate is measured on before it is stated.
SKIP_BATCHES = 2
MEASURE_BATCHES = 20
MEASURE_SHARE = 0.02  # of all training rows, so a long run is timed over more than a blip
# A held-out prediction costs about this share of a training row (forward only, no augmentation
# or backward pass); each fold's end restates the time from the rate measured over both.
PREDICT_COST = 0.3


@dataclass
class Clock:
    """Counts a cross-fit's training rows and states the expected total time.

    started: time.perf_counter() when the command began (decoding counts as time spent);
    fold_rows: rows each fold trains in all (epochs x its training images), in fold order;
    batch_size: rows per batch; progress: where the statements go; held_out: rows each
    fold predicts after training (counted at PREDICT_COST of a training row).
    After `fold(f)` ran for MEASURE_BATCHES batches (or MEASURE_SHARE of the training), the
    rate is measured and `expected_seconds` is set (once); each finished fold updates
    `latest_seconds`."""

    started: float
    fold_rows: list[int]
    batch_size: int
    progress: Progress = SILENT
    held_out: list[int] = field(default_factory=list)
    expected_seconds: float | None = None
    latest_seconds: float | None = None
    _done: list[int] = field(default_factory=list)
    _predicted: list[int] = field(default_factory=list)
    _mark: tuple[float, int] | None = None  # (time, rows) where measuring began
    _rate: float | None = None

    def __post_init__(self) -> None:
        self._done = [0] * len(self.fold_rows)
        self.held_out = self.held_out or [0] * len(self.fold_rows)
        self._predicted = [0] * len(self.fold_rows)

    @property
    def rows_left(self) -> float:
        """Training rows still to train, plus the held-out predictions at their cost."""
        train = sum(max(t - d, 0) for t, d in zip(self.fold_rows, self._done))
        return train + PREDICT_COST * sum(max(t - d, 0) for t, d in zip(self.held_out, self._predicted))

    def resumed(self, fold: int, rows: int) -> None:
        """`rows` of fold `fold` were trained before this run (a resumed checkpoint)."""
        self._done[fold] = min(self._done[fold] + rows, self.fold_rows[fold])

    def advance(self, fold: int, rows: int) -> None:
        """`rows` more rows of fold `fold` were trained."""
        self._done[fold] += rows
        trained = sum(self._done)
        now = time.perf_counter()
        if self._mark is None:
            if self._batches(trained) >= SKIP_BATCHES:
                self._mark = (now, trained)
            return
        measured = trained - self._mark[1]
        if self.expected_seconds is None and measured >= self._needed():
            self._rate = measured / max(now - self._mark[0], 1e-9)
            self.expected_seconds = round(now - self.started + self.rows_left / self._rate, 1)
            self.latest_seconds = self.expected_seconds
            self.progress.note(f"Measured {self._rate:,.0f} training rows/s on the first {self._batches(trained)} "
                               f"batches: expected {describe_seconds(self.expected_seconds)} in all "
                               f"({describe_seconds(self.rows_left / self._rate)} left).")

    def fold_finished(self, fold: int, folds: int) -> None:
        """Restate the time left at the rate measured over everything trained so far."""
        if self._mark is None or self._rate is None:
            return
        now = time.perf_counter()
        work = sum(self._done) - self._mark[1] + PREDICT_COST * sum(self._predicted)
        self._rate = work / max(now - self._mark[0], 1e-9)
        self.latest_seconds = round(now - self.started + self.rows_left / self._rate, 1)
        if self.rows_left:
            self.progress.note(f"fold {fold + 1}/{folds} done: {describe_seconds(self.rows_left / self._rate)} left "
                               f"(now expected {describe_seconds(self.latest_seconds)} in all).")

    def predicted(self, fold: int, rows: int) -> None:
        """`rows` more held-out rows of fold `fold` were predicted."""
        self._predicted[fold] += rows

    def watch(self, fold: int, progress: Progress, predicting: bool = False) -> Progress:
        """A Progress for fold `fold`'s training (or, `predicting`, its held-out prediction)
        that passes everything on to `progress` and tells the clock the rows each task advances."""
        return _Watched(self, fold, progress, predicting)

    def _batches(self, rows: int) -> int:
        return rows // max(self.batch_size, 1)

    def _needed(self) -> int:
        """Rows to measure before stating: MEASURE_BATCHES or MEASURE_SHARE, at most a
        quarter of a small run (so one too short for them still states its time early)."""
        total = sum(self.fold_rows)
        return max(min(max(MEASURE_BATCHES * self.batch_size, int(MEASURE_SHARE * total)), total // 4), 1)


@dataclass
class _Watched:
    clock: Clock
    fold: int
    inner: Progress
    predicting: bool = False

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        with self.inner.task(description, total) as task:
            yield _CountedTask(task, self.clock, self.fold, self.predicting)

    def note(self, message: str) -> None:
        self.inner.note(message)


@dataclass
class _CountedTask:
    task: Task
    clock: Clock
    fold: int
    predicting: bool = False

    def advance(self, n: int = 1) -> None:
        self.task.advance(n)
        (self.clock.predicted if self.predicting else self.clock.advance)(self.fold, n)

    def update(self, *, total: int | None = None, description: str | None = None) -> None:
        self.task.update(total=total, description=description)
