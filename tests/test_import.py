"""Importing the challenge JSON, CSV and folders: keys, ids, bad input, reruns, crashes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from ifa.curation.ingest import importing
from ifa.errors import IfaError
from ifa.sample import IMAGES_DIR, split_file

SAMPLE_IDS = sorted(p.stem for p in IMAGES_DIR.glob("*.jpg"))


def test_sample_import_matches_the_files(sample_ws):
    led = sample_ws.ledger
    images = led.images_frame(status=None)
    assert len(images) == 310 and set(images["image_id"]) == set(SAMPLE_IDS)
    assert images["path"].map(lambda p: os.path.exists(p)).all()
    assert images.groupby("split").size().to_dict() == {"test": 45, "train": 220, "validation": 45}
    doc = json.loads(split_file("validation").read_text())
    want = {(a["imageId"], int(l)) for a in doc["annotations"] for l in a["labelId"]}
    got = set(zip(*[led.labels_frame(["validation"])[c] for c in ("image_id", "label_id")]))
    assert got == want


def test_snake_keys_integer_ids_and_test_without_annotations(ws, write_json):
    f = write_json("t.json", {"images": [{"image_id": 1, "url": "http://x/1.jpg"}, {"image_id": 2, "url": "http://x/2.jpg"}],
                              "annotations": [{"image_id": 1, "label_id": [83, "17"]}, {"image_id": 2, "label_id": []}]})
    r = importing.import_imat(ws, f, "train")
    assert (r.images_added, r.labels_added, r.problems) == (2, 2, {})
    imports = ws.ledger.imports_frame().iloc[-1]
    assert imports["key_style"] == "snake" and imports["int_ids"] == 1
    t = write_json("test.json", {"images": [{"imageId": "9", "url": "http://x/9.jpg"}]})
    r = importing.import_imat(ws, t, "test")
    assert r.images_added == 1 and ws.ledger.image("9")["split"] == "test"


def test_bad_records_are_quarantined_and_reported(ws, write_json, tmp_path):
    images_dir = tmp_path / "imgs"
    images_dir.mkdir()
    for i in ("a", "b", "c", "d"):
        shutil.copy(IMAGES_DIR / f"{SAMPLE_IDS[0]}.jpg", images_dir / f"{i}.jpg")
    f = write_json("train.json", {
        "images": [{"imageId": i, "url": None} for i in ("a", "b", "c", "d", "e")] + [{"url": "no id"}],
        "annotations": [
            {"imageId": "a", "labelId": ["83", "999"]},       # unknown label id
            {"imageId": "b", "labelId": ["17"]},
            {"imageId": "b", "labelId": ["17"]},              # harmless repeat
            {"imageId": "c", "labelId": ["17"]},
            {"imageId": "c", "labelId": ["19"]},              # conflicting repeat
            {"imageId": "zz", "labelId": ["17"]},             # no such image
            {"imageId": "d", "labelId": "17"},                # labels not a list
        ]})
    r = importing.import_imat(ws, f, "train", images_dir=images_dir)
    assert r.problems == {"unknown-label": 1, "duplicate-entry": 1, "conflicting-entries": 1,
                          "annotation-without-image": 1, "malformed-entry": 2, "missing-file": 1}
    led = ws.ledger
    assert led.image_labels("a").set_index("label_id")["status"].to_dict() == {83: "active", 999: "quarantined"}
    assert led.image("c")["status"] == "set_aside" and "different labels" in led.image("c")["status_reason"]
    assert set(led.image_labels("c")["label_id"]) == {17, 19}
    assert led.image("e")["status"] == "set_aside"  # no file and no URL to fetch it from
    report = pd.read_csv(r.report)
    assert len(report) == 7 and set(report["action"]) >= {"label quarantined", "image set aside", "merged"}
    # the same images under another split are refused, the first import untouched
    r2 = importing.import_imat(ws, write_json("val.json", {"images": [{"imageId": "b"}, {"imageId": "f"}],
                                                          "annotations": [{"imageId": "f", "labelId": [1]}]}), "validation")
    assert r2.problems == {"other-split": 1} and r2.images_added == 1 and led.image("b")["split"] == "train"


def test_on_error_fail_writes_nothing(ws, write_json):
    f = write_json("t.json", {"images": [{"imageId": "a"}], "annotations": [{"imageId": "a", "labelId": ["1", "5000"]}]})
    with pytest.raises(IfaError, match="1 unknown-label"):
        importing.import_imat(ws, f, "train", on_error="fail")
    assert ws.ledger.counts() == {"images": 0, "labels": 0}


@pytest.mark.parametrize("text, where", [('{"images": [', "line 1, column 13"),
                                         ('{"images": []\n,,}', "line 2, column 2")])
def test_malformed_json_names_line_and_column(ws, write_json, text, where):
    with pytest.raises(IfaError, match=where):
        importing.import_imat(ws, write_json("bad.json", text), "train")


def test_wrong_shape_and_split_are_clear(ws, write_json):
    with pytest.raises(IfaError, match="challenge format"):
        importing.import_imat(ws, write_json("x.json", [1, 2]), "train")
    with pytest.raises(IfaError, match="Unknown split 'val'"):
        importing.import_imat(ws, write_json("y.json", {"images": []}), "val")


def test_rerun_adds_only_what_is_missing(ws):
    first = importing.import_imat(ws, split_file("train"), "train", images_dir=IMAGES_DIR)
    again = importing.import_imat(ws, split_file("train"), "train", images_dir=IMAGES_DIR)
    assert first.images_added == 220 and again.images_added == 0 and again.images_existing == 220
    assert again.labels_added == 0 and ws.ledger.counts()["images"] == 220


def test_csv_import_with_names_paths_and_urls(ws, tmp_path):
    (tmp_path / "pics").mkdir()
    shutil.copy(IMAGES_DIR / f"{SAMPLE_IDS[0]}.jpg", tmp_path / "pics" / "p1.jpg")
    pd.DataFrame({
        "file": ["pics/p1.jpg", "https://example.invalid/img/p2.png", "pics/missing.jpg"],
        "tags": ["heels | BLACK", "Sneaker", "17"],
    }).to_csv(tmp_path / "l.csv", index=False)
    r = importing.import_csv(ws, tmp_path / "l.csv", "train", image_col="file", labels_col="tags")
    assert r.images_added == 3 and r.problems == {"unknown-label": 1, "missing-file": 1}
    led = ws.ledger
    assert set(led.image_labels("p1")["label_id"]) == {83, 17}
    assert led.image("p2")["url"].endswith("p2.png") and led.image("p2")["path"] is None
    assert led.image("missing")["status"] == "set_aside"
    with pytest.raises(IfaError, match="no column 'labels'"):
        importing.import_csv(ws, tmp_path / "l.csv", "train", image_col="file", labels_col="labels")


def test_folder_import(ws):
    r = importing.import_folder(ws, IMAGES_DIR, "test")
    assert r.images_added == 310 and ws.ledger.labels_frame().empty


@pytest.mark.slow
def test_killed_import_leaves_ledger_intact_and_rerun_finishes(ws, tmp_path):
    """SIGKILL an import mid-write: the ledger is as it was; a rerun imports everything once."""
    from ifa.benchmarks.synthetic import write_challenge

    big = write_challenge(tmp_path / "big.json", 150_000, seed=1)
    env = {**os.environ, "IFA_WORKSPACE": str(ws.root)}
    ws.close()
    proc = subprocess.Popen([sys.executable, "-m", "ifa.cli.app", "import", "imat", str(big), "--split", "train"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wal = ws.root / "ifa.db-wal"
    deadline = time.time() + 120
    while time.time() < deadline and (not wal.exists() or wal.stat().st_size < 2_000_000) and proc.poll() is None:
        time.sleep(0.05)
    killed_mid_write = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed_mid_write, "the import finished before it could be killed; make the file bigger"
    led = ws.ledger
    assert led.counts() == {"images": 0, "labels": 0}
    assert led.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    r = importing.import_imat(ws, big, "train")
    again = importing.import_imat(ws, big, "train")
    assert r.images_added == 150_000 and again.images_added == 0 and again.labels_added == 0
    assert led.counts()["images"] == 150_000
