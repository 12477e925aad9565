"""The command line starts fast: importing it, or asking for help, loads no heavy library,
and each command's module loads only when that command runs."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import typer

from ifa import cli as cli_package
from ifa.cli.app import COMMANDS

# The list, plus numpy: each of these costs 60 ms to 1.5 s at every start.
HEAVY = ("torch", "pandas", "numpy", "label_studio_sdk", "numba", "sklearn", "dask", "matplotlib", "scipy",
         "pyarrow", "httpx", "onnxruntime")


def loaded_after(code: str) -> dict:
    """Run `code` in a fresh interpreter; which heavy libraries and ifa.cli modules it loaded."""
    probe = (f"import sys, json\ntry:\n    {code}\nexcept SystemExit:\n    pass\n"
             f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules], "
             "'cli': sorted(m for m in sys.modules if m.startswith('ifa.cli.'))}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_library():
    loaded = loaded_after("import ifa.cli.app")
    assert loaded["heavy"] == []
    assert loaded["cli"] == ["ifa.cli.app"]


def test_help_loads_no_command_module():
    loaded = loaded_after("sys.argv = ['ifa', '--help']; from ifa.cli.app import main; main()")
    assert loaded["heavy"] == []
    assert not set(loaded["cli"]) & {f"ifa.cli.{module}" for module, _ in COMMANDS.values()}


def test_a_command_loads_only_its_own_module():
    loaded = loaded_after("sys.argv = ['ifa', 'curate', 'restore', '--help']; from ifa.cli.app import main; main()")
    assert loaded["heavy"] == []
    assert "ifa.cli.curate" in loaded["cli"] and "ifa.cli.review" not in loaded["cli"]


def test_every_command_module_is_registered_with_its_own_summary():
    modules = {m.name for m in pkgutil.iter_modules(cli_package.__path__)
               if hasattr(importlib.import_module(f"ifa.cli.{m.name}"), "app") and m.name != "app"}
    assert modules == {module for module, _ in COMMANDS.values()}
    for name, (module, summary) in COMMANDS.items():
        command = typer.main.get_command(importlib.import_module(f"ifa.cli.{module}").app)
        first_paragraph = " ".join(command.help.strip().split("\n\n")[0].split())
        assert first_paragraph == summary, name


def test_top_level_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output


def test_flags_show_no_value_placeholder(cli):
    result = cli("review", "serve", "--help")
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    assert "--stop " in result.output and "--port <int>" in result.output


def test_unknown_command_is_a_usage_error(cli):
    result = cli("frobnicate")
    assert result.exit_code == 2 and "No such command" in result.output
