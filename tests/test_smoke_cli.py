"""One CLI test per foundation command: the wiring, on a real workspace."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ifa.cli.app import app
from ifa.sample import IMAGES_DIR, split_file

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_init_import_stats_show(tmp_path):
    ws = str(tmp_path / "ws")
    run("init", "--workspace", ws)
    out = run("import", "imat", str(split_file("validation")), "--split", "validation", "--images", str(IMAGES_DIR),
              "--workspace", ws, "--json")
    data = json.loads(out.stdout)
    assert data["images_added"] == 45 and data["problems"] == {}
    stats = json.loads(run("stats", "--workspace", ws, "--json").stdout)
    assert stats["splits"]["validation"]["images"] == 45
    first = json.loads(split_file("validation").read_text())["images"][0]["imageId"]
    shown = json.loads(run("show", first, "--workspace", ws, "--json").stdout)
    assert shown["split"] == "validation" and shown["labels"]
