"""`ifa browse`: the dataset in a browser."""

from __future__ import annotations

from typing import Annotated

import typer

from . import render
from .options import DEFAULT_WS, WorkspaceOpt, single_command


def browse(
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one).")] = 0,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback lets other machines in.")] = "127.0.0.1",
    open_browser: Annotated[bool, typer.Option("--open", help="Open the URL in the default web browser.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WS,
) -> None:
    """The dataset in a browser: facets, image pages, actions into the ledger.

    A grid of any slice (split, status and rule, labels by group, label source, flag-noise
    flags, dedup clusters, review rounds and decisions, file problems) with counts; an
    image page with its labels, history, cluster, flags and review answers. Set aside,
    restore, add or drop a label, or send the selection to a review round: each is an
    event in the ledger under rule `browse`, undone by `ifa curate restore`.

    It answers on this machine only, at a URL holding a random access token (also
    accepted as `Authorization: Bearer TOKEN`; the JSON API is under /api). Ctrl-C stops it.

    Example: ifa browse --port 8765 --open
    """
    from ..browse import server
    srv = server.start(workspace, host=host, port=port)
    render.out.print(f"ifa browse: {srv.url}", soft_wrap=True, highlight=False)
    if open_browser:
        import webbrowser
        webbrowser.open(srv.url)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        render.err.print("ifa browse: stopped.")
    finally:
        srv.stop()


app = single_command(browse)
