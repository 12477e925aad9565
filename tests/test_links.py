"""No write follows a link: workspace folders and files that are links are refused in one
line, and nothing outside the workspace or the export target is written or deleted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ifa.curation import export as export_lib
from ifa.curation.workspace import Workspace

IFA = [sys.executable, "-m", "ifa.cli.app"]


def ifa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*IFA, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder of someone else's files, outside the workspace, and what it holds."""
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "a.jpg.tmp").write_text("mine too")
    return folder


def listing(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_fetch_refuses_a_linked_partial_folder_and_deletes_nothing_there(sample_ws, outside):
    sample_ws.close()
    before = listing(outside)
    (sample_ws.images_dir / ".partial").symlink_to(outside)
    proc = ifa("fetch", "--workspace", str(sample_ws.root))
    one_line_error(proc, ".partial", "is a link")
    assert listing(outside) == before


def test_reports_folder_as_a_link_is_refused_and_no_temp_there_is_swept(sample_ws, outside):
    sample_ws.close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (outside / f".other-program.csv.tmp-{dead.pid}").write_text("another program's temp")
    before = listing(outside)
    os.rename(sample_ws.reports_dir, sample_ws.root / "old-reports")
    sample_ws.reports_dir.symlink_to(outside)
    proc = ifa("curate", "check-attributes", "--workspace", str(sample_ws.root))
    one_line_error(proc, "reports", "is a link")
    assert listing(outside) == before


def test_export_refuses_linked_exports_folder_and_linked_target(sample_ws, outside, tmp_path):
    before = listing(outside)
    os.rmdir(sample_ws.exports_dir)
    sample_ws.exports_dir.symlink_to(outside)
    with pytest.raises(Exception, match="exports is a link"):
        export_lib.export(sample_ws)
    assert listing(outside) == before
    sample_ws.exports_dir.unlink()
    sample_ws.exports_dir.mkdir()
    # --overwrite onto a link to an earlier export used to leave `.out.old-PID` behind
    real = tmp_path / "real-export"
    export_lib.export(sample_ws, real, fmt="csv")
    link = tmp_path / "out"
    link.symlink_to(real)
    sample_ws.close()
    proc = ifa("export", str(link), "--workspace", str(sample_ws.root), "--overwrite", "--format", "csv")
    one_line_error(proc, "is a link", str(real))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert (real / "DATASHEET.md").exists() and link.is_symlink()


def test_pixel_cache_and_embedding_model_file_as_links_are_refused(sample_ws, outside):
    from ifa.curation.noise.model import baseline
    from ifa.curation.noise.model.data import pixel_inputs, read_split

    (sample_ws.root / "cache").symlink_to(outside)
    with pytest.raises(Exception, match="cache is a link"):
        baseline.cache_dir(sample_ws)
    (sample_ws.root / "cache").unlink()
    (sample_ws.root / "cache" / "pixels-32").mkdir(parents=True)
    (sample_ws.root / "cache" / "pixels-32" / "train.u8").symlink_to(outside / "notes.txt")
    split = read_split(sample_ws.ledger, sample_ws.taxonomy, "train")
    with pytest.raises(Exception, match="train.u8 is a link"):
        pixel_inputs(baseline.cache_dir(sample_ws), split, 32)
    assert listing(outside)["notes.txt"] == "mine"


def test_browse_serves_but_never_caches_a_thumbnail_through_a_linked_thumbs_folder(sample_ws, outside):
    from ifa.browse.thumbs import thumbnail

    row = sample_ws.ledger.records("SELECT image_id, path, sha256 FROM images WHERE path IS NOT NULL LIMIT 1")[0]
    (sample_ws.root / "thumbs").symlink_to(outside)
    before = listing(outside)
    data = thumbnail(sample_ws.root, row["image_id"], row["path"], row["sha256"])
    assert data and data[:2] == b"\xff\xd8"  # a JPEG, served
    assert listing(outside) == before
