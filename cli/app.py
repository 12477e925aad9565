"""The `ifa` command line: every command is a thin layer over a library call."""

from __future__ import annotations

import typer

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


def main() -> None:
    """Console entry point: user errors print as one sentence, not a traceback."""
    from . import failures
    failures.run(app)


if __name__ == "__main__":
    main()
