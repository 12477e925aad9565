"""The workspace's baseline model: train it on the train split, predict any split.

Models live in `<workspace>/models/<name>/`; decoded pixels in `<workspace>/cache/`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ....errors import IfaError
from ....progress import SILENT, Progress
from ... import evaluation
from ...workspace import Workspace
from . import train as trainer
from .data import Inputs, Split, fingerprint, pixel_inputs, read_features, read_split
from .probs import write_probs
from ..defaults import DEFAULT_MODEL_NAME
from ..embed import resolve_features
from .config import TrainConfig



def models_dir(ws: Workspace) -> Path:
    return ws.root / "models"


def cache_dir(ws: Workspace) -> Path:
    return ws.no_links(ws.root / "cache")


def model_folder(ws: Workspace, name: str) -> Path:
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise IfaError(f"Model name {name!r} must be a plain folder name (letters, digits, - and _).")
    return models_dir(ws) / name


def resolve_config(ws: Workspace, config: TrainConfig) -> TrainConfig:
    """`config` with `--features embeddings` replaced by the path of the workspace's latest
    embeddings (so a model fitted on one model's embeddings is not resumed on another's).
    Raises IfaError when the workspace has none."""
    path = resolve_features(ws, config.features)
    return config if path == config.features else replace(config, features=path)


def split_inputs(ws: Workspace, split: Split, config: TrainConfig, progress: Progress = SILENT) -> tuple[Inputs, np.ndarray]:
    """Model inputs for `split` (pixels from the cache or rows of --features) and the
    bool mask of the split's images they cover."""
    if config.features:
        return read_features(Path(config.features), split.image_ids)
    return pixel_inputs(cache_dir(ws), split, config.image_size, progress)


def validator(ws: Workspace, config: TrainConfig, label_ids: np.ndarray, device: torch.device,
              progress: Progress = SILENT) -> Callable[[nn.Module], float] | None:
    """A function giving the paper's top-8 F1 on the validation split (via
    `evaluation.evaluate`), or None when the workspace has no labelled validation images."""
    val = read_split(ws.ledger, ws.taxonomy, "validation")
    if not len(val) or not val.labels.any():
        return None
    try:
        inputs, mask = split_inputs(ws, val, config, progress)
    except IfaError:
        return None  # no validation files or features: train without a validation score
    ids = val.image_ids[mask]

    def f1(model: nn.Module) -> float:
        probs = trainer.predict_probs(model, inputs, config, device)
        frame = evaluation.top_k_frame(ids, label_ids, probs)
        return evaluation.evaluate(ws.ledger, ws.taxonomy, frame, "validation").f1

    return f1


@dataclass
class TrainResult:
    name: str
    folder: str
    device: str
    images: int  # training images used
    images_skipped: int  # active train images without a readable file or features
    epochs_done: int
    resumed_from: int
    seconds: float
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    @property
    def val_f1(self) -> float | None:
        return self.history[-1]["val_f1"] if self.history else None

    def to_dict(self) -> dict:
        return asdict(self) | {"val_f1": self.val_f1}


def train(ws: Workspace, config: TrainConfig, name: str = DEFAULT_MODEL_NAME, device: str = "cpu", restart: bool = False,
          progress: Progress = SILENT) -> TrainResult:
    """Train (or resume) model `name` on the workspace's active train images and labels,
    reporting loss and validation F1 per epoch.

    Raises IfaError for bad settings, no usable training images, or a model of that name
    trained on other settings or data (unless `restart`)."""
    start = time.perf_counter()
    dev = trainer.resolve_device(device)
    folder = model_folder(ws, name)
    config = resolve_config(ws, config)
    split = read_split(ws.ledger, ws.taxonomy, "train")
    if not len(split):
        raise IfaError("The workspace has no active train images; import some with `ifa import ... --split train`.")
    inputs, mask = split_inputs(ws, split, config, progress)
    used = split.subset(np.flatnonzero(mask))
    if (~mask).any():
        progress.note(f"{int((~mask).sum()):,} train images have no readable file or features: left out.")
    label_ids = ws.taxonomy.label_ids
    fit = trainer.fit(folder, config, inputs, used.labels, label_ids, data_key=fingerprint(used.image_ids, used.labels),
                      device=dev, progress=progress, validate=validator(ws, config, label_ids, dev, progress),
                      restart=restart, title=f"training {name}")
    return TrainResult(name, fit.folder, str(dev), len(used), int((~mask).sum()), fit.epochs_done, fit.resumed_from,
                       round(time.perf_counter() - start, 2), asdict(config), fit.history)


@dataclass
class PredictResult:
    name: str
    split: str
    out: str
    images: int
    images_skipped: int

    def to_dict(self) -> dict:
        return asdict(self)


def predict(ws: Workspace, split: str, out: Path, name: str = DEFAULT_MODEL_NAME, device: str = "cpu",
            progress: Progress = SILENT) -> PredictResult:
    """Write model `name`'s probabilities for the active images of `split` to the Parquet
    `out` (image_id plus one column per label id). Raises IfaError when the model does not
    exist or no image of the split can be read."""
    dev = trainer.resolve_device(device)
    loaded = trainer.load(model_folder(ws, name), dev)
    if not np.array_equal(loaded.label_ids, ws.taxonomy.label_ids):
        raise IfaError(f"Model {name} was trained on another taxonomy ({len(loaded.label_ids)} labels).")
    data = read_split(ws.ledger, ws.taxonomy, split)
    if not len(data):
        raise IfaError(f"The workspace has no active {split} images.")
    inputs, mask = split_inputs(ws, data, loaded.config, progress)
    probs = trainer.predict_probs(loaded.model, inputs, loaded.config, dev, progress=progress, title=f"predicting {split}")
    write_probs(Path(out), data.image_ids[mask], loaded.label_ids, probs)
    return PredictResult(name, split, str(out), int(mask.sum()), int((~mask).sum()))

