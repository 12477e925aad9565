"""`ifa import imat | csv | folder`: bring images and labels into the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import render
from .options import DEFAULT_WS, JsonOpt, WorkspaceOpt, command_group, open_workspace

app = command_group("Import images and labels into the workspace.")

SplitArg = Annotated[str, typer.Option("--split", "-s", help="train, validation or test.")]
OnErrorOpt = Annotated[str, typer.Option("--on-error", help="skip: quarantine bad records and report them; fail: write nothing if any.")]


@app.command("imat")
def imat(
    file: Annotated[Path, typer.Argument(help="The challenge's train/validation/test JSON.")],
    split: SplitArg,
    images: Annotated[Optional[Path], typer.Option("--images", help="Folder of local files named <image id>.<ext>.")] = None,
    on_error: OnErrorOpt = "skip",
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Import the challenge's train/validation/test JSON.

    Format: {"images": [{imageId, url}], "annotations": [{imageId, labelId: [...]}]}.
    Keys may be camelCase or snake_case, ids strings or integers; test files have no
    annotations. Rerunning the same import adds only what is missing.

    Example: ifa import imat train.json --split train --images ./train_images
    """
    from ..curation.ingest import importing
    with open_workspace(workspace, "import imat") as ws:
        result = importing.import_imat(ws, file, split, images, on_error, render.RichProgress(quiet=json_out))
    _render(result, json_out)


@app.command("csv")
def csv(
    file: Annotated[Path, typer.Argument(help="CSV with one row per image.")],
    split: SplitArg,
    image_col: Annotated[str, typer.Option(help="Column with the image's file path (relative to the CSV) or URL.")],
    labels_col: Annotated[str, typer.Option(help="Column with label names or ids.")],
    sep: Annotated[str, typer.Option(help="Separator between labels in --labels-col.")] = "|",
    id_col: Annotated[Optional[str], typer.Option(help="Column with the image id (default: file name without extension).")] = None,
    on_error: OnErrorOpt = "skip",
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Import a CSV of images and their labels (names, any case, or ids).

    Example: ifa import csv photos.csv --split train --image-col file --labels-col labels --sep '|'
    """
    from ..curation.ingest import importing
    with open_workspace(workspace, "import csv") as ws:
        result = importing.import_csv(ws, file, split, image_col, labels_col, sep, id_col, on_error,
                                      render.RichProgress(quiet=json_out))
    _render(result, json_out)


@app.command("folder")
def folder(
    directory: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    split: SplitArg,
    on_error: OnErrorOpt = "skip",
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Import unlabelled images from a folder; each id is the file name without extension.

    Example: ifa import folder ./new_photos --split test
    """
    from ..curation.ingest import importing
    with open_workspace(workspace, "import folder") as ws:
        result = importing.import_folder(ws, directory, split, on_error, render.RichProgress(quiet=json_out))
    _render(result, json_out)


def _render(result, json_out: bool) -> None:
    from ..curation.ingest import importing
    if json_out:
        render.emit_json(result.to_dict())
        return
    if result.nothing_new:
        render.done(f"{result.split}: nothing new: all {result.images_existing:,} images were already imported; "
                    "nothing was recorded (`ifa history --command import` shows the earlier imports)")
        return
    render.done(
        f"{result.split}: {result.images_added:,} images added, {result.images_existing:,} already there, "
        f"{result.labels_added:,} labels added, {result.set_aside:,} set aside, {result.quarantined_labels:,} labels quarantined"
    )
    if result.problems:
        rows = [(k, f"{v:,}", result.actions.get(k) or importing.PROBLEMS.get(k, "")) for k, v in sorted(result.problems.items())]
        render.out.print(render.table("Problems found", ["problem", "#", "action"], rows))
    render.out.print(f"report: {render.link(result.report)}", soft_wrap=True)
