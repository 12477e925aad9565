"""Training and prediction: the loop, losses, checkpoints and resume, on plain arrays.

`fit` trains one model from `Inputs` and a bool label matrix into a folder holding
`config.json` (settings, data fingerprint, per-epoch history) and `checkpoint.pt`
(weights, optimizer, epochs done), rewritten atomically after every epoch. Rerunning
with the same settings and data resumes after the last finished epoch; because every
epoch draws its order and augmentation from a generator seeded by (seed, epoch), a
resumed run ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from ....errors import IfaError
from ....progress import SILENT, Progress
from .. import augment
from . import backbones
from .config import LOSS_NAMES, TrainConfig
from .data import FeatureInputs, Inputs, PixelInputs

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
# Weighted BCE: the paper weights the rare positives up but does not give the formula; we use
# the negative/positive ratio per class, capped so a label seen 3 times cannot dominate.
MAX_POS_WEIGHT = 50.0


# ---- losses ---------------------------------------------------------------------------------
def _bce(labels: np.ndarray) -> nn.Module:
    return nn.BCEWithLogitsLoss()


def _weighted_bce(labels: np.ndarray) -> nn.Module:
    pos = labels.sum(axis=0).astype(np.float64)
    neg = len(labels) - pos
    weight = np.clip(neg / np.maximum(pos, 1.0), 1.0, MAX_POS_WEIGHT)
    return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weight, dtype=torch.float32))


LOSSES: dict[str, Callable[[np.ndarray], nn.Module]] = {"bce": _bce, "weighted-bce": _weighted_bce}
assert tuple(LOSSES) == LOSS_NAMES, "config.LOSS_NAMES names the losses the CLI offers"


# ---- devices -----------------------------------------------------------------------------------
def resolve_device(name: str = "cpu") -> torch.device:
    """'cpu', 'cuda' (or 'cuda:N'), or 'auto' (CUDA when available). Raises IfaError when
    CUDA is asked for and absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise IfaError("--device cuda was asked for, but this torch sees no CUDA GPU; use --device cpu or auto.")
    try:
        return torch.device(name)
    except RuntimeError:
        raise IfaError(f"Unknown device {name!r}; use cpu, cuda or auto.") from None


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic kernels while training; the caller's setting comes back after."""
    before = torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


# ---- the model folder ---------------------------------------------------------------------------
@dataclass
class FitResult:
    folder: str
    epochs_done: int
    resumed_from: int  # epochs already done when this call started
    history: list[dict] = field(default_factory=list)

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


def build(config: TrainConfig, num_labels: int, feature_dim: int | None) -> nn.Module:
    torch.manual_seed(config.seed)
    args = backbones.BuildArgs(num_labels, feature_dim, Path(config.weights) if config.weights else None)
    return backbones.get(config.backbone).build(args)


