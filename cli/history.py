"""`ifa history`: what past commands changed, from the ledger alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import render
from .options import DEFAULT_WS, JsonOpt, WorkspaceOpt, open_workspace, single_command


def history(
    rule: Annotated[Optional[str], typer.Option("--rule", "-r", help="Only changes of this rule (e.g. duplicate, import, a check-attributes rule id).")] = None,
    command: Annotated[Optional[str], typer.Option("--command", "-c", help="Only commands containing this text (import, check-attributes, dedup).")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="Only from this UTC date or time on: 2026-11-29 or 2026-11-29T20:00.")] = None,
    apply: Annotated[Optional[int], typer.Option("--apply", help="Only the apply with this id (the first column of the table).")] = None,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Write the per-image report of the selected applies to this CSV.")] = None,
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """What past commands changed, read from the ledger's event log alone.

    One row per apply (one transaction of one command): when, which command, how many
    events of each kind, which rules. With --csv, one row per changed image (and per
    problem an import recorded): the same facts as the command's own report, rebuilt, for
    instance when a command was killed after its commit and before its report was written.

    Example: ifa history --command check-attributes --since 2026-11-29 --csv rebuilt.csv
    """
    from ..curation import history as history_lib
    with open_workspace(workspace, "history") as ws:
        result, path = history_lib.run(ws.ledger, ws.taxonomy, csv, rule=rule, command=command, since=since, apply=apply)
        written = str(path) if path else None
    if json_out:
        render.emit_json(result.to_dict() | ({"csv": written} if written else {}))
        return
    if not result.applies:
        render.out.print("No recorded change matches.")
    else:
        rows = [(a.apply, a.time, a.command, f"{a.events:,}", f"{a.images:,}",
                 ", ".join(f"{k} {v:,}" for k, v in a.changes.items()),
                 ", ".join(r for r in a.rules if r)) for a in result.applies]
        render.out.print(render.table("Changes recorded in the ledger",
                                      ["apply", "time (UTC)", "command", "events", "images", "changes", "rules"], rows))
    if written:
        render.out.print(f"report: {render.link(written)}", soft_wrap=True)


app = single_command(history)
