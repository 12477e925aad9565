"""`ifa import csv` with several label columns, a split column, a value map and column groups,
on the shared datasets as they are."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ifa.curation.ingest import importing
from ifa.errors import IfaError

# ../shared/data beside the checkout; IFA_SHARED_DATA names it for a checkout elsewhere (a worktree)
DATA = Path(os.environ.get("IFA_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
MYNTRA, CLOTHING = DATA / "myntra-products", DATA / "clothing-cc0"
IMAT_COLS = ["imat_category", "imat_color", "imat_gender", "imat_sleeve", "imat_neckline", "imat_pattern",
             "imat_material", "imat_style"]
needs_data = pytest.mark.skipif(not (MYNTRA / "labels.csv").is_file(), reason="the shared datasets are not here")


def _labels(ws) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for iid, label in ws.ledger.conn.execute(
            "SELECT i.image_id, l.label_id FROM labels l JOIN images i ON i.pk = l.image_pk WHERE l.status = 'active'"):
        out.setdefault(iid, set()).add(label)
    return out


@needs_data
def test_myntra_columns_import_as_a_hand_merged_column_does(tmp_path):
    from ifa.curation.workspace import Workspace

    ws = tmp_path / "ws"
    argv = ["import", "csv", str(MYNTRA / "labels.csv"), "--split", "train", "--image-col", "image_file",
            *[a for col in IMAT_COLS for a in ("--labels-col", col)], "--sep", "|", "-w", str(ws), "--json"]
    assert subprocess.run([sys.executable, "-m", "ifa.cli.app", "init", "-w", str(ws)], capture_output=True).returncode == 0
    done = subprocess.run([sys.executable, "-m", "ifa.cli.app", *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["images_added"] == 3000 and result["problems"] == {} and result["report"] == ""
    # the same labels as one column merged by hand, in a CSV beside the images
    with open(MYNTRA / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "images").symlink_to(MYNTRA / "images")
    with open(merged / "labels.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["image_file", "labels"])
        out.writerows([r["image_file"], "|".join(r[c] for c in IMAT_COLS if r[c])] for r in rows)
    with Workspace.open(ws) as a, Workspace.init(tmp_path / "ws2") as b:
        hand = importing.import_csv(b, merged / "labels.csv", "train", "image_file", "labels", sep="|")
        assert hand.images_added == 3000 and sum(map(len, _labels(a).values())) == result["labels_added"]
        assert _labels(a) == _labels(b) and len(_labels(a)) > 2900


@needs_data
def test_a_split_column_splits_the_clothing_images(ws):
    r = importing.import_csv(ws, CLOTHING / "labels.csv", "train", "image_file", ["imat_category", "imat_sleeve", "imat_neckline"],
                             id_col="image_id", split_col="small_subset_split",
                             group_of={"imat_category": "category", "imat_sleeve": "sleeve", "imat_neckline": "neckline"})
    with open(CLOTHING / "labels.csv", newline="", encoding="utf-8") as fh:
        want: dict[str, int] = {}
        for row in csv.DictReader(fh):
            split = row["small_subset_split"] or "train"  # an empty cell takes --split
            want[split] = want.get(split, 0) + 1
    got = dict(ws.ledger.conn.execute("SELECT split, count(*) FROM images GROUP BY split").fetchall())
    assert got == want and set(got) == {"train", "validation", "test"} and r.splits == want
    assert r.images_added == 3000 and r.problems == {}


def test_map_and_group_of(ws, tmp_path):
    (tmp_path / "l.csv").write_text("url,kind,sex,shade\n"
                                    "http://x/a.jpg,Tee,Men,Navy Blue|Black\n"
                                    "http://x/b.jpg,Dresses,Women,Red\n"
                                    "http://x/c.jpg,Kurta,Unisex,Dresses\n")
    (tmp_path / "map.csv").write_text("group,source_value,label\ncategory,tee,T-Shirts\ngender,Men,Male\n"
                                      "gender,Women,Female\ncolor,Navy Blue,Blue\n")
    r = importing.import_csv(ws, tmp_path / "l.csv", "train", "url", ["kind", "sex", "shade"], label_map=tmp_path / "map.csv",
                             group_of={"kind": "category", "sex": "gender", "shade": "color"})
    tax = ws.taxonomy
    names = {iid: {tax.labels[i].name for i in ids} for iid, ids in _labels(ws).items()}
    assert names == {"a": {"T-Shirts", "Male", "Blue", "Black"}, "b": {"Dresses", "Female", "Red"}}
    # unmapped values stay quarantined with their text; 'Dresses' in the color column is no colour
    assert r.problems == {"unknown-label": 3}
    report = Path(r.report).read_text()
    assert "Unknown category label 'Kurta'" in report and "Unknown color label 'Dresses'" in report
    with pytest.raises(IfaError, match="not a --labels-col"):
        importing.import_csv(ws, tmp_path / "l.csv", "train", "url", ["kind"], group_of={"shade": "color"})
    with pytest.raises(IfaError, match="Unknown group 'colour'"):
        importing.import_csv(ws, tmp_path / "l.csv", "train", "url", ["shade"], group_of={"shade": "colour"})


def test_a_bad_split_cell_is_a_problem_naming_the_line(ws, tmp_path):
    (tmp_path / "s.csv").write_text("url,tags,split\nhttp://x/a.jpg,Dresses,val\nhttp://x/b.jpg,Dresses,Test\n")
    r = importing.import_csv(ws, tmp_path / "s.csv", "train", "url", "tags", split_col="split")
    assert r.problems == {"malformed-entry": 1} and ws.ledger.image("b")["split"] == "test"
    assert "line 2: split 'val' is not one of train, validation, test" in Path(r.report).read_text()


def test_bad_group_of_and_map_are_one_line_errors(tmp_path):
    ws = tmp_path / "ws"
    assert subprocess.run([sys.executable, "-m", "ifa.cli.app", "init", "-w", str(ws)], capture_output=True).returncode == 0
    (tmp_path / "l.csv").write_text("url,shade\nhttp://x/a.jpg,Red\n")
    (tmp_path / "m.csv").write_text("group,value,label\ncolor,Rot,Red\n")
    base = ["import", "csv", str(tmp_path / "l.csv"), "-s", "train", "--image-col", "url", "--labels-col", "shade", "-w", str(ws)]
    for extra, says in ((["--group-of", "shade"], "--group-of takes COLUMN=GROUP"),
                        (["--map", str(tmp_path / "m.csv")], "needs the columns group, source_value and label")):
        done = subprocess.run([sys.executable, "-m", "ifa.cli.app", *base, *extra], capture_output=True, text=True)
        text = " ".join((done.stdout + done.stderr).split())
        assert done.returncode == 1 and says in text and "Traceback" not in text, text
