"""The `ifa` command line: every command is a thin layer over a library call."""

from __future__ import annotations

import sys

import typer

from ..errors import IfaError
from . import curate, demo, evaluate, export, fetch, imports, init, model, render, review, show, stats

app = typer.Typer(
    name="ifa",
    help="Curate large multi-label image datasets (iMaterialist Fashion) and run their human review.\n\n"
         "Start with `ifa demo`; then `ifa init`, `ifa import imat FILE --split S`, `ifa stats`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("init")(init.init)
app.add_typer(imports.app, name="import")
app.command("stats")(stats.stats)
app.command("show")(show.show)
app.command("eval")(evaluate.evaluate)
app.add_typer(curate.app, name="curate")
app.add_typer(review.app, name="review")
app.add_typer(model.app, name="model")
app.command("demo")(demo.demo)
app.command("fetch")(fetch.fetch)
app.command("export")(export.export)

from . import history as _history  # noqa: E402  (issue 18; the lazy COMMANDS registry replaces this)
app.command("history")(_history.history)


def main() -> None:
    """Console entry point: user errors print as one sentence, not a traceback."""
    try:
        app()
    except IfaError as exc:
        render.err.print(f"[red]error:[/] {exc}")
        sys.exit(1)
    except SystemExit as exc:
        if exc.code == 130:  # Typer turns Ctrl-C into a bare exit 130; say what it means
            render.err.print("[yellow]interrupted[/]: every change is transactional, so nothing was half-written; "
                             "rerun to finish.")
        raise


if __name__ == "__main__":
    main()
