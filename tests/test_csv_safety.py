"""Ids round-trip exactly through every export format; CSVs for people are safe to open in a
spreadsheet (cells that would run as formulas get a leading apostrophe), data stays exact."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ifa.curation import export as export_lib
from ifa.curation.ledger import Change
from ifa.curation.workspace import Workspace

# Every character but NUL (refused at import) and the surrogates (not text), 200 to an id,
# and the ones CSV, JSON and spreadsheets treat specially on their own.
EVERY_CHAR = [c for c in map(chr, range(1, 0x11000)) if not 0xD800 <= ord(c) < 0xE000]
ODD_IDS = ["cr\rid", "lf\nid", "crlf\r\nid", 'quote"id', "comma,id", "tab\tid", " lead and trail ", "pipe|id",
           "=1+2", "+cmd", "-2", "@SUM(A1)", "\tlead-tab", "\rlead-cr", "\u2028line-sep", "\x85nel", "🙂 emoji"]
ODD_IDS += ["all" + "".join(EVERY_CHAR[i:i + 200]) for i in range(0, len(EVERY_CHAR), 200)]


def labels_of(n: int) -> list[int]:
    return [1 + n % 100, 150 + n % 7]


@pytest.fixture
def odd_ws(ws):
    ws.ledger.record_import(format="imat", source="odd.json", split="train",
                            images=[(i, f"http://x/{n}?q={i}", None, "active", None) for n, i in enumerate(ODD_IDS)],
                            labels=[(i, labels_of(n)) for n, i in enumerate(ODD_IDS)], quarantined=[], issues=[])
    return ws


def read_back(fmt: str, path) -> tuple[list[str], list[list[int]], list[str]]:
    """(ids, labels, urls) of an exported split file, read with ordinary readers."""
    if fmt == "imat":
        doc = json.loads(path.read_text(encoding="utf-8"))
        return ([i["imageId"] for i in doc["images"]], [[int(x) for x in a["labelId"]] for a in doc["annotations"]],
                [i["url"] for i in doc["images"]])
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)  # pandas reads the same cells
        assert frame["image_id"].tolist() == [r["image_id"] for r in rows]
        return ([r["image_id"] for r in rows], [list(map(int, r["label_ids"].split())) for r in rows],
                [r["url"] for r in rows])
    if fmt == "parquet":
        t = pq.read_table(path).to_pydict()
        return t["image_id"], t["label_ids"], t["url"]
    tasks = json.loads(path.read_text(encoding="utf-8"))
    return [t["data"]["image_id"] for t in tasks], None, [t["data"]["image"] for t in tasks]


@pytest.mark.parametrize("fmt", list(export_lib.FORMATS))
def test_every_character_in_ids_round_trips_through_every_format(odd_ws, tmp_path, fmt):
    result = export_lib.export(odd_ws, tmp_path / "out", fmt=fmt)
    ids, labels, urls = read_back(fmt, tmp_path / "out" / os.path.basename(result.splits["train"]["file"]))
    assert ids == ODD_IDS
    assert urls == [f"http://x/{n}?q={i}" for n, i in enumerate(ODD_IDS)]
    if labels is not None:
        assert labels == [labels_of(n) for n in range(len(ODD_IDS))]


FORMULAS = ["=1+2", "+cmd", "-2", "@SUM(A1)", "\tlead-tab", "\rlead-cr"]


def test_csvs_for_people_neutralise_formulas_and_data_stays_exact(odd_ws, tmp_path):
    odd_ws.ledger.apply_changes([Change("set_aside", i, reason="=HYPERLINK(\"http://evil\")", rule="odd")
                                 for i in FORMULAS + ["cr\rid"]])
    export_lib.export(odd_ws, tmp_path / "out", fmt="csv", include_set_aside=True)
    with open(tmp_path / "out" / "changes.csv", newline="", encoding="utf-8") as fh:
        changes = list(csv.DictReader(fh))
    assert [c["image_id"] for c in changes] == ["'" + i for i in FORMULAS] + ["cr\rid"]
    assert {c["reason"] for c in changes} == {"'=HYPERLINK(\"http://evil\")"}
    with open(tmp_path / "out" / "train.csv", newline="", encoding="utf-8") as fh:
        assert [r["image_id"] for r in csv.DictReader(fh)] == ODD_IDS  # data: exact, no apostrophe
    odd_ws.close()
    report = tmp_path / "history.csv"
    proc = subprocess.run([sys.executable, "-m", "ifa.cli.app", "history", "--rule", "odd", "--csv", str(report),
                           "--workspace", str(odd_ws.root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with open(report, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image_id"] for r in rows] == ["'" + i for i in FORMULAS] + ["cr\rid"]
    assert {r["reason"] for r in rows} == {"'=HYPERLINK(\"http://evil\")"}


def test_every_report_csv_writer_neutralises(tmp_path):
    from ifa.curation import reports

    reports.write_csv(tmp_path / "a.csv", pd.DataFrame({"id": ["=x", "ok", "-1"], "n": [-1, 2, 3]}))
    with reports.open_csv(tmp_path / "b.csv") as w:
        w.writerow(["=x", "ok", -1, None])
    assert list(csv.reader(open(tmp_path / "a.csv", newline=""))) == [["id", "n"], ["'=x", "-1"], ["ok", "2"], ["'-1", "3"]]
    assert list(csv.reader(open(tmp_path / "b.csv", newline=""))) == [["'=x", "ok", "-1", ""]]


def test_a_report_csv_gives_back_its_exact_ids_to_review_create(tmp_path):
    """`ifa review create --images-from REPORT.csv` reads the ids a report neutralised (and
    quoted, for a line break) as they are in the ledger."""
    from ifa.annotation.rounds import read_image_ids
    from ifa.curation import reports

    ids = ["=1+2", "-2", "@x", "cr\rid", "crlf\r\nid", "plain", "'quoted"]
    reports.write_csv(tmp_path / "r.csv", pd.DataFrame({"image_id": ids, "rule": "r"}))
    assert read_image_ids(tmp_path / "r.csv") == ids


ODD_NAMES = ["cr\rname", "lf\nname", "crlf\r\nname", 'quo"te', "comma,name", "=SUM(1)", "-minus", "tab\tin", "emoji🙂"]


def test_odd_label_names_round_trip_through_csv_and_label_studio(tmp_path):
    labels, groups = tmp_path / "labels.csv", tmp_path / "groups.csv"
    with open(groups, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["group", "cardinality"], ["kind", "multiple"]])
    with open(labels, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["labelId", "taskId", "labelName", "taskName"]]
                                 + [[n + 1, 1, name, "kind"] for n, name in enumerate(ODD_NAMES)])
    with Workspace.init(tmp_path / "ws", label_map=labels, groups=groups) as ws:
        ids = [f"img{n}" for n in range(len(ODD_NAMES))]
        ws.ledger.record_import(format="imat", source="odd.json", split="train",
                                images=[(i, f"http://x/{i}", None, "active", None) for i in ids],
                                labels=[(i, [n + 1]) for n, i in enumerate(ids)], quarantined=[], issues=[])
        export_lib.export(ws, tmp_path / "csv", fmt="csv")
        export_lib.export(ws, tmp_path / "ls", fmt="labelstudio")
    with open(tmp_path / "csv" / "train.csv", newline="", encoding="utf-8") as fh:
        assert [r["labels"] for r in csv.DictReader(fh)] == ODD_NAMES
    tasks = json.loads((tmp_path / "ls" / "train.labelstudio.json").read_text(encoding="utf-8"))
    assert [t["annotations"][0]["result"][0]["value"]["choices"] for t in tasks] == [[n] for n in ODD_NAMES]
