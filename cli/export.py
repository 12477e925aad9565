"""`ifa export`: cleaned splits with the record of every change and a datasheet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import render
from .options import DEFAULT_WS, JsonOpt, SplitsOpt, WorkspaceOpt, open_workspace, single_command


def export(
    out_dir: Annotated[Optional[Path], typer.Argument(help="Folder to create (default: <workspace>/exports/export-<time>).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="imat (challenge JSON), csv, parquet or labelstudio.")] = "imat",
    split: SplitsOpt = None,
    include_set_aside: Annotated[bool, typer.Option("--include-set-aside", help="Also export set-aside images (with a status column where the format has one).")] = False,
    keys: Annotated[Optional[str], typer.Option(help="imat key spelling: camel (imageId) or snake (image_id); default as imported.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT_DIR if it exists.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Export the cleaned splits, changes.csv and DATASHEET.md.

    Only active images and labels go out. Next to the data: changes.csv (every set-aside,
    dropped, added or relabelled label with its reason, rule or round, command and time)
    and DATASHEET.md (Table 1 before and after, plots, duplicates and leakage removed,
    changes in effect by rule). Written to a temporary folder and renamed into place, so a
    failed export leaves nothing half-written. `ifa import imat` reads an imat export back.

    Example: ifa export ./clean --format imat --split train --split validation
    """
    from ..curation import export as export_lib
    with open_workspace(workspace, "export", read_only=True) as ws:
        result = export_lib.export(ws, out_dir, fmt, split, include_set_aside, keys, overwrite,
                                   render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json(result.to_dict())
        return
    rows = [(s, f"{v['images']:,}", f"{v['labels']:,}", v["file"]) for s, v in result.splits.items()]
    render.out.print(render.table(f"exported to {result.out_dir}", ["split", "images", "labels", "file"], rows))
    render.out.print(f"changes: {result.changes:,} rows in changes.csv; datasheet: {render.link(result.datasheet)}", soft_wrap=True)
    if result.unreadable_files:
        render.out.print(f"[yellow]{sum(result.unreadable_files.values()):,} exported images have a file known to be "
                         f"unreadable[/] ({', '.join(f'{k}: {v:,}' for k, v in result.unreadable_files.items())}); "
                         "`ifa show ID` says why, `ifa curate dedup --apply` sets them aside.")


app = single_command(export)
