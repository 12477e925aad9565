"""`ifa curate ...`: the cleaning steps, and `restore` to undo any of them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..curation import restore as restore_lib
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
    extra = f"; dropped again {len(result.unadded):,} labels it had added" if result.unadded else ""
    render.done(f"{verb} {len(result.images):,} images and {len(result.labels):,} labels{extra}")
