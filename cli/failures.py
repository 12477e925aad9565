"""How `ifa` ends when something goes wrong: one sentence on stderr, never a traceback.

`run(app)` is the console entry point's body. IfaError is the library's own sentence;
the rest are what the world can throw at any command (a read-only or full disk, a
damaged ledger, a mistyped option) and are turned into a sentence here, once, rather
than in every command.
"""

from __future__ import annotations

import sys

from ..curation.ledger import LedgerDatabaseError
from ..errors import IfaError
from . import render


def run(app) -> None:
    """Run the Typer `app`; exit 1 with one line for a user error, 2 for bad usage."""
    import typer

    try:  # typer >= 0.20 carries its own copy of click
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import exceptions as click_exc

    try:
        code = app(standalone_mode=False)
    except IfaError as exc:
        _fail(str(exc), 1)
    except click_exc.ClickException as exc:
        value = _dashed_value(exc.option_name) if isinstance(exc, click_exc.NoSuchOption) else None
        if value:
            words = " ".join(_command_words(exc.ctx))
            exc.message = (f"No such option: {value}. If {value} is a value (an image id, a file name), not an "
                           f"option, put `--` before it: ifa {words} -- {value}")
        _show_usage_error(exc)
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted.", 1)
    except LedgerDatabaseError as exc:
        _fail(f"the workspace ledger could not be used (SQLite: {exc}). If it is damaged, restore ifa.db from a "
              "backup; if it is on a read-only disk, run commands that change it where it is writable.", 1)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}. Check that the path exists and can be written.", 1)
    if code == 130:  # Typer turns Ctrl-C into exit 130; say what it means
        render.err.print("[yellow]interrupted[/]: every change is transactional, so nothing was half-written; "
                         "rerun to finish.")
    sys.exit(code if isinstance(code, int) else 0)


def _dashed_value(option: str) -> str | None:
    """The command-line word behind an unknown short option when it is one dash and a
    word (`-leading-dash`, which click reports as `-l`): no ifa option is spelled so, so
    it is a value that starts with a dash."""
    if option.startswith("--"):
        return None
    return next((a for a in sys.argv[1:] if a.startswith(option) and not a.startswith("--") and len(a) > 2), None)


def _command_words(ctx) -> list[str]:
    """`['curate', 'restore']` for the context of `ifa curate restore`."""
    words = []
    while ctx is not None and ctx.parent is not None:
        words.append(ctx.info_name)
        ctx = ctx.parent
    return words[::-1] or ["COMMAND"]


def _show_usage_error(exc) -> None:
    """Show a click error as Typer would in standalone mode (rich when rich is there)."""
    try:
        from typer import rich_utils
        rich_utils.rich_format_error(exc)
    except ImportError:  # pragma: no cover
        exc.show()


def _fail(message: str, code: int) -> None:
    from rich.markup import escape  # a path or value with [brackets] is text, not a style
    render.err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)
