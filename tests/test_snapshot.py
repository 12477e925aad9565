"""One snapshot per output: an export (split files, changes.csv, DATASHEET) is the ledger at
one instant while another process commits, never a mix of two states."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time

import pytest

from ifa.curation import export as export_lib
from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace

N = 12_000
EVERY = 10  # the writer toggles every 10th image


def own_labels(i: int) -> list[int]:
    """Image i's labels: neighbours never share both, so a shifted label is seen."""
    return sorted({1 + i % 97, 120 + (i // 97) % 50})


# Sets aside every 10th image in one transaction, then restores them in the next, until
# killed: each committed state is "all images" or "all but the multiples of 10". The pause
# keeps the event log (which changes.csv reads whole) from growing by millions of rows.
WRITER = """
import sys, time
from pathlib import Path
from ifa.curation.ledger import Change, Ledger
ledger = Ledger(Path(sys.argv[1]), command="curate check-attributes", busy_timeout=60)
ids = [f"img{i}" for i in range(0, int(sys.argv[2]), int(sys.argv[3]))]
print("ready", flush=True)
while True:
    ledger.apply_changes([Change("set_aside", i, reason="toggle", rule="toggle") for i in ids])
    time.sleep(0.1)
    ledger.apply_changes([Change("restore_image", i, reason="toggle back", rule="toggle") for i in ids])
    time.sleep(0.1)
"""


@pytest.fixture
def big_ws(tmp_path, write_json):
    doc = {"images": [{"imageId": f"img{i}", "url": f"http://x/{i}.jpg"} for i in range(N)],
           "annotations": [{"imageId": f"img{i}", "labelId": own_labels(i)} for i in range(N)]}
    with Workspace.init(tmp_path / "ws", command="test") as ws:
        importing.import_imat(ws, write_json("train.json", doc), "train")
    return tmp_path / "ws"


def check_export(out) -> None:
    with open(out / "train.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    ids = [int(r["image_id"][3:]) for r in rows]
    for r, i in zip(rows, ids):
        assert r["label_ids"] == " ".join(map(str, own_labels(i))), f"img{i} carries another image's labels"
    all_ids, toggled = set(range(N)), {i for i in range(N) if i % EVERY == 0}
    assert set(ids) in (all_ids, all_ids - toggled), "the images are of no single committed state"
    sheet = (out / "DATASHEET.md").read_text()
    after = re.search(r"^\| train \| [\d,]+ \| ([\d,]+) \| [\d,]+ \| ([\d,]+) \|", sheet, re.M)
    assert (int(after[1].replace(",", "")), int(after[2].replace(",", ""))) == (len(rows), 2 * len(rows)), \
        "DATASHEET disagrees with train.csv"
    with open(out / "changes.csv", newline="", encoding="utf-8") as fh:
        last = {}
        for c in csv.DictReader(fh):
            last[c["image_id"]] = c["change"]
    aside = {int(k[3:]) for k, v in last.items() if v == "set aside"}
    assert aside == all_ids - set(ids), "changes.csv is of another moment than train.csv"


@pytest.mark.slow
def test_exports_are_one_instant_while_another_process_commits(big_ws, tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(big_ws / "ifa.db"), str(N), str(EVERY)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        for n in range(6):
            with Workspace.open(big_ws, command="export") as ws:
                export_lib.export(ws, tmp_path / f"out{n}", fmt="csv")
            assert writer.poll() is None, "the writer stopped"
    finally:
        writer.kill()
        writer.wait()
    for n in range(6):
        check_export(tmp_path / f"out{n}")
    with Workspace.open(big_ws) as ws:  # the writer really toggled meanwhile
        assert ws.ledger.query("SELECT count(*) FROM events WHERE kind = 'set_aside'")[0][0] >= 6 * (N // EVERY)
