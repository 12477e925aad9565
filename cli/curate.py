"""`ifa curate ...`: the cleaning steps, and `restore` to undo any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..curation import flag_noise as flag_lib
from ..curation import restore as restore_lib
from ..errors import IfaError
from . import model as model_cli
from . import render
from .options import DEFAULT_WS, JsonOpt, WorkspaceOpt, open_workspace

app = typer.Typer(help="Clean the dataset: attribute checks, dedup, noisy labels; restore undoes.", no_args_is_help=True)


@app.command("restore")
def restore(
    rule: Annotated[Optional[str], typer.Option(help="Undo everything this rule (or round, or 'duplicate') did.")] = None,
    image: Annotated[Optional[str], typer.Option(help="Undo everything done to this image.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be restored.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Put set-aside images and dropped labels back (applies at once; --dry-run to look first).

    Example: ifa curate restore --rule single-group-conflict
    """
    with open_workspace(workspace, "curate restore") as ws:
        result = restore_lib.restore(ws.ledger, rule=rule, image_id=image, apply=not dry_run)
    if json_out:
        render.emit_json(result.to_dict())
        return
    verb = "restored" if result.applied else "would restore"
    render.done(f"{verb} {len(result.images):,} images and {len(result.labels):,} labels")


@app.command("flag-noise")
def flag_noise(
    probs: Annotated[Optional[Path], typer.Option("--probs", help="Parquet of OUT-OF-SAMPLE probabilities (image_id + one column per label id), "
                                                              "e.g. from your own cross-validation. Probabilities from a model that trained on "
                                                              "these very labels have memorised their errors and hide them. Without --probs, "
                                                              "ifa cross-fits its baseline model.")] = None,
    folds: Annotated[int, typer.Option("--folds", help="K for cross-fitting: each image is scored by a model trained on the other K-1 folds.")] = 5,
    top: Annotated[Optional[int], typer.Option("--top", help="Keep only the N most likely errors.")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help=f"Keep flags whose estimated probability of being an error is at least this (default {flag_lib.DEFAULT_MIN_SCORE} without --top).")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Drop the flagged wrong labels (undo: ifa curate restore --rule flag-noise).")] = False,
    review: Annotated[bool, typer.Option("--review", help="Send the flagged images to a review round (needs --annotators A B and --tiebreaker C).")] = False,
    annotators: Annotated[Optional[tuple[str, str]], typer.Option("--annotators", help="The two annotators of the review round: --annotators A B.")] = None,
    tiebreaker: Annotated[Optional[str], typer.Option("--tiebreaker", help="Who breaks ties in the review round.")] = None,
    run: Annotated[str, typer.Option("--name", help="Folder under <workspace>/models/ for the cross-fitted fold models.")] = flag_lib.DEFAULT_RUN,
    backbone: model_cli.BackboneOpt = model_cli.backbones.DEFAULT_BACKBONE,
    loss: model_cli.LossOpt = "bce",
    epochs: model_cli.EpochsOpt = 10,
    batch_size: model_cli.BatchOpt = 64,
    lr: model_cli.LrOpt = 1e-3,
    image_size: model_cli.ImageSizeOpt = 64,
    input_size: model_cli.InputSizeOpt = None,
    seed: model_cli.SeedOpt = 0,
    weights: model_cli.WeightsOpt = None,
    features: model_cli.FeaturesOpt = None,
    device: model_cli.DeviceOpt = "cpu",
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Rank the train split's (image, label) pairs most likely in error: given labels that
    are likely wrong and absent labels that are likely missing.

    Per-class confident-learning thresholds and noise rates, labels competing within
    single-label groups; each flag's score is the estimated probability that the label is
    in error. Writes a CSV and an HTML page with thumbnails to reports/. --json prints
    {"flags": [{"image_id", "label" (label id), "kind": "wrong"|"missing", "score"}],
    "images_flagged", "probs"}, most likely error first.

    Example: ifa curate flag-noise --folds 5 --epochs 10 --top 500
    Example: ifa curate flag-noise --probs oos.parquet --review --annotators ann1 ann2 --tiebreaker lead
    """
    config = model_cli.make_config(backbone, loss, epochs, batch_size, lr, image_size, input_size, seed, weights, features)
    request = flag_lib.ReviewRequest(list(annotators or []), tiebreaker) if review else None
    if not review and (annotators or tiebreaker):
        raise IfaError("--annotators and --tiebreaker go with --review.")
    with open_workspace(workspace, "curate flag-noise") as ws:
        result = flag_lib.flag_noise(ws, probs=probs, config=config, folds=folds, run=run, device=device, top=top,
                                     min_score=min_score, apply=apply, review=request,
                                     progress=render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json(result.to_dict())
    else:
        head = result.flags.head(20)
        rows = [(i, f"{l} ({g})", k, f"{s:.3f}", f"{p:.3f}") for i, l, g, k, s, p in
                zip(head["image_id"], head["label"], head["group"], head["kind"], head["score"], head["prob"])]
        render.out.print(render.table(f"{len(result.flags):,} likely label errors on {result.images_flagged:,} of "
                                      f"{result.images_assessed:,} train images (top 20)",
                                      ["image", "label", "kind", "score", "model p"], rows))
    render.done(f"reports: {result.csv}  {result.html}")
    render.done(f"out-of-sample probabilities: {result.probs}")
    if result.applied:
        render.done(f"dropped {result.labels_dropped:,} wrong labels (undo: ifa curate restore --rule {result.rule})")
    elif result.review:
        render.done(f"review round {result.review['round']}: {result.review['images']:,} images sent to "
                    + ", ".join(f"{p['email']} ({p['url']})" for p in result.review["projects"]))
    elif not json_out:
        render.out.print("Nothing changed: --apply drops the flagged wrong labels, --review sends the images to people.")
