"""One CLI test per foundation command: the wiring, on a real workspace."""

from __future__ import annotations

import json

from ifa.sample import IMAGES_DIR, split_file



def test_init_import_stats_show(tmp_path, cli):
    ws = str(tmp_path / "ws")
    cli.ok("init", "--workspace", ws)
    data = cli.json("import", "imat", split_file("validation"), "--split", "validation", "--images", IMAGES_DIR,
                    "--workspace", ws, "--json")
    assert data["images_added"] == 45 and data["problems"] == {}
    stats = cli.json("stats", "--workspace", ws, "--json")
    assert stats["splits"]["validation"]["images"] == 45
    first = json.loads(split_file("validation").read_text())["images"][0]["imageId"]
    shown = cli.json("show", first, "--workspace", ws, "--json")
    assert shown["split"] == "validation" and shown["labels"]
