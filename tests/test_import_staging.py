"""The challenge-file import staged in TEMP tables chunk by chunk (ledger/staging.py): what
needs the whole file (a repeated id, an annotation's image, another split, unknown labels)
is found across chunk boundaries, reported in the same order, and nothing is left behind."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace
from ifa.errors import IfaError

BIG = 2**70  # more than 64 bits: SQLite's JSON would turn it into a real; kept as text

# Repeats sit several entries apart, so with chunks of 1-3 entries the first and the repeat
# are staged by different statements.
TRAIN = {
    "images": [
        {"imageId": "a", "url": "http://x/a.jpg"},
        {"imageId": "b", "url": "http://x/b.jpg"},
        {"url": "no id"},
        {"imageId": "c", "url": float("nan")},
        {"imageId": "d", "url": "http://x/d.jpg"},
        {"imageId": "a", "url": "http://x/other-a.jpg"},  # same id, another url: first kept
        {"imageId": "b", "url": "http://x/b.jpg"},  # same id, same url: harmless
        {"imageId": BIG, "url": "http://x/big.jpg"},
        {"imageId": "e", "url": "http://x/e.jpg"},
    ],
    "annotations": [
        {"imageId": "b", "labelId": ["17"]},
        {"imageId": "a", "labelId": ["83", "999"]},
        {"imageId": "zz", "labelId": ["17"]},
        {"imageId": "d", "labelId": ["17", "19"]},
        {"imageId": "a", "labelId": ["999", "83"]},  # same labels again: merged
        {"imageId": "e", "labelId": "17"},  # not a list
        {"imageId": "d", "labelId": ["106"]},  # other labels: united, image set aside
        {"imageId": BIG, "labelId": [BIG, "BLACK", "no such label"]},
        {"imageId": "c", "labelId": [["17"]]},  # a label that is not an id
    ],
}

WANT_REPORT = [
    ["image_id", "problem", "detail", "action"],
    ["", "malformed-entry", "images[2] has no imageId/image_id", "skipped"],
    ["a", "conflicting-sources", "images[5] repeats the image id with url http://x/other-a.jpg; "
     "kept the first entry's url http://x/a.jpg", "first source kept"],
    ["b", "duplicate-entry", "images[6] repeats an image id", "merged"],
    ["zz", "annotation-without-image", "annotations[2] names an image the images list lacks", "skipped"],
    ["a", "duplicate-entry", "annotations[4] repeats the image with the same labels", "merged"],
    ["e", "malformed-entry", "annotations[5] needs imageId/image_id and a labelId/label_id list", "skipped"],
    ["d", "conflicting-entries", "annotations[6] lists the image again with different labels", "image set aside"],
    ["c", "malformed-entry", "annotations[8] has a label that is not an id", "skipped"],
    ["c", "malformed-entry", "its url is NaN, not text; imported without a url", "url dropped, image set aside"],
    ["a", "unknown-label", None, "label quarantined"],
    [str(BIG), "unknown-label", None, "label quarantined"],
    [str(BIG), "unknown-label", None, "label quarantined"],
]


def _import(tmp_path: Path, name: str, chunk: int, monkeypatch, steps) -> tuple[list, list, dict]:
    """Import each (doc, split) into a new workspace staging `chunk` entries at a time; returns
    the results, the report rows and the ledger's rows."""
    monkeypatch.setattr(importing.core, "STAGE_CHUNK", chunk)
    results, reports = [], []
    with Workspace.init(tmp_path / name) as ws:
        for k, (doc, split) in enumerate(steps):
            src = tmp_path / f"{name}-{k}.json"
            src.write_text(json.dumps(doc))
            r = importing.import_imat(ws, src, split)
            reports.append(list(csv.reader(open(r.report))) if r.report else None)
            results.append({**r.to_dict(), "report": bool(r.report), "source": None})
        conn = ws.ledger.conn
        ledger = {
            "images": conn.execute("SELECT pk, image_id, split, url, status, status_reason FROM images ORDER BY pk").fetchall(),
            "labels": conn.execute("SELECT image_pk, label_id, status FROM labels ORDER BY image_pk, label_id").fetchall(),
            "issues": conn.execute("SELECT import_id, image_id, problem, detail, action FROM import_issues ORDER BY rowid").fetchall(),
            "temp": conn.execute("SELECT name FROM sqlite_temp_master WHERE name LIKE 'import%'").fetchall(),
        }
    return results, reports, ledger


