"""`ifa show`: one image, its labels by group and its history."""

from __future__ import annotations

from typing import Annotated

import typer

from . import render
from .options import DEFAULT_WS, JsonOpt, WorkspaceOpt, open_workspace, single_command


def show(
    image_id: Annotated[str, typer.Argument(help="The image's id.")],
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Show one image: split, status and why, labels by group, and its history.

    Labels are grouped by taxonomy group with their source and status; the history lists
    every event that touched the image (imports, set-asides, review decisions, restores).

    Example: ifa show 12345
    """
    from ..curation import show as show_lib
    with open_workspace(workspace, "show", read_only=True) as ws:
        info = show_lib.describe(ws.ledger, ws.taxonomy, image_id)
    if json_out:
        render.emit_json(info)
        return
    status = info["status"] + (f" ({info['status_reason']})" if info["status_reason"] else "")
    render.out.print(f"[bold]{info['image_id']}[/]  split {info['split']}  status {status}")
    render.out.print(f"  file {info['path'] or '-'}  url {info['url'] or '-'}  sha256 {info['sha256'] or '-'}")
    if info["file_problem"]:
        problem = info["file_problem"]
        render.out.print(f"  [red]file unreadable[/]: {problem['reason']}" + (f" ({problem['detail']})" if problem["detail"] else ""))
    rows = [(l["group"], l["label"], "-" if l["label_id"] is None else l["label_id"], l["source"], l["status"] + (f" ({l['status_reason']})" if l["status_reason"] else ""))
            for l in info["labels"]]
    render.out.print(render.table("labels", ["group", "label", "id", "source", "status"], rows))
    rows = [(e["time"], e["command"], e["kind"], e.get("label") or "", e["reason"] or "", e["rule"] or "") for e in info["events"]]
    render.out.print(render.table("history", ["time", "command", "change", "label", "reason", "rule"], rows))


app = single_command(show)
