"""`ifa eval`: score predictions with the paper's top-8 micro P/R/F1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import render
from .options import DEFAULT_WS, JsonOpt, WorkspaceOpt, open_workspace, single_command


def evaluate(
    predictions: Annotated[Path, typer.Argument(help="Long CSV image_id,label_id,score; submission CSV image_id,label_id "
                                                     "(space-separated, ranked); or Parquet of probabilities.")],
    split: Annotated[str, typer.Option("--split", "-s", help="The split whose labels are the ground truth.")] = "validation",
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Score predictions with the paper's metric: top-8 micro precision, recall and F1.

    Paper eq. 1: per image the 8 highest-scoring labels are the prediction; precision and
    recall are summed over all images and classes; also per group. Predictions for images
    not in the split are reported and not counted.

    Example: ifa eval probs.parquet --split validation
    """
    from ..curation import evaluation
    with open_workspace(workspace, "eval", read_only=True) as ws:
        result = evaluation.evaluate(ws.ledger, ws.taxonomy, predictions, split)
    if json_out:
        render.emit_json(result.to_dict())
        return
    rows = [(g, f"{s.precision:.4f}", f"{s.recall:.4f}", f"{s.f1:.4f}", s.correct, s.predicted, s.ground_truth)
            for g, s in result.groups.items()]
    rows.append(("all", f"{result.precision:.4f}", f"{result.recall:.4f}", f"{result.f1:.4f}", result.correct,
                 result.predicted, result.ground_truth))
    render.out.print(render.table(f"{split}: {result.images:,} images (top-8 micro)",
                                  ["group", "precision", "recall", "F1", "correct", "predicted", "truth"], rows))
    if result.unknown_images:
        render.out.print(f"[yellow]{result.unknown_images} predicted images are not in {split}: not counted.[/]")
    if result.images_without_prediction:
        render.out.print(f"[yellow]{result.images_without_prediction} {split} images have no prediction: they count as missed.[/]")
    if result.unknown_labels:
        render.out.print(f"[yellow]{result.unknown_labels} predicted label ids are not in the taxonomy: they count as wrong.[/]")


app = single_command(evaluate)
