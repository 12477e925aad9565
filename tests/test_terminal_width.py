"""At 80 columns, what a user must copy from a terminal table (an image id, a rule id, a URL, a
path) is printed whole, and `--help` wraps instead of cutting."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from ifa.cli import render
from ifa.sample import IMAGES_DIR

# Long, copy-worthy ids: a 36-character UUID with a vendor prefix, as shop catalogues name files.
PREFIX = "vendor-catalogue-2026-spring-"


def _ifa(ws: Path, *argv: str) -> str:
    out = subprocess.run([sys.executable, "-m", "ifa.cli.app", *argv, "-w", str(ws)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "COLUMNS": "80", "IFA_WORKSPACE": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def long_id_ws(tmp_path_factory) -> tuple[Path, list[str]]:
    """A workspace of 12 sample photos under long ids, two of them exact copies of another (a
    dedup cluster), and labels that break the garment-part rules (long rule ids)."""
    root = tmp_path_factory.mktemp("wide")
    photos = sorted(IMAGES_DIR.glob("*.jpg"))[:10]
    folder = root / "in"
    folder.mkdir()
    rows = ["file,labels"]
    ids = []
    for k, photo in enumerate(photos + photos[:2]):
        image_id = f"{PREFIX}{photo.stem}" + ("-copy" if k >= len(photos) else "")
        shutil.copy(photo, folder / f"{image_id}.jpg")
        labels = "Slippers|Long Sleeved" if k % 3 == 0 else "Jeans|Collared" if k % 3 == 1 else "Blouses|Female"
        rows.append(f"{image_id}.jpg,{labels}")
        ids.append(image_id)
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    ws = root / "ws"
    _ifa(ws, "init")
    _ifa(ws, "import", "csv", str(folder / "labels.csv"), "--split", "train", "--image-col", "file",
         "--labels-col", "labels", "--sep", "|")
    return ws, ids


def _whole_lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines())


def test_check_attributes_table_keeps_rule_ids_whole(long_id_ws):
    ws, _ = long_id_ws
    out = _whole_lines(_ifa(ws, "curate", "check-attributes"))
    for rule in ("garment-part-on-non-garment", "garment-part-on-lower-body-garment"):
        assert rule in out, out
    assert "..." not in out and "…" not in out


def test_dedup_table_keeps_image_ids_whole(long_id_ws):
    ws, ids = long_id_ws
    out = _whole_lines(_ifa(ws, "curate", "dedup", "--workers", "1"))
    copies = [i for i in ids if i.endswith("-copy")]
    assert len(copies) == 2
    for copy in copies:
        assert copy in out, out
        assert copy.removesuffix("-copy") in out, out
    assert "…" not in out


def test_show_and_history_keep_ids_and_paths_whole(long_id_ws):
    ws, ids = long_id_ws
    out = _whole_lines(_ifa(ws, "show", ids[0]))
    assert ids[0] in out and "…" not in out
    out = _whole_lines(_ifa(ws, "history", "--csv", str(ws / "reports" / "history-with-a-long-name.csv")))
    assert "…" not in out
    assert (ws / "reports" / "history-with-a-long-name.csv").resolve().as_uri() in out.replace("\n", "")


def test_a_url_column_too_wide_for_the_terminal_prints_rows_as_lines(monkeypatch):
    """`ifa review create`'s project table: six columns and a URL cannot stand side by side in 80
    columns; each row becomes `column: value` lines, every URL whole on its line."""
    buf = io.StringIO()
    monkeypatch.setattr(render, "out", Console(width=80, file=buf, highlight=False), raising=False)
    urls = [f"http://127.0.0.1:38081/projects/{k}/data?tab=1&task=&labeling=1" for k in (12, 13)]
    rows = [("annotator-1", "ana.long-surname@annotation-vendor.example.com", 12, "1,204", "1,204", urls[0]),
            ("tiebreaker", "tie.breaker@annotation-vendor.example.com", 13, "0", "0", urls[1])]
    render.out.print(render.table("projects", ["role", "annotator", "project", "#tasks", "#added now", "url"], rows))
    text = buf.getvalue()
    for value in urls + ["ana.long-surname@annotation-vendor.example.com"]:
        assert any(value in line for line in text.splitlines()), text


def test_group_help_shows_each_commands_whole_first_line():
    out = subprocess.run([sys.executable, "-m", "ifa.cli.app", "curate", "--help"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "80"}, timeout=60).stdout
    assert "..." not in out.split("Commands:")[1], out
    flat = " ".join(out.split())
    assert "Check every image's labels against the attribute rules; set confused images aside." in flat
