"""`ifa model train | predict`: the baseline multi-label classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..curation.noise.defaults import DEFAULT_MODEL_NAME
from ..curation.noise.model import backbones
from ..curation.noise.model.config import LOSS_NAMES, TrainConfig
from . import render
from .options import DEFAULT_WS, JsonOpt, SplitsOpt, WorkspaceOpt, command_group, open_workspace

app = command_group("Train the baseline multi-label model and predict with it.")

# Options shared with `ifa curate flag-noise`, which cross-fits the same model.
BackboneOpt = Annotated[str, typer.Option("--backbone", help=f"One of: {', '.join(f'{n} ({b.help})' for n, b in backbones.BACKBONES.items())}.")]
LossOpt = Annotated[str, typer.Option("--loss", help=f"{' | '.join(LOSS_NAMES)}; weighted-bce weights rare positives up (the paper's fix for imbalance).")]
EpochsOpt = Annotated[int, typer.Option("--epochs", help="Passes over the training images.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per step.")]
LrOpt = Annotated[float, typer.Option("--lr", help="AdamW learning rate.")]
ImageSizeOpt = Annotated[int, typer.Option("--image-size", help="N: images are resized to N x N, then cropped (paper: 256).")]
InputSizeOpt = Annotated[Optional[int], typer.Option("--input-size", help="M: crops are resized to M x M for the network (default 0.875 N; paper: 224).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Same seed, same data, same settings: the same model.")]
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", help="Local torchvision state dict for a torchvision backbone; nothing is downloaded.")]
FeaturesOpt = Annotated[Optional[Path], typer.Option("--features", help="Parquet of image_id + embedding vector, or `embeddings` for the workspace's latest `ifa model embed`: train a head (linear/mlp) on it instead of pixels.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or auto (CUDA when available).")]
NameOpt = Annotated[str, typer.Option("--name", help="The model's folder under <workspace>/models/.")]


def make_config(backbone: str, loss: str, epochs: int, batch_size: int, lr: float, image_size: int,
                input_size: int | None, seed: int, weights: Path | None, features: Path | None) -> TrainConfig:
    return TrainConfig(backbone=backbone, loss=loss, epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                       input_size=input_size, seed=seed, weights=str(weights) if weights else None,
                       features=str(features) if features else None)


@app.command("train")
def train(
    name: NameOpt = DEFAULT_MODEL_NAME,
    backbone: BackboneOpt = backbones.DEFAULT_BACKBONE,
    loss: LossOpt = "bce",
    epochs: EpochsOpt = 10,
    batch_size: BatchOpt = 64,
    lr: LrOpt = 1e-3,
    image_size: ImageSizeOpt = 64,
    input_size: InputSizeOpt = None,
    seed: SeedOpt = 0,
    weights: WeightsOpt = None,
    features: FeaturesOpt = None,
    device: DeviceOpt = "cpu",
    restart: Annotated[bool, typer.Option("--restart", help="Discard an existing checkpoint of this name and train afresh.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Train a multi-label classifier on the active train images and labels, with the
    paper's augmentation (resize N, corner/centre crops of N, 0.9375N or 0.875N, resize M,
    flip); loss and validation F1 (paper, top-8) are shown per epoch.

    A checkpoint is written after every epoch: rerun the same command after a crash to
    resume; raise --epochs to train further.
    Example: ifa model train --epochs 20 --image-size 128 --device auto
    """
    config = make_config(backbone, loss, epochs, batch_size, lr, image_size, input_size, seed, weights, features)
    from ..curation.noise.model import baseline
    with open_workspace(workspace, "model train") as ws:
        result = baseline.train(ws, config, name, device, restart, render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json(result.to_dict())
        return
    rows = [(h["epoch"], f"{h['loss']:.4f}", "" if h["val_f1"] is None else f"{h['val_f1']:.4f}", h["seconds"])
            for h in result.history]
    render.out.print(render.table(f"model {name}: {result.images:,} train images on {result.device}",
                                  ["epoch", "loss", "validation F1", "seconds"], rows))
    if result.resumed_from:
        render.out.print(f"resumed after epoch {result.resumed_from}")
    render.done(f"model saved in {result.folder}")


@app.command("predict")
def predict(
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet to write: image_id + one probability column per label id.")],
    split: Annotated[str, typer.Option("--split", "-s", help="train, validation or test.")] = "validation",
    name: NameOpt = DEFAULT_MODEL_NAME,
    device: DeviceOpt = "cpu",
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Write the model's probabilities for a split's active images; `ifa eval` scores them.

    Example: ifa model predict --split validation --out probs.parquet && ifa eval probs.parquet
    """
    from ..curation.noise.model import baseline
    with open_workspace(workspace, "model predict") as ws:
        result = baseline.predict(ws, split, out, name, device, render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json(result.to_dict())
        return
    if result.images_skipped:
        render.out.print(f"[yellow]{result.images_skipped:,} {split} images have no readable file or features: no prediction.[/]")
    render.done(f"{result.images:,} {split} images scored: {result.out}")


@app.command("embed")
def embed(
    onnx: Annotated[Path, typer.Option("--onnx", help="An image model exported to ONNX: input (batch, 3, S, S), output (batch, D).",
                                       exists=True, dir_okay=False)],
    input_size: Annotated[int, typer.Option("--input-size", help="S: images are resized to S x S (what the model was exported for).")] = 224,
    mean: Annotated[Optional[list[float]], typer.Option("--mean", help="Per-channel mean of [0, 1] pixels, three times (R G B); default ImageNet's.")] = None,
    std: Annotated[Optional[list[float]], typer.Option("--std", help="Per-channel std, three times; default ImageNet's.")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Images per model call.")] = 64,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Local decoding processes (default: all CPUs).")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler tcp://HOST:PORT: decode on that cluster (its workers must see the same paths).")] = None,
    split: SplitsOpt = None,
    device: Annotated[str, typer.Option("--device", help="cpu, or cuda (needs onnxruntime-gpu).")] = "cpu",
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Embed every active image that has a local file with a pretrained model (ONNX, run
    by ONNX Runtime) into <workspace>/embeddings/; train heads on them with
    `--features embeddings`. A rerun embeds only new or changed files.

    Example: ifa model embed --onnx resnet50.onnx && ifa curate flag-noise --features embeddings
    Example (CLIP): ifa model embed --onnx clip-vit-b32-image.onnx --mean 0.4815 --mean 0.4578 --mean 0.4082 --std 0.2686 --std 0.2613 --std 0.2758
    """
    from ..curation.noise import embed as embed_lib
    with open_workspace(workspace, "model embed") as ws:
        result = embed_lib.embed(ws, onnx, input_size=input_size, mean=mean, std=std, batch=batch, workers=workers,
                                 scheduler=scheduler, splits=split, device=device, progress=render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json(result.to_dict())
        return
    if result.unreadable:
        render.out.print(f"[yellow]{len(result.unreadable):,} files could not be read or decoded "
                         f"(e.g. {', '.join(result.unreadable[:3])}): not embedded.[/]")
    if result.images_without_file:
        render.out.print(f"{result.images_without_file:,} active images have no local file (`ifa fetch` first): not embedded.")
    render.done(f"{result.images_embedded:,} images embedded, {result.images_reused:,} already were "
                f"({result.dim}-d vectors, {result.seconds:.1f} s): {result.path}")
