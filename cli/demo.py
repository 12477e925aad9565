"""`ifa demo`: run the whole process on the bundled sample."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import demo as demo_lib
from . import render
from .options import JsonOpt, single_command


def demo(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Where the demo workspace goes (replaced if it is an earlier demo's).")] = demo_lib.DEFAULT_DEMO_WORKSPACE,
    keep_server: Annotated[bool, typer.Option("--keep-server", help="Leave the embedded Label Studio running to look at the round.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the labeling process end to end on 310 bundled CC0 clothing photos.

    Nothing to set up. The sample is copied with planted duplicates, confused attributes
    and noisy labels; then: import, stats, check-attributes, dedup, a small model and
    flag-noise, a review round in an embedded Label Studio answered by SIMULATED
    annotators (sync, tie-break, finalize), and export. Each step prints a one-line
    result; every process it starts is stopped at the end (unless --keep-server).

    Example: ifa demo --workspace ./ifa-demo
    """
    result = demo_lib.run_demo(workspace, render.RichProgress(quiet=json_out), keep_server=keep_server)
    if json_out:
        render.emit_json(result.to_dict())
        return
    render.out.print(f"\n[bold]Demo finished[/] in {sum(s.seconds for s in result.steps):.0f} s.", soft_wrap=True)
    render.out.print(f"  summary report: {render.link(result.report)}", soft_wrap=True)
    render.out.print(f"  cleaned export: {result.export}", soft_wrap=True)
    render.out.print(f"  workspace:      {result.workspace}  (try: {_ifa()} stats -w {workspace})", soft_wrap=True)
    if result.server:
        s = result.server
        render.out.print(f"  Label Studio:   {s['url']}  login {s['email']} / {s['password']}  (stop: {s['stop']})", soft_wrap=True)


def _ifa() -> str:
    """How this shell reaches the `ifa` that is running: `ifa` when it is on PATH, else its path
    (a venv that is not activated), so the hint works as pasted."""
    running = Path(sys.argv[0])
    on_path = shutil.which("ifa")
    if running.name == "ifa" and not (on_path and Path(on_path).resolve() == running.resolve()):
        return str(running)
    return "ifa"


app = single_command(demo)
