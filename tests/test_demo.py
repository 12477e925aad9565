"""`ifa demo` end to end, as a user runs it: the console script in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ifa.annotation import server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_demo_runs_every_step_and_stops_what_it_started(tmp_path):
    root = tmp_path / "demo"
    ifa = Path(sys.executable).with_name("ifa")
    out = subprocess.run([str(ifa), "demo", "--workspace", str(root), "--json"], capture_output=True, text=True,
                         timeout=840, env={**os.environ, "IFA_WORKSPACE": ""})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    steps = {s["name"]: s for s in result["steps"]}
    assert list(steps) == ["import", "stats", "check-attributes", "dedup", "flag-noise", "review", "export"]
    planted = steps["import"]["planted"]
    # every planted confused image is hit; duplicates and leakage are found
    flagged = {f["image_id"] for f in steps["check-attributes"]["check_attributes"]["flagged"]}
    assert planted["two_categories"] + planted["contradictions"] + planted["sleeve_on_shoes"] <= len(flagged)
    assert steps["dedup"]["dedup"]["applied"] and steps["dedup"]["dedup"]["cross_split"] >= 1
    assert steps["review"]["simulated"] and steps["review"]["server_stopped"]
    export = Path(result["export"])
    assert (export / "train.json").exists() and (export / "changes.csv").exists() and (export / "DATASHEET.md").exists()
    assert Path(result["report"]).exists()
    # nothing left running: the embedded Label Studio is gone
    assert server.running(server.server_dir(root)) is None
    state = server.read_state(server.server_dir(root))
    assert state is None or not Path(f"/proc/{state.pid}").exists()