def fit(folder: Path, config: TrainConfig, inputs: Inputs, labels: np.ndarray, label_ids: np.ndarray, *,
        data_key: str, device: torch.device = torch.device("cpu"), progress: Progress = SILENT,
        validate: Callable[[nn.Module], float | None] | None = None, restart: bool = False,
        on_mismatch: str = "error", title: str = "training") -> FitResult:
    """Train (or resume training) a model in `folder`.

    inputs: rows of model input; labels: bool (n, K) with columns `label_ids`; data_key: a
    fingerprint of the training data. A checkpoint in `folder` made with the same settings
    and data is resumed; one made otherwise raises IfaError (on_mismatch="error") or is
    replaced (on_mismatch="restart"); `restart` always starts afresh. `validate(model)`
    returns the validation F1 reported each epoch. Returns the per-epoch history."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    feature_dim = inputs.dim if isinstance(inputs, FeatureInputs) else None
    model = build(config, len(label_ids), feature_dim).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = {"config": asdict(config), "data_key": data_key, "label_ids": [int(i) for i in label_ids],
             "feature_dim": feature_dim, "input_kind": inputs.kind, "history": [], "epochs_done": 0}
    history, epochs_done = _resume(folder, model, optimizer, state, config, restart=restart,
                                   on_mismatch=on_mismatch, progress=progress)
    state.update(history=history, epochs_done=epochs_done)
    resumed_from = state["epochs_done"]
    if resumed_from:
        progress.note(f"{title}: resuming after epoch {resumed_from} of {config.epochs}.")
    loss_fn = LOSSES[config.loss](labels).to(device)
    n = len(inputs)
    if n == 0:
        raise IfaError("There are no training images to learn from.")
    with deterministic(), progress.task(title, total=max(0, config.epochs - resumed_from) * n) as task:
        for epoch in range(resumed_from, config.epochs):
            start = time.perf_counter()
            total, seen = _epoch(model, optimizer, loss_fn, inputs, labels, config, device, epoch, task, title)
            f1 = validate(model) if validate else None
            state["history"].append({"epoch": epoch + 1, "loss": round(total / max(seen, 1), 6),
                                     "val_f1": None if f1 is None else round(f1, 6),
                                     "seconds": round(time.perf_counter() - start, 2)})
            state["epochs_done"] = epoch + 1
            _save(folder, model, optimizer, state)
            shown = "" if f1 is None else f", validation F1 {f1:.4f}"
            progress.note(f"{title} epoch {epoch + 1}/{config.epochs}: loss {total / max(seen, 1):.4f}{shown}")
    return FitResult(str(folder), state["epochs_done"], resumed_from, state["history"])


def _resume(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, config: TrainConfig, *,
            restart: bool, on_mismatch: str, progress: Progress) -> tuple[list[dict], int]:
    """Load `folder`'s checkpoint into `model` and `optimizer` when it was made with the same
    settings and data as `state` describes. Returns (history, epochs done): empty when
    starting afresh. Raises IfaError for a mismatching checkpoint when on_mismatch="error"."""
    ckpt_path = folder / CHECKPOINT
    if not ckpt_path.exists() or restart:
        return [], 0
    saved = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    same = saved["data_key"] == state["data_key"] and saved["label_ids"] == state["label_ids"] and \
        TrainConfig(**saved["config"]).resumable_with(config)
    if same:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        return saved["history"], saved["epochs_done"]
    if on_mismatch == "error":
        raise IfaError(f"{folder} holds a model trained with other settings or data; pass --restart to "
                       "train it afresh, or choose another --name.")
    progress.note(f"{folder.name}: settings or data changed since its checkpoint; training afresh.")
    return [], 0


def _epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, inputs: Inputs,
           labels: np.ndarray, config: TrainConfig, device: torch.device, epoch: int, task, title: str) -> tuple[float, int]:
    """One pass over the training rows in this epoch's seeded order. Returns (summed loss, rows seen)."""
    n = len(inputs)
    seed = config.seed * 1_000_003 + epoch
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout draws
    order = torch.randperm(n, generator=gen).numpy()
    model.train()
    total, seen = 0.0, 0
    for first in range(0, n, config.batch_size):
        rows = order[first:first + config.batch_size]
        if len(rows) < 2 and n > 1:  # batch norm cannot learn from a batch of one
            continue
        x = _prepare(inputs, rows, config, device, gen)
        y = torch.from_numpy(labels[rows]).to(device=device, dtype=torch.float32)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(rows)
        seen += len(rows)
        task.advance(len(rows))
        task.update(description=f"{title} epoch {epoch + 1}/{config.epochs} loss {total / seen:.4f}")
    return total, seen


def _prepare(inputs: Inputs, rows: np.ndarray, config: TrainConfig, device: torch.device,
             gen: torch.Generator | None) -> torch.Tensor:
    x = inputs.batch(rows).to(device, non_blocking=True)
    if isinstance(inputs, PixelInputs):
        return augment.train_view(x, config.m, gen) if gen is not None else augment.eval_view(x, config.m)
    return x


def _save(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Write the checkpoint and config beside their final names, then rename: a crash
    mid-write leaves the previous epoch's checkpoint intact."""
    tmp = folder / (CHECKPOINT + ".tmp")
    torch.save({**state, "model": {k: v.cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict()}, tmp)
    os.replace(tmp, folder / CHECKPOINT)
    tmp = folder / (CONFIG + ".tmp")
    tmp.write_text(json.dumps({k: v for k, v in state.items()}, indent=2))
    os.replace(tmp, folder / CONFIG)


@dataclass
class Loaded:
    model: nn.Module
    config: TrainConfig
    label_ids: np.ndarray
    epochs_done: int
    history: list[dict]


def load(folder: Path, device: torch.device = torch.device("cpu")) -> Loaded:
    """The trained model in `folder`. Raises IfaError when there is none."""
    path = Path(folder) / CHECKPOINT
    if not path.exists():
        raise IfaError(f"There is no trained model in {folder}; train one with `ifa model train`.")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = TrainConfig(**saved["config"])
    model = build(config, len(saved["label_ids"]), saved["feature_dim"])
    model.load_state_dict(saved["model"])
    return Loaded(model.to(device).eval(), config, np.array(saved["label_ids"], dtype=np.int64),
                  saved["epochs_done"], saved["history"])


@torch.no_grad()
def predict_probs(model: nn.Module, inputs: Inputs, config: TrainConfig, device: torch.device = torch.device("cpu"),
                  batch_size: int = 256, progress: Progress = SILENT, title: str = "predicting") -> np.ndarray:
    """Sigmoid probabilities, float32 (len(inputs), K), from the un-augmented inputs."""
    was_training = model.training
    model.eval()
    out = np.empty((len(inputs), _out_features(model)), dtype=np.float32)
    with progress.task(title, total=len(inputs)) as task:
        for first in range(0, len(inputs), batch_size):
            rows = np.arange(first, min(first + batch_size, len(inputs)))
            out[rows] = torch.sigmoid(model(_prepare(inputs, rows, config, device, None))).float().cpu().numpy()
            task.advance(len(rows))
    model.train(was_training)
    return out


def _out_features(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last.out_features
