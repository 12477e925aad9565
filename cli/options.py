"""Options every command shares, so they read and behave the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from typer.core import TyperGroup

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


# Every command app is built the same way: plain help (fast, no `<bool>` on flags; see
# cli/app.py), no shell-completion options, no args -> help.
_APP_SETTINGS = dict(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


class _WholeHelpGroup(TyperGroup):
    """Lists each command with its whole first line of help, wrapped: click cuts it at 45
    characters with '...', hiding what the command does."""

    def format_commands(self, ctx, formatter) -> None:
        rows = [(name, cmd.get_short_help_str(limit=1000)) for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def command_group(help: str) -> typer.Typer:
    """A group of commands (`ifa curate ...`, `ifa review ...`)."""
    return typer.Typer(cls=_WholeHelpGroup, help=help, no_args_is_help=True, **_APP_SETTINGS)


def single_command(fn: Callable) -> typer.Typer:
    """The app of a module that holds one top-level command (`ifa show`, `ifa stats`, ...);
    `fn`'s docstring is its help."""
    app = typer.Typer(**_APP_SETTINGS)
    app.command()(fn)
    return app
