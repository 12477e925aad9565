"""`ifa demo`: run the whole process on the bundled sample."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import demo as demo_lib
from . import render
from .options import JsonOpt


def demo(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Where the demo workspace goes (replaced if it is an earlier demo's).")] = demo_lib.DEFAULT_DEMO_WORKSPACE,
    json_out: JsonOpt = False,
) -> None:
    """Run the labeling process end to end on 310 bundled CC0 clothing photos.

    Nothing to set up: every step runs locally and prints a one-line result.
    """
    result = demo_lib.run_demo(workspace, render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json(result.to_dict())
        return
    render.out.print(f"\nDemo workspace: {result.workspace}")
    render.out.print(f"Look around: ifa show <image id> --workspace {workspace}   ifa stats --workspace {workspace}")
