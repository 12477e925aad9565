"""Options every command shares, so they read and behave the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..curation.ledger import SPLITS
from ..curation.workspace import DEFAULT_WORKSPACE, ENV_VAR, Workspace

WorkspaceOpt = Annotated[
    Path,
    typer.Option("--workspace", "-w", envvar=ENV_VAR, help=f"Workspace folder (env {ENV_VAR}).", show_default=True),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, for scripts.")]
ApplyOpt = Annotated[bool, typer.Option("--apply", help="Apply the changes. Without it, only report what would change.")]
SplitOpt = Annotated[Optional[str], typer.Option("--split", "-s", help=f"Only this split: {', '.join(SPLITS)}.")]
SplitsOpt = Annotated[Optional[list[str]], typer.Option("--split", "-s", help=f"Only these splits (repeatable): {', '.join(SPLITS)}.")]

DEFAULT_WS = DEFAULT_WORKSPACE


def open_workspace(root: Path, command: str, read_only: bool = False) -> Workspace:
    """The workspace at `root`, with `command` recorded on every event it writes.
    `read_only`: the command only reads the ledger, so a read-only workspace is fine."""
    return Workspace.open(root, command=command, read_only=read_only)
