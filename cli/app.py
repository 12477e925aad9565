"""The `ifa` command line: every command is a thin layer over a library call.

Each command lives in its own module under cli/, loaded only when that command runs or
shows its help: `ifa --help` and `ifa show ID` must not pay for every command's imports
(torch, pandas, the Label Studio SDK), and even light modules cost more to load than the
baseline the targets are measured against (`python -m benchmarks.cli_startup`).
"""

from __future__ import annotations

import importlib

import typer
from typer.core import TyperGroup

# name -> (module under ifa.cli, the one line `ifa --help` shows). Each line is the first
# line of that command's own help (tests/test_cli_startup.py checks they match).
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "Create a workspace: the SQLite ledger, images/, reports/ and exports/."),
    "import": ("imports", "Import images and labels into the workspace."),
    "fetch": ("fetch", "Download every image that has a URL and no local file into the workspace."),
    "stats": ("stats", "Dataset statistics in the paper's terms: Table 1, labels per image, the long tail."),
    "show": ("show", "Show one image: split, status and why, labels by group, and its history."),
    "eval": ("evaluate", "Score predictions with the paper's metric: top-8 micro precision, recall and F1."),
    "curate": ("curate", "Clean the dataset: attribute checks, dedup, noisy labels; restore undoes."),
    "model": ("model", "Train the baseline multi-label model and predict with it."),
    "review": ("review", "Review rounds in Label Studio: a pool of annotators, two of whom label each image "
                         "independently; gold questions measure each of them; a tie-breaker settles disagreements."),
    "history": ("history", "What past commands changed, read from the ledger's event log alone."),
    "export": ("export", "Export the cleaned splits, changes.csv and DATASHEET.md."),
    "browse": ("browse", "The dataset in a browser: facets, image pages, actions into the ledger."),
    "demo": ("demo", "Run the labeling process end to end on 310 bundled CC0 clothing photos."),
}


class LazyGroup(TyperGroup):
    """The top-level group: knows its commands by name and loads a command's module only
    when it is invoked (or its --help is asked for)."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str):
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"{__package__}.{COMMANDS[name][0]}")
        return typer.main.get_command(module.app)

    def format_commands(self, ctx, formatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in COMMANDS.items()])


app = typer.Typer(
    name="ifa",
    cls=LazyGroup,
    help="Curate large multi-label image datasets (iMaterialist Fashion) and run their human review.\n\n"
         "Start with `ifa demo`; then `ifa init`, `ifa import imat FILE --split S`, `ifa stats`. "
         "Every command has --help with an example, and --json for scripts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help, as git and sqlite-utils print it: rich's help panels cost 60 ms of imports at
    # every --help, and they show flags as taking a value (`--stop <bool>`).
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    # A callback makes Typer build a group even though no command is registered on `app`
    # itself: LazyGroup supplies them. The help is the Typer's own, above.
    pass


def main() -> None:
    """Console entry point: user errors print as one sentence, not a traceback."""
    from . import failures
    failures.run(app)


if __name__ == "__main__":
    main()
