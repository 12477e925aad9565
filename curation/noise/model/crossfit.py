"""Out-of-sample probabilities by K-fold cross-fitting: each training image is scored by
a model that never saw its (possibly wrong) labels, which is what noise ranking needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ....errors import IfaError
from ....progress import SILENT, Progress
from ..clock import Clock
from ...workspace import Workspace
from . import train as trainer
from .baseline import model_folder, resolve_config, split_inputs, validator
from .data import Inputs, Split, fingerprint, read_split
from .probs import OOS_FILE, write_probs
from .config import TrainConfig


def assign_folds(labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold (0..k-1) of each row of the bool (n, K) label matrix, stratified for
    multi-label data: rows are grouped by their rarest label, shuffled within a group
    (seeded), and dealt out round-robin, so every label's images spread over the folds as
    evenly as its rarest-label rows allow. Rows without labels form one more group."""
    n = len(labels)
    if not 2 <= k <= max(n, 2):
        raise IfaError(f"--folds must be between 2 and the number of training images ({n}), not {k}.")
    freq = labels.sum(axis=0)
    by_rarity = np.argsort(freq, kind="stable")
    rarest = np.full(n, labels.shape[1], dtype=np.int64)
    chunk = 100_000  # bounds the reordered copy to 23 MB at 228 labels
    for first in range(0, n, chunk):
        block = labels[first:first + chunk][:, by_rarity]
        has = block.any(axis=1)
        rarest[first:first + chunk][has] = by_rarity[block[has].argmax(axis=1)]
    order = np.lexsort((np.random.default_rng(seed).random(n), rarest))
    folds = np.empty(n, dtype=np.int64)
    folds[order] = np.arange(n) % k
    return folds


@dataclass
class CrossFit:
    image_ids: np.ndarray
    probs: np.ndarray  # float32 (n, K), out of sample
    folds: np.ndarray
    path: str  # the Parquet the probabilities were written to
    histories: list[list[dict]] = field(default_factory=list)
    seconds: float = 0.0
    images_skipped: int = 0
    expected_seconds: float | None = None  # stated once the first batches were timed (clock.Clock)


def out_of_sample(ws: Workspace, config: TrainConfig, folds: int = 5, name: str = "flag-noise", device: str = "cpu",
                  progress: Progress = SILENT, split: Split | None = None, started: float | None = None) -> CrossFit:
    """Train `folds` models, each on all train images but one fold, and predict the held-out
    fold. Fold models are checkpointed in `<workspace>/models/<name>/fold-<i>/`, so a
    crashed run resumes; when the train labels changed since, they are trained afresh.
    split: the train images and labels to fit (default: the ledger's active ones); started:
    when the caller's clock started (default now): the expected time, measured on the first
    batches, counts from there. Writes the probabilities to
    `<workspace>/models/<name>/oos-probs.parquet`."""
    start = time.perf_counter()
    dev = trainer.resolve_device(device)
    root = model_folder(ws, name)
    config = resolve_config(ws, config)
    split = split if split is not None else read_split(ws.ledger, ws.taxonomy, "train")
    if len(split) < folds:
        raise IfaError(f"Cross-fitting {folds} folds needs at least {folds} active train images; the workspace has {len(split)}.")
    inputs, mask = split_inputs(ws, split, config, progress)
    used: Split = split.subset(np.flatnonzero(mask))
    if (~mask).any():
        progress.note(f"{int((~mask).sum()):,} train images have no readable file or features: not assessed.")
    fold_of = assign_folds(used.labels, folds, config.seed)
    label_ids = ws.taxonomy.label_ids
    validate = validator(ws, config, label_ids, dev, progress)
    clock = Clock(start if started is None else started,
                  [config.epochs * int((fold_of != f).sum()) for f in range(folds)], config.batch_size, progress,
                  held_out=[int((fold_of == f).sum()) for f in range(folds)])
    probs, histories = fit_folds(root, config, inputs, used.image_ids, used.labels, label_ids, fold_of, dev,
                                 progress, validate, clock)
    path = write_probs(root / OOS_FILE, used.image_ids, label_ids, probs)
    return CrossFit(used.image_ids, probs, fold_of, str(path), histories, round(time.perf_counter() - start, 2),
                    int((~mask).sum()), clock.expected_seconds)


def fit_folds(root: Path, config: TrainConfig, inputs: Inputs, image_ids: np.ndarray, labels: np.ndarray,
              label_ids: np.ndarray, fold_of: np.ndarray, device, progress: Progress = SILENT,
              validate=None, clock: Clock | None = None) -> tuple[np.ndarray, list[list[dict]]]:
    """The fold loop over arrays (no ledger): for each fold f, fit on the rows whose
    `fold_of` is not f (checkpointed in `root/fold-<f>/`, resumed when the data is the
    same) and predict the rows of f; `clock` (optional) times the training. Returns
    (float32 (n, K) out-of-sample probabilities, each fold's training history)."""
    probs = np.empty(labels.shape, dtype=np.float32)
    histories = []
    folds = int(fold_of.max()) + 1
    for f in range(folds):
        fit_rows, held = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        key = fingerprint(image_ids[fit_rows], labels[fit_rows])
        result = trainer.fit(root / f"fold-{f}", config, inputs.subset(fit_rows), labels[fit_rows], label_ids,
                             data_key=key, device=device, progress=clock.watch(f, progress) if clock else progress,
                             validate=validate, on_mismatch="restart", title=f"fold {f + 1}/{folds}")
        histories.append(result.history)
        if clock:
            clock.resumed(f, result.resumed_from * len(fit_rows))
        model = trainer.load(Path(result.folder), device).model
        probs[held] = trainer.predict_probs(model, inputs.subset(held), config, device,
                                            progress=clock.watch(f, progress, predicting=True) if clock else progress,
                                            title=f"fold {f + 1}/{folds} out-of-sample")
        if clock:
            clock.fold_finished(f, folds)
    return probs, histories
