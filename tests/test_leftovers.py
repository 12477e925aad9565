"""Temp files a killed writer leaves are swept: also those beside a file of the user's."""

from __future__ import annotations

import csv
import subprocess
import sys

KILLED_WRITER = """
import os, sys
from pathlib import Path
from ifa.curation import reports
with reports.open_text(Path(sys.argv[1])) as fh:
    fh.write("apply,time\\n" * 100_000)
    fh.flush()
    os.kill(os.getpid(), 9)  # killed while writing, as `ifa history --csv` was
"""


def test_history_csv_sweeps_the_temp_a_killed_run_left(sample_ws, tmp_path):
    sample_ws.close()
    target = tmp_path / "mine" / "rebuilt.csv"
    target.parent.mkdir()
    (target.parent / "keep.csv").write_text("the user's own file")
    (target.parent / ".other.csv.tmp-1").write_text("not ours: another name")
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)])
    assert killed.returncode == -9
    left = [p.name for p in target.parent.iterdir() if p.name.startswith(".rebuilt.csv.tmp-")]
    assert len(left) == 1 and not target.exists()
    proc = subprocess.run([sys.executable, "-m", "ifa.cli.app", "history", "--csv", str(target), "--workspace",
                           str(sample_ws.root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in target.parent.iterdir()) == [".other.csv.tmp-1", "keep.csv", "rebuilt.csv"]
    with open(target, newline="", encoding="utf-8") as fh:
        assert next(csv.reader(fh))[:3] == ["apply", "time", "command"]
