"""`ifa init`: create a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..curation.workspace import Workspace
from . import render
from .options import DEFAULT_WS, JsonOpt, WorkspaceOpt, single_command


def init(
    workspace: WorkspaceOpt = DEFAULT_WS,
    taxonomy: Annotated[Optional[Path], typer.Option(help="Label map CSV (labelId,taskId,labelName,taskName) of another dataset.")] = None,
    groups: Annotated[Optional[Path], typer.Option(help="Cardinality CSV (group,cardinality) for --taxonomy, in display order.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a workspace: the SQLite ledger, images/, reports/ and exports/.

    Uses the iMaterialist Fashion 2018 taxonomy (228 labels, 8 groups) unless --taxonomy and
    --groups name another. Running it again on an existing workspace changes nothing.

    Example: ifa init --workspace ./fashion
    """
    with Workspace.init(workspace, label_map=taxonomy, groups=groups) as ws:
        info = {"workspace": str(ws.root.resolve()), "ledger": str(ws.db_path), "labels": len(ws.taxonomy),
                "groups": list(ws.taxonomy.group_names)}
    if json_out:
        render.emit_json(info)
    else:
        render.done(f"workspace ready at {info['workspace']} ({info['labels']} labels in {len(info['groups'])} groups)")


app = single_command(init)
