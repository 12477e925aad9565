"""The command line under test: `ifa ARGS` through Typer's CliRunner, in this process."""

from __future__ import annotations

import json
from typing import Any

from click.testing import Result
from typer.testing import CliRunner


class Cli:
    """Runs `ifa` commands. `cli(*args)` returns click's Result whatever the exit code;
    `cli.json(*args)` asserts the command succeeded (its output as the message) and returns
    its stdout parsed as JSON."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: Any, env: dict[str, str] | None = None) -> Result:
        from ifa.cli.app import app

        return self.runner.invoke(app, [str(a) for a in args], env=env)

    def ok(self, *args: Any, env: dict[str, str] | None = None) -> Result:
        """The Result of a command that must succeed."""
        result = self(*args, env=env)
        assert result.exit_code == 0, result.output
        return result

    def json(self, *args: Any, env: dict[str, str] | None = None) -> Any:
        """The parsed stdout of a command that must succeed."""
        return json.loads(self.ok(*args, env=env).stdout)
