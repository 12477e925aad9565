"""The `ifa` console script: the command line, with Ctrl-C during start-up guarded.

Loading the command line takes a noticeable moment (Typer, rich, our modules); a Ctrl-C
in that window used to print a 21-32 line traceback ending in KeyboardInterrupt. This
module imports nothing but the standard library, so the guard is in place before anything
slow loads. What it cannot guard is the interpreter's own start, before Python runs any of
ifa's code (and the import of the two tiny package `__init__` files on the way here).
"""

from __future__ import annotations

import signal
import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def main() -> None:
    """Load the command line and run it; a Ctrl-C at any point prints one line, exits 130."""
    try:
        from .app import main as run
    except KeyboardInterrupt:
        _interrupted("interrupted while ifa was starting: nothing was changed.")
    try:
        run()
    except KeyboardInterrupt:  # app.main turns a Ctrl-C inside a command into its own line and exit 130
        _interrupted("interrupted: every change is transactional, so nothing was half-written; rerun to finish.")


def _interrupted(message: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the goodbye
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()
    sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