@pytest.mark.parametrize("chunk", [1, 3])
def test_repeats_across_chunks_are_found_and_reported_in_file_order(tmp_path, monkeypatch, chunk):
    results, reports, ledger = _import(tmp_path, f"c{chunk}", chunk, monkeypatch, [(TRAIN, "train")])
    report = reports[0]
    assert [row[:2] + row[3:] for row in report] == [row[:2] + row[3:] for row in WANT_REPORT]
    assert [row[2] for row in report[1:9]] == [row[2] for row in WANT_REPORT[1:9]]
    for row, start in zip(report[-3:], ["Unknown label id 999;", f"Unknown label id {BIG}: outside the range",
                                        "Unknown label name 'no such label'"]):
        assert row[2].startswith(start), row
    assert results[0]["images_read"] == 6 and results[0]["images_added"] == 6
    images = {iid: (url, status, reason) for _, iid, _, url, status, reason in ledger["images"]}
    assert [iid for _, iid, *_ in ledger["images"]] == ["a", "b", "c", "d", str(BIG), "e"]  # file order
    assert images["a"][0] == "http://x/a.jpg"
    assert images["c"] == (None, "set_aside", "import: no url and no local file")
    assert images["d"][1:] == ("set_aside", "import: listed twice with different labels")
    pk = {iid: p for p, iid, *_ in ledger["images"]}
    labels = {}
    for image_pk, label_id, status in ledger["labels"]:
        labels.setdefault(image_pk, {})[label_id] = status
    assert labels[pk["d"]] == {17: "active", 19: "active", 106: "active"}  # united across chunks
    assert labels[pk["a"]][83] == "active" and labels[pk["a"]][999] == "quarantined"
    assert pk["e"] not in labels and pk["c"] not in labels
    assert ledger["temp"] == []  # the staging tables are dropped


def test_chunk_size_changes_nothing(tmp_path, monkeypatch):
    """Every result, report row and ledger row is the same however the file is chunked,
    with another split's images and a rerun that adds nothing."""
    val = {"images": [{"imageId": "v1"}, {"imageId": "d"}, {"imageId": "a"}, {"imageId": "v0"}],
           "annotations": [{"imageId": "v1", "labelId": ["5000"]}, {"imageId": "a", "labelId": ["5000"]},
                           {"imageId": "v0", "labelId": ["17", "5000"]}]}
    steps = [(TRAIN, "train"), (val, "validation"), (TRAIN, "train")]
    runs = [_import(tmp_path, f"c{chunk}", chunk, monkeypatch, steps) for chunk in (1, 2, 100_000)]
    assert runs[0] == runs[1] == runs[2]
    results, reports, _ = runs[0]
    # another split's images are skipped, reported sorted by id after the reading's problems;
    # their labels are neither written nor reported unknown
    assert [row[:2] for row in reports[1][1:]] == [["a", "other-split"], ["d", "other-split"],
                                                   ["v1", "unknown-label"], ["v0", "unknown-label"]]
    assert results[1]["images_added"] == 2 and results[1]["quarantined_labels"] == 2
    assert results[2]["nothing_new"] and not results[2]["report"] and results[2]["images_existing"] == 6


def test_raw_ids_beyond_64_bits_stay_text(tmp_path, monkeypatch):
    _, _, ledger = _import(tmp_path, "big", 2, monkeypatch, [(TRAIN, "train")])
    assert (str(BIG),) in [(iid,) for _, iid, *_ in ledger["images"]]
    with Workspace.open(tmp_path / "big") as ws:
        kept = ws.ledger.image_label_records(str(BIG))
        raw = dict(ws.ledger.conn.execute("SELECT raw, 1 FROM raw_label_names").fetchall())
    assert {r["label_id"] for r in kept if r["status"] == "active"} == {17}  # "BLACK" is a known name
    assert len([r for r in kept if r["status"] == "quarantined"]) == 2
    assert set(raw) == {str(BIG), "no such label"}  # the 70-bit id as its digits, not a rounded real


def test_a_refused_import_leaves_no_staging_behind(ws, write_json):
    f = write_json("t.json", {"images": [{"imageId": "a"}], "annotations": [{"imageId": "a", "labelId": ["5000"]}]})
    with pytest.raises(IfaError, match="1 unknown-label"):
        importing.import_imat(ws, f, "train", on_error="fail")
    conn = ws.ledger.conn
    assert conn.execute("SELECT name FROM sqlite_temp_master WHERE name LIKE 'import%'").fetchall() == []
    assert ws.ledger.counts() == {"images": 0, "labels": 0}
    r = importing.import_imat(ws, f, "train")  # the same connection stages again
    assert r.images_added == 1 and r.quarantined_labels == 1
